"""``delegatewatch watch`` as a command: options, --once, exit codes, SIGTERM, secrets."""

from __future__ import annotations

import dataclasses
import json
import signal
import subprocess
import sys
import textwrap
import time
from datetime import timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner
from fakes import FakeCollector, batches_for_cli

from delegatewatch.watch import cli
from delegatewatch.watch.cli import (
    make_config,
    parse_duration,
    parse_extra_options,
    watch_command,
)

HERE = Path(__file__).parent


def test_parse_duration():
    assert parse_duration("5m") == 300 and parse_duration("30s") == 30 and parse_duration("1h") == 3600
    assert parse_duration("90") == 90 and parse_duration("250ms") == 0.25 and parse_duration("1d12h") == 129600
    for bad in ("soon", "", "5m x", "1 2"):
        with pytest.raises(ValueError):
            parse_duration(bad)


def test_extra_options_become_collector_config():
    assert parse_extra_options(["--tenant-id", "t1", "--dry-run", "--page-size=100"]) == \
        {"tenant_id": "t1", "dry_run": True, "page_size": "100"}


@dataclasses.dataclass
class Config:
    tenant_id: str
    page_size: int = 500
    verbose: bool = False
    out: Path | None = None
    since: timedelta = timedelta(days=7)
    content_types: tuple[str, ...] = ("Audit.Exchange",)
    secret: str | None = None
    secret_env: str | None = None


class Collector:
    def __init__(self, config: Config) -> None:
        self.config = config


def test_make_config_follows_the_collectors_declared_type():
    cfg = make_config(Collector, {"tenant_id": "t", "page_size": "100", "verbose": "true", "out": "/x"})
    assert cfg == Config("t", 100, True, Path("/x"))
    with pytest.raises(ValueError, match="unknown collector option"):
        make_config(Collector, {"tenant": "t"})


def test_make_config_durations_lists_and_secrets_from_the_environment(monkeypatch):
    monkeypatch.setenv("DW_TEST_SECRET", "s3cr3t-value")
    secrets: list[str] = []
    cfg = make_config(Collector, {"tenant_id": "t", "since": "1d12h", "content_types": "Audit.Exchange,Audit.General",
                                  "secret_env": "DW_TEST_SECRET"}, secrets)
    assert cfg.since == timedelta(hours=36) and cfg.content_types == ("Audit.Exchange", "Audit.General")
    assert cfg.secret == "s3cr3t-value" and cfg.secret_env == "DW_TEST_SECRET" and secrets == ["s3cr3t-value"]
    monkeypatch.delenv("DW_TEST_SECRET")
    with pytest.raises(ValueError, match="DW_TEST_SECRET"):
        make_config(Collector, {"tenant_id": "t", "secret_env": "DW_TEST_SECRET"})

    class Plain:
        def __init__(self, config: dict) -> None:
            pass

    assert make_config(Plain, {"a": 1}) == {"a": 1}


@pytest.fixture
def fake_source(tmp_path, monkeypatch):
    made = {}

    def build(source, config, secrets=None):
        made["config"] = config
        return FakeCollector(tmp_path / "collected", batches_for_cli())

    monkeypatch.setattr(cli, "build_collector", build)
    return made


def test_once_with_jsonl_and_hec_never_shows_the_token(tmp_path, http_server, fake_source, monkeypatch):
    token = "5e3b1c2a-aaaa-bbbb-cccc-tokentokentok"
    monkeypatch.setenv("SPLUNK_HEC_TOKEN", token)
    http_server.reply(503, '{"text":"Server is busy","code":9}')
    out = tmp_path / "f.jsonl"
    args = ["--source", "m365", "--state", str(tmp_path / "state"), "--once", "--log-level", "debug",
            "--sink", f"jsonl:{out}", "--sink", f"hec:{http_server.url},backoff=0.01",
            "--hec-token-env", "SPLUNK_HEC_TOKEN", "--tenant-id", "contoso"]
    result = CliRunner().invoke(watch_command, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert fake_source["config"] == {"tenant_id": "contoso"}
    assert len(out.read_text().splitlines()) == 2
    assert [r.status for r in http_server.requests] == [503, 200]
    assert "round 1" in result.output and "2 new finding(s)" in result.output
    assert token not in result.output
    for p in (tmp_path / "state").rglob("*"):
        assert token.encode() not in p.read_bytes(), p
    # Run again: nothing new, nothing resent.
    result = CliRunner().invoke(watch_command, args, catch_exceptions=False)
    assert result.exit_code == 0 and len(out.read_text().splitlines()) == 2 and len(http_server.requests) == 2


def test_once_exits_1_when_a_sink_failed_and_2_on_bad_options(tmp_path, http_server, fake_source):
    http_server.down = True
    args = ["--source", "m365", "--state", str(tmp_path / "state"), "--once",
            "--sink", f"webhook:{http_server.url}/services/T0/B0/SECRETPATH,retries=0"]
    result = CliRunner().invoke(watch_command, args)
    assert result.exit_code == 1 and "HTTP 503" in result.output
    assert "SECRETPATH" not in result.output  # a Slack/Teams webhook URL is a credential
    bad = CliRunner().invoke(watch_command, ["--source", "m365", "--state", str(tmp_path / "s2"), "--sink", "pigeon:x"])
    assert bad.exit_code == 2 and "unknown sink" in bad.output
    bad = CliRunner().invoke(watch_command, ["--source", "m365", "--state", str(tmp_path / "s3"), "--interval", "x"])
    assert bad.exit_code == 2


def test_missing_collector_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setitem(cli.COLLECTORS, "m365", ("delegatewatch.collectors_absent_xyz", "Nope"))
    r = CliRunner().invoke(watch_command, ["--source", "m365", "--state", str(tmp_path / "s"), "--once"])
    assert r.exit_code == 1 and "collector is not available" in r.output


SIGTERM_SCRIPT = textwrap.dedent("""
    import sys
    sys.path.insert(0, {here!r})
    from pathlib import Path
    from fakes import FakeCollector, batches_for_cli
    from delegatewatch.watch import cli
    cli.build_collector = lambda source, config, secrets=None: FakeCollector(Path({tmp!r}) / "collected", batches_for_cli())
    cli.watch_command.main(["--source", "m365", "--state", {state!r}, "--interval", "100ms",
                            "--sink", "stdout"], standalone_mode=True)
""")


def test_sigterm_stops_after_the_round(tmp_path):
    script = SIGTERM_SCRIPT.format(here=str(HERE), tmp=str(tmp_path), state=str(tmp_path / "state"))
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 20
    lines: list[bytes] = []
    while len(lines) < 2 and time.monotonic() < deadline:
        lines.append(proc.stdout.readline())
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, err.decode()[-2000:]
    assert len([json.loads(x) for x in lines + out.splitlines() if x.strip()]) == 2
    assert b"SIGTERM received" in err
