"""Score findings against a simulation's labels: recall and precision per scenario and overall, and
the findings on background records (docs/simulate.md, "Evaluate").

Matching: a finding's evidence names a record by ``record_id`` and ``source`` (file) and ``line``.
Ids that are unique in the whole output (UAL ``Id``, Google ``uniqueQualifier``) match on their own;
every other label (Windows ``EventRecordID``, message-trace and snapshot rows, admin-audit entries)
matches when the evidence's file ends with the label's file and its line or id is the label's.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any

from delegatewatch.findings.model import SEVERITIES
from delegatewatch.simulate.labels import read_labels
from delegatewatch.simulate.model import Instance, LabelRecord

GLOBAL_ID_STREAMS = frozenset({"ual", "google"})


@dataclass
class ScenarioScore:
    scenario: str
    instances: int = 0
    instances_found: int = 0
    expected: int = 0  # expected detections: expected records + expected analytic findings
    expected_found: int = 0
    findings: int = 0  # findings attributed to the scenario's instances
    rule_findings: int = 0  # findings of the scenario's rules on it or on background records
    rule_findings_on_scenario: int = 0
    missed: list[str] = field(default_factory=list)

    @property
    def recall(self) -> float | None:
        return self.expected_found / self.expected if self.expected else None

    @property
    def precision(self) -> float | None:
        return self.rule_findings_on_scenario / self.rule_findings if self.rule_findings else None


@dataclass
class Evaluation:
    scenarios: dict[str, ScenarioScore]
    findings: int
    attributed: int
    background: list[dict[str, Any]]  # findings on no scenario record
    problems: list[str]  # unreadable finding lines (file:line: what)
    min_severity: str

    @property
    def precision(self) -> float | None:
        return self.attributed / self.findings if self.findings else None

    @property
    def recall(self) -> float | None:
        e = sum(s.expected for s in self.scenarios.values())
        return sum(s.expected_found for s in self.scenarios.values()) / e if e else None

    def background_at_or_above(self, severity: str) -> list[dict[str, Any]]:
        floor = SEVERITIES.index(severity)
        return [f for f in self.background if _rank(f) >= floor]

    def to_dict(self) -> dict[str, Any]:
        by_sev: dict[str, int] = defaultdict(int)
        for f in self.background:
            by_sev[f.get("severity", "?")] += 1
        return {
            "min_severity": self.min_severity, "findings": self.findings, "attributed": self.attributed,
            "precision": self.precision, "recall": self.recall,
            "scenarios": {name: {"instances": s.instances, "instances_found": s.instances_found,
                                 "expected": s.expected, "expected_found": s.expected_found, "recall": s.recall,
                                 "findings": s.findings, "rule_findings": s.rule_findings,
                                 "precision": s.precision, "missed": s.missed}
                          for name, s in self.scenarios.items()},
            "background_by_severity": dict(by_sev),
            "background": [{k: f.get(k) for k in ("id", "rule", "severity", "time", "mailbox", "grantee", "summary")}
                           for f in self.background],
            "problems": self.problems,
        }


def _rank(f: dict[str, Any]) -> int:
    sev = f.get("severity")
    return SEVERITIES.index(sev) if sev in SEVERITIES else 0


class _Index:
    def __init__(self, instances: list[Instance]) -> None:
        self.by_id: dict[str, list[tuple[Instance, LabelRecord]]] = defaultdict(list)
        self.by_file: dict[str, dict[str, list[tuple[Instance, LabelRecord]]]] = defaultdict(lambda: defaultdict(list))
        for inst in instances:
            for rec in inst.records:
                if rec.stream in GLOBAL_ID_STREAMS and rec.record_id:
                    self.by_id[rec.record_id].append((inst, rec))
                keyed = self.by_file[rec.file]
                if rec.line is not None:
                    keyed[f"line:{rec.line}"].append((inst, rec))
                if rec.record_id:
                    keyed[f"id:{rec.record_id}"].append((inst, rec))
        self.by_base: dict[str, list[str]] = defaultdict(list)
        for file in self.by_file:
            self.by_base[PurePosixPath(file).name].append(file)

    def hits(self, evidence: dict[str, Any]) -> list[tuple[Instance, LabelRecord]]:
        rid = str(evidence.get("record_id") or "")
        out = list(self.by_id.get(rid, ()))
        source = str(evidence.get("source") or "").replace("\\", "/")
        for file in self.by_base.get(PurePosixPath(source).name, ()):
            if source == file or source.endswith("/" + file):
                keyed = self.by_file[file]
                line = evidence.get("line")
                out += keyed.get(f"line:{line}", []) if line is not None else []
                out += keyed.get(f"id:{rid}", [])
        return out


def read_findings(path: str, problems: list[str]) -> Iterable[dict[str, Any]]:
    """Findings JSON lines (``hunt --format jsonl``); a bad line is reported and skipped."""
    with open(path, encoding="utf-8") as fh:
        for n, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                f = json.loads(line)
            except json.JSONDecodeError as exc:
                problems.append(f"{path}:{n}: not JSON ({exc.msg}); expected one finding object per line")
                continue
            if not isinstance(f, dict) or not isinstance(f.get("evidence"), list):
                problems.append(f"{path}:{n}: not a finding (expected an object with an \"evidence\" list)")
                continue
            yield f


def evaluate(instances: list[Instance], findings: Iterable[dict[str, Any]], *, min_severity: str = "low",
             problems: list[str] | None = None) -> Evaluation:
    """Score ``findings`` (dicts of the findings contract) against labelled ``instances``."""
    index = _Index(instances)
    floor = SEVERITIES.index(min_severity)
    found_records: set[int] = set()  # id() of LabelRecords hit
    rules_on: dict[str, set[str]] = defaultdict(set)  # instance id -> rules of findings attributed to it
    attributed_to: dict[str, set[str]] = defaultdict(set)  # instance id -> finding ids
    scen_of = {i.id: i.scenario for i in instances}
    rule_scenarios: dict[str, set[str]] = defaultdict(set)
    for inst in instances:
        for rule in inst.expect_rules:
            rule_scenarios[rule].add(inst.scenario)
        for rec in inst.records:
            if rec.expect and rec.rule:
                rule_scenarios[rec.rule].add(inst.scenario)
    scores = {name: ScenarioScore(name) for name in dict.fromkeys(i.scenario for i in instances)}
    total = attributed = 0
    background = []
    for f in findings:
        if _rank(f) < floor:
            continue
        total += 1
        on: set[str] = set()
        for ev in f.get("evidence") or []:
            if isinstance(ev, dict):
                for inst, rec in index.hits(ev):
                    found_records.add(id(rec))
                    on.add(inst.id)
        for iid in on:
            rules_on[iid].add(str(f.get("rule")))
            attributed_to[iid].add(str(f.get("id")))
        if on:
            attributed += 1
        else:
            background.append(f)
        on_scenarios = {scen_of[i] for i in on}
        for name in rule_scenarios.get(str(f.get("rule")), ()):
            if name in on_scenarios or not on_scenarios:  # a hit on another scenario is neither right nor wrong here
                scores[name].rule_findings += 1
                scores[name].rule_findings_on_scenario += name in on_scenarios
        for name in on_scenarios:
            scores[name].findings += 1
    for inst in instances:
        s = scores[inst.scenario]
        s.instances += 1
        expected = [r for r in inst.records if r.expect]
        hit = [r for r in expected if id(r) in found_records]
        rules = [r for r in inst.expect_rules if r in rules_on[inst.id]]
        s.expected += len(expected) + len(inst.expect_rules)
        s.expected_found += len(hit) + len(rules)
        missing = [f"{r.file}:{r.line or r.record_id}" for r in expected if id(r) not in found_records]
        missing += [f"{inst.id}: no {r} finding" for r in inst.expect_rules if r not in rules_on[inst.id]]
        if missing:
            s.missed.extend(missing)
        else:
            s.instances_found += 1
    return Evaluation(scores, total, attributed, background, problems or [], min_severity)


def evaluate_files(labels: str, findings: str, *, min_severity: str = "low") -> Evaluation:
    _, instances = read_labels(labels)
    problems: list[str] = []
    return evaluate(instances, list(read_findings(findings, problems)), min_severity=min_severity, problems=problems)
