"""A local stand-in for Google's token endpoint, Reports API, Directory API and Gmail delegates API.

Behaves like the real services where the collector depends on it:

* ``POST /token``: the JWT-bearer grant google-auth sends for service accounts. The assertion's RS256
  signature is verified with the key file's public key; ``iss``, ``aud``, ``sub`` and ``scope`` are
  checked. A scope not in ``granted_scopes`` → 401 ``unauthorized_client`` (Google's answer for a scope
  missing from the domain-wide-delegation grant); an unknown ``sub`` → 400 ``invalid_grant``.
* Reports ``activities.list``: ``startTime``/``endTime`` filter (inclusive both ends, so adjacent
  windows overlap by an instant), newest first, ``maxResults`` + opaque ``pageToken``; Gmail without
  both times or more than 30 days apart → 400; the subject must be the admin.
* Directory ``users.list`` with paging; Gmail ``settings/delegates`` only with the user as subject.
* Throttling: ``throttle[path_prefix] = n`` answers the next n matching requests with 429
  (``rateLimitExceeded``), ``throttle_403`` the same with 403 ``userRateLimitExceeded``.
* ``token_uses``: an access token stops working (401) after this many API calls.

Tests run it on 127.0.0.1 with an ephemeral port; it records every request in ``requests``.
"""

from __future__ import annotations

import json
import secrets
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlparse

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

R = "https://www.googleapis.com/auth/admin.reports.audit.readonly"
D = "https://www.googleapis.com/auth/admin.directory.user.readonly"
G = "https://www.googleapis.com/auth/gmail.settings.basic"

_KEY_CACHE: dict[str, bytes] = {}


def private_key_pem() -> bytes:
    """One RSA key per test session (generation costs ~50 ms)."""
    if "pem" not in _KEY_CACHE:
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        _KEY_CACHE["pem"] = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                              serialization.NoEncryption())
    return _KEY_CACHE["pem"]


def write_service_account(path: Path, token_uri: str, client_id: str = "113057194847293861740",
                          email: str = "delegatewatch@dw-test.iam.gserviceaccount.com") -> dict:
    info = {
        "type": "service_account", "project_id": "dw-test", "private_key_id": secrets.token_hex(20),
        "private_key": private_key_pem().decode(), "client_email": email, "client_id": client_id,
        "auth_uri": "https://accounts.google.com/o/oauth2/auth", "token_uri": token_uri,
        "auth_provider_x509_cert_url": "https://www.googleapis.com/oauth2/v1/certs",
        "universe_domain": "googleapis.com",
    }
    path.write_text(json.dumps(info, indent=2))
    return info


def ts(t: datetime) -> str:
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{t.microsecond // 1000:03d}Z"


def parse(s: str) -> datetime:
    return datetime.fromisoformat(s.replace("Z", "+00:00"))


def activity(app: str, t: datetime, n: int, actor: str = "admin@example.com") -> dict:
    """A Reports API activity shaped like formats.md §6.1/§6.2."""
    events = {
        "admin": [{"type": "APPLICATION_SETTINGS", "name": "CHANGE_APPLICATION_SETTING", "parameters": [
            {"name": "SETTING_NAME", "value": "ENABLE_MAIL_DELEGATION_WITHIN_DOMAIN"},
            {"name": "OLD_VALUE", "value": "false"}, {"name": "NEW_VALUE", "value": "true"},
            {"name": "ORG_UNIT_NAME", "value": "Example Org"}, {"name": "APPLICATION_NAME", "value": "Gmail"}]}],
        "gmail": [{"type": "delivery_type", "name": "delivery", "parameters": [
            {"name": "event_info", "messageValue": {"parameter": [{"name": "mail_event_type", "intValue": "1"}]}}]}],
    }.get(app, [{"type": "login", "name": "login_success", "parameters": [
        {"name": "login_type", "value": "google_password"}]}])
    return {
        "kind": "admin#reports#activity",
        "id": {"time": ts(t), "uniqueQualifier": str(-7312729053723258069 + n * 7919), "applicationName": app,
               "customerId": "C01abcd2e"},
        "etag": f"\"etag-{app}-{n}\"",
        "actor": {"callerType": "USER", "email": actor, "profileId": str(104365882917420383921 + n)},
        "ipAddress": "203.0.113.10",
        "events": events,
    }


@dataclass
class FakeGoogle:
    admin: str = "admin@example.com"
    client_email: str = "delegatewatch@dw-test.iam.gserviceaccount.com"
    granted_scopes: set[str] = field(default_factory=lambda: {R, D, G})
    users: list[dict] = field(default_factory=list)
    delegates: dict[str, list[dict]] = field(default_factory=dict)
    user_errors: dict[str, tuple[int, str, str]] = field(default_factory=dict)  # email → (status, reason, msg)
    activities: dict[str, list[dict]] = field(default_factory=dict)
    app_errors: dict[str, tuple[int, str, str]] = field(default_factory=dict)
    admin_privileged: bool = True
    throttle: dict[str, int] = field(default_factory=dict)
    throttle_403: dict[str, int] = field(default_factory=dict)
    token_uses: int | None = None
    requests: list[dict] = field(default_factory=list)
    tokens: dict[str, dict] = field(default_factory=dict)
    public_key: object = None
    base: str = ""
    _lock: threading.Lock = field(default_factory=threading.Lock)

    # ------------------------------------------------------------------ helpers for tests
    @property
    def token_uri(self) -> str:
        return f"{self.base}/token"

    def token_requests(self) -> list[dict]:
        return [r for r in self.requests if r["path"] == "/token"]

    def api_requests(self, prefix: str) -> list[dict]:
        return [r for r in self.requests if r["path"].startswith(prefix)]

    def all_user_emails(self) -> set[str]:
        return {u["primaryEmail"] for u in self.users} | {self.admin}


def _error(status: int, reason: str, message: str) -> dict:
    return {"error": {"code": status, "message": message,
                      "errors": [{"message": message, "domain": "global", "reason": reason}]}}


class _Handler(BaseHTTPRequestHandler):
    fake: FakeGoogle  # set on the subclass

    def log_message(self, *args) -> None:  # quiet
        pass

    def _send(self, status: int, body: dict, headers: dict | None = None) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=UTF-8")
        self.send_header("Content-Length", str(len(data)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    # ------------------------------------------------------------------ token endpoint
    def do_POST(self) -> None:  # noqa: N802
        fake = self.fake
        length = int(self.headers.get("Content-Length", 0))
        form = parse_qs(self.rfile.read(length).decode())
        u = urlparse(self.path)
        rec = {"method": "POST", "path": u.path, "query": {}, "sub": None, "scope": None}
        with fake._lock:
            fake.requests.append(rec)
        if u.path != "/token":
            return self._send(404, _error(404, "notFound", "Not Found"))
        if form.get("grant_type") != ["urn:ietf:params:oauth:grant-type:jwt-bearer"]:
            return self._send(400, {"error": "unsupported_grant_type", "error_description": "Invalid grant_type"})
        try:
            claims = jwt.decode(form["assertion"][0], fake.public_key, algorithms=["RS256"],
                                audience=[fake.token_uri, "https://oauth2.googleapis.com/token"])
        except (KeyError, jwt.PyJWTError) as exc:
            return self._send(400, {"error": "invalid_grant", "error_description": f"Invalid JWT Signature. {type(exc).__name__}"})
        rec["sub"], rec["scope"] = claims.get("sub"), claims.get("scope")
        if claims.get("iss") != fake.client_email:
            return self._send(401, {"error": "invalid_client", "error_description": "The OAuth client was not found."})
        scopes = set(str(claims.get("scope", "")).split())
        if not scopes or not scopes <= fake.granted_scopes:
            return self._send(401, {"error": "unauthorized_client", "error_description":
                                    "Client is unauthorized to retrieve access tokens using this method, or client "
                                    "not authorized for any of the scopes requested."})
        if claims.get("sub") not in fake.all_user_emails():
            return self._send(400, {"error": "invalid_grant", "error_description": "Invalid email or User ID"})
        token = "ya29.fake-" + secrets.token_urlsafe(24)
        with fake._lock:
            fake.tokens[token] = {"sub": claims["sub"], "scopes": scopes, "uses": 0}
        self._send(200, {"access_token": token, "expires_in": 3599, "token_type": "Bearer"})

    # ------------------------------------------------------------------ APIs
    def do_GET(self) -> None:  # noqa: N802
        fake = self.fake
        u = urlparse(self.path)
        q = {k: v[0] for k, v in parse_qs(u.query).items()}
        auth = self.headers.get("Authorization", "")
        tok = fake.tokens.get(auth.removeprefix("Bearer ")) if auth.startswith("Bearer ") else None
        rec = {"method": "GET", "path": u.path, "query": q, "sub": tok and tok["sub"]}
        with fake._lock:
            fake.requests.append(rec)
            for table, status, reason in ((fake.throttle, 429, "rateLimitExceeded"),
                                          (fake.throttle_403, 403, "userRateLimitExceeded")):
                for prefix, n in table.items():
                    if n > 0 and u.path.startswith(prefix):
                        table[prefix] = n - 1
                        rec["throttled"] = True
                        return self._send(status, _error(status, reason, "Rate Limit Exceeded"),
                                          {"Retry-After": "0"} if status == 429 else None)
            if tok is not None:
                tok["uses"] += 1
                if fake.token_uses is not None and tok["uses"] > fake.token_uses:
                    tok = None
        if tok is None:
            return self._send(401, {"error": {"code": 401, "message": "Request had invalid authentication credentials.",
                                              "status": "UNAUTHENTICATED"}})
        parts = u.path.split("/")
        if u.path.startswith("/admin/reports/v1/activity/users/all/applications/"):
            return self._reports(parts[-1], q, tok)
        if u.path == "/admin/directory/v1/users":
            return self._users(q, tok)
        if u.path.startswith("/gmail/v1/users/") and u.path.endswith("/settings/delegates"):
            return self._delegates(unquote(parts[4]), tok)
        return self._send(404, _error(404, "notFound", "Not Found"))

    def _scope_or_admin(self, tok: dict, scope: str) -> bool:
        if scope not in tok["scopes"]:
            self._send(403, {"error": {"code": 403, "message": "Request had insufficient authentication scopes.",
                                       "status": "PERMISSION_DENIED", "details": [
                                           {"@type": "type.googleapis.com/google.rpc.ErrorInfo",
                                            "reason": "ACCESS_TOKEN_SCOPE_INSUFFICIENT"}]}})
            return False
        if tok["sub"] != self.fake.admin or not self.fake.admin_privileged:
            self._send(403, _error(403, "forbidden", "Not Authorized to access this resource/api"))
            return False
        return True

    def _reports(self, app: str, q: dict, tok: dict) -> None:
        fake = self.fake
        if not self._scope_or_admin(tok, R):
            return
        if app in fake.app_errors:
            status, reason, msg = fake.app_errors[app]
            return self._send(status, _error(status, reason, msg))
        try:
            start = parse(q["startTime"]) if "startTime" in q else None
            end = parse(q["endTime"]) if "endTime" in q else None
        except ValueError:
            return self._send(400, _error(400, "invalid", "Invalid value for startTime/endTime"))
        if app == "gmail" and (start is None or end is None or end - start > timedelta(days=30)):
            return self._send(400, _error(400, "invalid", "For Gmail requests, startTime and endTime must be "
                                                          "provided and the difference must not be greater than 30 days."))
        size = min(int(q.get("maxResults", 1000)), 1000)
        items = [a for a in fake.activities.get(app, [])
                 if (start is None or parse(a["id"]["time"]) >= start) and (end is None or parse(a["id"]["time"]) <= end)]
        items.sort(key=lambda a: a["id"]["time"], reverse=True)
        offset = int(q["pageToken"].removeprefix("pt-")) if "pageToken" in q else 0
        page = items[offset:offset + size]
        body: dict = {"kind": "admin#reports#activities", "etag": "\"list\"", "items": page}
        if offset + size < len(items):
            body["nextPageToken"] = f"pt-{offset + size}"
        self._send(200, body)

    def _users(self, q: dict, tok: dict) -> None:
        if not self._scope_or_admin(tok, D):
            return
        if q.get("customer") != "my_customer":
            return self._send(400, _error(400, "invalid", "Bad Request"))
        size = min(int(q.get("maxResults", 100)), 500)
        offset = int(q["pageToken"].removeprefix("u-")) if "pageToken" in q else 0
        users = sorted(self.fake.users, key=lambda u: u["primaryEmail"])
        body: dict = {"kind": "admin#directory#users", "users": users[offset:offset + size]}
        if offset + size < len(users):
            body["nextPageToken"] = f"u-{offset + size}"
        self._send(200, body)

    def _delegates(self, user: str, tok: dict) -> None:
        fake = self.fake
        if G not in tok["scopes"]:
            return self._scope_or_admin(tok, G) and None
        if user != "me" and user != tok["sub"]:
            return self._send(403, _error(403, "forbidden", "Delegation denied for " + tok["sub"]))
        if tok["sub"] in fake.user_errors:
            status, reason, msg = fake.user_errors[tok["sub"]]
            return self._send(status, _error(status, reason, msg))
        found = fake.delegates.get(tok["sub"], [])
        self._send(200, {"delegates": found} if found else {})


class running:
    """``with running(FakeGoogle(...)) as fake:`` — serves on 127.0.0.1:<free port>."""

    def __init__(self, fake: FakeGoogle) -> None:
        self.fake = fake
        handler = type("Handler", (_Handler,), {"fake": fake})
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.server.daemon_threads = True
        fake.base = f"http://127.0.0.1:{self.server.server_address[1]}"
        key = serialization.load_pem_private_key(private_key_pem(), password=None)
        fake.public_key = key.public_key()
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.02},
                                       daemon=True)

    def __enter__(self) -> FakeGoogle:
        self.thread.start()
        return self.fake

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()
