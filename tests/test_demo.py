"""End to end on the demo tenants.

* ``make demo``: a small simulated tenant (the Makefile's ``DEMO_SIM``): every scenario found, nothing at
  medium or above on background records, every file read cleanly (its labels are the expectations);
* ``examples/demo``: the hand-made sample in every UAL export dialect (used by other tests too): every
  attack record that a rule covers is evidence in a finding, and no benign look-alike is
  (examples/demo/EXPECTED.md, written by scripts/make_demo.py)."""

from __future__ import annotations

import re

import pytest

from delegatewatch.detections.rules import load_rules
from delegatewatch.engine.hunt import hunt
from delegatewatch.events.principals import Directory
from tests.conftest import DEMO, ROOT

ROW = re.compile(r"^\|[^|]*\|[^|]*\| `([0-9a-f-]{36})` \| [^|]* \| ([^|]+?) \|", re.M)
BENIGN = re.compile(r"^\| [^|]* \| `([0-9a-f-]{36})` \| [^|]* \| ([^|]+?) \|", re.M)


def _tables():
    text = (DEMO / "EXPECTED.md").read_text()
    attacks_part, benign_part = text.split("## Benign look-alikes", 1)
    attacks = ROW.findall(attacks_part.split("## Attack records", 1)[1])
    benign = BENIGN.findall(benign_part)
    return attacks, benign


@pytest.fixture(scope="module")
def result():
    return hunt([str(DEMO)], directory=Directory.load(str(DEMO / "directory.csv")),
                exclude=[str(DEMO / "directory.csv")])


def test_expected_tables_parse():
    attacks, benign = _tables()
    assert len(attacks) >= 15 and len(benign) >= 8


def test_every_attack_a_rule_covers_is_found(result):
    covered = {op.lower() for r in load_rules() for op in r.operations}
    evidence = {e.record_id for f in result.findings for e in f.evidence}
    attacks, _ = _tables()
    missed = [(rid, op) for rid, op in attacks if op.strip().lower() in covered and rid not in evidence]
    assert not missed


def test_no_benign_look_alike_is_reported(result):
    evidence = {e.record_id for f in result.findings for e in f.evidence}
    _, benign = _tables()
    assert not [(rid, op) for rid, op in benign if rid in evidence]


def test_demo_reads_cleanly(result):
    s = result.stats
    assert s.skipped == 0 and s.warnings == 0
    assert sorted(d for _, d in s.files_read) == sorted(
        ["json-array", "ndjson", "ndjson", "purview-csv", "purview-classic-csv", "powershell-csv", "json-array"])
    assert s.duplicates >= 3  # records exported twice count once
    assert {p.rsplit("/", 1)[-1] for p, _ in s.files_skipped} == {"EXPECTED.md"}  # the directory is not evidence


def test_directory_resolves_guid_grantees(result):
    grant = next(f for f in result.findings if f.evidence[0].record_id == "54404c32-a76f-4b18-999d-08dc1369fb20")
    assert grant.mailbox == "dana.whitfield@contoso.com" and grant.grantee == "mark.ross@contoso.com"
    assert grant.raw == {"mailbox": "6305e988-e051-4b7e-ba06-1c2fb260a3c7", "grantee": "6c031de9-957a-4a54-8a4c-d6ee00deecc3"}
    assert grant.names["mailbox"] == "Dana Whitfield"


def test_guest_and_external_grants_are_louder(result):
    by_id = {f.evidence[0].record_id: f for f in result.findings}
    guest = by_id["488d0b1e-4311-4c27-8ba4-08dcf4afd9cc"]
    external = by_id["a413d3f8-0927-4f7d-9fed-08dc24380781"]
    assert guest.grantee_kind == "guest" and "grantee is a guest" in guest.reasons
    assert external.grantee_kind == "external" and guest.severity == external.severity == "critical"


# -- make demo: the simulated tenant ---------------------------------------------------------------------
def _demo_sim_args() -> list[str]:
    m = re.search(r"^DEMO_SIM := (.+)$", (ROOT / "Makefile").read_text(), re.M)
    assert m, "the Makefile names the demo tenant in DEMO_SIM"
    return m.group(1).split()


@pytest.fixture(scope="module")
def simulated(tmp_path_factory):
    from click.testing import CliRunner

    from delegatewatch import config
    from delegatewatch.cli import main

    out = tmp_path_factory.mktemp("demo-tenant")
    res = CliRunner().invoke(main, ["simulate", *_demo_sim_args(), "--out", str(out)])
    assert res.exit_code == 0, res.output
    config.use(config.load(str(out / "delegatewatch.toml")))
    try:
        result = hunt([str(out / "evidence")], directory=Directory.load(str(out / "directory.csv")))
    finally:
        config.use(config.Config())
    return out, result


def test_simulated_demo_reads_cleanly(simulated):
    _, result = simulated
    s = result.stats
    assert s.skipped == 0 and s.warnings == 0 and not s.files_skipped


def test_simulated_demo_finds_every_scenario_and_keeps_background_quiet(simulated):
    from delegatewatch.evaluate import evaluate
    from delegatewatch.simulate.labels import read_labels
    from delegatewatch.simulate.scenarios import SCENARIOS

    out, result = simulated
    _, instances = read_labels(out / "labels.json")
    score = evaluate(instances, [f.to_dict() for f in result.findings])
    assert set(score.scenarios) == set(SCENARIOS)
    assert all(s.instances_found == s.instances for s in score.scenarios.values()), \
        {n: s.missed for n, s in score.scenarios.items()}
    assert not score.background_at_or_above("medium")
    assert score.precision == 1.0
