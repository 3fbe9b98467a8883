"""Loading the Sigma rules: parsed and validated by pySigma, compiled to DuckDB SQL once.

A rule file is a standard Sigma rule plus two fields of ours (kept by pySigma as custom
attributes, ignored by other Sigma tools): ``runbook`` (what to check, in order) and
``tests`` (``positive`` / ``negative`` UAL records the rule must / must not match).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from sigma.collection import SigmaCollection
from sigma.exceptions import SigmaError
from sigma.rule import SigmaDetectionItem, SigmaDetections, SigmaRule
from sigma.types import SigmaString

from delegatewatch.detections.backend import DuckDBBackend

SEVERITIES = ("informational", "low", "medium", "high", "critical")


@dataclass
class Rule:
    sigma: SigmaRule
    path: str
    sql: str
    fields: frozenset[str]
    operations: frozenset[str]  # Operation values the rule can match; empty = any
    runbook: str = ""
    tests: dict[str, list[dict[str, Any]]] = field(default_factory=dict)

    @property
    def id(self) -> str:
        return str(self.sigma.id)

    @property
    def name(self) -> str:
        return Path(self.path).stem

    @property
    def title(self) -> str:
        return self.sigma.title

    @property
    def severity(self) -> str:
        return self.sigma.level.name.lower() if self.sigma.level else "medium"

    @property
    def attack(self) -> list[str]:
        out = []
        for tag in self.sigma.tags:
            if tag.namespace == "attack" and tag.name.lower().startswith("t"):
                out.append(tag.name.upper())
        return out

    @property
    def falsepositives(self) -> list[str]:
        return list(self.sigma.falsepositives or [])


class RuleError(ValueError):
    pass


def _detection_items(detections: SigmaDetections):
    def walk(node):
        if isinstance(node, SigmaDetectionItem):
            yield node
        else:
            for child in getattr(node, "detection_items", []):
                yield from walk(child)
    for det in detections.detections.values():
        yield from walk(det)


def _operations(rule: SigmaRule) -> frozenset[str]:
    ops: set[str] = set()
    for item in _detection_items(rule.detection):
        if item.field == "Operation":
            for v in item.value:
                if isinstance(v, SigmaString) and not v.contains_special():
                    ops.add(str(v))
                else:
                    return frozenset()  # a wildcard Operation: the prefilter cannot help this rule
    return frozenset(ops)


def load_rule(path: Path, backend: DuckDBBackend | None = None) -> Rule:
    text = path.read_text(encoding="utf-8")
    try:
        collection = SigmaCollection.from_yaml(text)
        rules = [r for r in collection.rules if isinstance(r, SigmaRule)]
        if len(rules) != 1:
            raise RuleError(f"{path}: expected exactly one Sigma rule, found {len(rules)}")
        sigma = rules[0]
        if sigma.errors:
            raise RuleError(f"{path}: {sigma.errors[0]}")
        queries = (backend or DuckDBBackend()).convert_rule(sigma)
    except SigmaError as exc:
        raise RuleError(f"{path}: invalid Sigma rule: {exc}") from exc
    if len(queries) != 1:
        raise RuleError(f"{path}: rule converts to {len(queries)} queries, expected 1")
    fields = frozenset(i.field for i in _detection_items(sigma.detection) if i.field)
    custom = sigma.custom_attributes or {}
    tests = custom.get("tests") or {}
    if sigma.level is None:
        raise RuleError(f"{path}: rule has no level")
    return Rule(sigma=sigma, path=str(path), sql=str(queries[0]), fields=fields, operations=_operations(sigma),
                runbook=str(custom.get("runbook") or "").strip(),
                tests={"positive": list(tests.get("positive") or []), "negative": list(tests.get("negative") or [])})


def builtin_rules_dir() -> Path:
    return Path(str(resources.files("delegatewatch.detections") / "rules"))


def load_rules(directory: Path | None = None) -> list[Rule]:
    directory = directory or builtin_rules_dir()
    backend = DuckDBBackend()
    rules = [load_rule(p, backend) for p in sorted(directory.glob("*.yml"))]
    seen: dict[str, str] = {}
    for r in rules:
        if r.id in seen:
            raise RuleError(f"{r.path}: rule id {r.id} already used by {seen[r.id]}")
        seen[r.id] = r.path
    return rules
