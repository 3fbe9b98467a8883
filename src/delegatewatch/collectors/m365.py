"""Microsoft 365 collector: the Office 365 Management Activity API into partitioned NDJSON.

``M365Collector(config).run_once()`` makes sure the subscriptions exist, lists content in windows
of at most 24 hours covering ``since`` (at most 7 days back), downloads the blobs with bounded
concurrency, de-duplicates records by ``Id`` and commits them crash-safely (``checkpoint``). State
lives in ``DIR/.state``, so calling ``run_once`` again (the ``watch`` loop, or a restart after a
crash) continues where the last call stopped. API facts: ``shared/reference/formats.md`` §1.
"""

from __future__ import annotations

import hashlib
import logging
import os
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

import orjson

from delegatewatch.collectors import timewindows as tw
from delegatewatch.collectors.checkpoint import (
    DAY_RE,
    BatchCommitter,
    BlobOutcome,
    StateStore,
    atomic_write,
)
from delegatewatch.collectors.redact import Redactor
from delegatewatch.collectors.retry import Gate, RetryPolicy

log = logging.getLogger("delegatewatch.collectors.m365")


@dataclass(frozen=True)
class Cloud:
    login: str      # Entra ID authority host
    resource: str   # Management API resource (token audience) and API host


CLOUDS: dict[str, Cloud] = {
    "commercial": Cloud("https://login.microsoftonline.com", "https://manage.office.com"),
    "gcc": Cloud("https://login.microsoftonline.com", "https://manage-gcc.office.com"),
    "gcchigh": Cloud("https://login.microsoftonline.us", "https://manage.office365.us"),
    "dod": Cloud("https://login.microsoftonline.us", "https://manage.protection.apps.mil"),
}
CONTENT_TYPES = ("Audit.AzureActiveDirectory", "Audit.Exchange", "Audit.SharePoint", "Audit.General", "DLP.All")
# T1098.002 needs Exchange (admin cmdlets + mailbox audit) and Entra ID (app role grants, consent).
DEFAULT_CONTENT_TYPES = ("Audit.Exchange", "Audit.AzureActiveDirectory")
MAX_WINDOW = timedelta(hours=24)
RETENTION = timedelta(days=7)
START_MARGIN = timedelta(minutes=15)   # the API refuses a start more than 7 days back; absorb clock skew
SUBSCRIPTION_START_INTERVAL = timedelta(minutes=15)
PERMANENT_BLOB_CODES = {"AF20051": "content expired", "AF20052": "content id invalid"}
RETRY_BLOB_CODES = {"AF20050": "content does not exist (yet)"}
TRANSIENT_CODES = {"AF429", "AF50000", "AF50005", "AF50006"}
TRANSIENT_STATUS = {408, 429, 500, 502, 503, 504}
MAX_PAGES = 100_000


class CollectorError(Exception):
    """The collector could not run at all (configuration, authentication)."""


class AuthError(CollectorError):
    pass


@dataclass
class M365Config:
    tenant: str
    client_id: str
    out: Path
    secret: str | None = field(default=None, repr=False)
    certificate: Path | None = None                    # PEM with the certificate and its private key
    certificate_passphrase: str | None = field(default=None, repr=False)
    cloud: str = "commercial"
    since: timedelta = RETENTION
    content_types: tuple[str, ...] = DEFAULT_CONTENT_TYPES
    publisher_id: str | None = None                    # default: the tenant id
    login_url: str | None = None                       # override the authority host (tests, proxies)
    api_url: str | None = None                         # override the API root (scheme://host[:port])
    ca_bundle: str | None = None                       # extra CA file for both (tests: a trustme CA)
    concurrency: int = 8
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    timeout: float = 60.0
    batch_records: int = 50_000
    batch_blobs: int = 200
    compresslevel: int = 6
    compress_threads: int | None = None                # gzip threads beside the committer (None: by core count)
    seen_retention_days: int = 14
    relist_overlap: timedelta = timedelta(hours=1)
    secret_env: str | None = None                      # name of the variable the secret came from (manifest)
    clock: Callable[[], datetime] = field(default=lambda: datetime.now(UTC), repr=False)

    def validate(self) -> None:
        if self.cloud not in CLOUDS:
            raise CollectorError(f"unknown cloud {self.cloud!r}; one of {', '.join(CLOUDS)}")
        if bool(self.secret) == bool(self.certificate):
            raise CollectorError("give exactly one of a client secret or a certificate")
        bad = [c for c in self.content_types if c not in CONTENT_TYPES]
        if bad or not self.content_types:
            raise CollectorError(f"unknown content type(s) {', '.join(bad) or '(none)'}; "
                                 f"known: {', '.join(CONTENT_TYPES)}")
        if self.since <= timedelta(0):
            raise CollectorError("--since must be positive")
        if self.concurrency < 1:
            raise CollectorError("concurrency must be at least 1")
        for name in ("tenant", "client_id"):
            value = getattr(self, name)
            if not value or any(ch in value for ch in "/?#&% \t\r\n"):
                raise CollectorError(f"invalid {name.replace('_', ' ')}: {value!r}")

    @property
    def api_root(self) -> str:
        return (self.api_url or CLOUDS[self.cloud].resource).rstrip("/")

    @property
    def authority(self) -> str:
        return f"{(self.login_url or CLOUDS[self.cloud].login).rstrip('/')}/{self.tenant}"

    @property
    def scope(self) -> str:
        return f"{CLOUDS[self.cloud].resource}/.default"


@dataclass
class CollectIssue:
    operation: str          # auth | subscriptions | start | list | blob
    code: str               # AF code, HTTP status, or a short word
    message: str
    content_type: str = ""
    window: tuple[str, str] | None = None
    content_id: str = ""

    def __str__(self) -> str:
        where = self.content_type
        if self.window:
            where += f" {self.window[0]}..{self.window[1]}"
        if self.content_id:
            where += f" blob {self.content_id}"
        return f"{self.operation} {where.strip()}: {self.code}: {self.message}".replace("  ", " ")


@dataclass
class CollectResult:
    files: list[Path] = field(default_factory=list)   # part files committed by this call
    records: int = 0                                    # records stored by this call
    duplicates: int = 0                                 # records dropped as already stored
    blobs_fetched: int = 0
    blobs_failed: int = 0
    throttled: int = 0                                  # throttle answers (AF429 / 429) seen
    errors: list[CollectIssue] = field(default_factory=list)
    removed_uncommitted: int = 0                        # leftover files of a killed run removed at start
    manifest: Path | None = None

    @property
    def complete(self) -> bool:
        return not self.errors


@dataclass
class ContentRef:
    content_id: str
    content_uri: str
    content_created: str
    content_expiration: str


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str, retryable: bool = False) -> None:
        super().__init__(f"{code}: {message}")
        self.status, self.code, self.message, self.retryable = status, code, message, retryable


# ---------------------------------------------------------------------------------- auth
def load_certificate(path: Path, passphrase: str | None) -> dict:
    """msal client credential from a PEM file holding the certificate and its private key."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization

    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise CollectorError(f"cannot read certificate {path}: {exc.strerror or exc}") from None
    try:
        certs = x509.load_pem_x509_certificates(data)
    except ValueError:
        raise CollectorError(f"{path}: no PEM certificate found (convert a .pfx with "
                             "`openssl pkcs12 -in app.pfx -out app.pem -nodes`)") from None
    try:
        key = serialization.load_pem_private_key(data, password=passphrase.encode() if passphrase else None)
    except (ValueError, TypeError) as exc:
        hint = "wrong or missing passphrase, or " if "encrypt" in str(exc).lower() or passphrase else ""
        raise CollectorError(f"{path}: cannot load the private key ({hint}no PEM private key in the file)") from None
    spki = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    mine = key.public_key().public_bytes(*spki)
    cert = next((c for c in certs if c.public_key().public_bytes(*spki) == mine), None)
    if cert is None:
        raise CollectorError(f"{path}: no certificate in the file matches its private key")
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption()).decode()
    return {"private_key": pem, "thumbprint": cert.fingerprint(hashes.SHA1()).hex().upper()}


class TokenProvider:
    """App-only tokens through msal (client credentials); cached until a 401 says otherwise."""

    def __init__(self, config: M365Config, redactor: Redactor) -> None:
        self.config, self.redact = config, redactor
        self._lock = threading.Lock()
        self._app = None
        self._current: str | None = None
        self.acquired = 0

    def _application(self):
        import msal
        cfg = self.config
        credential = (load_certificate(cfg.certificate, cfg.certificate_passphrase) if cfg.certificate
                      else cfg.secret)
        overridden = cfg.login_url is not None
        http_client = None
        if cfg.ca_bundle:
            # requests lets REQUESTS_CA_BUNDLE override a session's ``verify``; a per-request value wins.
            import functools

            import requests
            http_client = requests.Session()
            http_client.request = functools.partial(http_client.request, timeout=cfg.timeout,  # type: ignore[method-assign]
                                                    verify=cfg.ca_bundle)
        try:
            return msal.ConfidentialClientApplication(
                cfg.client_id, client_credential=credential, authority=cfg.authority, http_client=http_client,
                timeout=cfg.timeout, token_cache=msal.TokenCache(),
                instance_discovery=False if overridden else None, validate_authority=not overridden)
        except Exception as exc:  # noqa: BLE001 - msal raises ValueError/requests errors with response text
            raise AuthError(self.redact(f"cannot reach the authority {cfg.authority}: {exc}")) from None

    def token(self) -> str:
        with self._lock:
            if self._app is None:
                self._app = self._application()
            try:
                result = self._app.acquire_token_for_client(scopes=[self.config.scope])
            except Exception as exc:  # noqa: BLE001
                raise AuthError(self.redact(f"token request failed: {type(exc).__name__}: {exc}")) from None
            token = result.get("access_token") if isinstance(result, dict) else None
            if not token:
                error = result.get("error", "error") if isinstance(result, dict) else "error"
                desc = result.get("error_description", "") if isinstance(result, dict) else ""
                raise AuthError(self.redact(f"token request refused: {error}: {desc}".strip()))
            if token != self._current:
                self.redact.add(token)
                self._current = token
                self.acquired += 1
            return token

    def invalidate(self, stale: str) -> None:
        """Forget the cached token ``stale`` (if still current) so the next ``token()`` asks again."""
        with self._lock:
            if self._app is None or stale != self._current:
                return
            cache = self._app.token_cache
            for item in list(cache.search(cache.CredentialType.ACCESS_TOKEN)):
                cache.remove_at(item)
            self._current = None


# ---------------------------------------------------------------------------------- HTTP
def _error_of(resp) -> tuple[str, str]:
    """(code, message) of an API error response; the body is ``{"error":{"code","message"}}``."""
    body = resp.content[:20_000]
    try:
        obj = orjson.loads(body)
        err = obj.get("error") if isinstance(obj, dict) else None
        if isinstance(err, dict):
            return str(err.get("code") or ""), str(err.get("message") or "")[:500]
        if isinstance(err, str):
            return "", err[:500]
    except orjson.JSONDecodeError:
        pass
    text = body.decode("utf-8", "replace").strip()
    return "", (text[:300] or resp.reason_phrase or "")


class ManagementApi:
    """The few calls the collector makes, with PublisherIdentifier, retries, throttling and 401 refresh."""

    def __init__(self, config: M365Config, tokens: TokenProvider, redactor: Redactor) -> None:
        import httpx
        self.httpx = httpx
        self.config, self.tokens, self.redact = config, tokens, redactor
        self.policy = config.retry
        self.gate = Gate()
        self.throttled = 0
        self._count_lock = threading.Lock()
        self.feed = f"{config.api_root}/api/v1.0/{config.tenant}/activity/feed"
        self.publisher = config.publisher_id or config.tenant
        origin = urlsplit(config.api_root)
        self._origin = (origin.scheme, origin.hostname, origin.port)
        verify: ssl.SSLContext | bool = True
        if config.ca_bundle:
            verify = ssl.create_default_context(cafile=config.ca_bundle)
        n = config.concurrency + 2
        self.client = httpx.Client(verify=verify, timeout=config.timeout, follow_redirects=False,
                                   limits=httpx.Limits(max_connections=n, max_keepalive_connections=n),
                                   headers={"Accept": "application/json", "User-Agent": "delegatewatch"})

    def close(self) -> None:
        self.client.close()

    def with_publisher(self, url: str) -> str:
        """``url`` verbatim, with PublisherIdentifier appended unless it already carries one."""
        query = urlsplit(url).query
        if any(k.lower() == "publisheridentifier" for k, _ in parse_qsl(query, keep_blank_values=True)):
            return url
        return f"{url}{'&' if query else '?'}PublisherIdentifier={self.publisher}"

    def _same_origin(self, url: str) -> bool:
        u = urlsplit(url)
        return (u.scheme, u.hostname, u.port) == self._origin

    def request(self, method: str, url: str):
        url = self.with_publisher(url)
        if not self._same_origin(url):
            # NextPageUri / contentUri come from the server; never send the token elsewhere.
            raise ApiError(0, "foreign-host", f"refusing to send credentials to {urlsplit(url).netloc}")
        attempt = 0
        refreshed = False
        while True:
            self.gate.wait()
            token = self.tokens.token()
            try:
                resp = self.client.request(method, url, headers={"Authorization": f"Bearer {token}"},
                                           content=b"" if method == "POST" else None)
            except self.httpx.TransportError as exc:
                if attempt + 1 >= self.policy.max_attempts:
                    raise ApiError(0, "network", self.redact(f"{type(exc).__name__}: {exc}"), True) from None
                time.sleep(self.policy.backoff(attempt))
                attempt += 1
                continue
            if resp.status_code < 300:
                return resp
            code, message = _error_of(resp)
            if resp.status_code == 401:
                if not refreshed:
                    refreshed = True
                    self.tokens.invalidate(token)
                    continue
                raise AuthError(self.redact(
                    f"HTTP 401 from the API with a fresh token ({code or 'no code'}: {message}); check the app "
                    "has the ActivityFeed.Read application permission with admin consent, and the tenant id"))
            throttled = code == "AF429" or resp.status_code == 429
            transient = throttled or code in TRANSIENT_CODES or resp.status_code in TRANSIENT_STATUS
            if transient and attempt + 1 < self.policy.max_attempts:
                delay = self.policy.delay(attempt, resp.headers.get("Retry-After"))
                if throttled:
                    with self._count_lock:
                        self.throttled += 1
                    self.gate.hold(delay)
                    log.info("throttled (%s, HTTP %d); waiting %.1f s", code or "429", resp.status_code, delay)
                else:
                    time.sleep(delay)
                attempt += 1
                continue
            if transient:
                message = f"{message} (gave up after {attempt + 1} attempts)"
            raise ApiError(resp.status_code, code or f"HTTP {resp.status_code}", self.redact(message), transient)

    # -- operations
    def list_subscriptions(self) -> list[dict]:
        data = orjson.loads(self.request("GET", f"{self.feed}/subscriptions/list").content)
        return [d for d in data if isinstance(d, dict)] if isinstance(data, list) else []

    def start_subscription(self, content_type: str) -> dict:
        resp = self.request("POST", f"{self.feed}/subscriptions/start?contentType={content_type}")
        try:
            data = orjson.loads(resp.content or b"{}")
        except orjson.JSONDecodeError:
            data = {}
        return data if isinstance(data, dict) else {}

    def list_content(self, content_type: str, start: datetime, end: datetime) -> Iterator[list[ContentRef]]:
        """Pages of the blobs available in [start, end), following ``NextPageUri`` verbatim."""
        url = (f"{self.feed}/subscriptions/content?contentType={content_type}"
               f"&startTime={tw.api_fmt(start)}&endTime={tw.api_fmt(end)}")
        seen_pages: set[str] = set()
        for _ in range(MAX_PAGES):
            resp = self.request("GET", url)
            try:
                data = orjson.loads(resp.content)
            except orjson.JSONDecodeError:
                raise ApiError(resp.status_code, "invalid-json", "content listing is not JSON") from None
            page: list[ContentRef] = []
            for item in data if isinstance(data, list) else []:
                if isinstance(item, dict) and item.get("contentId") and item.get("contentUri"):
                    page.append(ContentRef(str(item["contentId"]), str(item["contentUri"]),
                                           str(item.get("contentCreated") or ""),
                                           str(item.get("contentExpiration") or "")))
            yield page
            nxt = resp.headers.get("NextPageUri")
            if not nxt:
                return
            if nxt in seen_pages:
                raise ApiError(0, "page-loop", "NextPageUri repeats an earlier page; listing stopped")
            seen_pages.add(nxt)
            url = nxt
        raise ApiError(0, "too-many-pages", f"more than {MAX_PAGES} pages; listing stopped")


# ---------------------------------------------------------------------------------- collector
def _key(rid: object) -> bytes:
    """De-duplication key of a record ``Id``: its 16 bytes when it is a GUID, else the text."""
    text = str(rid)
    if len(text) == 36:
        try:
            return bytes.fromhex(text.replace("-", ""))
        except ValueError:
            pass
    return b"t:" + text.lower().encode()


def _record_items(data: list) -> tuple[list[tuple[bytes, str, bytes]], int]:
    """(dedup key, day, line) of each record of a blob, and how many items were not records."""
    items: list[tuple[str, str, bytes]] = []
    invalid = 0
    dumps = orjson.dumps
    for rec in data:
        if not isinstance(rec, dict):
            invalid += 1
            continue
        line = dumps(rec) + b"\n"
        rid = rec.get("Id")
        key = _key(rid) if rid else b"h:" + hashlib.sha1(line).digest()
        created = rec.get("CreationTime")
        day = created[:10] if isinstance(created, str) and DAY_RE.match(created[:10]) else "undated"
        items.append((key, day, line))
    return items, invalid


def _expired(expiration: str, now: datetime) -> bool:
    try:
        return bool(expiration) and tw.parse(expiration) <= now
    except ValueError:
        return False


def _lock(out: Path):
    """One writer per folder: the commit protocol (and its clean-up at start) assumes it."""
    import fcntl
    state = out / ".state"
    state.mkdir(parents=True, exist_ok=True)
    f = open(state / "m365.lock", "a+")  # noqa: SIM115 - held for the collector's lifetime
    try:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        f.close()
        raise CollectorError(f"another collector is writing {out} (lock {state / 'm365.lock'})") from None
    return f


class M365Collector:
    """Collects the configured content types into ``config.out``; call ``run_once()`` repeatedly."""

    def __init__(self, config: M365Config) -> None:
        config.validate()
        if config.since > RETENTION:
            log.warning("--since %s is more than the API keeps (7 days); collecting 7 days", config.since)
        self.config = config
        self.out = Path(config.out)
        self.redact = Redactor(config.secret, config.certificate_passphrase)
        self._lock_file = _lock(self.out)
        self.store = StateStore(self.out)
        self.tokens = TokenProvider(config, self.redact)
        self.api = ManagementApi(config, self.tokens, self.redact)

    def close(self) -> None:
        self.api.close()
        self.store.close()
        self._lock_file.close()   # releases the lock

    def __enter__(self) -> M365Collector:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- one round
    def run_once(self) -> CollectResult:
        cfg = self.config
        result = CollectResult()
        removed = self.store.recover(CONTENT_TYPES)
        result.removed_uncommitted = len(removed)
        if removed:
            log.info("removed %d uncommitted file(s) left by an interrupted run", len(removed))
        run = self.store.start_run()
        committer = BatchCommitter(self.store, run, cfg.compresslevel, cfg.batch_records, cfg.batch_blobs,
                                   cfg.compress_threads)
        throttled_before = self.api.throttled
        fatal: CollectorError | None = None
        try:
            with ThreadPoolExecutor(max_workers=cfg.concurrency, thread_name_prefix="m365-blob") as pool:
                now = tw.utc(cfg.clock()).replace(microsecond=0)
                self._subscriptions(run, result)
                for ct in cfg.content_types:
                    self._collect_type(ct, now, run, result, committer, pool)
            committer.flush()
        except CollectorError as exc:
            committer.flush()  # what was fetched before the failure is complete and consistent
            fatal = exc
            self._issue(run, result, CollectIssue("auth" if isinstance(exc, AuthError) else "run", "error", str(exc)))
        except BaseException:
            committer.abort()
            raise
        finally:
            committer.close()
            result.files = committer.files
            result.records = committer.records
            result.duplicates = committer.duplicates
            result.throttled = self.api.throttled - throttled_before
            self.store.finish_run(run, result.records, result.duplicates, len(result.files), len(result.errors),
                                  result.complete)
            self.store.prune_seen(cfg.seen_retention_days)
            result.manifest = self.write_manifest()
        if fatal is not None:
            raise fatal
        return result

    def _issue(self, run: int, result: CollectResult, issue: CollectIssue) -> None:
        issue.message = self.redact(issue.message)
        result.errors.append(issue)
        self.store.record_error(run, issue.operation, issue.code, issue.message, issue.content_type,
                                issue.window, issue.content_id)
        log.warning("%s", issue)

    def _subscriptions(self, run: int, result: CollectResult) -> None:
        try:
            subs = self.api.list_subscriptions()
        except ApiError as exc:
            self._issue(run, result, CollectIssue("subscriptions", exc.code, exc.message))
            return
        enabled = {s.get("contentType") for s in subs if str(s.get("status", "")).lower() == "enabled"}
        now = datetime.now(UTC)
        for ct in self.config.content_types:
            if ct in enabled:
                self.store.note_subscription(ct, "enabled", started=False)
                continue
            last = self.store.subscription_started(ct)
            if last and now - tw.parse(last) < SUBSCRIPTION_START_INTERVAL:
                continue  # the API throttles start requests closer than 15 minutes
            try:
                reply = self.api.start_subscription(ct)
                status = str(reply.get("status") or "started")
                self.store.note_subscription(ct, status, started=True)
                log.info("started subscription %s (%s); new content can take up to 12 hours to appear", ct, status)
            except ApiError as exc:
                self.store.note_subscription(ct, f"start failed: {exc.code}", started=True)
                self._issue(run, result, CollectIssue("start", exc.code, exc.message, ct))

    def _collect_type(self, ct: str, now: datetime, run: int, result: CollectResult,
                      committer: BatchCommitter, pool: ThreadPoolExecutor) -> None:
        cfg = self.config
        since = min(cfg.since, RETENTION)
        start = max(now - since, now - RETENTION + START_MARGIN)
        covered = [(tw.parse(s), tw.parse(e)) for s, e in self.store.windows(ct)]
        todo: list[tw.Interval] = []
        for gap in tw.subtract((start, now), tw.trim_tail(covered, cfg.relist_overlap)):
            todo.extend(tw.split(gap, MAX_WINDOW))

        retry = [ContentRef(*row) for row in self.store.blobs_to_retry(ct)]
        if retry:
            log.info("%s: retrying %d blob(s) that failed before", ct, len(retry))
            self._fetch_all(ct, retry, now, run, result, committer, pool)

        for ws, we in todo:
            window = (tw.fmt(ws), tw.fmt(we))
            refs: dict[str, ContentRef] = {}
            listed_ok = True
            try:
                for page in self.api.list_content(ct, ws, we):
                    for ref in page:
                        refs.setdefault(ref.content_id, ref)
            except ApiError as exc:
                listed_ok = False
                self._issue(run, result, CollectIssue("list", exc.code, exc.message, ct, window))
                if exc.code in ("AF20022", "AF20023"):
                    self.store.note_subscription(ct, f"missing ({exc.code})", started=False)
            status = self.store.blob_status(list(refs))
            pending = sorted((r for r in refs.values() if status.get(r.content_id) not in ("done", "failed")),
                             key=lambda r: (r.content_created, r.content_id))
            log.info("%s %s..%s: %d blob(s) listed, %d to fetch", ct, *window, len(refs), len(pending))
            self._fetch_all(ct, pending, now, run, result, committer, pool)
            if listed_ok:
                covered = tw.merge(covered + [(ws, we)])
                committer.set_windows(ct, [(tw.fmt(s), tw.fmt(e)) for s, e in covered])
        committer.flush()

    def _fetch_all(self, ct: str, refs: list[ContentRef], now: datetime, run: int, result: CollectResult,
                   committer: BatchCommitter, pool: ThreadPoolExecutor) -> None:
        it = iter(refs)
        in_flight: set = set()
        limit = self.config.concurrency * 2   # bounded: downloaded-but-uncommitted blobs stay few
        while True:
            while len(in_flight) < limit:
                ref = next(it, None)
                if ref is None:
                    break
                in_flight.add(pool.submit(self._fetch, ct, ref, now))
            if not in_flight:
                return
            done, in_flight = wait(in_flight, return_when=FIRST_COMPLETED)
            for fut in done:
                outcome, items = fut.result()
                if outcome.status == "done":
                    result.blobs_fetched += 1
                else:
                    result.blobs_failed += 1
                    self._issue(run, result, CollectIssue("blob", outcome.code, outcome.reason, ct,
                                                          content_id=outcome.content_id))
                committer.add(outcome, items)

    def _fetch(self, ct: str, ref: ContentRef, now: datetime) -> tuple[BlobOutcome, list | None]:
        outcome = BlobOutcome(ref.content_id, ct, ref.content_uri, ref.content_created, ref.content_expiration,
                              "done")
        if _expired(ref.content_expiration, now):
            outcome.status, outcome.code = "failed", "expired"
            outcome.reason = f"content expired at {ref.content_expiration} before it could be fetched"
            return outcome, None
        try:
            resp = self.api.request("GET", ref.content_uri)
            data = orjson.loads(resp.content)
        except ApiError as exc:
            outcome.code = exc.code
            if exc.code in PERMANENT_BLOB_CODES:
                outcome.status = "failed"
                outcome.reason = f"{PERMANENT_BLOB_CODES[exc.code]}: {exc.message}"
            elif exc.retryable or exc.code in RETRY_BLOB_CODES or exc.code == "network":
                outcome.status = "retry"
                outcome.reason = f"{RETRY_BLOB_CODES.get(exc.code, 'not fetched, retried next run')}: {exc.message}"
            else:
                outcome.status = "failed"
                outcome.reason = exc.message or f"HTTP {exc.status}"
            return outcome, None
        except AuthError:
            raise
        except orjson.JSONDecodeError:
            outcome.status, outcome.code, outcome.reason = "retry", "invalid-json", "blob is not valid JSON"
            return outcome, None
        if not isinstance(data, list):
            outcome.status, outcome.code, outcome.reason = "failed", "invalid-content", "blob is not a JSON array"
            return outcome, None
        items, invalid = _record_items(data)
        if invalid:
            outcome.reason = f"{invalid} item(s) that are not records skipped"
        return outcome, items

    # -- manifest
    def write_manifest(self) -> Path:
        from delegatewatch import __version__
        cfg = self.config
        db = self.store.db
        types: dict[str, dict] = {}
        for ct in sorted(set(cfg.content_types) | {r[0] for r in db.execute("SELECT DISTINCT content_type FROM parts")}):
            days: dict[str, dict] = {}
            for day, recs, files in db.execute("SELECT day, sum(records), count(*) FROM parts WHERE content_type=?"
                                               " GROUP BY day ORDER BY day", (ct,)):
                days[day] = {"records": recs, "files": files}
            blobs = dict(db.execute("SELECT status, count(*) FROM blobs WHERE content_type=? GROUP BY status", (ct,)))
            dups = db.execute("SELECT coalesce(sum(duplicates),0) FROM blobs WHERE content_type=?", (ct,)).fetchone()[0]
            sub = db.execute("SELECT status, last_start FROM subscriptions WHERE content_type=?", (ct,)).fetchone()
            types[ct] = {
                "subscription": {"status": sub[0], "last_start": sub[1]} if sub else None,
                "windows_covered": [{"start": s, "end": e} for s, e in self.store.windows(ct)],
                "records": sum(d["records"] for d in days.values()),
                "duplicates_dropped": dups,
                "files": sum(d["files"] for d in days.values()),
                "blobs": {"fetched": blobs.get("done", 0), "failed": blobs.get("failed", 0),
                          "to_retry": blobs.get("retry", 0)},
                "days": days,
            }
        not_collected = [
            {"content_type": r[0], "content_id": r[1], "content_created": r[2], "content_expiration": r[3],
             "status": r[4], "code": r[5], "reason": r[6], "attempts": r[7], "updated": r[8]}
            for r in db.execute("SELECT content_type, content_id, content_created, content_expiration, status, code,"
                                " reason, attempts, updated FROM blobs WHERE status != 'done'"
                                " ORDER BY content_created, content_id")]
        errors = [
            {"time": r[0], "run": r[1], "content_type": r[2] or None, "operation": r[3], "code": r[4],
             "message": r[5], "window": {"start": r[6], "end": r[7]} if r[6] else None, "content_id": r[8] or None}
            for r in db.execute("SELECT time, run, content_type, operation, code, message, window_start, window_end,"
                                " content_id FROM (SELECT * FROM errors ORDER BY n DESC LIMIT 500) ORDER BY n")]
        runs = [
            {"run": r[0], "started": r[1], "finished": r[2], "records": r[3], "duplicates": r[4], "files": r[5],
             "errors": r[6], "complete": bool(r[7])}
            for r in db.execute("SELECT * FROM (SELECT * FROM runs ORDER BY run DESC LIMIT 50) ORDER BY run")]
        manifest = {
            "collector": "m365",
            "source": "Office 365 Management Activity API",
            "delegatewatch_version": __version__,
            "updated": tw.fmt(datetime.now(UTC)),
            "tenant": cfg.tenant,
            "client_id": cfg.client_id,
            "cloud": cfg.cloud,
            "api": cfg.api_root,
            "publisher_id": cfg.publisher_id or cfg.tenant,
            "auth": "certificate" if cfg.certificate else (f"secret from ${cfg.secret_env}" if cfg.secret_env
                                                          else "secret"),
            "layout": "<content type>/<YYYY-MM-DD of CreationTime>/part-<n>.ndjson.gz",
            "content_types": types,
            "not_collected": not_collected,
            "errors": errors,
            "runs": runs,
        }
        data = self.redact(orjson.dumps(manifest, option=orjson.OPT_INDENT_2).decode()).encode() + b"\n"
        path = self.out / "manifest.json"
        atomic_write(path, data)
        return path


def env_secret(name: str) -> str:
    value = os.environ.get(name)
    if not value:
        raise CollectorError(f"environment variable {name} is not set or empty")
    return value
