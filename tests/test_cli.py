"""The command line contract: exit codes, JSON lines fields, safe CSV, no tracebacks."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys

import pytest
from click.testing import CliRunner

from delegatewatch.cli import main
from delegatewatch.outputs.csv_out import neutralise
from tests.conftest import DEMO, compact, ual

CONTRACT = {"id", "rule", "title", "severity", "time", "attack", "actor", "mailbox", "grantee", "rights", "summary",
            "evidence"}


def run(*args: str, env: dict | None = None):
    return CliRunner().invoke(main, list(args), env=env, catch_exceptions=False)


def test_jsonl_contract(tmp_path):
    out = tmp_path / "f.jsonl"
    r = run("hunt", str(DEMO), "--directory", str(DEMO / "directory.csv"), "--format", "jsonl", "-o", str(out), "-q")
    assert r.exit_code == 0
    lines = out.read_text().splitlines()
    assert lines
    for line in lines:
        f = json.loads(line)
        assert CONTRACT <= f.keys()
        assert f["severity"] in ("informational", "low", "medium", "high", "critical")
        assert f["time"].endswith("Z") and f["attack"] and all(t.startswith("T") for t in f["attack"])
        assert isinstance(f["rights"], list)
        for ev in f["evidence"]:
            assert {"source", "record_id", "time"} <= ev.keys()
            assert os.path.exists(ev["source"])


def test_no_findings_still_exits_zero(tmp_path):
    p = tmp_path / "quiet.ndjson"
    p.write_text(compact(ual("Remove-MailboxPermission")) + "\n")
    r = run("hunt", str(p))
    assert r.exit_code == 0 and "No findings" in r.output


def test_malformed_input_never_tracebacks(tmp_path):
    truncated = compact(ual(rid="d0000000-0000-0000-0000-000000000002"))[:-60]  # still names FullAccess
    (tmp_path / "a.ndjson").write_text(compact(ual()) + "\n" + truncated + "\n")
    (tmp_path / "b.bin").write_bytes(bytes(range(256)) * 50)
    (tmp_path / "c.csv").write_text('RecordId,CreationDate,RecordType,Operation,UserId,AuditData\nx,"y,1,2\n')
    (tmp_path / "empty.json").write_text("")
    r = run("hunt", str(tmp_path), "--format", "jsonl")
    assert r.exit_code == 0
    assert "Traceback" not in r.output
    assert "a.ndjson:2" in r.output  # file and line of the bad record
    assert "b.bin: binary file" in r.output.replace("\n", " ") or "binary file" in r.output
    assert json.loads(r.stdout.splitlines()[0])["rule"] == "m365_mailbox_full_access_grant"


def test_full_parse_reports_malformed_lines_no_rule_looks_at(tmp_path):
    p = tmp_path / "a.ndjson"
    p.write_text(compact(ual()) + "\n{broken\n")
    assert "a.ndjson:2" not in run("hunt", str(p)).output  # not a candidate: counted, not parsed
    r = run("hunt", str(p), "--full-parse")
    assert r.exit_code == 0 and "a.ndjson:2" in r.output and "1 skipped" in r.output


def test_missing_path_is_reported_not_fatal(tmp_path):
    r = run("hunt", str(tmp_path / "nope.json"))
    assert r.exit_code == 0 and "no such file" in r.output


@pytest.mark.parametrize("args", [["--directory", "{bad}"], ["--rules", "{rules}"]])
def test_cannot_run_exits_two(tmp_path, args):
    bad = tmp_path / "users.csv"
    bad.write_text("name\nx\n")
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "r.yml").write_text("title: x\ndetection: {}\n")
    args = [a.format(bad=bad, rules=rules) for a in args]
    p = tmp_path / "a.json"
    p.write_text(compact(ual()))
    r = run("hunt", str(p), *args)
    assert r.exit_code == 2 and "error" in r.output and "Traceback" not in r.output


@pytest.mark.parametrize("value", ["=HYPERLINK(\"http://x\")", "+1", "-2+3", "@SUM(A1)", "\tx", "\rx"])
def test_csv_neutralises_formulas(value):
    assert neutralise(value).startswith("'")
    assert neutralise("plain") == "plain"


def test_csv_output_with_attacker_controlled_rule_name(tmp_path):
    rule_rec = ual("New-InboxRule", Name="=cmd|' /C calc'!A0", DeleteMessage="True")
    p = tmp_path / "r.ndjson"
    p.write_text(compact(rule_rec) + "\n")
    out = tmp_path / "f.csv"
    assert run("hunt", str(p), "--format", "csv", "-o", str(out), "-q").exit_code == 0
    rows = list(csv.DictReader(io.StringIO(out.read_text())))
    assert rows and all(not v.startswith(("=", "+", "-", "@")) for row in rows for v in row.values())


def test_table_escapes_rich_markup(tmp_path):
    rec = ual("New-InboxRule", Name="[bold red]pwned[/]", DeleteMessage="True")
    p = tmp_path / "r.ndjson"
    p.write_text(compact(rec) + "\n")
    r = run("hunt", str(p), "--no-color")
    assert "[bold red]pwned[/]" in r.output


def test_rules_list_and_test():
    r = run("rules", "list")
    assert r.exit_code == 0 and "m365_mailbox_full_access_grant" in r.output
    r = run("rules", "test")
    assert r.exit_code == 0 and "0 failed" in r.output
    assert "Runbook" in run("rules", "list", "-v").output


def test_rules_test_fails_on_a_bad_rule(tmp_path):
    (tmp_path / "x.yml").write_text(
        "title: x\nid: 11111111-2222-3333-4444-555555555555\nlogsource: {product: m365}\nlevel: low\n"
        "detection:\n  sel:\n    Operation: A\n  condition: sel\n"
        "tests:\n  positive:\n    - {Operation: B}\n  negative:\n    - {Operation: C}\n")
    r = run("rules", "test", "--rules", str(tmp_path))
    assert r.exit_code == 1 and "FAIL" in r.output


def test_console_script_runs_and_honours_no_color(tmp_path):
    exe = os.path.join(os.path.dirname(sys.executable), "delegatewatch")
    p = tmp_path / "a.json"
    p.write_text(compact(ual()))
    out = subprocess.run([exe, "hunt", str(p)], capture_output=True, text=True, env={**os.environ, "NO_COLOR": "1"},
                         check=True)
    assert "\x1b[" not in out.stdout + out.stderr
    assert "m365_mailbox_full_access_grant" in out.stdout


def test_hunt_ocsf_format_writes_detection_findings(tmp_path):
    out = tmp_path / "f.ocsf.jsonl"
    assert run("hunt", str(DEMO), "--format", "ocsf", "-o", str(out), "-q").exit_code == 0
    lines = [json.loads(x) for x in out.read_text().splitlines()]
    assert lines and all(x["class_uid"] == 2004 for x in lines)


def test_export_events_cli(tmp_path):
    r = run("export-events", str(DEMO), "--format", "parquet", "-o", str(tmp_path / "lake"))
    assert r.exit_code == 0 and "User Access Management (3005)" in r.output
    assert list((tmp_path / "lake").rglob("eventDay=*/*.parquet"))
    r = run("export-events", str(DEMO), "--format", "parquet", "-o", "-")
    assert r.exit_code == 2 and "error" in r.output


@pytest.mark.parametrize("target,marker", [("splunk", "Add-MailboxPermission"), ("kusto", "OfficeActivity"),
                                           ("elasticsearch", "event.action"), ("databricks", "Add-MailboxPermission")])
def test_rules_export_cli(target, marker, tmp_path):
    out = tmp_path / "q.txt"
    r = run("rules", "export", "--target", target, "-o", str(out))
    assert r.exit_code == 0 and marker in out.read_text()
