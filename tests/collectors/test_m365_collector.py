"""The M365 collector end to end against the local fake Management Activity API (real msal, real httpx)."""

from __future__ import annotations

import datetime as dt
import gzip
import json
import os
import subprocess
import sys
from collections import Counter
from datetime import datetime, timedelta
from pathlib import Path

import pytest

httpx = pytest.importorskip("httpx")
pytest.importorskip("msal")
pytest.importorskip("trustme")

from click.testing import CliRunner
from fake_o365 import (
    CLIENT_ID,
    PUBLISHER,
    TENANT,
    Reply,
    api_error,
    grant_record,
    populate,
    throttle_403,
    throttle_429,
)

from delegatewatch.collectors import timewindows as tw
from delegatewatch.collectors.checkpoint import StateStore
from delegatewatch.collectors.m365 import AuthError, M365Collector, M365Config
from delegatewatch.collectors.redact import Redactor
from delegatewatch.collectors.retry import RetryPolicy, parse_retry_after

SECRET = "dw-SECRET-7f3a+b/c==&q"
ROOT = Path(__file__).resolve().parents[2]
FAST = RetryPolicy(max_attempts=6, base_delay=0.02, max_delay=0.2)


def config(fake, out: Path, **kw) -> M365Config:
    base = dict(tenant=TENANT, client_id=CLIENT_ID, out=out, secret=SECRET, publisher_id=PUBLISHER,
                login_url=fake.base, api_url=fake.base, ca_bundle=str(fake.ca_file), retry=FAST)
    base.update(kw)
    return M365Config(**base)


def stored(out: Path) -> list[tuple[str, str, dict]]:
    """(content type, day folder, record) of every committed part file."""
    rows = []
    for f in sorted(out.glob("*/*/part-*.ndjson.gz")):
        with gzip.open(f, "rt", encoding="utf-8") as fh:
            for line in fh:
                rows.append((f.parent.parent.name, f.parent.name, json.loads(line)))
    return rows


def all_bytes(out: Path) -> bytes:
    """Every byte under ``out`` (part files decompressed), to search for leaked secrets."""
    chunks = []
    for f in out.rglob("*"):
        if f.is_file():
            data = f.read_bytes()
            chunks.append(gzip.decompress(data) if f.name.endswith(".gz") else data)
    return b"\n".join(chunks)


def secret_forms() -> list[str]:
    from urllib.parse import quote, quote_plus
    return [SECRET, quote_plus(SECRET), quote(SECRET, safe=""), "7f3a+b/c"]


def test_collects_everything_once_through_paging_throttling_and_token_expiry(make_fake, tmp_path):
    fake = make_fake(secret=SECRET, page_size=3)
    now = datetime.now(dt.UTC)
    data = populate(fake, now=now, blobs_per_type=14, records_per_blob=20, grants=6, expired=1)
    fake.subscriptions.clear()               # the collector must start them
    fake.start(tmp_path)
    fake.fault("blob", "*", throttle_403("1"), throttle_403(None), throttle_429("1"))
    fake.fault("list", "Audit.Exchange", throttle_403(None, "ListContent"))
    fake.expire_tokens_every = 17
    out = tmp_path / "out"

    with M365Collector(config(fake, out)) as collector:
        result = collector.run_once()

    rows = stored(out)
    ids = Counter(r["Id"] for _, _, r in rows)
    assert set(ids) == fake.expected_ids() == set(fake.served)        # nothing lost ...
    assert max(ids.values()) == 1                                       # ... nothing twice
    assert result.records == len(rows) and result.duplicates == data.duplicates
    assert sorted(result.files) == sorted(out.glob("*/*/part-*.ndjson.gz"))
    for ct, day, rec in rows:                                           # partitioned by type and CreationTime day
        assert day == rec["CreationTime"][:10]
        assert (ct == "Audit.Exchange") == (rec["Workload"] == "Exchange")
    # API behaviour
    assert fake.stats["subscription_started"] == 2
    assert fake.no_publisher == []                                      # PublisherIdentifier on every call, blobs too
    assert any("/api/v1/" in p and "nextPage=" in p for _, p in fake.requests)  # NextPageUri followed verbatim
    assert result.throttled == 4
    assert fake.stats["401"] >= 1 and fake.stats["tokens_issued"] >= 2  # expired token refreshed
    assert fake.stats["window_error"] == 0
    # the expired blob is reported, the run went on
    expired = [b for b in fake.blobs.values() if b.expired]
    assert [e.code for e in result.errors] == ["AF20051"]
    assert result.errors[0].content_id == expired[0].content_id
    manifest = json.loads((out / "manifest.json").read_text())
    assert [(b["content_id"], b["code"], b["status"]) for b in manifest["not_collected"]] == \
        [(expired[0].content_id, "AF20051", "failed")]
    assert "expired" in manifest["not_collected"][0]["reason"]
    for ct in ("Audit.Exchange", "Audit.AzureActiveDirectory"):
        entry = manifest["content_types"][ct]
        assert len(entry["windows_covered"]) == 1                       # one contiguous span ...
        span = entry["windows_covered"][0]
        covered = tw.parse(span["end"]) - tw.parse(span["start"])
        assert timedelta(days=6, hours=23) < covered <= timedelta(days=7)  # ... of (almost) 7 days
        assert entry["records"] == sum(1 for c, _, _ in rows if c == ct)
        assert entry["subscription"]["status"] == "enabled"
    assert manifest["content_types"]["Audit.Exchange"]["blobs"] == {"fetched": 13, "failed": 1, "to_retry": 0}

    # a second round: nothing new, nothing stored again, state kept in DIR
    with M365Collector(config(fake, out)) as collector:
        again = collector.run_once()
    assert (again.records, again.files, again.errors) == (0, [], [])
    assert len(stored(out)) == len(rows)

    # and `delegatewatch hunt` over the output finds the grants the fake served
    from delegatewatch.cli import main
    findings_file = tmp_path / "findings.jsonl"
    res = CliRunner().invoke(main, ["hunt", str(out), "--format", "jsonl", "-o", str(findings_file), "-q"])
    assert res.exit_code == 0, res.output
    findings = [json.loads(x) for x in findings_file.read_text().splitlines()]
    found = {e["record_id"] for f in findings for e in f["evidence"]}
    assert set(data.grants) and set(data.grants) <= found


def test_new_content_is_picked_up_by_the_next_round(make_fake, tmp_path):
    fake = make_fake(secret=SECRET)
    now = datetime.now(dt.UTC)
    populate(fake, now=now, blobs_per_type=4, records_per_blob=5, grants=1, expired=0,
             content_types=("Audit.Exchange",))
    fake.start(tmp_path)
    out = tmp_path / "out"
    with M365Collector(config(fake, out, content_types=("Audit.Exchange",))) as collector:
        first = collector.run_once()
        assert first.records == 20
        # a blob that becomes available a little later, holding one new record and one already stored
        old = next(iter(fake.blobs.values())).records[0]
        new = grant_record("0e0e0e0e-0000-4000-8000-000000000001", now, "fullaccess", "cfo@contoso.com",
                           "mallory@contoso.com")
        fake.add_blob("Audit.Exchange", datetime.now(dt.UTC) - timedelta(seconds=1), [new, old])
        second = collector.run_once()
    assert (second.records, second.duplicates) == (1, 1)
    assert len(second.files) == 1 and second.files[0].exists()
    assert sorted(r["Id"] for _, _, r in stored(out)) == sorted(fake.expected_ids())


def test_certificate_credentials(make_fake, tmp_path, monkeypatch):
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.x509.oid import NameOID

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "delegatewatch-test")])
    now = datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - timedelta(days=1))
            .not_valid_after(now + timedelta(days=30)).sign(key, hashes.SHA256()))
    cert_pem = cert.public_bytes(serialization.Encoding.PEM)
    pem = tmp_path / "app.pem"
    pem.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                      serialization.BestAvailableEncryption(b"pass-phrase-42")) + cert_pem)
    fake = make_fake(certificate_pem=cert_pem)
    populate(fake, now=now, blobs_per_type=2, records_per_blob=5, grants=0, expired=0)
    fake.start(tmp_path)
    out = tmp_path / "out"
    with M365Collector(config(fake, out, secret=None, certificate=pem, certificate_passphrase="pass-phrase-42")) as c:
        result = c.run_once()
    assert result.records == 20 and result.complete
    assert fake.stats["assertion_ok"] >= 1   # signed with the key, x5t = SHA-1 thumbprint of the certificate

    # through the command line, passphrase from the environment
    from delegatewatch.collectors.m365_cli import m365_command
    monkeypatch.setenv("APP_PEM_PASS", "pass-phrase-42")
    res = CliRunner().invoke(m365_command, [
        "--tenant", TENANT, "--client-id", CLIENT_ID, "--certificate", str(pem),
        "--certificate-passphrase-env", "APP_PEM_PASS", "--out", str(tmp_path / "cli"), "--since", "3d",
        "--publisher-id", PUBLISHER, "--login-url", fake.base, "--api-url", fake.base,
        "--ca-bundle", str(fake.ca_file), "-q"])
    assert res.exit_code == 0, res.output
    assert "stored 20 record(s)" in res.output
    assert "pass-phrase-42" not in res.output


def test_window_rules_of_the_fake_and_a_skewed_clock(make_fake, tmp_path):
    fake = make_fake(secret=SECRET)
    now = datetime.now(dt.UTC)
    populate(fake, now=now, blobs_per_type=8, records_per_blob=3, grants=0, expired=0,
             content_types=("Audit.Exchange",), span=timedelta(days=6, hours=20))
    fake.start(tmp_path)
    # the fake enforces the documented rules (AF20055)
    with M365Collector(config(fake, tmp_path / "probe", content_types=("Audit.Exchange",))) as c:
        token = c.tokens.token()
    feed = f"{fake.base}/api/v1.0/{TENANT}/activity/feed/subscriptions/content?contentType=Audit.Exchange"
    with httpx.Client(verify=__import__("ssl").create_default_context(cafile=str(fake.ca_file))) as client:
        def code(query: str) -> str:
            r = client.get(feed + query + f"&PublisherIdentifier={PUBLISHER}",
                           headers={"Authorization": f"Bearer {token}"})
            return r.json()["error"]["code"] if r.status_code >= 400 else str(r.status_code)
        f = tw.api_fmt
        assert code(f"&startTime={f(now - timedelta(hours=25))}&endTime={f(now)}") == "AF20055"
        assert code(f"&startTime={f(now - timedelta(days=7, hours=1))}&endTime={f(now - timedelta(days=6, hours=2))}") == "AF20055"
        assert code(f"&startTime={f(now - timedelta(hours=2))}") == "AF20055"
        assert code(f"&startTime={f(now - timedelta(hours=24))}&endTime={f(now)}") == "200"

    # a collector whose clock is 2 h behind asks for a start more than 7 days back: the oldest window
    # is refused (AF20055), recorded with its window, and the rest is collected
    out = tmp_path / "out"
    skewed = lambda: datetime.now(dt.UTC) - timedelta(hours=2)
    with M365Collector(config(fake, out, content_types=("Audit.Exchange",), clock=skewed)) as c:
        result = c.run_once()
    assert [e.code for e in result.errors] == ["AF20055"]
    assert result.errors[0].window is not None
    assert 0 < result.records < 24
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["errors"][0]["code"] == "AF20055" and manifest["errors"][0]["window"]["start"]


def test_blob_uri_on_another_host_gets_no_token(make_fake, tmp_path):
    fake = make_fake(secret=SECRET)
    now = datetime.now(dt.UTC)
    populate(fake, now=now, blobs_per_type=2, records_per_blob=2, grants=0, expired=0,
             content_types=("Audit.Exchange",))
    evil = fake.add_blob("Audit.Exchange", now - timedelta(hours=1), [])
    evil.uri = "https://attacker.example/steal"
    fake.start(tmp_path)
    with M365Collector(config(fake, tmp_path / "out", content_types=("Audit.Exchange",))) as c:
        result = c.run_once()
    assert [(e.code, e.content_id) for e in result.errors] == [("foreign-host", evil.content_id)]
    assert result.records == 4


def test_transient_blob_failure_is_retried_next_round(make_fake, tmp_path):
    fake = make_fake(secret=SECRET)
    now = datetime.now(dt.UTC)
    populate(fake, now=now, blobs_per_type=3, records_per_blob=4, grants=0, expired=0,
             content_types=("Audit.Exchange",))
    fake.start(tmp_path)
    victim = sorted(fake.blobs.values(), key=lambda b: b.created)[1]
    fake.fault("blob", victim.content_id, *[api_error(503, "AF50000", "An internal server error occurred.")] * 6)
    out = tmp_path / "out"
    with M365Collector(config(fake, out, content_types=("Audit.Exchange",))) as c:
        first = c.run_once()
        assert first.records == 8 and [e.code for e in first.errors] == ["AF50000"]
        manifest = json.loads((out / "manifest.json").read_text())
        assert manifest["not_collected"][0]["status"] == "retry"
        second = c.run_once()
    assert second.records == 4 and second.complete
    assert sorted(r["Id"] for _, _, r in stored(out)) == sorted(fake.expected_ids())


def test_interrupted_commit_leaves_nothing_behind(make_fake, tmp_path, monkeypatch):
    """A crash after the part files are in place but before the checkpoint commit (the window a
    kill -9 can hit): the next run removes the files and fetches those blobs again."""
    fake = make_fake(secret=SECRET)
    now = datetime.now(dt.UTC)
    populate(fake, now=now, blobs_per_type=6, records_per_blob=5, grants=0, expired=0)
    fake.start(tmp_path)
    out = tmp_path / "out"
    real_commit = StateStore.commit
    calls = {"n": 0}

    def crashing_commit(self, *a, **kw):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt("simulated crash inside the commit")
        return real_commit(self, *a, **kw)

    monkeypatch.setattr(StateStore, "commit", crashing_commit)
    with pytest.raises(KeyboardInterrupt):
        with M365Collector(config(fake, out, batch_blobs=2)) as c:
            c.run_once()
    # simulate what a kill leaves: the renamed part files of the failed batch (abort removed ours)
    orphan = out / "Audit.Exchange" / "2000-01-01" / "part-00000999.ndjson.gz"
    orphan.parent.mkdir(parents=True)
    orphan.write_bytes(gzip.compress(b'{"Id":"x"}\n'))
    (orphan.parent / ".part-00001000.ndjson.gz.tmp").write_bytes(b"partial")
    monkeypatch.setattr(StateStore, "commit", real_commit)
    with M365Collector(config(fake, out, batch_blobs=2)) as c:
        result = c.run_once()
    assert result.removed_uncommitted == 2 and not orphan.exists()
    ids = Counter(r["Id"] for _, _, r in stored(out))
    assert set(ids) == fake.expected_ids() and max(ids.values()) == 1


def test_secret_never_appears_even_when_the_token_endpoint_echoes_it(make_fake, tmp_path):
    fake = make_fake(secret=SECRET)
    now = datetime.now(dt.UTC)
    populate(fake, now=now, blobs_per_type=2, records_per_blob=3, grants=1, expired=1)
    fake.echo_token_errors = True
    fake.fault("token", "*", Reply(400, {"error": "invalid_request", "error_description": "AADSTS900144: bad."}))
    fake.start(tmp_path)
    out = tmp_path / "out"
    env = {**os.environ, "DW_TEST_SECRET": SECRET, "PYTHONPATH": str(ROOT / "src")}
    cmd = [sys.executable, "-m", "delegatewatch.collectors.m365_cli", "--tenant", TENANT, "--client-id", CLIENT_ID,
           "--secret-env", "DW_TEST_SECRET", "--out", str(out), "--publisher-id", PUBLISHER, "--login-url", fake.base,
           "--api-url", fake.base, "--ca-bundle", str(fake.ca_file), "--retry-base-delay", "0.01", "-v"]
    failed = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=60)
    assert failed.returncode == 2
    assert "AADSTS900144" in failed.stderr and "Request body" in failed.stderr   # the echo was there ...
    ok = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=60)
    assert ok.returncode == 1, ok.stderr                     # ... and a normal run (the expired blob → exit 1)
    manifest = (out / "manifest.json").read_text()
    assert "AADSTS900144" in manifest
    everything = failed.stdout + failed.stderr + ok.stdout + ok.stderr + all_bytes(out).decode("utf-8", "replace")
    for form in secret_forms():
        assert form not in everything
    assert "client_secret=***" in failed.stderr

    # the Python API: the AuthError message is redacted too
    fake.fault("token", "*", Reply(401, {"error": "invalid_client", "error_description": "nope"}))
    with M365Collector(config(fake, tmp_path / "api-out")) as c, pytest.raises(AuthError) as info:
        c.run_once()
    assert "client_secret=***" in str(info.value) and SECRET not in str(info.value)


def test_missing_secret_variable_and_bad_options():
    from delegatewatch.collectors.m365_cli import m365_command
    runner = CliRunner()
    res = runner.invoke(m365_command, ["--tenant", TENANT, "--client-id", CLIENT_ID, "--secret-env", "NOPE_DW_VAR",
                                       "--out", "x"], env={"NOPE_DW_VAR": ""})
    assert res.exit_code == 2 and "NOPE_DW_VAR is not set" in res.output
    res = runner.invoke(m365_command, ["--tenant", TENANT, "--client-id", CLIENT_ID, "--out", "x"])
    assert res.exit_code == 2 and "exactly one of" in res.output
    res = runner.invoke(m365_command, ["--tenant", TENANT, "--client-id", CLIENT_ID, "--secret-env", "V",
                                       "--out", "x", "--since", "soon"])
    assert res.exit_code == 2 and "duration" in res.output
    res = runner.invoke(m365_command, ["--tenant", TENANT, "--client-id", CLIENT_ID, "--secret-env", "V",
                                       "--out", "x", "--content-types", "Audit.Nope"])
    assert res.exit_code == 2 and "Audit.Nope" in res.output


# ---------------------------------------------------------------------------- small parts
def test_retry_after_and_backoff():
    assert parse_retry_after("7") == 7.0
    assert parse_retry_after(" 0 ") == 0.0
    assert parse_retry_after(None) is None and parse_retry_after("soon") is None and parse_retry_after("") is None
    when = datetime.now(dt.UTC) + timedelta(seconds=30)
    assert 25 < parse_retry_after(when.strftime("%a, %d %b %Y %H:%M:%S GMT")) <= 31
    policy = RetryPolicy(base_delay=1, max_delay=8, max_retry_after=60)
    for attempt in range(10):
        d = policy.backoff(attempt)
        step = min(8, 2 ** attempt)
        assert step / 2 <= d <= step
    assert policy.delay(0, "600") == 60 and policy.delay(0, "2") == 2


def test_redactor_covers_wire_spellings():
    r = Redactor(SECRET)
    from urllib.parse import quote_plus
    text = f"a {SECRET} b client_secret={quote_plus(SECRET)} c {json.dumps(SECRET)}"
    out = r(text)
    assert SECRET not in out and quote_plus(SECRET) not in out and out.count("***") == 3


def test_time_windows():
    t = lambda h: datetime(2026, 1, 1, tzinfo=dt.UTC) + timedelta(hours=h)
    assert tw.subtract((t(0), t(48)), [(t(10), t(20)), (t(30), t(60))]) == [(t(0), t(10)), (t(20), t(30))]
    assert tw.subtract((t(0), t(5)), []) == [(t(0), t(5))]
    assert tw.split((t(0), t(50)), timedelta(hours=24)) == [(t(0), t(24)), (t(24), t(48)), (t(48), t(50))]
    assert tw.trim_tail([(t(0), t(10))], timedelta(hours=1)) == [(t(0), t(9))]
    assert tw.merge([(t(5), t(9)), (t(0), t(5)), (t(20), t(21))]) == [(t(0), t(9)), (t(20), t(21))]
    assert tw.api_fmt(t(1)) == "2026-01-01T01:00:00" and tw.parse("2026-01-01T01:00:00Z") == t(1)
    assert isinstance(dt.timedelta, type)


def test_one_writer_per_folder(make_fake, tmp_path):
    from delegatewatch.collectors.m365 import CollectorError
    fake = make_fake(secret=SECRET)
    fake.start(tmp_path)
    with M365Collector(config(fake, tmp_path / "out")):
        with pytest.raises(CollectorError, match="another collector"):
            M365Collector(config(fake, tmp_path / "out"))
    M365Collector(config(fake, tmp_path / "out")).close()   # released with the first one
