"""A local fake of the Office 365 Management Activity API and the Entra ID token endpoint.

Behaves like the documented service (shared/reference/formats.md §1) where the collector depends on
it: OIDC discovery and the v2 token endpoint msal uses (client secret, or a certificate-signed
client assertion verified with the certificate), ``/subscriptions/list|start``,
``/subscriptions/content`` with the 24 h / 7 day window rules (``AF20055``) and ``NextPageUri``
paging (``/api/v1/`` form, as in the docs sample, without PublisherIdentifier), blob GETs,
duplicated records across blobs, throttling (``AF429`` in a 403 with or without ``Retry-After``,
and plain 429), expired content (``AF20051``), token expiry (401). It serves HTTPS with a trustme
CA on 127.0.0.1 (msal only talks to https authorities) and keeps a ledger of what it served.

Used by tests/collectors and bench/collect_bench.py.
"""

from __future__ import annotations

import collections
import itertools
import json
import random
import secrets
import ssl
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, parse_qsl, urlsplit

TENANT = "7c1aec86-7bc7-44d0-a01c-72c2f196f29b"
CLIENT_ID = "3f1d2c0b-9a8e-4d7c-b6a5-443322110000"
PUBLISHER = "5e0c7b3a-1111-4222-8333-944455556666"
RESOURCE = "https://manage.office.com"
WINDOW_ERROR = ("Start time and end time must both be specified (or both omitted) and must be less than or equal to "
                "24 hours apart, with the start time prior to end time and start time no more than 7 days in the past.")


@dataclass
class FakeBlob:
    content_id: str
    content_type: str
    created: datetime
    records: list[dict] | None = None
    body: Callable[[], bytes] | None = None     # generated body (benchmark), instead of records
    ids: list[str] | None = None                # ids in a generated body
    expired: bool = False                       # the API answers AF20051
    expiration: datetime | None = None
    uri: str | None = None                      # contentUri to list instead of the fake's own

    def payload(self) -> bytes:
        if self.body is not None:
            return self.body()
        return json.dumps(self.records, separators=(",", ":")).encode()

    def record_ids(self) -> list[str]:
        if self.ids is not None:
            return self.ids
        return [r["Id"] for r in self.records or []]


@dataclass
class Reply:
    status: int
    body: dict | list | str | bytes = b""
    headers: dict[str, str] = field(default_factory=dict)


def api_error(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> Reply:
    return Reply(status, {"error": {"code": code, "message": message}}, headers or {})


def throttle_403(retry_after: str | None = None, method: str = "GetBlob") -> Reply:
    """The documented shape: HTTP 403 with AF429 in the body."""
    return api_error(403, "AF429", f"Too many requests. Method={method}, PublisherId={PUBLISHER}",
                     {"Retry-After": retry_after} if retry_after is not None else {})


def throttle_429(retry_after: str | None = "1") -> Reply:
    return api_error(429, "AF429", "Too many requests.", {"Retry-After": retry_after} if retry_after else {})


def _parse_api_time(text: str) -> datetime:
    for f in ("%Y-%m-%dT%H:%M:%S", "%Y-%m-%dT%H:%M", "%Y-%m-%d"):
        try:
            return datetime.strptime(text, f).replace(tzinfo=UTC)
        except ValueError:
            continue
    raise ValueError(text)


class FakeO365:
    def __init__(self, *, tenant: str = TENANT, client_id: str = CLIENT_ID, secret: str | None = None,
                 certificate_pem: bytes | None = None, publisher: str | None = PUBLISHER,
                 page_size: int = 10, ca=None, latency: float = 0.0, now: Callable[[], datetime] | None = None,
                 resource: str = RESOURCE) -> None:
        import trustme
        self.tenant, self.client_id, self.secret = tenant, client_id, secret
        self.certificate_pem = certificate_pem
        self.publisher = publisher
        self.page_size = page_size
        self.latency = latency
        self.resource = resource
        self.now = now or (lambda: datetime.now(UTC))
        self.ca = ca or trustme.CA()
        self.blobs: dict[str, FakeBlob] = {}
        self.subscriptions: dict[str, str] = {}
        self.faults: dict[tuple[str, str], collections.deque[Reply]] = collections.defaultdict(collections.deque)
        self.random_throttle = 0.0
        self.rng = random.Random(7)
        self.expire_tokens_every: int | None = None   # every N-th API call invalidates all tokens
        self.echo_token_errors = False                # the token endpoint echoes the request body in errors
        self.lock = threading.Lock()
        self.tokens: dict[str, bool] = {}             # token -> valid
        self.api_calls = 0
        self.stats: collections.Counter[str] = collections.Counter()
        self.served: collections.Counter[str] = collections.Counter()   # record Id -> times served in a 200 blob
        self.blob_gets: collections.Counter[str] = collections.Counter()
        self.no_publisher: list[str] = []             # API paths requested without PublisherIdentifier
        self.token_requests: list[dict[str, str]] = []
        self.requests: list[tuple[str, str]] = []
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.ca_file: Path | None = None

    # ------------------------------------------------------------------ content
    def add_blob(self, content_type: str, created: datetime, records: list[dict] | None = None, *,
                 expired: bool = False, body: Callable[[], bytes] | None = None, ids: list[str] | None = None,
                 content_id: str | None = None) -> FakeBlob:
        cid = content_id or (f"{int(created.timestamp())}${uuid.uuid4().hex}"
                             f"${self.tenant.replace('-', '')}{content_type.split('.')[-1].lower()}$04")
        blob = FakeBlob(cid, content_type, created, records, body, ids, expired, created + timedelta(days=7))
        self.blobs[cid] = blob
        return blob

    def fault(self, kind: str, key: str, *replies: Reply) -> None:
        """Queue replies for requests of ``kind`` (token|list|blob|start|subscriptions) and ``key``
        (content id, content type, or ``*``)."""
        self.faults[(kind, key)].extend(replies)

    def expected_ids(self) -> set[str]:
        return {i for b in self.blobs.values() if not b.expired for i in b.record_ids()}

    # ------------------------------------------------------------------ lifecycle
    @property
    def base(self) -> str:
        assert self._server is not None
        return f"https://127.0.0.1:{self._server.server_address[1]}"

    def start(self, ca_dir: Path) -> FakeO365:
        fake = self

        class Handler(_Handler):
            server_fake = fake

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        server.daemon_threads = True
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.ca.issue_cert("127.0.0.1", "localhost").configure_cert(ctx)
        server.socket = ctx.wrap_socket(server.socket, server_side=True)
        self._server = server
        self.ca_file = Path(ca_dir) / "fake-o365-ca.pem"
        self.ca.cert_pem.write_to_path(str(self.ca_file))
        self._thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    # ------------------------------------------------------------------ request logic
    def _pop_fault(self, kind: str, key: str) -> Reply | None:
        with self.lock:
            for k in ((kind, key), (kind, "*")):
                q = self.faults.get(k)
                if q:
                    return q.popleft()
        return None

    def handle(self, method: str, raw_path: str, headers, body: bytes) -> Reply:
        if self.latency:
            time.sleep(self.latency)
        url = urlsplit(raw_path)
        path = url.path
        query = {k: v[-1] for k, v in parse_qs(url.query, keep_blank_values=True).items()}
        self.requests.append((method, raw_path))
        parts = [p for p in path.split("/") if p]
        # --- Entra ID
        if parts[:1] == [self.tenant] and parts[1:] == ["v2.0", ".well-known", "openid-configuration"]:
            base = f"{self.base}/{self.tenant}"
            return Reply(200, {"token_endpoint": f"{base}/oauth2/v2.0/token",
                               "authorization_endpoint": f"{base}/oauth2/v2.0/authorize",
                               "issuer": f"{self.base}/{self.tenant}/v2.0"})
        if parts[:1] == [self.tenant] and parts[1:] == ["oauth2", "v2.0", "token"] and method == "POST":
            return self._token(body)
        # --- Management Activity API
        if len(parts) >= 5 and parts[0] == "api" and parts[1] in ("v1.0", "v1") and parts[3:5] == ["activity", "feed"]:
            if parts[2] != self.tenant:
                return api_error(400, "AF20010", "The tenant ID passed in the URL does not match the token.")
            if self.publisher and not any(k.lower() == "publisheridentifier" and v == self.publisher
                                          for k, v in parse_qsl(url.query)):
                self.no_publisher.append(raw_path)
            auth = headers.get("Authorization", "")
            with self.lock:
                self.api_calls += 1
                if self.expire_tokens_every and self.api_calls % self.expire_tokens_every == 0:
                    for t in self.tokens:
                        self.tokens[t] = False
                    self.stats["tokens_expired"] += 1
                valid = auth.startswith("Bearer ") and self.tokens.get(auth[7:], False)
            if not valid:
                self.stats["401"] += 1
                return api_error(401, "AF401", "Authorization has been denied for this request.")
            rest = parts[5:]
            if rest == ["subscriptions", "list"] and method == "GET":
                return self._fault_or("subscriptions", "*", lambda: Reply(200, [
                    {"contentType": ct, "status": st, "webhook": None} for ct, st in self.subscriptions.items()]))
            if rest == ["subscriptions", "start"] and method == "POST":
                ct = query.get("contentType", "")
                return self._fault_or("start", ct, lambda: self._start(ct))
            if rest == ["subscriptions", "content"] and method == "GET":
                return self._fault_or("list", query.get("contentType", ""), lambda: self._content(query))
            if len(rest) == 2 and rest[0] == "audit" and method == "GET":
                return self._fault_or("blob", rest[1], lambda: self._blob(rest[1]))
        return Reply(404, {"error": {"code": "NotFound", "message": f"no route {method} {path}"}})

    def _fault_or(self, kind: str, key: str, normal: Callable[[], Reply]) -> Reply:
        reply = self._pop_fault(kind, key)
        if reply is not None:
            self.stats[f"fault_{kind}_{reply.status}"] += 1
            return reply
        if kind in ("blob", "list") and self.random_throttle and self.rng.random() < self.random_throttle:
            self.stats["random_throttle"] += 1
            return throttle_403("0") if self.rng.random() < 0.5 else throttle_429("0")
        return normal()

    def _token(self, body: bytes) -> Reply:
        form = dict(parse_qsl(body.decode(), keep_blank_values=True))
        self.token_requests.append({k: v for k, v in form.items() if k not in ("client_secret", "client_assertion")})
        fault = self._pop_fault("token", "*")
        if fault is not None:
            if self.echo_token_errors and isinstance(fault.body, dict):
                fault = Reply(fault.status, {**fault.body, "error_description":
                                             f"{fault.body.get('error_description', '')} Request body: {body.decode()}"},
                              fault.headers)
            return fault
        ok = (form.get("grant_type") == "client_credentials" and form.get("client_id") == self.client_id
              and form.get("scope", "").split() == [f"{self.resource}/.default"])
        if ok and self.secret is not None and "client_secret" in form:
            ok = secrets.compare_digest(form["client_secret"], self.secret)
        elif ok and self.certificate_pem is not None and "client_assertion" in form:
            ok = self._assertion_ok(form["client_assertion"])
        else:
            ok = False
        if not ok:
            desc = "AADSTS7000215: Invalid client secret provided."
            if self.echo_token_errors:
                desc += f" Request body: {body.decode()}"
            return Reply(401, {"error": "invalid_client", "error_description": desc, "error_codes": [7000215]})
        token = secrets.token_urlsafe(24)
        with self.lock:
            self.tokens[token] = True
        self.stats["tokens_issued"] += 1
        return Reply(200, {"token_type": "Bearer", "expires_in": 3599, "ext_expires_in": 3599,
                           "access_token": token})

    def _assertion_ok(self, assertion: str) -> bool:
        import jwt
        from cryptography import x509
        cert = x509.load_pem_x509_certificate(self.certificate_pem)
        try:
            claims = jwt.decode(assertion, cert.public_key(), algorithms=["RS256", "PS256"],
                                audience=f"{self.base}/{self.tenant}/oauth2/v2.0/token")
        except jwt.PyJWTError as exc:
            self.stats[f"assertion_error {exc}"] += 1
            return False
        header = jwt.get_unverified_header(assertion)
        import base64

        from cryptography.hazmat.primitives import hashes
        x5t = base64.urlsafe_b64encode(cert.fingerprint(hashes.SHA1())).rstrip(b"=").decode()
        ok = claims.get("iss") == self.client_id and claims.get("sub") == self.client_id and str(header.get("x5t", "")).rstrip("=") == x5t
        self.stats["assertion_ok" if ok else f"assertion_claims {claims} {header}"] += 1
        return ok

    def _start(self, ct: str) -> Reply:
        if ct not in ("Audit.AzureActiveDirectory", "Audit.Exchange", "Audit.SharePoint", "Audit.General", "DLP.All"):
            return api_error(400, "AF20020", f"The specified content type is not valid: {ct}")
        self.subscriptions[ct] = "enabled"
        self.stats["subscription_started"] += 1
        return Reply(200, {"contentType": ct, "status": "enabled", "webhook": None})

    def _content(self, query: dict[str, str]) -> Reply:
        ct = query.get("contentType", "")
        if self.subscriptions.get(ct) != "enabled":
            return api_error(400, "AF20022", f"No subscription found for the specified content type: {ct}")
        now = self.now()
        st, et = query.get("startTime"), query.get("endTime")
        if (st is None) != (et is None):
            return api_error(400, "AF20055", WINDOW_ERROR)
        try:
            start, end = (_parse_api_time(st), _parse_api_time(et)) if st else (now - timedelta(hours=24), now)
        except ValueError:
            return api_error(400, "AF20030", WINDOW_ERROR)
        if end - start > timedelta(hours=24) or start >= end or start < now - timedelta(days=7):
            self.stats["window_error"] += 1
            return api_error(400, "AF20055", WINDOW_ERROR)
        listed = sorted((b for b in self.blobs.values() if b.content_type == ct and start <= b.created < end),
                        key=lambda b: (b.created, b.content_id))
        offset = 0
        if "nextPage" in query:
            token = query["nextPage"]
            if not token.startswith("np") or not token[2:].isdigit():
                return api_error(400, "AF20031", "Invalid nextPage Input: " + token)
            offset = int(token[2:])
        page = listed[offset:offset + self.page_size]
        items = [{"contentType": b.content_type, "contentId": b.content_id,
                  "contentUri": b.uri or f"{self.base}/api/v1.0/{self.tenant}/activity/feed/audit/{b.content_id}",
                  "contentCreated": b.created.strftime("%Y-%m-%dT%H:%M:%S.000Z"),
                  "contentExpiration": (b.expiration or b.created + timedelta(days=7)).strftime("%Y-%m-%dT%H:%M:%S.000Z")}
                 for b in page]
        headers = {}
        if offset + self.page_size < len(listed):
            # The docs' sample NextPageUri uses /api/v1/ and carries no PublisherIdentifier.
            headers["NextPageUri"] = (f"{self.base}/api/v1/{self.tenant}/activity/feed/subscriptions/content"
                                      f"?contentType={ct}&startTime={st}&endTime={et}&nextPage=np{offset + self.page_size}")
        self.stats["list_pages"] += 1
        return Reply(200, items, headers)

    def _blob(self, cid: str) -> Reply:
        blob = self.blobs.get(cid)
        if blob is None:
            return api_error(400, "AF20050", f"The requested content does not exist: {cid}")
        if blob.expired:
            return api_error(400, "AF20051", f"Content requested with the key {cid} has already expired. "
                                              "Content older than 7 days cannot be retrieved.")
        payload = blob.payload()
        with self.lock:
            self.blob_gets[cid] += 1
            if blob.body is None or blob.ids is not None:
                self.served.update(blob.record_ids())
        return Reply(200, payload)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_fake: FakeO365

    def log_message(self, format: str, *args) -> None:
        pass

    def _do(self, method: str) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        try:
            reply = self.server_fake.handle(method, self.path, self.headers, body)
        except Exception as exc:  # noqa: BLE001
            reply = api_error(500, "AF50000", f"fake server bug: {exc!r}")
        payload = reply.body if isinstance(reply.body, bytes) else (
            reply.body.encode() if isinstance(reply.body, str) else json.dumps(reply.body).encode())
        try:
            self.send_response(reply.status)
            self.send_header("Content-Type", "application/json; charset=utf-8")
            self.send_header("Content-Length", str(len(payload)))
            for k, v in reply.headers.items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(payload)
        except (BrokenPipeError, ConnectionResetError, ssl.SSLError):
            self.close_connection = True

    def do_GET(self) -> None:
        self._do("GET")

    def do_POST(self) -> None:
        self._do("POST")


# ---------------------------------------------------------------------- records
ORG = "contoso.onmicrosoft.com"


def _base(rid: str, when: datetime, op: str, record_type: int, workload: str, user: str) -> dict:
    return {"CreationTime": when.strftime("%Y-%m-%dT%H:%M:%S"), "Id": rid, "Operation": op,
            "OrganizationId": TENANT, "RecordType": record_type, "ResultStatus": "True" if record_type == 1 else "Succeeded",
            "UserKey": "1003BFFDACDB6497", "UserType": 2 if record_type == 1 else 0, "Version": 1,
            "Workload": workload, "ClientIP": "154.66.247.79:14760", "UserId": user}


def grant_record(rid: str, when: datetime, kind: str, mailbox: str, grantee: str) -> dict:
    """Attack-shaped ExchangeAdmin records the built-in rules flag."""
    if kind == "fullaccess":
        r = _base(rid, when, "Add-MailboxPermission", 1, "Exchange", "admin@contoso.com")
        params = {"Identity": mailbox, "User": grantee, "AccessRights": "FullAccess", "InheritanceType": "All"}
    elif kind == "sendas":
        r = _base(rid, when, "Add-RecipientPermission", 1, "Exchange", "admin@contoso.com")
        params = {"Identity": mailbox, "Trustee": grantee, "AccessRights": "SendAs", "Confirm": "False"}
    elif kind == "default-inbox":
        r = _base(rid, when, "Add-MailboxFolderPermission", 1, "Exchange", "admin@contoso.com")
        params = {"Identity": f"{mailbox}:\\Inbox", "User": "Default", "AccessRights": "Reviewer"}
    else:
        raise ValueError(kind)
    r.update({"ObjectId": mailbox, "OrganizationName": ORG, "SessionId": str(uuid.uuid4()),
              "Parameters": [{"Name": k, "Value": v} for k, v in params.items()]})
    return r


def noise_record(rid: str, when: datetime, content_type: str, i: int) -> dict:
    if content_type == "Audit.Exchange":
        r = _base(rid, when, "MailItemsAccessed", 50, "Exchange", f"user{i % 97}@contoso.com")
        r.update({"MailboxOwnerUPN": f"user{i % 97}@contoso.com", "LogonType": 0, "ClientInfoString": "Client=OWA",
                  "OperationProperties": [{"Name": "MailAccessType", "Value": "Bind"}]})
        return r
    r = _base(rid, when, "UserLoggedIn", 15, "AzureActiveDirectory", f"user{i % 97}@contoso.com")
    r.update({"ObjectId": "00000003-0000-0000-c000-000000000000", "ResultStatus": "Success", "ClientIP": "10.1.2.3"})
    return r


@dataclass
class Dataset:
    grants: dict[str, dict]       # Id -> grant record served (not in expired blobs)
    duplicates: int               # record copies placed in a second blob


def populate(fake: FakeO365, *, now: datetime, blobs_per_type: int = 20, records_per_blob: int = 25,
             content_types: tuple[str, ...] = ("Audit.Exchange", "Audit.AzureActiveDirectory"),
             span: timedelta = timedelta(days=3), grants: int = 6, duplicate_every: int = 4,
             expired: int = 1, seed: int = 1) -> Dataset:
    """Blobs spread over ``span`` before ``now`` (contentCreated), events up to 2 h before their blob
    (a later blob can hold older events), some records repeated in a later blob, ``grants`` grant
    records in Audit.Exchange and ``expired`` blobs that answer AF20051."""
    rng = random.Random(seed)
    counter = itertools.count()
    kinds = itertools.cycle(["fullaccess", "sendas", "default-inbox"])
    grant_ids: dict[str, dict] = {}
    dups = 0
    grant_slots = set(rng.sample(range(blobs_per_type * records_per_blob), grants))
    for ct in content_types:
        previous: list[dict] = []
        for b in range(blobs_per_type):
            created = now - span + span * (b + 0.5) / blobs_per_type
            created = created.replace(microsecond=0)
            recs = []
            for j in range(records_per_blob):
                n = next(counter)
                when = created - timedelta(seconds=rng.randint(60, 7200))
                rid = str(uuid.UUID(int=rng.getrandbits(128), version=4))
                if ct == "Audit.Exchange" and b * records_per_blob + j in grant_slots:
                    rec = grant_record(rid, when, next(kinds), f"ceo{n}@contoso.com", "eve@contoso.com")
                else:
                    rec = noise_record(rid, when, ct, n)
                recs.append(rec)
            if previous and duplicate_every and b % duplicate_every == 0:
                again = rng.sample(previous, min(3, len(previous)))
                recs.extend(again)
                dups += len(again)
            is_expired = ct == "Audit.Exchange" and b < expired
            fake.add_blob(ct, created, recs, expired=is_expired)
            if not is_expired:
                previous = recs[:records_per_blob]
                for r in recs:
                    if r["Operation"].startswith("Add-"):
                        grant_ids[r["Id"]] = r
        fake.subscriptions.setdefault(ct, "enabled")
    # A grant only in an expired blob is not served; drop it from the expectations.
    served = fake.expected_ids()
    grant_ids = {k: v for k, v in grant_ids.items() if k in served}
    return Dataset(grant_ids, dups)
