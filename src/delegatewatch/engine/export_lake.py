"""``export-events --format lake``: every record of the inputs into the event lake
(:mod:`delegatewatch.outputs.event_lake`), one unit at a time.

A unit (a file, or a byte range of a large NDJSON file on Spark) is read in full (no prefilter:
the lake is for every later hunt, whatever its rules), mapped to typed events and written as one
Parquet part per event day. The embedded engine runs the units here in order; the Spark engine
(:mod:`delegatewatch.engine.spark_lake`) runs :func:`write_unit` as tasks. Nothing is
de-duplicated: a hunt over the lake de-duplicates as it does over the original files.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

from delegatewatch.engine.hunt import Unit
from delegatewatch.engine.spark_inputs import localised, plan, restore_record, restore_stats
from delegatewatch.events.principals import Directory, Resolver
from delegatewatch.outputs.event_lake import LakeWriter, rows, run_name
from delegatewatch.records import ReadStats
from delegatewatch.records.model import merge_stats
from delegatewatch.sources import read_file, read_range


@dataclass
class LakeResult:
    stats: ReadStats
    rows: int = 0
    days: Counter[str] = field(default_factory=Counter)
    files: list[str] = field(default_factory=list)

    def add(self, other: LakeResult) -> None:
        merge_stats(self.stats, other.stats)
        self.rows += other.rows
        self.days.update(other.days)
        self.files.extend(other.files)

    def summary(self) -> str:
        days = sorted(d for d in self.days if d != "unknown")
        span = f"{days[0]} … {days[-1]}" if days else "no dated records"
        text = f"{self.rows} records → {len(self.files)} Parquet parts, {len(self.days)} event days ({span})"
        if self.days.get("unknown"):
            text += f"; {self.days['unknown']} records without a time in event_day=unknown"
        if self.stats.skipped:
            text += f"; {self.stats.skipped} unreadable records"
        return text


def count_lines(unit: Unit) -> int:
    """Newlines in a byte range unit (the next range's first line number, less one)."""
    n = 0
    with localised(unit) as local, open(local.path, "rb") as f:
        f.seek(local.start)
        left = (local.end or 0) - local.start
        while left > 0:
            block = f.read(min(left, 8 << 20))
            if not block:
                break
            n += block.count(b"\n")
            left -= len(block)
    return n


def write_unit(unit: Unit, part: str, root: str, directory: Directory | None = None,
               line_offset: int = 0) -> LakeResult:
    """Read one unit (``line_offset``: lines before a byte range) and write its lake parts."""
    stats = ReadStats()
    writer = LakeWriter(root, part)
    with localised(unit) as local:
        if local.end is None:
            records = read_file(local.path, stats)
        else:
            records = read_range(local.path, local.start, local.end, stats, None, local.dialect)

        def renamed():  # noqa: ANN202 - provenance names the unit's own path (or URI) and line
            for record in records:
                if local.path != unit.path:
                    restore_record(record, local.path, unit.path)
                if record.line is not None:
                    record.line += line_offset
                yield record

        for day, row in rows(renamed(), Resolver(directory), stats):
            writer.add(day, row)
        files = writer.close()
        restore_stats(stats, local.path, unit.path)
    return LakeResult(stats, sum(writer.days.values()), writer.days, files)


def export_lake(paths: Sequence[str], root: str, *, directory: Directory | None = None,
                exclude: Sequence[str] = ()) -> LakeResult:
    """Write the event lake of ``paths`` under ``root`` in this process (file by file)."""
    result = LakeResult(ReadStats())
    units = plan(paths, 1, result.stats, exclude)
    run = run_name()
    for i, unit in enumerate(units):
        result.add(write_unit(unit, f"part-{run}-{i:05d}", root, directory))
    return result
