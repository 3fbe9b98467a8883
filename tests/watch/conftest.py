"""Local servers on 127.0.0.1 that the sinks talk to for real: HTTP (webhook, HEC), syslog over UDP,
TCP and TLS (certificates from trustme)."""

from __future__ import annotations

import json
import socket
import ssl
import sys
import threading
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))  # fakes.py

from fakes import make_finding


# -- HTTP ---------------------------------------------------------------------------------------
@dataclass
class HttpRequest:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    status: int = 0  # what the server answered

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    def json(self):
        return json.loads(self.body)


@dataclass
class HttpServer:
    url: str
    requests: list[HttpRequest] = field(default_factory=list)
    #: scripted answers (status, body, headers), used in order; then ``default``
    script: deque = field(default_factory=deque)
    default: tuple = (200, b'{"text":"Success","code":0}', {})
    down: bool = False  # answer 503 to everything

    def reply(self, status: int, body: bytes | str = b"", headers: dict | None = None) -> None:
        self.script.append((status, body.encode() if isinstance(body, str) else body, headers or {}))


@pytest.fixture
def http_server():
    state: dict = {}

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            srv: HttpServer = state["srv"]
            req = HttpRequest("POST", self.path, {k.lower(): v for k, v in self.headers.items()}, body)
            if srv.down:
                status, out, headers = 503, b'{"text":"Server is busy","code":9}', {}
            else:
                status, out, headers = srv.script.popleft() if srv.script else srv.default
            req.status = status
            srv.requests.append(req)
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            for k, v in headers.items():
                self.send_header(k, v)
            self.send_header("Content-Length", str(len(out)))
            self.end_headers()
            self.wfile.write(out)

        def log_message(self, *args):
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state["srv"] = srv = HttpServer(f"http://127.0.0.1:{httpd.server_address[1]}")
    t = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    t.start()
    yield srv
    httpd.shutdown()
    httpd.server_close()


# -- syslog receivers ---------------------------------------------------------------------------
class UdpReceiver:
    def __init__(self):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.datagrams: list[bytes] = []
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()

    def _run(self):
        while not self._stop.is_set():
            try:
                data, _ = self.sock.recvfrom(65535)
            except TimeoutError:
                continue
            except OSError:
                return
            self.datagrams.append(data)

    def wait(self, n: int, timeout: float = 5.0) -> list[bytes]:
        ev = threading.Event()
        for _ in range(int(timeout / 0.02)):
            if len(self.datagrams) >= n:
                break
            ev.wait(0.02)
        return self.datagrams

    def close(self):
        self._stop.set()
        self._t.join()
        self.sock.close()


class StreamReceiver:
    """Accepts connections and keeps each connection's bytes (read until the sender closes)."""

    def __init__(self, context: ssl.SSLContext | None = None):
        self.context = context
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.streams: list[bytes] = []
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()

    def _run(self):
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket):
        conn.settimeout(5)
        try:
            if self.context is not None:
                conn = self.context.wrap_socket(conn, server_side=True)
            data = b""
            while chunk := conn.recv(65536):
                data += chunk
            self.streams.append(data)
        except (OSError, ssl.SSLError) as exc:
            self.errors.append(repr(exc))
        finally:
            conn.close()

    def frames(self) -> list[bytes]:
        """Split every connection's bytes by RFC 6587 octet counting; fail on anything else."""
        out = []
        for data in self.streams:
            i = 0
            while i < len(data):
                sp = data.index(b" ", i)
                n = int(data[i:sp])
                assert data[i:sp].isdigit() and not data[i:sp].startswith(b"0")
                out.append(data[sp + 1: sp + 1 + n])
                assert len(out[-1]) == n
                i = sp + 1 + n
        return out

    def wait(self, n: int, timeout: float = 5.0) -> list[bytes]:
        ev = threading.Event()
        for _ in range(int(timeout / 0.02)):
            if len(self.frames()) >= n:
                break
            ev.wait(0.02)
        return self.frames()

    def close(self):
        self._stop.set()
        self._t.join()
        self.sock.close()


@pytest.fixture
def udp_receiver():
    r = UdpReceiver()
    yield r
    r.close()


@pytest.fixture
def tcp_receiver():
    r = StreamReceiver()
    yield r
    r.close()


@pytest.fixture
def tls_ca(tmp_path):
    trustme = pytest.importorskip("trustme")
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert.configure_cert(server_ctx)
    return ca_file, server_ctx


@pytest.fixture
def tls_receiver(tls_ca):
    r = StreamReceiver(tls_ca[1])
    r.ca_file = tls_ca[0]
    yield r
    r.close()


# -- findings -----------------------------------------------------------------------------------
@pytest.fixture
def findings():
    return [make_finding(i) for i in range(1, 4)]
