"""``--sink hec:URL --hec-token-env VAR``: Splunk HTTP Event Collector.

``POST {URL}/services/collector/event`` with ``Authorization: Splunk <token>`` (the token is read
from the environment variable named by ``--hec-token-env`` or ``token_env=``; it is never logged,
printed or stored). The body is a batch of concatenated event objects::

    {"time": 1707088786.0, "host": "…", "source": "delegatewatch", "sourcetype": "delegatewatch:finding",
     "event": {…the finding…}}

(``index=`` adds ``"index"``). Responses: 200 with ``{"text":"Success","code":0}``; 503 (server
busy, code 9; unhealthy, 18–20) and 429 are retried with back-off, honouring ``Retry-After``; 500
(code 8) is retried; 400/401/403 (bad token, disabled token, bad data, wrong index …) are not retried
this round and the batch stays in the backlog. HEC accepts or rejects a batch as a whole; a
rejected batch of several events is retried one event at a time next round, so one event HEC
refuses does not hold back the others.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Sequence
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx
import orjson

from delegatewatch.findings.model import Finding
from delegatewatch.watch.sinks import _http as http
from delegatewatch.watch.sinks.base import (
    AT_LEAST_ONCE,
    AT_MOST_ONCE,
    Sink,
    SinkError,
    backoff_from,
    finding_dict,
    with_retries,
)

EVENT_PATH = "/services/collector/event"
HEC_CODES = {0: "success", 1: "token disabled", 2: "token is required", 3: "invalid authorization",
             4: "invalid token", 5: "no data", 6: "invalid data format", 7: "incorrect index",
             8: "internal server error", 9: "server is busy", 10: "data channel is missing",
             11: "invalid data channel", 12: "event field is required", 13: "event field cannot be blank",
             14: "ACK is disabled", 15: "error in handling indexed fields",
             16: "query string authorization is not enabled", 17: "HEC is healthy",
             18: "HEC is unhealthy, queues are full", 19: "HEC is unhealthy, ack service unavailable",
             20: "HEC is unhealthy, queues are full and ack service unavailable"}
RETRYABLE_CODES = {8, 9, 18, 19, 20}


def _epoch(time: str | None) -> float | None:
    if not time:
        return None
    try:
        return datetime.fromisoformat(time.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


class HecSink(Sink):
    kind = "hec"
    default_delivery = AT_LEAST_ONCE  # a SIEM: losing an alert is worse than `| dedup id`
    batch_size = 100

    def __init__(self, spec: str, options: dict[str, str], token_env: str | None = None) -> None:
        super().__init__(spec, options)
        url = spec.partition(":")[2]
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError("hec: an http(s) URL is required (hec:https://splunk.example.com:8088)")
        if parts.query:
            raise ValueError("hec: put no query string in the URL (the token goes in the Authorization header)")
        path = parts.path.rstrip("/")
        if not path.endswith("/services/collector/event"):
            path += EVENT_PATH if not path.endswith("/services/collector") else "/event"
        self.url = urlunsplit((parts.scheme, parts.netloc, path, "", ""))
        self._host = parts.hostname or "?"
        self.token_env = options.get("token_env") or token_env
        if not self.token_env:
            raise ValueError("hec: name the environment variable holding the token (--hec-token-env VAR)")
        if not os.environ.get(self.token_env):
            raise ValueError(f"hec: environment variable {self.token_env} is not set or empty")
        self.index = options.get("index")
        self.source = options.get("source", "delegatewatch")
        self.sourcetype = options.get("sourcetype", "delegatewatch:finding")
        self.host = options.get("host") or socket.getfqdn() or socket.gethostname()
        self.backoff = backoff_from(options)
        self._client: httpx.Client | None = None
        self._single = False  # after a rejected batch: one event per request for a round

    @property
    def display(self) -> str:
        return f"hec {self.url}"  # the URL holds no secret (query strings are refused above)

    def event(self, f: Finding) -> dict[str, Any]:
        d = finding_dict(f)
        ev: dict[str, Any] = {"time": _epoch(d.get("time")) or http.now(), "host": self.host, "source": self.source,
                              "sourcetype": self.sourcetype, "event": d}
        if self.index:
            ev["index"] = self.index
        return ev

    def _post(self, body: bytes) -> None:
        if self._client is None:
            self._client = http.client(self.options)
        token = os.environ.get(self.token_env or "", "")
        if not token:
            raise SinkError(f"{self.display}: environment variable {self.token_env} is empty", retryable=False)
        try:
            r = self._client.post(self.url, content=body, headers={
                "Authorization": f"Splunk {token}", "Content-Type": "application/json"})
        except httpx.TransportError as exc:
            err = http.transport_error(self.display, exc)
            if getattr(err, "maybe_delivered", False) and self.delivery == AT_MOST_ONCE:
                err.retryable = False
            raise err from None
        code: int | None = None
        text = ""
        try:
            reply = r.json()
            code, text = reply.get("code"), str(reply.get("text") or "")
        except (ValueError, AttributeError):
            text = r.text.strip()[:200]
        if r.status_code == 200 and code in (None, 0):
            return
        meaning = HEC_CODES.get(code, "") if isinstance(code, int) else ""
        detail = f"HTTP {r.status_code}" + (f", code {code} ({meaning})" if code is not None else "") + \
                 (f": {text}" if text and text.lower() != meaning.lower() else "")
        retryable = r.status_code in (429, 500, 502, 503, 504) or code in RETRYABLE_CODES
        raise SinkError(f"{self.display}: {detail}", retryable=retryable, retry_after=http.retry_after(r))

    def send(self, findings: Sequence[Finding]) -> None:
        if not self._single:
            body = b"".join(orjson.dumps(self.event(f)) for f in findings)
            try:
                with_retries(self.display, lambda: self._post(body), self.backoff)
            except SinkError as exc:
                if not exc.retryable and len(findings) > 1:
                    self._single = True  # next time one event per request: one bad event holds back no other
                raise
            return
        # One event per request: events HEC refuses stay in the backlog, the others go through.
        delivered: set[str] = set()
        first: SinkError | None = None
        for f in findings:
            body = orjson.dumps(self.event(f))
            try:
                with_retries(self.display, lambda b=body: self._post(b), self.backoff)
            except SinkError as exc:
                if exc.retryable:  # HEC is down or busy, not this event: stop here
                    raise SinkError(str(exc), delivered_ids=delivered) from exc
                first = first or exc
                continue
            delivered.add(f.id)
        if first is not None:
            raise SinkError(f"{first} ({len(findings) - len(delivered)} of {len(findings)} events refused)",
                            retryable=False, delivered_ids=delivered)
        self._single = False

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None
