"""The Google collector against a local fake of Google's token endpoint, Reports, Directory and Gmail APIs."""

from __future__ import annotations

import gzip
import json
import logging
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import requests
from click.testing import CliRunner

sys.path.insert(0, str(Path(__file__).parent))
import fake_google as fg  # noqa: E402

from delegatewatch.collectors.google import GoogleCollector, GoogleConfig, parse_since  # noqa: E402
from delegatewatch.collectors.google_cli import google_command  # noqa: E402

END = datetime(2024, 5, 20, 6, 0, tzinfo=UTC)
USERS = [f"user{i:02d}@example.com" for i in range(7)]


def make_fake(**kw) -> fg.FakeGoogle:
    fake = fg.FakeGoogle(
        users=[{"primaryEmail": u, "suspended": u == "user06@example.com"} for u in USERS],
        delegates={"user00@example.com": [{"delegateEmail": "user01@example.com", "verificationStatus": "accepted"}],
                   "user03@example.com": [{"delegateEmail": "assistant@example.com", "verificationStatus": "pending"},
                                          {"delegateEmail": "user01@example.com", "verificationStatus": "accepted"}]},
        user_errors={"user04@example.com": (403, "failedPrecondition", "Mail service not enabled"),
                     "user05@example.com": (404, "notFound", "Requested entity was not found.")},
        **kw)
    # admin: one every 5 h over 12 days; gmail: one every 3 h over 45 days (crosses the 30-day limit)
    fake.activities = {
        "admin": [fg.activity("admin", END - timedelta(hours=5 * i + 0.5), i) for i in range(58)],
        "gmail": [fg.activity("gmail", END - timedelta(hours=3 * i + 0.25), 1000 + i, actor=USERS[i % 7])
                  for i in range(360)],
        "token": [],
    }
    return fake


@pytest.fixture
def fake(tmp_path):
    f = make_fake()
    with fg.running(f):
        fg.write_service_account(tmp_path / "sa.json", f.token_uri)
        yield f


def config(fake, tmp_path, **kw) -> GoogleConfig:
    base = dict(credentials=tmp_path / "sa.json", subject=fake.admin, out_dir=tmp_path / "out",
                applications=("admin", "gmail"), since="12d", until=END, max_results=25,
                reports_url=fake.base, directory_url=fake.base, gmail_url=fake.base, backoff_base=0.001,
                backoff_cap=0.01, users_page_size=3)
    base.update(kw)
    return GoogleConfig(**base)


def read_out(out: Path, app: str) -> list[dict]:
    rows = []
    for f in sorted((out / app).rglob("*.ndjson.gz")):
        assert not f.name.startswith(".")
        with gzip.open(f, "rt", encoding="utf-8") as fh:
            rows += [json.loads(line) for line in fh]
    return rows


def key(a: dict) -> tuple[str, str]:
    return a["id"]["uniqueQualifier"], a["id"]["time"]


def expected(fake, app: str, start: datetime, end: datetime) -> dict:
    return {key(a): a for a in fake.activities[app] if start <= fg.parse(a["id"]["time"]) <= end}


def cli_args(fake, tmp_path, *extra: str) -> list[str]:
    return ["--credentials", str(tmp_path / "sa.json"), "--subject", fake.admin, "--out", str(tmp_path / "out"),
            "--until", "2024-05-20T06:00:00Z", "--max-results", "25", "--reports-url", fake.base,
            "--directory-url", fake.base, "--gmail-url", fake.base, *extra]


# -------------------------------------------------------------------------------------------- CLI e2e

def test_cli_collects_activities_unchanged_partitioned_by_day(fake, tmp_path):
    fake.throttle["/admin/reports/v1/activity/users/all/applications/admin"] = 2  # 429 twice, then fine
    res = CliRunner().invoke(google_command, cli_args(fake, tmp_path, "--applications", "admin,gmail,token",
                                                      "--since", "12d", "--max-results", "5", "--json"))
    assert res.exit_code == 0, res.output
    summary = json.loads(res.output)
    out = tmp_path / "out"
    start = END - timedelta(days=12)
    for app in ("admin", "gmail"):
        rows = read_out(out, app)
        want = expected(fake, app, start, END)
        assert {key(r) for r in rows} == set(want)
        assert len(rows) == len(want)  # no duplicates although adjacent windows share their boundary
        for r in rows:
            assert r == want[key(r)]  # the API's object, unchanged
    for f in (out / "gmail").rglob("*.ndjson.gz"):  # partitioned by the day of id.time
        with gzip.open(f, "rt") as fh:
            assert {json.loads(x)["id"]["time"][:10] for x in fh} == {f.parent.name}
    assert summary["records"] == sum(len(expected(fake, a, start, END)) for a in ("admin", "gmail"))
    manifest = json.loads((out / "google-manifest.json").read_text())
    assert manifest["applications"]["admin"]["status"] == "ok"
    assert manifest["applications"]["token"]["records"] == 0
    assert len(manifest["applications"]["gmail"]["windows"]) == 12  # --window 1d
    assert manifest["retries"] == 2
    assert sum(1 for r in fake.requests if r.get("throttled")) == 2
    # paging: 8 gmail activities a day, pages of 5
    assert any("pageToken" in r["query"] for r in fake.api_requests("/admin/reports"))
    # one scope per token request, the admin as the DWD subject
    assert {(t["sub"], t["scope"]) for t in fake.token_requests()} == {(fake.admin, fg.R)}


def test_gmail_windows_never_exceed_30_days(fake, tmp_path):
    cfg = config(fake, tmp_path, since="44d", window=timedelta(days=90))
    result = GoogleCollector(cfg).run_once()
    assert result.ok, result.errors
    gmail = fake.api_requests("/admin/reports/v1/activity/users/all/applications/gmail")
    spans = {(r["query"]["startTime"], r["query"]["endTime"]) for r in gmail}
    assert len(spans) == 2 and all(fg.parse(e) - fg.parse(s) <= timedelta(days=30) for s, e in spans)
    admin = {(r["query"]["startTime"], r["query"]["endTime"])
             for r in fake.api_requests("/admin/reports/v1/activity/users/all/applications/admin")}
    assert len(admin) == 1  # other applications take the whole span in one window
    assert len(read_out(tmp_path / "out", "gmail")) == len(expected(fake, "gmail", END - timedelta(days=44), END))


def test_fake_enforces_the_gmail_30_day_rule(fake, tmp_path):
    """Keeps the fake honest: a 31-day Gmail request is refused as the real API documents."""
    from delegatewatch.collectors.google import GoogleAPIError, GoogleAPI, GoogleHTTP, ServiceAccount

    api = GoogleAPI(GoogleHTTP(ServiceAccount.load(tmp_path / "sa.json"), max_retries=0), reports_url=fake.base)
    with pytest.raises(GoogleAPIError) as err:
        next(api.activities_pages(fake.admin, "gmail", END - timedelta(days=31), END))
    assert err.value.status == 400 and "30 days" in err.value.message


def test_rerun_resumes_from_checkpoint_without_duplicates(fake, tmp_path):
    first = GoogleCollector(config(fake, tmp_path, until=END - timedelta(days=3))).run_once()
    assert first.ok and first.records > 0
    cp = json.loads((tmp_path / "out" / ".state" / "google-checkpoint.json").read_text())
    assert cp["applications"]["gmail"]["collected_until"] == "2024-05-17T06:00:00.000Z"
    fake.requests.clear()
    second = GoogleCollector(config(fake, tmp_path)).run_once()
    assert second.ok
    starts = sorted(r["query"]["startTime"] for r in fake.api_requests("/admin/reports") if "pageToken" not in r["query"])
    assert starts[0] == "2024-05-17T05:00:00.000Z"  # checkpoint minus the 1 h overlap, not --since
    assert second.duplicates > 0  # the overlap was re-read and recognised
    for app in ("admin", "gmail"):
        rows = read_out(tmp_path / "out", app)
        # the first run's --since 12d counted back from its own --until
        assert len(rows) == len({key(r) for r in rows}) == len(expected(fake, app, END - timedelta(days=15), END))
    third = GoogleCollector(config(fake, tmp_path)).run_once()
    assert third.records == 0 and third.files == []  # only the overlap was re-read: nothing new to write


def test_failed_window_keeps_checkpoint_and_rerun_completes(fake, tmp_path):
    out = tmp_path / "out"
    stale = out / "gmail" / "2024-05-19" / ".20240101T000000Z-dead00.ndjson.gz.tmp"
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"half a file")
    # gmail answers 429 for good on its 5th request (max_retries=1 → gives up)
    calls = {"n": 0}
    original = fake.activities["gmail"]

    class Flaky(list):
        def __iter__(self):
            calls["n"] += 1
            if calls["n"] == 5:
                fake.throttle["/admin/reports/v1/activity/users/all/applications/gmail"] = 5
            return super().__iter__()

    fake.activities["gmail"] = Flaky(original)
    result = GoogleCollector(config(fake, tmp_path, max_retries=1)).run_once()
    assert not result.ok
    err = [e for e in result.errors if e.get("application") == "gmail"][0]
    assert err["status"] == 429 and err["reason"] == "rateLimitExceeded"
    assert not stale.exists()  # a dead run's temporary file is removed
    assert not list(out.rglob("*.tmp"))  # the failed window left nothing behind
    cp = json.loads((out / ".state" / "google-checkpoint.json").read_text())["applications"]
    assert cp["admin"]["collected_until"] == "2024-05-20T06:00:00.000Z"
    assert cp["gmail"]["collected_until"] < "2024-05-20T06:00:00.000Z"
    fake.throttle.clear()
    fake.activities["gmail"] = original
    again = GoogleCollector(config(fake, tmp_path)).run_once()
    assert again.ok
    rows = read_out(out, "gmail")
    assert len(rows) == len({key(r) for r in rows}) == len(expected(fake, "gmail", END - timedelta(days=12), END))


def test_expired_token_is_refreshed(fake, tmp_path):
    fake.token_uses = 3
    result = GoogleCollector(config(fake, tmp_path)).run_once()
    assert result.ok, result.errors
    assert len(fake.token_requests()) > 3
    assert len(read_out(tmp_path / "out", "admin")) == len(expected(fake, "admin", END - timedelta(days=12), END))


# ---------------------------------------------------------------------------------- Gmail delegates

def read_snapshot(path: Path) -> list[dict]:
    with gzip.open(path, "rt", encoding="utf-8") as fh:
        return [json.loads(line) for line in fh]


def test_gmail_delegates_snapshot(fake, tmp_path):
    fake.throttle_403["/admin/directory/v1/users"] = 1  # userRateLimitExceeded once
    fake.throttle["/gmail/v1/users/user02@example.com/"] = 1
    result = GoogleCollector(config(fake, tmp_path, applications=(), gmail_delegates=True)).run_once()
    snap = result.snapshot
    assert snap is not None and snap.parent.name == "gmail-delegates" and snap.name.endswith(".ndjson.gz")
    rows = {r["user"]: r for r in read_snapshot(snap)}
    assert list(rows) == sorted(USERS)  # every user of every users.list page (page size 3)
    assert rows["user00@example.com"]["delegates"] == fake.delegates["user00@example.com"]
    assert rows["user03@example.com"]["delegates"] == fake.delegates["user03@example.com"]
    assert rows["user02@example.com"]["delegates"] == []  # throttled once, then answered
    assert rows["user04@example.com"]["delegates"] is None and rows["user04@example.com"]["error"]["status"] == 403
    assert rows["user05@example.com"]["delegates"] is None and rows["user05@example.com"]["error"]["status"] == 404
    assert rows["user06@example.com"]["suspended"] is True
    assert all(r["collected_at"].endswith("Z") for r in rows.values())
    assert {e["user"] for e in result.errors} == {"user04@example.com", "user05@example.com"}
    # each user's delegates were read with that user as the DWD subject and only the Gmail scope
    gmail_tokens = {t["sub"] for t in fake.token_requests() if t["scope"] == fg.G}
    assert gmail_tokens == set(USERS)
    users_pages = fake.api_requests("/admin/directory/v1/users")
    assert sum(1 for r in users_pages if not r.get("throttled")) == 3
    manifest = json.loads(result.manifest.read_text())
    assert manifest["gmail_delegates"]["users"] == 7 and manifest["gmail_delegates"]["errors"] == 2
    # a second snapshot in the same second gets its own file
    again = GoogleCollector(config(fake, tmp_path, applications=(), gmail_delegates=True),
                            now=lambda: datetime(2024, 5, 20, 6, 0, tzinfo=UTC)).run_once()
    again2 = GoogleCollector(config(fake, tmp_path, applications=(), gmail_delegates=True),
                             now=lambda: datetime(2024, 5, 20, 6, 0, tzinfo=UTC)).run_once()
    assert again.snapshot != again2.snapshot and again.snapshot.exists() and again2.snapshot.exists()


def test_gmail_scope_not_granted_stops_early_with_advice(tmp_path):
    f = make_fake(granted_scopes={fg.R, fg.D})
    with fg.running(f):
        fg.write_service_account(tmp_path / "sa.json", f.token_uri)
        result = GoogleCollector(config(f, tmp_path, gmail_delegates=True, workers=1)).run_once()
    assert result.records > 0  # the Reports API part still ran
    advice = [e for e in result.errors if e.get("advice")]
    assert len(advice) == 1
    assert "grant scope https://www.googleapis.com/auth/gmail.settings.basic" in advice[0]["advice"]
    assert "113057194847293861740" in advice[0]["advice"]
    assert len([t for t in f.token_requests() if t["scope"] == fg.G]) == 1  # not one failure per user


def test_cli_exit_codes(fake, tmp_path):
    fake.app_errors["token"] = (403, "forbidden", "Not Authorized to access this resource/api")
    res = CliRunner().invoke(google_command, cli_args(fake, tmp_path, "--applications", "admin,token"))
    assert res.exit_code == 1
    assert "Not Authorized" in res.output and "super admin" in res.output
    bad = tmp_path / "bad.json"
    bad.write_text('{"type": "authorized_user"}')
    res = CliRunner().invoke(google_command, ["--credentials", str(bad), "--subject", "a@example.com",
                                              "--out", str(tmp_path / "o2")])
    assert res.exit_code == 2 and "not a service-account key file" in res.output
    res = CliRunner().invoke(google_command, cli_args(fake, tmp_path, "--since", "yesterday"))
    assert res.exit_code == 2


# ------------------------------------------------------------------------------------------- secrets

def test_secrets_never_in_outputs_logs_or_errors(tmp_path, caplog):
    f = make_fake(granted_scopes={fg.R, fg.D})
    f.app_errors["token"] = (500, "backendError", "boom")
    f.token_uses = 2
    caplog.set_level(logging.DEBUG)
    with fg.running(f):
        info = fg.write_service_account(tmp_path / "sa.json", f.token_uri)
        res = CliRunner().invoke(google_command, cli_args(f, tmp_path, "--applications", "admin,token",
                                                          "--gmail-delegates", "--since", "3d", "--max-retries", "1"))
        res_json = CliRunner().invoke(google_command, cli_args(f, tmp_path, "--applications", "admin",
                                                               "--since", "3d", "--json"))
    assert res.exit_code == 1
    assert f.tokens, "the fake issued tokens"
    texts = [res.output, res_json.output, caplog.text]
    for p in (tmp_path / "out").rglob("*"):
        if p.is_file() and p.name != "google.lock":
            data = gzip.decompress(p.read_bytes()) if p.name.endswith(".gz") else p.read_bytes()
            texts.append(data.decode("utf-8", "replace"))
    blob = "\n".join(texts)
    key_lines = [ln for ln in info["private_key"].splitlines() if not ln.startswith("-----")]
    assert key_lines and not any(ln in blob for ln in key_lines)
    assert info["private_key_id"] not in blob
    assert not any(tok in blob for tok in f.tokens)
    assert "BEGIN PRIVATE KEY" not in blob


def test_repr_of_account_hides_the_key(tmp_path):
    from delegatewatch.collectors.google import ServiceAccount

    info = fg.write_service_account(tmp_path / "sa.json", "http://127.0.0.1:9/token")
    acct = ServiceAccount.load(tmp_path / "sa.json")
    assert info["private_key"].splitlines()[1] not in repr(acct)
    assert acct.redactor(f"x {info['private_key']} y") == "x *** y"


def test_parse_since():
    now = datetime(2024, 5, 20, tzinfo=UTC)
    assert parse_since("7d", now) == now - timedelta(days=7)
    assert parse_since("2024-05-01", now) == datetime(2024, 5, 1, tzinfo=UTC)


def test_http_requests_are_real(fake):
    """The fake is a real HTTP server (sanity: an unauthenticated call gets Google's 401 shape)."""
    r = requests.get(f"{fake.base}/admin/reports/v1/activity/users/all/applications/admin", timeout=5)
    assert r.status_code == 401 and r.json()["error"]["status"] == "UNAUTHENTICATED"
