"""delegatewatch simulate: real export shapes, read back without a skipped record, deterministic,
and the end-to-end hunt of a 30-day, 2,000-user tenant (every scenario found, a quiet background)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import orjson
import pytest
from click.testing import CliRunner

from delegatewatch import config
from delegatewatch.cli import main
from delegatewatch.engine.hunt import hunt
from delegatewatch.evaluate import evaluate
from delegatewatch.events.principals import Directory
from delegatewatch.findings.model import SEVERITIES
from delegatewatch.records import ReadStats
from delegatewatch.simulate.labels import read_labels
from delegatewatch.simulate.run import (
    CONFIG,
    DIRECTORY,
    EVIDENCE,
    LABELS,
    SimConfig,
    simulate,
)
from delegatewatch.simulate.scenarios import SCENARIOS
from delegatewatch.simulate.writers import FORMATS
from delegatewatch.sources import read_file

#: the end-to-end tenant: 2,000 users, 30 days; a quarter of the documented per-user rates keeps the
#: hunt well inside the test budget (~0.4 M records) while every habit is still there
E2E = SimConfig(users=2000, days=30, seed=11, density=0.25, jobs=2)


def tree_digest(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def hunt_tenant(out: Path):
    """Hunt as the organisation would: its directory and its allow-list of expected delegation."""
    config.use(config.load(str(out / CONFIG)))
    try:
        return hunt([str(out / EVIDENCE)], directory=Directory.load(str(out / DIRECTORY)))
    finally:
        config.use(config.Config())


@pytest.fixture(scope="module")
def every_format(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("sim-all")
    simulate(SimConfig(users=80, days=14, seed=3, formats=FORMATS), out)
    return out


# -- shapes from the real samples -----------------------------------------------------------------
def _ual_records(out: Path) -> list[dict]:
    return [orjson.loads(line) for p in sorted((out / EVIDENCE / "ual").glob("*.ndjson"))
            for line in p.read_bytes().splitlines()]


def test_ual_records_have_the_real_records_fields(corpus, tmp_path):
    simulate(SimConfig(users=80, days=14, seed=5), tmp_path)
    records = _ual_records(tmp_path)
    real = orjson.loads((corpus / "blueteam0ps-det-eng-samples" /
                         "t1098.002_Mail Account Delegation full access permissions.json").read_bytes())
    grant = next(r for r in records if r["Operation"] == "Add-MailboxPermission" and r["UserType"] == 2)
    assert set(real) <= set(grant)
    assert [p["Name"] for p in grant["Parameters"]][:4] == [p["Name"] for p in real["Parameters"]]
    group = [orjson.loads(line) for line in (corpus / "elastic-integrations-o365" / "test-exchange-item.log")
             .read_bytes().splitlines()]
    real_folder = next(r for r in group if r["Operation"] == "ModifyFolderPermissions")
    ours = next(r for r in records if r["Operation"] == "ModifyFolderPermissions" and r["UserId"] == "S-1-5-18")
    assert set(real_folder) - set(ours) <= {"MailboxOwnerMasterAccountSid"}
    assert set(real_folder["Item"]["ParentFolder"]) == set(ours["Item"]["ParentFolder"])
    assert ours["ClientInfoString"] == real_folder["ClientInfoString"]


def test_every_format_is_read_back_without_a_skipped_record(every_format):
    doc = json.loads((every_format / LABELS).read_text())
    assert {f.split("/")[0] for f in doc["files"]} >= {"ual", "ual-blobs", "message-trace", "windows",
                                                        "exchange-admin-audit", "google", "snapshots"}
    for rel, count in doc["files"].items():
        stats = ReadStats()
        path = every_format / EVIDENCE / rel
        records = list(read_file(str(path), stats))
        assert stats.skipped == stats.warnings == 0 and not stats.files_skipped, (rel, stats.issues[:3])
        if rel.startswith("snapshots/gmail-delegates"):  # the reader gives one record per delegate
            count = sum(len(orjson.loads(line)["delegates"]) for line in path.read_bytes().splitlines())
        assert len(records) == count, rel
    result = hunt_tenant(every_format)
    dialects = {d for _, d in result.stats.files_read}
    assert result.stats.skipped == 0 and not result.stats.files_skipped
    assert {"ndjson", "json-array", "purview-csv", "purview-classic-csv", "powershell-csv", "message-trace-csv",
            "windows-xml", "google-reports-json", "exchange-permission-snapshot-csv",
            "gmail-delegate-snapshot"} <= dialects, dialects


def test_labels_name_records_that_are_where_they_say(every_format):
    _, instances = read_labels(every_format / LABELS)
    assert {i.scenario for i in instances} == set(SCENARIOS)
    for inst in instances:
        assert inst.records, inst.id
        for rec in inst.records:
            path = every_format / EVIDENCE / rec.file
            if rec.line is not None:
                line = path.read_bytes().splitlines()[rec.line - 1].decode("utf-8-sig")
                if rec.stream in ("ual", "windows"):
                    assert rec.record_id in line, (rec.file, rec.line)
                assert line.strip(), rec
            else:
                assert rec.record_id.encode() in path.read_bytes()


# -- determinism ----------------------------------------------------------------------------------------
def test_same_seed_same_bytes_whatever_the_process_count(tmp_path):
    cfg = SimConfig(users=70, days=14, seed=9, formats=FORMATS)
    simulate(cfg, tmp_path / "a")
    simulate(SimConfig(**{**cfg.__dict__, "jobs": 2}), tmp_path / "b")
    a, b = tree_digest(tmp_path / "a"), tree_digest(tmp_path / "b")
    assert a == b
    simulate(SimConfig(**{**cfg.__dict__, "seed": 10}), tmp_path / "c")
    assert tree_digest(tmp_path / "c") != a


def test_scenarios_are_switchable(tmp_path):
    simulate(SimConfig(users=80, days=14, seed=4, scenarios=("google_dwd",)), tmp_path)
    _, instances = read_labels(tmp_path / LABELS)
    assert [i.scenario for i in instances] == ["google_dwd"]
    rules = {f.rule for f in hunt_tenant(tmp_path).findings if SEVERITIES.index(f.severity) >= 2}
    assert {"google_dwd_gmail_scopes", "google_mail_delegation_enabled", "snapshot_gmail_delegate_added"} <= rules
    # the other scenarios' detections stay silent when they are switched off
    assert not rules & {"m365_mailbox_full_access_grant", "internal_lure_campaign", "send_volume_burst"}


def test_background_alone_has_no_medium_finding(tmp_path):
    simulate(SimConfig(users=150, days=14, seed=8, scenarios=()), tmp_path)
    loud = [f for f in hunt_tenant(tmp_path).findings if SEVERITIES.index(f.severity) >= 2]
    assert not loud, [(f.rule, f.summary) for f in loud[:5]]


# -- the command line -------------------------------------------------------------------------------------
def test_cli_simulate_and_evaluate(tmp_path):
    runner = CliRunner()
    out = tmp_path / "t"
    res = runner.invoke(main, ["simulate", "--users", "80", "--days", "14", "--seed", "2", "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert "records" in res.output and "bec-1" in res.output
    findings = tmp_path / "f.jsonl"
    res = runner.invoke(main, ["hunt", str(out / EVIDENCE), "--directory", str(out / DIRECTORY), "--config",
                               str(out / CONFIG), "--format", "jsonl", "--output", str(findings), "--quiet"])
    assert res.exit_code == 0, res.output
    res = runner.invoke(main, ["evaluate", "--labels", str(out / LABELS), "--findings", str(findings),
                               "--format", "json", "--check"])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.output)
    assert doc["recall"] == 1.0 and doc["background_by_severity"].get("medium", 0) == 0


def test_cli_refuses_unknown_scenario_and_format(tmp_path):
    runner = CliRunner()
    res = runner.invoke(main, ["simulate", "--scenarios", "bec,nope", "--out", str(tmp_path / "x")])
    assert res.exit_code == 2 and "unknown scenario nope" in res.output
    res = runner.invoke(main, ["simulate", "--formats", "ual-ndjson,evtx", "--out", str(tmp_path / "x")])
    assert res.exit_code == 2 and "unknown format evtx" in res.output
    res = runner.invoke(main, ["simulate", "--days", "13", "--out", str(tmp_path / "x")])
    assert res.exit_code == 2
    res = runner.invoke(main, ["simulate", "--start", "12/01/2025", "--out", str(tmp_path / "x")])
    assert res.exit_code == 2 and "expected a date as YYYY-MM-DD" in res.output


def test_refuses_to_mix_with_an_earlier_simulation(tmp_path):
    (tmp_path / "evidence").mkdir()
    (tmp_path / "evidence" / "old.ndjson").write_text("{}\n")
    res = CliRunner().invoke(main, ["simulate", "--users", "60", "--out", str(tmp_path)])
    assert res.exit_code == 2 and "already holds files" in res.output


# -- end to end: 30 days, 2,000 users, every scenario ------------------------------------------------------
@pytest.fixture(scope="module")
def e2e(tmp_path_factory):
    out = tmp_path_factory.mktemp("sim-e2e")
    sim = simulate(E2E, out)
    return out, sim, hunt_tenant(out)


def test_e2e_reads_everything(e2e):
    _, sim, result = e2e
    assert sim.records > 300_000
    assert result.stats.skipped == 0 and result.stats.warnings == 0 and not result.stats.files_skipped
    assert len(result.stats.files_read) == len(sim.files)


def test_e2e_every_scenario_found_and_background_quiet(e2e):
    out, _, result = e2e
    _, instances = read_labels(out / LABELS)
    score = evaluate(instances, [f.to_dict() for f in result.findings])
    assert {s.scenario for s in score.scenarios.values()} == set(SCENARIOS)
    for s in score.scenarios.values():
        assert s.instances_found == s.instances, (s.scenario, s.missed)
    assert not score.background_at_or_above("medium"), [(f["rule"], f["summary"]) for f in score.background[:5]]
