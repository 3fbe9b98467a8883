"""Google Workspace collector: Admin SDK Reports API activities and Gmail delegate snapshots.

What it does (docs/collect-google.md has the operator's view):

* ``activities.list`` (``GET {reports}/admin/reports/v1/activity/users/all/applications/{app}``) per
  application, in time windows (Gmail: at most 30 days apart, the documented rule; others: at most 180
  days, the reach of the audit data), following ``nextPageToken``. Each activity object is written
  unchanged, one per line, to ``OUT/<application>/<YYYY-MM-DD>/<run-id>.ndjson.gz`` (the day of
  ``id.time``, UTC). A window's files appear atomically (temporary file + rename) and only then does the
  application's checkpoint move to the window's end.
* Reruns start at ``checkpoint - overlap`` (late-arriving events); activities already written are
  recognised by ``id.uniqueQualifier`` + ``id.time`` and skipped, so there are no duplicates.
* ``--gmail-delegates``: Directory ``users.list`` (customer ``my_customer``, paged), then Gmail
  ``users.settings.delegates.list`` with each user as the domain-wide-delegation subject; one line per
  user to ``OUT/gmail-delegates/<timestamp>.ndjson.gz``. A user whose delegates could not be read has
  ``"delegates": null`` and an ``error`` (never an empty list: a later diff must not read "unknown" as
  "no delegates").
* Throttling (HTTP 429, ``rateLimitExceeded``, ``userRateLimitExceeded``, ``quotaExceeded``) and 5xx are
  retried with capped exponential back-off and full jitter, honouring ``Retry-After``.

Tokens: google-auth service-account credentials, ``with_subject`` (domain-wide delegation), one scope
per API so that a scope missing from the DWD grant fails only what needs it. HTTP is ``requests``.
Secrets (the private key, access tokens, the signed assertion) are never logged, printed or written.
"""

from __future__ import annotations

import contextlib
import gzip
import json
import logging
import os
import re
import secrets
import shutil
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import requests

from delegatewatch.collectors.checkpoint import atomic_write
from delegatewatch.collectors.redact import Redactor
from delegatewatch.collectors.retry import Gate, RetryPolicy

log = logging.getLogger(__name__)

SCOPE_REPORTS = "https://www.googleapis.com/auth/admin.reports.audit.readonly"
SCOPE_DIRECTORY = "https://www.googleapis.com/auth/admin.directory.user.readonly"
SCOPE_GMAIL_SETTINGS = "https://www.googleapis.com/auth/gmail.settings.basic"
ALL_SCOPES = (SCOPE_REPORTS, SCOPE_DIRECTORY, SCOPE_GMAIL_SETTINGS)

REPORTS_URL = "https://admin.googleapis.com"
DIRECTORY_URL = "https://admin.googleapis.com"
GMAIL_URL = "https://gmail.googleapis.com"

DEFAULT_APPLICATIONS = ("admin", "user_accounts", "token", "gmail")
#: Longest startTime..endTime per request. Gmail: "the difference must not be greater than 30 days"
#: (Reports API Gmail log events reference); others: the 180 days audit data reaches back.
MAX_WINDOW = {"gmail": timedelta(days=30)}
DEFAULT_MAX_WINDOW = timedelta(days=180)
#: Reports audit data reaches back at most this far.
RETENTION = timedelta(days=180)
THROTTLE_REASONS = frozenset({"rateLimitExceeded", "userRateLimitExceeded", "quotaExceeded",
                              "RATE_LIMIT_EXCEEDED", "RESOURCE_EXHAUSTED", "backendError"})
_APP_NAME = re.compile(r"^[a-z][a-z0-9_]*$")
STATE_DIR = ".state"  # hidden (``hunt OUT`` walks past it); shared with the M365 collector's checkpoint


# ---------------------------------------------------------------------------------------------- errors

class GoogleAPIError(Exception):
    """An API call that failed for good (after retries). Never carries a token or a key."""

    def __init__(self, status: int, reason: str, message: str, url: str = "") -> None:
        super().__init__(f"HTTP {status} {reason}: {message}" if status else f"{reason}: {message}")
        self.status = status
        self.reason = reason
        self.message = message
        self.url = url

    def as_dict(self) -> dict[str, Any]:
        return {"status": self.status, "reason": self.reason, "message": self.message}


class TokenError(GoogleAPIError):
    """The token endpoint refused the signed assertion (``unauthorized_client``, ``invalid_grant`` …)."""

    def __init__(self, error: str, description: str, subject: str, scope: str) -> None:
        super().__init__(401 if error == "unauthorized_client" else 400, error, description)
        self.subject = subject
        self.scope = scope

    @property
    def scope_not_granted(self) -> bool:
        return self.reason == "unauthorized_client"


class ConfigError(ValueError):
    """Bad settings or an unreadable credentials file (the message is safe to print)."""


# --------------------------------------------------------------------------------------------- helpers

def utc_now() -> datetime:
    return datetime.now(UTC)


def rfc3339(t: datetime) -> str:
    """``2024-05-01T12:34:56.789Z`` — the form the Reports API documents for startTime/endTime."""
    t = t.astimezone(UTC)
    return t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{t.microsecond // 1000:03d}Z"


def parse_time(text: str) -> datetime:
    """An RFC 3339 / ISO 8601 time or date; naive values are UTC."""
    s = text.strip()
    if s.endswith(("Z", "z")):
        s = s[:-1] + "+00:00"
    try:
        t = datetime.fromisoformat(s)
    except ValueError as exc:
        raise ConfigError(f"not a date or time: {text!r}") from exc
    return t.replace(tzinfo=UTC) if t.tzinfo is None else t.astimezone(UTC)


_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$", re.I)
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_duration(text: str) -> timedelta:
    """``90s``, ``30m``, ``12h``, ``7d``, ``2w``."""
    m = _DURATION.match(text)
    if not m:
        raise ConfigError(f"not a duration (use e.g. 30m, 12h, 7d, 2w): {text!r}")
    return timedelta(**{_UNITS[m.group(2).lower()]: float(m.group(1))})


def parse_since(text: str, now: datetime) -> datetime:
    """``--since``: a duration back from now, or an absolute date/time."""
    return now - parse_duration(text) if _DURATION.match(text) else parse_time(text)


def _retry_after(value: str | None) -> str | None:
    return value or None


def _json_bytes(obj: Any) -> bytes:
    try:
        return orjson.dumps(obj)
    except TypeError:  # e.g. an integer wider than 64 bits: the standard library copes
        return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode()


def _json_loads(data: bytes) -> Any:
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        return json.loads(data)


def parse_error_body(status: int, body: bytes) -> tuple[str, str]:
    """(reason, message) from a Google JSON error (``{"error": {"errors": [{"reason"}], ...}}``)."""
    try:
        doc = _json_loads(body)
    except (ValueError, UnicodeDecodeError):
        return f"http_{status}", body[:200].decode("utf-8", "replace").strip() or f"HTTP {status}"
    err = doc.get("error") if isinstance(doc, dict) else None
    if isinstance(err, str):  # OAuth style {"error": "...", "error_description": "..."}
        return err, str(doc.get("error_description", ""))
    if not isinstance(err, dict):
        return f"http_{status}", f"HTTP {status}"
    message = str(err.get("message", ""))
    reason = ""
    for e in err.get("errors") or []:
        if isinstance(e, dict) and e.get("reason"):
            reason = str(e["reason"])
            break
    if not reason:
        for d in err.get("details") or []:
            if isinstance(d, dict) and d.get("reason"):
                reason = str(d["reason"])
                break
    return reason or str(err.get("status") or f"http_{status}"), message


# ----------------------------------------------------------------------------------------- credentials

@dataclass(frozen=True)
class ServiceAccount:
    """The parts of a service-account key file this tool needs; ``info`` is kept private."""

    path: Path
    client_email: str
    client_id: str
    token_uri: str
    _info: dict = field(repr=False)

    @classmethod
    def load(cls, path: str | os.PathLike, token_uri: str | None = None) -> ServiceAccount:
        p = Path(path)
        try:
            info = json.loads(p.read_text(encoding="utf-8"))
        except OSError as exc:
            raise ConfigError(f"cannot read the credentials file {p}: {exc.strerror or exc}") from None
        except ValueError:
            raise ConfigError(f"the credentials file {p} is not JSON (expected a service-account key file)") from None
        if not isinstance(info, dict) or info.get("type") != "service_account":
            raise ConfigError(f"{p} is not a service-account key file (\"type\": \"service_account\" expected)")
        missing = [k for k in ("client_email", "private_key", "client_id") if not info.get(k)]
        if missing:
            raise ConfigError(f"{p} lacks {', '.join(missing)}")
        if token_uri:
            info = {**info, "token_uri": token_uri}
        info.setdefault("token_uri", "https://oauth2.googleapis.com/token")
        return cls(p, info["client_email"], str(info["client_id"]), info["token_uri"], info)

    @property
    def redactor(self) -> Redactor:
        """Masks the private key (whole, and each line of its base64 body) and the key id."""
        red = Redactor(self._info.get("private_key"), self._info.get("private_key_id"))
        for line in str(self._info.get("private_key", "")).splitlines():
            if len(line) >= 16 and not line.startswith("-----"):
                red.add(line)
        return red

    def credentials(self, subject: str, scope: str):
        """google-auth credentials for ``subject`` (domain-wide delegation) with one scope."""
        from google.oauth2 import service_account

        try:
            base = service_account.Credentials.from_service_account_info(self._info, scopes=[scope])
        except (ValueError, KeyError) as exc:  # a malformed key: say so without echoing it
            raise ConfigError(f"{self.path}: the private key cannot be loaded ({type(exc).__name__})") from None
        return base.with_subject(subject)


# ------------------------------------------------------------------------------------------------ HTTP

class GoogleHTTP:
    """GETs with bearer tokens from service-account credentials, retries and back-off.

    Thread-safe: one ``requests.Session`` per thread; credentials are cached per (subject, scope) for
    the admin subject and created per call for per-user subjects (``cache=False``).
    """

    def __init__(self, account: ServiceAccount, *, timeout: float = 60.0, max_retries: int = 6,
                 backoff_base: float = 1.0, backoff_cap: float = 64.0) -> None:
        self.account = account
        self.timeout = timeout
        self.max_retries = max_retries
        self.policy = RetryPolicy(max_attempts=max_retries + 1, base_delay=backoff_base, max_delay=backoff_cap,
                                  max_retry_after=max(backoff_cap, 1.0))
        self.gate = Gate()  # quota is per project/customer: a throttle answer slows every worker
        self.redact = account.redactor
        self.retries = 0  # throttling / transient retries performed (for the manifest)
        self._local = threading.local()
        self._creds: dict[tuple[str, str], Any] = {}
        self._lock = threading.Lock()

    def _session(self) -> requests.Session:
        s = getattr(self._local, "session", None)
        if s is None:
            s = self._local.session = requests.Session()
            s.headers["User-Agent"] = "delegatewatch-google-collector"
        return s

    def close(self) -> None:
        s = getattr(self._local, "session", None)
        if s is not None:
            s.close()

    def credentials(self, subject: str, scope: str, cache: bool = True):
        if not cache:
            return self.account.credentials(subject, scope)
        with self._lock:
            key = (subject, scope)
            if key not in self._creds:
                self._creds[key] = self.account.credentials(subject, scope)
            return self._creds[key]

    def refresh(self, creds, subject: str, scope: str) -> None:
        from google.auth import exceptions
        from google.auth.transport.requests import Request

        try:
            creds.refresh(Request(self._session()))
        except exceptions.RefreshError as exc:
            error, description = _refresh_error_parts(exc)
            raise TokenError(self.redact(error), self.redact(description), subject, scope) from None
        except exceptions.TransportError as exc:
            raise GoogleAPIError(0, "token_endpoint_unreachable", self.redact(_safe_text(exc))) from None
        if creds.token:
            self.redact.add(creds.token)

    def token(self, subject: str, scope: str, cache: bool = True):
        """Credentials with a valid access token (refreshing when needed)."""
        creds = self.credentials(subject, scope, cache)
        if not creds.valid:
            self.refresh(creds, subject, scope)
        return creds

    def get_json(self, url: str, params: dict[str, Any] | None, *, subject: str, scope: str,
                 cache: bool = True) -> dict:
        creds = self.token(subject, scope, cache)
        attempt = 0
        reauthorised = False
        while True:
            self.gate.wait()
            if not creds.valid:
                self.refresh(creds, subject, scope)
            try:
                r = self._session().get(url, params=params, timeout=self.timeout, headers={
                    "Authorization": f"Bearer {creds.token}", "Accept": "application/json"})
            except requests.RequestException as exc:
                if attempt >= self.max_retries:
                    raise GoogleAPIError(0, "network_error", self.redact(_safe_text(exc)), url) from None
                self._wait(attempt, None, f"network error ({type(exc).__name__})", url)
                attempt += 1
                continue
            if r.status_code == 200:
                return _json_loads(r.content) if r.content else {}
            reason, message = parse_error_body(r.status_code, r.content)
            if r.status_code == 401 and not reauthorised:  # expired or revoked token: one fresh token
                reauthorised = True
                self.refresh(creds, subject, scope)
                continue
            retryable = (r.status_code == 429 or r.status_code >= 500
                         or (r.status_code == 403 and reason in THROTTLE_REASONS))
            if retryable and attempt < self.max_retries:
                self._wait(attempt, _retry_after(r.headers.get("Retry-After")), f"HTTP {r.status_code} {reason}", url)
                attempt += 1
                continue
            raise GoogleAPIError(r.status_code, self.redact(reason), self.redact(message), url)

    def _wait(self, attempt: int, retry_after: str | None, why: str, url: str) -> None:
        delay = self.policy.delay(attempt, retry_after)
        with self._lock:
            self.retries += 1
        log.info("retrying %s in %.2fs after %s", url.split("?")[0], delay, why)
        self.gate.hold(delay)
        self.gate.wait()


def _safe_text(exc: BaseException) -> str:
    """An exception's text with anything that looks like a bearer token or assertion removed."""
    text = str(exc)
    text = re.sub(r"(?i)(bearer\s+)[A-Za-z0-9._~+/=-]+", r"\1[redacted]", text)
    text = re.sub(r"(assertion=|access_token=)[^&\s]+", r"\1[redacted]", text)
    return text[:500]


def _refresh_error_parts(exc: Exception) -> tuple[str, str]:
    data = exc.args[1] if len(exc.args) > 1 else None
    if isinstance(data, dict):
        return str(data.get("error", "token_error")), str(data.get("error_description", ""))
    text = str(exc.args[0]) if exc.args else str(exc)
    head, _, rest = text.partition(":")
    if re.fullmatch(r"[a-z_]+", head.strip()):
        return head.strip(), _safe_text(Exception(rest.strip()))
    return "token_error", _safe_text(Exception(text))


# ---------------------------------------------------------------------------------------- API wrappers

class GoogleAPI:
    """The three Google APIs the collector and ``doctor`` use."""

    def __init__(self, http: GoogleHTTP, *, reports_url: str = REPORTS_URL, directory_url: str = DIRECTORY_URL,
                 gmail_url: str = GMAIL_URL) -> None:
        self.http = http
        self.reports_url = reports_url.rstrip("/")
        self.directory_url = directory_url.rstrip("/")
        self.gmail_url = gmail_url.rstrip("/")

    def activities_pages(self, subject: str, application: str, start: datetime, end: datetime,
                         max_results: int = 1000) -> Iterator[dict]:
        """Each page of ``activities.list`` for all users, following ``nextPageToken``."""
        url = f"{self.reports_url}/admin/reports/v1/activity/users/all/applications/{application}"
        params: dict[str, Any] = {"startTime": rfc3339(start), "endTime": rfc3339(end), "maxResults": max_results}
        while True:
            page = self.http.get_json(url, params, subject=subject, scope=SCOPE_REPORTS)
            yield page
            token = page.get("nextPageToken")
            if not token:
                return
            params = {**params, "pageToken": token}

    def users(self, subject: str, customer: str = "my_customer", page_size: int = 500) -> Iterator[dict]:
        """Directory ``users.list`` for the whole customer, every page."""
        url = f"{self.directory_url}/admin/directory/v1/users"
        params: dict[str, Any] = {"customer": customer, "maxResults": page_size, "orderBy": "email",
                                  "projection": "basic"}
        while True:
            page = self.http.get_json(url, params, subject=subject, scope=SCOPE_DIRECTORY)
            yield from page.get("users") or []
            token = page.get("nextPageToken")
            if not token:
                return
            params = {**params, "pageToken": token}

    def delegates(self, user: str) -> list[dict]:
        """Gmail ``users.settings.delegates.list`` with ``user`` as the subject."""
        from urllib.parse import quote

        url = f"{self.gmail_url}/gmail/v1/users/{quote(user, safe='@')}/settings/delegates"
        doc = self.http.get_json(url, None, subject=user, scope=SCOPE_GMAIL_SETTINGS, cache=False)
        return list(doc.get("delegates") or [])


# -------------------------------------------------------------------------------------------- checkpoint

class Checkpoint:
    """Per-application "collected up to" times in one JSON file, replaced atomically."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.data: dict[str, Any] = {"version": 1, "applications": {}}
        if path.exists():
            try:
                loaded = json.loads(path.read_text(encoding="utf-8"))
                if isinstance(loaded, dict) and isinstance(loaded.get("applications"), dict):
                    self.data = loaded
            except (OSError, ValueError):
                log.warning("checkpoint %s is unreadable; starting from --since", path)

    def get(self, application: str) -> datetime | None:
        entry = self.data["applications"].get(application)
        if not entry or not entry.get("collected_until"):
            return None
        try:
            return parse_time(entry["collected_until"])
        except ConfigError:
            return None

    def set(self, application: str, until: datetime) -> None:
        self.data["applications"][application] = {"collected_until": rfc3339(until), "updated_at": rfc3339(utc_now())}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(self.path, json.dumps(self.data, indent=2, sort_keys=True).encode())


# ------------------------------------------------------------------------------------------ day writer

def activity_key(activity: dict) -> tuple[str, str] | None:
    ident = activity.get("id")
    if not isinstance(ident, dict):
        return None
    return str(ident.get("uniqueQualifier", "")), str(ident.get("time", ""))


def activity_day(activity: dict) -> str:
    ident = activity.get("id")
    t = ident.get("time") if isinstance(ident, dict) else None
    if isinstance(t, str):
        try:
            return parse_time(t).strftime("%Y-%m-%d")
        except ConfigError:
            pass
    return "unknown-day"


class _SeenIndex:
    """Keys of activities already on disk (or written in this run), loaded per day on first use."""

    def __init__(self, app_dir: Path) -> None:
        self.app_dir = app_dir
        self.days: dict[str, set[tuple[str, str]]] = {}

    def for_day(self, day: str) -> set[tuple[str, str]]:
        seen = self.days.get(day)
        if seen is None:
            seen = self.days[day] = set()
            day_dir = self.app_dir / day
            if day_dir.is_dir():
                for f in sorted(day_dir.glob("*.ndjson.gz")):
                    if f.name.startswith("."):
                        continue
                    seen.update(_keys_in(f))
        return seen

    def forget_before(self, day: str) -> None:
        for d in [d for d in self.days if d < day]:
            del self.days[d]


def _keys_in(path: Path) -> Iterator[tuple[str, str]]:
    try:
        with gzip.open(path, "rb") as f:
            for line in f:
                if not line.strip():
                    continue
                try:
                    key = activity_key(_json_loads(line))
                except ValueError:
                    continue
                if key:
                    yield key
    except (OSError, EOFError) as exc:
        log.warning("cannot read %s for de-duplication: %s", path, exc)


class _WindowWriter:
    """Per-day gzip files for one window, under temporary names until ``commit``."""

    def __init__(self, app_dir: Path, run_id: str) -> None:
        self.app_dir = app_dir
        self.run_id = run_id
        self.open: dict[str, tuple[Path, Any]] = {}
        self.counts: dict[str, int] = {}

    def write(self, day: str, line: bytes) -> None:
        if day not in self.open:
            d = self.app_dir / day
            d.mkdir(parents=True, exist_ok=True)
            tmp = d / f".{self.run_id}.ndjson.gz.tmp"
            final = d / f"{self.run_id}.ndjson.gz"
            if final.exists():  # committed by an earlier window of this run: extend a copy (abort keeps it)
                shutil.copyfile(final, tmp)
            self.open[day] = (tmp, gzip.open(tmp, "ab"))
            self.counts.setdefault(day, 0)
        self.open[day][1].write(line)
        self.counts[day] += 1

    def commit(self) -> list[Path]:
        files = []
        for day, (tmp, fh) in self.open.items():
            fh.close()
            final = tmp.with_name(f"{self.run_id}.ndjson.gz")
            os.replace(tmp, final)
            files.append(final)
        self.open.clear()
        return files

    def abort(self) -> None:
        for _day, (tmp, fh) in self.open.items():
            with contextlib.suppress(OSError):
                fh.close()
            with contextlib.suppress(OSError):
                os.unlink(tmp)
        self.open.clear()


# ------------------------------------------------------------------------------------------- collector

@dataclass
class GoogleConfig:
    credentials: Path
    subject: str
    out_dir: Path
    applications: tuple[str, ...] = DEFAULT_APPLICATIONS
    gmail_delegates: bool = False
    since: str | timedelta | datetime = "7d"
    until: datetime | None = None
    window: timedelta = timedelta(days=1)
    overlap: timedelta = timedelta(hours=1)
    from_scratch: bool = False
    max_results: int = 1000
    reports_url: str = REPORTS_URL
    directory_url: str = DIRECTORY_URL
    gmail_url: str = GMAIL_URL
    token_uri: str | None = None
    customer: str = "my_customer"
    users_page_size: int = 500
    workers: int = 4
    timeout: float = 60.0
    max_retries: int = 6
    backoff_base: float = 1.0
    backoff_cap: float = 64.0

    def validate(self) -> None:
        bad = [a for a in self.applications if not _APP_NAME.match(a)]
        if bad:
            raise ConfigError(f"not an application name: {', '.join(bad)}")
        if not self.applications and not self.gmail_delegates:
            raise ConfigError("nothing to collect: name --applications or use --gmail-delegates")
        if "@" not in self.subject:
            raise ConfigError("--subject must be the e-mail address of an administrator to impersonate")
        if self.window <= timedelta(0):
            raise ConfigError("--window must be positive")
        if not 1 <= self.max_results <= 1000:
            raise ConfigError("--max-results must be between 1 and 1000")


@dataclass
class CollectResult:
    """What one collection run produced (``watch`` and the CLI read this)."""

    files: list[Path] = field(default_factory=list)
    records: int = 0
    duplicates: int = 0
    errors: list[dict[str, Any]] = field(default_factory=list)
    manifest: Path | None = None
    snapshot: Path | None = None
    applications: dict[str, dict[str, Any]] = field(default_factory=dict)
    delegates: dict[str, Any] | None = None

    @property
    def ok(self) -> bool:
        return not self.errors


class GoogleCollector:
    """``GoogleCollector(config).run_once()``: one pass over every configured source."""

    def __init__(self, config: GoogleConfig, *, now: Callable[[], datetime] = utc_now,
                 progress: Callable[[str], None] | None = None) -> None:
        config.validate()
        self.config = config
        self.now = now
        self.progress = progress or (lambda _msg: None)
        self.account = ServiceAccount.load(config.credentials, config.token_uri)
        self.http = GoogleHTTP(self.account, timeout=config.timeout, max_retries=config.max_retries,
                               backoff_base=config.backoff_base, backoff_cap=config.backoff_cap)
        self.api = GoogleAPI(self.http, reports_url=config.reports_url, directory_url=config.directory_url,
                             gmail_url=config.gmail_url)
        self.state_dir = Path(config.out_dir) / STATE_DIR
        self.checkpoint_path = self.state_dir / "google-checkpoint.json"

    # -- the run
    def run_once(self) -> CollectResult:
        cfg = self.config
        out = Path(cfg.out_dir)
        out.mkdir(parents=True, exist_ok=True)
        self.state_dir.mkdir(parents=True, exist_ok=True)
        started = self.now()
        run_id = started.strftime("%Y%m%dT%H%M%SZ") + "-" + secrets.token_hex(3)
        result = CollectResult()
        with _run_lock(self.state_dir / "google.lock"):
            self._remove_stale_temporaries()
            checkpoint = Checkpoint(self.checkpoint_path)
            end = cfg.until.astimezone(UTC) if cfg.until else started
            since = cfg.since
            if isinstance(since, str):
                since_start = parse_since(since, end)
            elif isinstance(since, timedelta):
                since_start = end - since
            else:
                since_start = since.astimezone(UTC)
            for app in cfg.applications:
                result.applications[app] = self._collect_application(app, since_start, end, run_id, checkpoint,
                                                                      result)
            if cfg.gmail_delegates:
                result.delegates = self._snapshot_delegates(started, result)
            finished = self.now()
            manifest = {
                "collector": "google", "run_id": run_id, "started_at": rfc3339(started),
                "finished_at": rfc3339(finished), "subject": cfg.subject,
                "client_id": self.account.client_id, "until": rfc3339(end),
                "applications": result.applications, "gmail_delegates": result.delegates,
                "records": result.records, "duplicates_skipped": result.duplicates,
                "retries": self.http.retries, "files": [str(p.relative_to(out)) for p in result.files],
                "errors": result.errors,
            }
            data = json.dumps(manifest, indent=2).encode()
            history = self.state_dir / "google-manifests"
            history.mkdir(exist_ok=True)
            atomic_write(history / f"{run_id}.json", data)
            result.manifest = out / "google-manifest.json"  # the latest run's; earlier ones in .state/
            atomic_write(result.manifest, data)
        self.http.close()
        return result

    def _remove_stale_temporaries(self) -> None:
        """Temporary files of a run that died (we hold the lock, so no live run owns them)."""
        out = Path(self.config.out_dir)
        for base in [out / a for a in self.config.applications] + [out / "gmail-delegates"]:
            if base.is_dir():
                for tmp in base.rglob(".*.ndjson.gz.tmp"):
                    tmp.unlink(missing_ok=True)

    def _collect_application(self, app: str, since_start: datetime, end: datetime, run_id: str,
                             checkpoint: Checkpoint, result: CollectResult) -> dict[str, Any]:
        cfg = self.config
        notes: list[str] = []
        done = None if cfg.from_scratch else checkpoint.get(app)
        start = since_start
        if done is not None and done - cfg.overlap > since_start:
            start = done - cfg.overlap
        oldest = end - RETENTION
        if start < oldest:
            notes.append(f"start moved from {rfc3339(start)} to {rfc3339(oldest)}: audit data reaches back 180 days")
            start = oldest
        info: dict[str, Any] = {"start": rfc3339(start), "end": rfc3339(end), "windows": [], "records": 0,
                                "duplicates": 0, "status": "ok", "notes": notes,
                                "resumed_from": rfc3339(done) if done else None}
        if start >= end:
            info["status"] = "up to date"
            return info
        step = min(cfg.window, MAX_WINDOW.get(app, DEFAULT_MAX_WINDOW))
        app_dir = Path(cfg.out_dir) / app
        seen = _SeenIndex(app_dir)
        ws = start
        while ws < end:
            we = min(ws + step, end)
            self.progress(f"{app}: {rfc3339(ws)} .. {rfc3339(we)}")
            writer = _WindowWriter(app_dir, run_id)
            win = {"start": rfc3339(ws), "end": rfc3339(we), "pages": 0, "records": 0, "duplicates": 0}
            try:
                for page in self.api.activities_pages(cfg.subject, app, ws, we, cfg.max_results):
                    win["pages"] += 1
                    for item in page.get("items") or []:
                        key = activity_key(item)
                        day = activity_day(item)
                        if key is not None:
                            day_seen = seen.for_day(day)
                            if key in day_seen:
                                win["duplicates"] += 1
                                continue
                            day_seen.add(key)
                        writer.write(day, _json_bytes(item) + b"\n")
                        win["records"] += 1
            except GoogleAPIError as exc:
                writer.abort()
                # activities of the failed window are not on disk: forget them so a later window can't skip them
                seen.days.clear()
                win["error"] = exc.as_dict()
                info["windows"].append(win)
                info["status"] = "error"
                result.errors.append({"source": "reports", "application": app, "window": [win["start"], win["end"]],
                                      **exc.as_dict(), "advice": advice_for(exc, self.account.client_id)})
                break
            except BaseException:
                writer.abort()
                raise
            files = writer.commit()
            checkpoint.set(app, we)
            result.files.extend(f for f in files if f not in result.files)
            info["windows"].append(win)
            info["records"] += win["records"]
            info["duplicates"] += win["duplicates"]
            result.records += win["records"]
            result.duplicates += win["duplicates"]
            seen.forget_before(we.strftime("%Y-%m-%d"))
            ws = we
        info["checkpoint"] = rfc3339(checkpoint.get(app)) if checkpoint.get(app) else None
        return info

    def _snapshot_delegates(self, started: datetime, result: CollectResult) -> dict[str, Any]:
        cfg = self.config
        info: dict[str, Any] = {"file": None, "users": 0, "users_with_delegates": 0, "delegates": 0, "errors": 0}
        try:
            users = [u for u in self.api.users(cfg.subject, cfg.customer, cfg.users_page_size)
                     if u.get("primaryEmail")]
        except GoogleAPIError as exc:
            result.errors.append({"source": "directory", **exc.as_dict(),
                                  "advice": advice_for(exc, self.account.client_id)})
            info["error"] = exc.as_dict()
            return info
        stop = threading.Event()
        scope_problem: list[TokenError] = []

        def one(user: dict) -> dict[str, Any]:
            email = user["primaryEmail"]
            row: dict[str, Any] = {"user": email, "delegates": None}
            if stop.is_set():
                row["error"] = {"status": 0, "reason": "skipped",
                                "message": "not attempted: the Gmail scope is not granted to the service account"}
            else:
                try:
                    row["delegates"] = self.api.delegates(email)
                except TokenError as exc:
                    if exc.scope_not_granted:
                        stop.set()
                        scope_problem.append(exc)
                    row["error"] = exc.as_dict()
                except GoogleAPIError as exc:
                    row["error"] = exc.as_dict()
            if user.get("suspended"):
                row["suspended"] = True
            row["collected_at"] = rfc3339(self.now())
            return row

        name = started.strftime("%Y%m%dT%H%M%SZ")
        path = Path(cfg.out_dir) / "gmail-delegates" / f"{name}.ndjson.gz"
        n = 1
        while path.exists():  # two runs within one second: never overwrite a snapshot
            n += 1
            path = path.with_name(f"{name}-{n}.ndjson.gz")
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")
        with ThreadPoolExecutor(max_workers=max(1, cfg.workers)) as pool, gzip.open(tmp, "wb") as f:
            for i, row in enumerate(pool.map(one, users), 1):
                f.write(_json_bytes(row) + b"\n")
                info["users"] += 1
                if row["delegates"]:
                    info["users_with_delegates"] += 1
                    info["delegates"] += len(row["delegates"])
                if "error" in row:
                    info["errors"] += 1
                    if not (scope_problem and row["error"]["reason"] == "skipped"):
                        result.errors.append({"source": "gmail-delegates", "user": row["user"], **row["error"]})
                if i % 200 == 0:
                    self.progress(f"gmail delegates: {i}/{len(users)} users")
        os.replace(tmp, path)
        if scope_problem:
            exc = scope_problem[0]
            result.errors.append({"source": "gmail-delegates", **exc.as_dict(),
                                  "advice": advice_for(exc, self.account.client_id)})
        info["file"] = str(path.relative_to(Path(cfg.out_dir)))
        result.snapshot = path
        result.files.append(path)
        return info


@contextlib.contextmanager
def _run_lock(path: Path) -> Iterator[None]:
    """One collector run per output folder at a time (advisory lock, released if the process dies)."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        yield
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise ConfigError(f"another collector run is using {path.parent.parent}") from None
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


# -------------------------------------------------------------------------------------------- advice

def dwd_advice(scope: str, client_id: str) -> str:
    return (f"grant scope {scope} in Admin console → Security → Access and data control → API controls → "
            f"Domain-wide delegation for client id {client_id}")


def advice_for(exc: GoogleAPIError, client_id: str, scope: str | None = None) -> str:
    """How to fix a failed call, in the operator's words."""
    if isinstance(exc, TokenError):
        if exc.reason == "unauthorized_client":
            return dwd_advice(exc.scope or scope or "?", client_id)
        if exc.reason == "invalid_grant":
            return (f"the subject {exc.subject} cannot be impersonated: it must be an existing, active user of the "
                    "domain (check --subject; for per-user calls the user may be deleted or suspended), and the "
                    "machine's clock must be right")
        return f"the token endpoint refused the request ({exc.reason}); check the key file and the client id {client_id}"
    if exc.reason in ("accessNotConfigured", "SERVICE_DISABLED"):
        return ("enable the API (Admin SDK API / Gmail API) in the Google Cloud project of the service account: "
                "Google Cloud console → APIs & Services → Library")
    if exc.status == 403 and exc.reason in ("insufficientPermissions", "ACCESS_TOKEN_SCOPE_INSUFFICIENT"):
        return dwd_advice(scope or "the missing scope", client_id)
    if exc.status in (401, 403):
        return ("the impersonated admin lacks the privilege: --subject must be a super admin, or hold an admin "
                "role with Reports (audit) and Users → Read privileges")
    if exc.status == 400:
        return "the request was refused as invalid (time window or parameters); see the message"
    if exc.status == 404:
        return "not found: the application name, customer or user does not exist"
    if exc.status == 429 or exc.reason in THROTTLE_REASONS:
        return "still throttled after retries: run again later, or lower --workers"
    return "see the message; rerun continues from the checkpoint"
