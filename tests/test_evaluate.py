"""delegatewatch evaluate: the documented definitions of recall, precision and background findings,
on hand-made labels and findings (docs/simulate.md, "Evaluate")."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from delegatewatch.cli import main
from delegatewatch.evaluate import evaluate, evaluate_files
from delegatewatch.simulate.labels import LabelsError, read_labels, write_labels
from delegatewatch.simulate.model import Instance, LabelRecord


def rec(file: str, rid: str, line: int | None, stream: str = "ual", expect: bool = True, rule: str | None = None):
    return LabelRecord(file, rid, line, "2025-12-10T01:00:00Z", expect, stream, rule)


INSTANCES = [
    Instance("bec-1", "bec", "grant, rule, burst", [
        rec("ual/ual-2025-12-10.ndjson", "aaaa-1", 10, rule="m365_mailbox_full_access_grant"),
        rec("ual/ual-2025-12-10.ndjson", "aaaa-2", 20, rule="m365_inbox_rule_hiding"),
        rec("ual/ual-2025-12-10.ndjson", "aaaa-3", 30, expect=False),
        rec("message-trace/message-trace-2025-12-10.csv", "5", 5, stream="trace", expect=False),
    ], ["send_volume_burst"]),
    Instance("onprem_delegate-1", "onprem_delegate", "5136", [
        rec("windows/DC01-Security-2025-12-10.xml", "1000042", 7, stream="windows",
            rule="windows_5136_send_on_behalf_delegate"),
    ]),
]


def finding(rule: str, severity: str, *evidence: tuple[str, str, int | None], fid: str = "") -> dict:
    return {"id": fid or f"{rule}-{evidence[0][1]}", "rule": rule, "severity": severity, "summary": rule,
            "evidence": [{"source": s, "record_id": r, "time": None, "line": ln} for s, r, ln in evidence]}


def test_recall_counts_expected_records_and_expected_analytics():
    findings = [
        finding("m365_mailbox_full_access_grant", "high", ("/x/evidence/ual/ual-2025-12-10.ndjson", "aaaa-1", 10)),
        # a trace row is named by file and line (its record_id is "path:line")
        finding("send_volume_burst", "high", ("/x/evidence/message-trace/message-trace-2025-12-10.csv",
                                              "/x/evidence/message-trace/message-trace-2025-12-10.csv:5", 5)),
    ]
    score = evaluate(INSTANCES, findings)
    bec = score.scenarios["bec"]
    assert (bec.expected, bec.expected_found) == (3, 2)  # two expected records + the burst
    assert bec.instances_found == 0 and bec.missed == ["ual/ual-2025-12-10.ndjson:20"]
    assert score.scenarios["onprem_delegate"].expected_found == 0
    assert score.recall == pytest.approx(2 / 4)


def test_windows_ids_match_only_in_their_own_file():
    same_id_other_log = finding("windows_5136_send_on_behalf_delegate", "medium",
                                ("/e/windows/EXMBX01-MSExchangeManagement-2025-12-10.xml", "1000042", 7))
    right = finding("windows_5136_send_on_behalf_delegate", "medium",
                    ("C:\\e\\windows\\DC01-Security-2025-12-10.xml", "1000042", 7))
    assert evaluate(INSTANCES, [same_id_other_log]).scenarios["onprem_delegate"].expected_found == 0
    assert evaluate(INSTANCES, [right]).scenarios["onprem_delegate"].expected_found == 1


def test_precision_and_background():
    findings = [
        finding("m365_mailbox_full_access_grant", "high", ("ual/ual-2025-12-10.ndjson", "aaaa-1", 10)),
        finding("m365_mailbox_full_access_grant", "medium", ("ual/ual-2025-12-11.ndjson", "bbbb", 3)),
        finding("snapshot_full_access_standing", "informational", ("snapshots/m.csv", "4", 4)),
        finding("m365_folder_read_grant", "low", ("ual/ual-2025-12-12.ndjson", "cccc", 1)),
    ]
    score = evaluate(INSTANCES, findings)  # informational is below the default floor (low)
    assert score.findings == 3 and score.attributed == 1
    assert score.precision == pytest.approx(1 / 3)
    assert score.scenarios["bec"].precision == pytest.approx(1 / 2)  # its grant rule also fired on background
    assert [f["rule"] for f in score.background_at_or_above("medium")] == ["m365_mailbox_full_access_grant"]
    assert len(evaluate(INSTANCES, findings, min_severity="informational").background) == 3


def test_files_cli_and_bad_lines(tmp_path: Path):
    labels = tmp_path / "labels.json"
    write_labels(labels, {"seed": 1}, {}, INSTANCES)
    assert [i.id for i in read_labels(labels)[1]] == ["bec-1", "onprem_delegate-1"]
    findings = tmp_path / "f.jsonl"
    good = finding("m365_mailbox_full_access_grant", "high", ("ual/ual-2025-12-10.ndjson", "aaaa-1", 10))
    findings.write_text(json.dumps(good) + "\n{broken\n" + json.dumps({"rule": "x"}) + "\n")
    result = evaluate_files(str(labels), str(findings))
    assert result.findings == 1 and len(result.problems) == 2
    assert result.problems[0].startswith(f"{findings}:2: not JSON")
    assert result.problems[1].startswith(f"{findings}:3: not a finding")
    runner = CliRunner()
    res = runner.invoke(main, ["evaluate", "--labels", str(labels), "--findings", str(findings)])
    assert res.exit_code == 0 and "bec" in res.output and "skipped" in res.output
    res = runner.invoke(main, ["evaluate", "--labels", str(labels), "--findings", str(findings), "--check"])
    assert res.exit_code == 1  # instances were missed
    res = runner.invoke(main, ["evaluate", "--labels", str(findings), "--findings", str(findings)])
    assert res.exit_code == 2 and "labels" in res.output


def test_labels_file_must_be_labels(tmp_path: Path):
    p = tmp_path / "l.json"
    p.write_text('{"kind": "something else"}')
    with pytest.raises(LabelsError, match="not a simulation labels file"):
        read_labels(p)
