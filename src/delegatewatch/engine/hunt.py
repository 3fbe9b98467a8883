"""The hunt: every stage wired together, streaming and in batches.

sources (files → Record) → de-duplication by UAL ``Id`` → prefilter (only records whose
``Operation`` some rule or analytics feed names) → rules in DuckDB (batch) → typed events for the
matches → findings, plus the whole-input analytics over the records fed to them → context
(severity) → allow-list → sorted findings → grant → use incidents + read statistics.

Work is cut into *units*: a whole file, or a byte range of a large plain NDJSON file. Units run
in worker processes when there is enough input to pay for them (the machine's cores are the
only way past one core's search and parsing speed); results are merged in input order, so
de-duplication, line numbers and findings are the same as a single-process run.
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from typing import Any

from delegatewatch.detections.engine import RuleEngine
from delegatewatch.detections.rules import Rule, load_rules
from delegatewatch.events.model import Event
from delegatewatch.events.principals import Directory, Resolver
from delegatewatch import config
from delegatewatch.analytics import (analytic_for, feeds_for, incident_feed, m365_feed_filters, m365_feed_names,
                                     m365_feed_needs, m365_feeds, reducer_for)
from delegatewatch.events.registry import mapper_for
from delegatewatch.findings.allow import apply_allow_list
from delegatewatch.findings.build import apply_context, build, sort_findings
from delegatewatch.findings.identities import Identities
from delegatewatch.findings.incidents import Incident, build_incidents, unreported
from delegatewatch.findings.model import Finding
from delegatewatch.records import ReadStats, Record
from delegatewatch.records.model import merge_stats
from delegatewatch.records.prefilter import Prefilter
from delegatewatch.sources import iter_files, read_file, read_range, split_points
from delegatewatch.sources.detect import detect
from delegatewatch.sources.registry import by_dialect
from delegatewatch.sources.opening import sniff

BATCH = 20_000
#: Files at least this large are split into ranges for parallel work (plain UTF-8 NDJSON only).
SPLIT_MIN = 64 << 20
#: A range is at most this large (more ranges than workers only for bigger files: every range costs
#: a DuckDB batch of its own, and more ranges balance the workers and move the progress bar).
UNIT_MAX = 1 << 30
#: Below this much input in total, worker processes cost more than they save.
PARALLEL_MIN = 32 << 20


@dataclass
class HuntResult:
    findings: list[Finding]
    stats: ReadStats
    rules: list[Rule]
    candidates: int = 0
    by_severity: dict[str, int] = field(default_factory=dict)
    #: the raw record behind every piece of evidence, by record id (for reports that show it)
    records: dict[str, dict] = field(default_factory=dict)
    #: grant → use incidents, most risky first (findings/incidents.py); every finding is in one
    incidents: list[Incident] = field(default_factory=list)
    #: uses and precursors read (analytics/incident_feed.py), and how many of them joined no grant
    activities: int = 0
    activities_unmatched: int = 0


@dataclass(frozen=True)
class Unit:
    path: str
    start: int = 0
    end: int | None = None  # None: the whole file, with dialect detection
    dialect: str = ""  # for a byte range: the (splittable) dialect detected for the whole file

    @property
    def size(self) -> int:
        return (self.end - self.start) if self.end is not None else os.path.getsize(self.path)


@dataclass
class UnitResult:
    stats: ReadStats
    lines: int  # lines in a range unit, to number the next range of the same file
    ids: list[str]  # Ids of candidate records, in order (cross-unit de-duplication)
    matches: list[tuple[int, Record]]  # (rule index, record)
    candidates: int = 0
    #: (analytics family, record or the analytic's reduced form of it) for every record an analytic
    #: wants (``delegatewatch.analytics``: ``reduce`` runs here, in the worker)
    collected: list[tuple[str, Any]] = field(default_factory=list)


def prefilter_for(rules: Sequence[Rule], *, literals: bool = True) -> Prefilter | None:
    """The prefilter for unified-audit-log records (other families are not prefiltered); None
    (parse everything) as soon as one such rule does not name its operations."""
    rules = [r for r in rules if r.family == "m365"]
    if not rules or any(not r.operations for r in rules):
        return None
    feeds = m365_feed_needs()  # operations analytics want: whole, or lines with a literal or a pattern
    operations = set().union(*(r.operations for r in rules)) | m365_feed_names()
    needed: dict[str, set[str] | None] = {}
    patterns: dict[str, str] = {}
    if literals:
        for op in {o.lower() for o in operations}:
            reqs = [r.required for r in rules if op in {o.lower() for o in r.operations}]
            need = feeds.get(op)
            if need is not None and need.whole or any(q is None for q in reqs):
                needed[op] = None
                continue
            needed[op] = set().union(*reqs, need.literals if need is not None else ())  # type: ignore[arg-type]
            if need is not None and need.pattern:
                patterns[op] = need.pattern
    return Prefilter.for_operations(operations, needed, patterns)


# -- one unit of work (in this process or a worker) ------------------------------------------
_worker: dict = {}


def _init_worker(rules: list[Rule], full_parse: bool) -> None:
    _worker.clear()
    _worker.update(rules=rules, full_parse=full_parse, wanted=prefilter_for(rules, literals=False),
                   prefilter=prefilter_for(rules))


def _scan(unit: Unit) -> UnitResult:
    rules: list[Rule] = _worker["rules"]
    wanted: Prefilter | None = _worker["wanted"]
    prefilter = None if _worker["full_parse"] else _worker["prefilter"]
    if "engine" not in _worker:
        _worker["engine"] = RuleEngine(rules)  # one DuckDB connection per process, made after fork
    engine: RuleEngine = _worker["engine"]
    index = {r.id: i for i, r in enumerate(rules)}
    stats = ReadStats(on_bytes=_worker.get("on_bytes"))
    records: Iterator[Record]
    if unit.end is None:
        records = read_file(unit.path, stats, prefilter)
    else:
        records = read_range(unit.path, unit.start, unit.end, stats, prefilter, unit.dialect)
    seen: set[str] = set()
    ids: list[str] = []
    batch: list[Record] = []
    matches: list[tuple[int, Record]] = []
    collected: list[tuple[str, Any]] = []
    reducers: dict[str, Callable | None] = {}
    feeds = m365_feeds()
    feed_filters = m365_feed_filters()
    candidates = 0

    def collect(family: str, record: Record) -> None:
        # the analytic's reduce runs here, in the worker: only its compact result is pickled back
        if family not in reducers:
            reducers[family] = reducer_for(family)
        reduce = reducers[family]
        item = reduce(record) if reduce is not None else record
        if item is not None:
            collected.append((family, item))

    def flush() -> None:
        for rule, i in engine.evaluate([r.data for r in batch], [r.family for r in batch]):
            matches.append((index[rule.id], batch[i]))
        batch.clear()

    for record in records:
        # De-duplication key: "_dedup" when a family's native id is not unique across sources
        # (Windows EventRecordID per computer and channel), else the record's "Id".
        rid = record.data.get("_dedup") or record.data.get("Id")
        if isinstance(rid, str) and rid:
            if rid in seen:
                stats.duplicates += 1
                continue
            seen.add(rid)
        if record.family != "m365":
            for feed in feeds_for(record.family, record.data):  # the family's analytic, the ledger …
                collect(feed, record)
        elif feeds:
            op = record.data.get("Operation")
            for feed in feeds.get(op.lower(), ()) if isinstance(op, str) else ():
                if feed not in feed_filters or feed_filters[feed](record.data):
                    collect(feed, record)
        if wanted is not None and record.family == "m365" and not wanted.wants(record.data):
            continue
        if isinstance(rid, str) and rid:
            ids.append(rid)
        candidates += 1
        batch.append(record)
        if len(batch) >= BATCH:
            flush()
    flush()
    stats.on_bytes = None  # results travel back from workers by pickling
    return UnitResult(stats, stats.records_seen if unit.end is not None else 0, ids, matches, candidates,
                      collected)


# -- planning and merging --------------------------------------------------------------------
def plan(paths: Sequence[str], jobs: int, stats: ReadStats, exclude: Sequence[str] = ()) -> list[Unit]:
    units: list[Unit] = []
    skip = {os.path.realpath(p) for p in exclude}
    files = [p for p in iter_files(paths) if os.path.realpath(p) not in skip]
    for path in files:
        if not os.path.exists(path):
            stats.skip_file(path, "no such file or folder")
            continue
        size = os.path.getsize(path)
        if jobs > 1 and size >= SPLIT_MIN:
            try:
                opened = sniff(path)
            except OSError:
                opened = None
            found = detect(opened) if opened is not None else None
            if (found is not None and found.dialect and not opened.gzip and opened.encoding == "utf-8"
                    and opened.bom == 0 and by_dialect(found.dialect).splittable):
                stats.files_read.append((path, found.dialect))
                units += [Unit(path, s, e, found.dialect) for s, e in split_points(path, max(jobs, -(-size // UNIT_MAX)))]
                continue
        units.append(Unit(path))
    return units


def _in_process(units: list[Unit], rules: list[Rule], full_parse: bool,
                on_bytes: Callable[[int], None] | None = None) -> Iterator[UnitResult]:
    _init_worker(rules, full_parse)
    _worker["on_bytes"] = on_bytes
    try:
        yield from map(_scan, units)
    finally:
        engine = _worker.pop("engine", None)
        if engine is not None:
            engine.close()  # no DuckDB threads may be alive when a later hunt forks workers


def _run_units(units: list[Unit], rules: list[Rule], full_parse: bool, jobs: int,
               on_bytes: Callable[[int], None] | None = None) -> Iterator[UnitResult]:
    total = sum(u.size for u in units)
    if jobs <= 1 or len(units) < 2 or total < PARALLEL_MIN:
        yield from _in_process(units, rules, full_parse, on_bytes)
        return
    # fork: workers start at once with everything imported. The parent holds no DuckDB connection.
    ctx = multiprocessing.get_context("fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn")
    done = 0
    try:
        with ProcessPoolExecutor(max_workers=jobs, mp_context=ctx, initializer=_init_worker,
                                 initargs=(rules, full_parse)) as pool:
            for result in pool.map(_scan, units):
                done += 1
                yield result
    except BrokenProcessPool:
        # A worker died (out of memory, killed): finish the remaining units here, slower but complete.
        yield from _in_process(units[done:], rules, full_parse)


def default_jobs() -> int:
    return max(1, min(os.cpu_count() or 1, 8))


def _correlate(result: HuntResult, fed: list[Record], resolver: Resolver) -> None:
    """Grant → use incidents from the final findings and the records the incident feed collected;
    the evidence records of their uses and precursors join ``result.records``."""
    cfg = config.current()
    if not cfg.incidents.enabled:
        return
    identities = Identities(resolver)
    identities.learn_all(result.records.values())
    identities.learn_all(r.data for r in fed)
    activities = unreported(incident_feed.activities(fed), result.findings)
    found = build_incidents(result.findings, activities, identities, cfg.incidents, cfg.allow)
    result.incidents, result.activities, result.activities_unmatched = found.incidents, found.activities, found.unmatched
    joined = {e.record_id for inc in found.incidents for s in inc.steps if s.finding is None for e in s.evidence}
    for r in fed:
        if r.record_id in joined:
            result.records.setdefault(r.record_id, r.data)


def hunt(paths: Sequence[str], *, directory: Directory | None = None, rules: Sequence[Rule] | None = None,
         full_parse: bool = False, jobs: int | None = None, exclude: Sequence[str] = (),
         on_progress: Callable[[str, int], None] | None = None) -> HuntResult:
    """Hunt ``paths`` (files and folders). ``exclude``: files not to read (the directory file when it
    sits among the evidence). ``on_progress(path, n)``: n more bytes of input are done."""
    rules = list(rules) if rules is not None else load_rules()
    jobs = default_jobs() if jobs is None else max(1, jobs)
    stats = ReadStats()
    units = plan(paths, jobs, stats, exclude)
    reported = [0]

    def on_bytes(n: int) -> None:  # in-process reading reports as it goes
        reported[0] += n
        if on_progress is not None:
            on_progress("", n)

    def on_unit(unit: Unit) -> None:
        if on_progress is not None:
            on_progress(unit.path, max(0, unit.size - reported[0]))  # the rest of the unit
        reported[0] = 0

    return merge(units, _run_units(units, rules, full_parse, jobs, on_bytes), rules, stats,
                 directory=directory, on_unit=on_unit)


def merge(units: Sequence[Unit], results: Iterable[UnitResult], rules: Sequence[Rule], stats: ReadStats, *,
          directory: Directory | None = None, on_unit: Callable[[Unit], None] | None = None) -> HuntResult:
    """The driver's half of every engine: ``results`` (one per unit, in unit order, from worker
    processes or Spark tasks) merged into one hunt — cross-unit de-duplication, line renumbering,
    events, findings, whole-input analytics, context, the allow-list and grant → use incidents."""
    rules = list(rules)
    resolver = Resolver(directory)
    mappers: dict[str, Any] = {}
    seen: set[str] = set()
    matched: list[tuple[int, Record]] = []
    collected: dict[str, list[Record]] = {}
    candidates = 0
    line_offset: dict[str, int] = {}

    for unit, result in zip(units, results):
        offset = line_offset.get(unit.path, 0) if unit.end is not None else 0
        merge_stats(stats, result.stats, offset)
        for rule_index, record in result.matches:
            rid = record.data.get("_dedup") or record.data.get("Id")
            if isinstance(rid, str) and rid in seen:
                continue  # the same record was already read from an earlier file or range
            if record.line is not None:
                record.line += offset
            matched.append((rule_index, record))
        renumbered = {id(r) for _, r in result.matches}  # one object may be both matched and collected
        for family, record in result.collected:
            if record.line is not None and offset and id(record) not in renumbered:
                record.line += offset
                renumbered.add(id(record))  # a record may feed several analytics
            collected.setdefault(family, []).append(record)
        before = len(seen)
        seen.update(result.ids)
        stats.duplicates += len(result.ids) - (len(seen) - before)
        candidates += result.candidates - (len(result.ids) - (len(seen) - before))
        if unit.end is not None:
            line_offset[unit.path] = offset + result.lines
        if on_unit is not None:
            on_unit(unit)

    findings: list[Finding] = []
    events_by_finding: dict[str, Event | None] = {}
    for _, record in matched:
        mapper = mappers.get(record.family) or mappers.setdefault(record.family, mapper_for(record.family, resolver))
        if hasattr(mapper, "observe"):
            mapper.observe(record.data)  # learn the tenant's domains before judging grantees external
    for rule_index, record in matched:
        events = mappers[record.family].events(record)
        for f in build(rules[rule_index], record, events):
            findings.append(f)
            events_by_finding[f.id] = next((e for e in events if getattr(e, "grantee", None)
                                            and e.grantee.name == f.grantee), events[0] if events else None)
    for family, records in collected.items():
        analyze = analytic_for(family)
        if analyze is not None:
            findings.extend(analyze(records, resolver))
    apply_context(findings, events_by_finding)
    findings = apply_allow_list(findings, config.current().allow)
    result = HuntResult(sort_findings(findings), stats, rules, candidates)
    for _, record in matched:
        result.records.setdefault(record.record_id, record.data)
    _correlate(result, collected.get(incident_feed.FAMILY, []), resolver)
    for f in result.findings:
        result.by_severity[f.severity] = result.by_severity.get(f.severity, 0) + 1
    return result
