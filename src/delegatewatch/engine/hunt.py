"""The hunt: every stage wired together, streaming and in batches.

sources (files → Record) → de-duplication by UAL ``Id`` → prefilter (only records whose
``Operation`` some rule names) → rules in DuckDB (batch) → typed events for the matches →
findings → context (severity) → sorted findings + read statistics.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from delegatewatch.detections.engine import RuleEngine
from delegatewatch.detections.rules import Rule, load_rules
from delegatewatch.events.model import Event
from delegatewatch.events.principals import Directory, Resolver
from delegatewatch.events.ual import UalMapper
from delegatewatch.findings.build import apply_context, build, sort_findings
from delegatewatch.findings.model import Finding
from delegatewatch.records import ReadStats, Record
from delegatewatch.records.prefilter import Prefilter
from delegatewatch.sources import read_paths

BATCH = 20_000


@dataclass
class HuntResult:
    findings: list[Finding]
    stats: ReadStats
    rules: list[Rule]
    candidates: int = 0
    by_severity: dict[str, int] = field(default_factory=dict)


def prefilter_for(rules: Sequence[Rule]) -> Prefilter | None:
    """None (parse everything) as soon as one rule does not name its operations."""
    if not rules or any(not r.operations for r in rules):
        return None
    return Prefilter.for_operations(set().union(*(r.operations for r in rules)))


def hunt(paths: Sequence[str], *, directory: Directory | None = None, rules: Sequence[Rule] | None = None,
         full_parse: bool = False, on_file: Callable[[str, int], None] | None = None) -> HuntResult:
    rules = list(rules) if rules is not None else load_rules()
    prefilter = None if full_parse else prefilter_for(rules)
    wanted = prefilter_for(rules)  # the exact test on parsed records, even with --full-parse
    engine = RuleEngine(rules)
    resolver = Resolver(directory)
    mapper = UalMapper(resolver)
    stats = ReadStats()
    seen_ids: set[str] = set()
    batch: list[Record] = []
    findings: list[Finding] = []
    events_by_finding: dict[str, Event | None] = {}
    candidates = 0

    def flush() -> None:
        for rule, i in engine.evaluate([r.data for r in batch]):
            record = batch[i]
            events = mapper.events(record)
            for f in build(rule, record, events):
                findings.append(f)
                events_by_finding[f.id] = next((e for e in events if getattr(e, "grantee", None)
                                                and e.grantee.name == f.grantee), events[0] if events else None)
        batch.clear()

    for record in read_paths(paths, stats, prefilter, on_file):
        rid = record.data.get("Id")
        if isinstance(rid, str) and rid:
            if rid in seen_ids:
                stats.duplicates += 1
                continue
            seen_ids.add(rid)
        if wanted is not None and not wanted.wants(record.data):
            continue
        candidates += 1
        mapper.observe(record.data)
        batch.append(record)
        if len(batch) >= BATCH:
            flush()
    flush()
    apply_context(findings, events_by_finding)
    result = HuntResult(sort_findings(findings), stats, rules, candidates)
    for f in result.findings:
        result.by_severity[f.severity] = result.by_severity.get(f.severity, 0) + 1
    return result
