"""``--sink syslog:udp://host:514`` | ``tcp://host:601`` | ``tls://host:6514``: RFC 5424 messages.

One message per finding::

    <PRI>1 TIMESTAMP HOSTNAME delegatewatch PROCID finding [delegatewatch@32473 id="…" rule="…" …] {json}

- PRI = facility × 8 + severity; severity from the finding (critical→2 crit, high→3 err,
  medium→4 warning, low→5 notice, informational→6 info); facility ``auth`` (4) unless
  ``facility=`` says otherwise.
- STRUCTURED-DATA ``delegatewatch@32473`` (32473 is the private enterprise number RFC 5612
  reserves for documentation; set ``sd_id=name@YOUR-PEN`` for your own): id, rule, severity, time,
  mailbox, grantee, actor, rights, operation, record_id. PARAM-VALUE escapes ``"``, ``\\`` and ``]``
  with a backslash (RFC 5424 §6.3.3); control characters become spaces.
- MSG is the finding's JSON object, ASCII-only (non-ASCII as ``\\uXXXX``), so no BOM is needed.
- UDP (RFC 5426): one message per datagram, cut to ``max_size`` (default 8192) octets.
  TCP (RFC 6587) and TLS (RFC 5425): octet-counting framing, ``LEN SP MSG``.
"""

from __future__ import annotations

import json
import os
import re
import socket
import ssl
from collections.abc import Sequence
from datetime import UTC, datetime
from urllib.parse import urlsplit

from delegatewatch.findings.model import Finding
from delegatewatch.watch.sinks.base import (
    AT_LEAST_ONCE,
    AT_MOST_ONCE,
    Sink,
    SinkError,
    backoff_from,
    finding_dict,
    with_retries,
)

FACILITIES = {"kern": 0, "user": 1, "mail": 2, "daemon": 3, "auth": 4, "syslog": 5, "lpr": 6, "news": 7,
              "uucp": 8, "cron": 9, "authpriv": 10, "ftp": 11, "ntp": 12, "audit": 13, "alert": 14,
              "clock": 15, **{f"local{i}": 16 + i for i in range(8)}}
SEVERITY = {"critical": 2, "high": 3, "medium": 4, "low": 5, "informational": 6}
DEFAULT_PORT = {"udp": 514, "tcp": 601, "tls": 6514}
SD_ID = "delegatewatch@32473"
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_PRINTUSASCII = re.compile(r"[^\x21-\x7e]")


def sd_escape(value: object) -> str:
    """RFC 5424 §6.3.3: '"', '\\' and ']' MUST be escaped in PARAM-VALUE."""
    text = _CONTROL.sub(" ", str(value))
    return text.replace("\\", "\\\\").replace('"', '\\"').replace("]", "\\]")


def _header_field(value: str, limit: int) -> str:
    """HOSTNAME / APP-NAME / PROCID / MSGID: 1*N PRINTUSASCII, or the NILVALUE."""
    value = _PRINTUSASCII.sub("", value)[:limit]
    return value or "-"


def _timestamp(when: datetime | None = None) -> str:
    when = when or datetime.now(UTC)
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def format_message(f: Finding, *, facility: int = 4, hostname: str | None = None, app: str = "delegatewatch",
                   procid: str | None = None, sd_id: str = SD_ID, when: datetime | None = None) -> bytes:
    d = finding_dict(f)
    pri = facility * 8 + SEVERITY.get(d["severity"], 5)
    params = [("id", d["id"]), ("rule", d["rule"]), ("severity", d["severity"]), ("time", d.get("time")),
              ("mailbox", d.get("mailbox")), ("grantee", d.get("grantee")), ("actor", d.get("actor")),
              ("rights", ",".join(d.get("rights") or [])), ("operation", d.get("operation")),
              ("record_id", ",".join(e["record_id"] for e in d.get("evidence") or []))]
    sd = "[" + sd_id + "".join(f' {k}="{sd_escape(v)}"' for k, v in params if v not in (None, "")) + "]"
    header = (f"<{pri}>1 {_timestamp(when)} {_header_field(hostname or socket.gethostname(), 255)} "
              f"{_header_field(app, 48)} {_header_field(procid or str(os.getpid()), 128)} finding")
    msg = json.dumps(d, ensure_ascii=True, separators=(",", ":"))
    return f"{header} {sd} {msg}".encode()


def frame(message: bytes) -> bytes:
    """RFC 6587 §3.4.1 octet counting (also RFC 5425 §4.3): MSG-LEN SP SYSLOG-MSG."""
    return str(len(message)).encode() + b" " + message


class SyslogSink(Sink):
    kind = "syslog"
    batch_size = 200

    def __init__(self, spec: str, options: dict[str, str]) -> None:
        target = spec.partition(":")[2]
        parts = urlsplit(target)
        if parts.scheme not in DEFAULT_PORT or not parts.hostname:
            raise ValueError("syslog: syslog:udp://host[:port], syslog:tcp://host[:port] or syslog:tls://host[:port]")
        self.transport = parts.scheme
        # UDP has no acknowledgement at all: it is at-most-once whatever we do.
        self.default_delivery = AT_MOST_ONCE if self.transport == "udp" else AT_LEAST_ONCE
        super().__init__(spec, options)
        self.host = parts.hostname
        self.port = parts.port or DEFAULT_PORT[self.transport]
        facility = options.get("facility", "auth")
        self.facility = int(facility) if facility.isdigit() else FACILITIES.get(facility, -1)
        if not 0 <= self.facility <= 23:
            raise ValueError(f"syslog: unknown facility {facility!r}")
        self.sd_id = options.get("sd_id", SD_ID)
        if not re.fullmatch(r"[\x21-\x7e]{1,32}", self.sd_id) or any(c in self.sd_id for c in '= ]"'):
            raise ValueError("syslog: sd_id must be 1-32 printable ASCII characters without '=', ' ', ']', '\"'")
        self.hostname = options.get("hostname") or socket.getfqdn() or socket.gethostname()
        self.max_size = int(options.get("max_size", "8192"))
        self.timeout = float(options.get("timeout", "10"))
        self.backoff = backoff_from(options)
        self.ca = options.get("ca")
        self.verify = options.get("verify", "true").lower() not in ("false", "0", "no")
        self.client_cert, self.client_key = options.get("cert"), options.get("key")
        self.server_name = options.get("server_name") or self.host

    @property
    def display(self) -> str:
        return f"syslog {self.transport}://{self.host}:{self.port}"

    def message(self, f: Finding) -> bytes:
        return format_message(f, facility=self.facility, hostname=self.hostname, sd_id=self.sd_id)

    # -- transports -----------------------------------------------------------------------------
    def _send_udp(self, messages: list[bytes]) -> None:
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        with socket.socket(family, socket.SOCK_DGRAM) as s:
            s.settimeout(self.timeout)
            for i, m in enumerate(messages):
                try:
                    s.sendto(m[: self.max_size], (self.host, self.port))
                except OSError as exc:
                    raise SinkError(f"{self.display}: {exc}", delivered=i) from exc

    def _tls_context(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context(cafile=self.ca)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2  # RFC 5425 requires TLS 1.2 or later (RFC 9662)
        if not self.verify:
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        if self.client_cert:
            ctx.load_cert_chain(self.client_cert, self.client_key)
        return ctx

    def _send_stream(self, messages: list[bytes]) -> None:
        try:
            raw = socket.create_connection((self.host, self.port), timeout=self.timeout)
        except OSError as exc:
            raise SinkError(f"{self.display}: cannot connect: {exc}") from exc
        sock: socket.socket = raw
        sent = 0
        try:
            if self.transport == "tls":
                try:
                    sock = self._tls_context().wrap_socket(raw, server_hostname=self.server_name)
                except (ssl.SSLError, OSError) as exc:
                    raise SinkError(f"{self.display}: TLS handshake failed: {exc}",
                                    retryable=not isinstance(exc, ssl.SSLCertVerificationError)) from exc
            for m in messages:
                sock.sendall(frame(m))
                sent += 1
            if self.transport == "tcp":
                sock.shutdown(socket.SHUT_WR)  # then wait (briefly) for the receiver to have read it all
                sock.settimeout(min(self.timeout, 2.0))
                try:
                    while sock.recv(4096):
                        pass
                except OSError:
                    pass
            else:
                try:
                    sock.unwrap()  # TLS close_notify (RFC 5425 §4.4)
                except (ssl.SSLError, OSError):
                    pass
        except SinkError:
            raise
        except OSError as exc:
            # The message being written when the connection broke may or may not have arrived.
            partial = sent + (1 if self.delivery == AT_MOST_ONCE and sent < len(messages) else 0)
            raise SinkError(f"{self.display}: {exc}", delivered=partial) from exc
        finally:
            sock.close()

    def send(self, findings: Sequence[Finding]) -> None:
        messages = [self.message(f) for f in findings]
        done = 0

        def attempt() -> None:
            nonlocal done
            try:
                if self.transport == "udp":
                    self._send_udp(messages[done:])
                else:
                    self._send_stream(messages[done:])
            except SinkError as exc:
                done += exc.delivered
                exc.delivered = 0
                raise
            done = len(messages)

        try:
            with_retries(self.display, attempt, self.backoff)
        except SinkError as exc:
            exc.delivered = done
            raise
