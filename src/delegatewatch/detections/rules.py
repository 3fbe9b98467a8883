"""Loading the Sigma rules: parsed and validated by pySigma, compiled to DuckDB SQL.

A rule file is a standard Sigma rule plus two fields of ours (kept by pySigma as custom
attributes, ignored by other Sigma tools): ``runbook`` (what to check, in order) and
``tests`` (``positive`` / ``negative`` UAL records the rule must / must not match).

Compiling costs more than a small hunt (importing pySigma and YAML ≈ 0.6 s), so the compiled
form is cached per rule file content (``$XDG_CACHE_HOME/delegatewatch``, or
``$DELEGATEWATCH_CACHE``); any change to a file, or to this code's ``COMPILER_VERSION``,
compiles it again.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

#: Bump when the backend or the compiled fields change: old cache entries are then ignored.
COMPILER_VERSION = "3"


@dataclass
class Rule:
    id: str
    name: str  # file stem, stable
    title: str
    severity: str
    attack: list[str]
    description: str
    falsepositives: list[str]
    references: list[str]
    path: str
    sql: str
    fields: frozenset[str]
    operations: frozenset[str]  # Operation values the rule can match; empty = any
    #: lower-case strings of which a record must contain one to match; None = not known
    required: frozenset[str] | None = None
    #: which records the rule reads (from ``logsource.product``): "m365", "windows", "google" …
    family: str = "m365"
    runbook: str = ""
    tests: dict[str, list[dict[str, Any]]] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["fields"], d["operations"] = sorted(self.fields), sorted(self.operations)
        d["required"] = sorted(self.required) if self.required is not None else None
        return d

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Rule:
        d = dict(d)
        d["fields"], d["operations"] = frozenset(d["fields"]), frozenset(d["operations"])
        d["required"] = frozenset(d["required"]) if d.get("required") is not None else None
        return cls(**d)


class RuleError(ValueError):
    pass


def _cache_dir() -> Path | None:
    base = os.environ.get("DELEGATEWATCH_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"), "delegatewatch")
    return Path(base) / "rules" if base else None


def load_rule(path: Path, *, use_cache: bool = True) -> Rule:
    data = path.read_bytes()
    key = hashlib.sha256(COMPILER_VERSION.encode() + b"\0" + data).hexdigest()
    cache = _cache_dir() if use_cache else None
    cached = cache / f"{key}.json" if cache else None
    if cached is not None:
        try:
            rule = Rule.from_json(json.loads(cached.read_text(encoding="utf-8")))
            rule.path, rule.name = str(path), path.stem
            return rule
        except (OSError, ValueError, TypeError, KeyError):
            pass
    rule = compile_rule(path, data.decode("utf-8"))
    if cached is not None:
        try:
            cached.parent.mkdir(parents=True, exist_ok=True)
            tmp = cached.with_suffix(f".{os.getpid()}.tmp")
            tmp.write_text(json.dumps(rule.to_json()), encoding="utf-8")
            os.replace(tmp, cached)
        except OSError:
            pass  # a read-only home only costs the compile time
    return rule


def compile_rule(path: Path, text: str) -> Rule:
    """Parse and validate with pySigma, convert with the DuckDB backend."""
    from sigma.collection import SigmaCollection
    from sigma.exceptions import SigmaError
    from sigma.rule import SigmaRule

    from delegatewatch.detections.backend import DuckDBBackend

    try:
        collection = SigmaCollection.from_yaml(text)
        rules = [r for r in collection.rules if isinstance(r, SigmaRule)]
        if len(rules) != 1:
            raise RuleError(f"{path}: expected exactly one Sigma rule, found {len(rules)}")
        sigma = rules[0]
        if sigma.errors:
            raise RuleError(f"{path}: {sigma.errors[0]}")
        queries = DuckDBBackend().convert_rule(sigma)
    except SigmaError as exc:
        raise RuleError(f"{path}: invalid Sigma rule: {exc}") from exc
    if len(queries) != 1:
        raise RuleError(f"{path}: rule converts to {len(queries)} queries, expected 1")
    if sigma.level is None:
        raise RuleError(f"{path}: rule has no level")
    items = list(_detection_items(sigma.detection))
    operations = _operations(items)
    required = None
    if len(sigma.detection.parsed_condition) == 1:
        from delegatewatch.detections.literals import required_literals

        required = required_literals(sigma.detection.parsed_condition[0].parsed, operations)
    custom = sigma.custom_attributes or {}
    tests = custom.get("tests") or {}
    return Rule(
        id=str(sigma.id), name=path.stem, title=sigma.title, severity=sigma.level.name.lower(),
        attack=[t.name.upper() for t in sigma.tags if t.namespace == "attack" and t.name.lower().startswith("t")],
        description=(sigma.description or "").strip(), falsepositives=list(sigma.falsepositives or []),
        references=list(sigma.references or []), path=str(path), sql=str(queries[0]),
        fields=frozenset(i.field for i in items if i.field), operations=operations, required=required,
        family=family_of(sigma.logsource.product),
        runbook=str(custom.get("runbook") or "").strip(),
        tests={"positive": list(tests.get("positive") or []), "negative": list(tests.get("negative") or [])},
    )


#: Sigma ``logsource.product`` → record family (``sources.registry.Reader.family``).
PRODUCT_FAMILIES = {"m365": "m365", "office365": "m365", "azure": "m365", "exchange": "m365",
                    "windows": "windows", "google_workspace": "google", "gcp": "google", "gworkspace": "google"}


def family_of(product: str | None) -> str:
    if not product:
        return "m365"
    return PRODUCT_FAMILIES.get(product.lower(), product.lower())


def _detection_items(detections):  # noqa: ANN001, ANN202
    from sigma.rule import SigmaDetectionItem

    def walk(node):  # noqa: ANN001, ANN202
        if isinstance(node, SigmaDetectionItem):
            yield node
        else:
            for child in getattr(node, "detection_items", []):
                yield from walk(child)

    for det in detections.detections.values():
        yield from walk(det)


def _operations(items) -> frozenset[str]:  # noqa: ANN001
    from sigma.types import SigmaString

    ops: set[str] = set()
    for item in items:
        if item.field == "Operation":
            for v in item.value:
                if isinstance(v, SigmaString) and not v.contains_special():
                    ops.add(str(v))
                else:
                    return frozenset()  # a wildcard Operation: the prefilter cannot help this rule
    return frozenset(ops)


def builtin_rules_dir() -> Path:
    return Path(str(resources.files("delegatewatch.detections") / "rules"))


def load_rules(directory: Path | None = None, *, use_cache: bool = True) -> list[Rule]:
    directory = directory or builtin_rules_dir()
    rules = [load_rule(p, use_cache=use_cache) for p in sorted(directory.glob("*.yml"))]
    seen: dict[str, str] = {}
    for r in rules:
        if r.id in seen:
            raise RuleError(f"{r.path}: rule id {r.id} already used by {seen[r.id]}")
        seen[r.id] = r.path
    return rules
