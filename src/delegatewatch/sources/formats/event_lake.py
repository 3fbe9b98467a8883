"""The event lake as input: Parquet parts written by ``export-events --format lake``
(:mod:`delegatewatch.outputs.event_lake`), so a hunt can start from an existing lake.

Each row's ``raw_data`` is the record as it was first read and ``unmapped`` its provenance, so
the records come back with their original file, line, dialect and family: rules, analytics and
evidence are those of a hunt over the original files. Unified-audit-log rows pass the same byte
prefilter as NDJSON lines (``raw_data`` is compact JSON). A Parquet file without these columns is
skipped with a message; a row whose ``raw_data`` is not JSON is one skipped record.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import BinaryIO

import orjson
import pyarrow.parquet as pq

from delegatewatch.records import ReadStats, Record
from delegatewatch.records.prefilter import Prefilter
from delegatewatch.sources.opening import PARQUET_MAGIC, Opened
from delegatewatch.sources.registry import Reader

DIALECT = "event-lake"
COLUMNS = ("raw_data", "unmapped")
_BATCH = 8192


def detect(opened: Opened, head: bytes) -> bool:
    return head.startswith(PARQUET_MAGIC)


def read(path: str, stream: BinaryIO, stats: ReadStats, prefilter: Prefilter | None) -> Iterator[Record]:
    try:
        parquet = pq.ParquetFile(stream)
    except (OSError, ValueError) as exc:  # pyarrow's ArrowInvalid is a ValueError
        stats.issue(path, None, f"Parquet file cannot be read: {exc}", reason="unreadable Parquet")
        return
    names = parquet.schema_arrow.names
    if any(c not in names for c in COLUMNS):
        stats.issue(path, None, "Parquet file that is not a delegatewatch event lake (expected columns "
                    f"{', '.join(COLUMNS)}; found {', '.join(names[:8])})", reason="not an event lake")
        return
    row = 0
    for batch in parquet.iter_batches(batch_size=_BATCH, columns=list(COLUMNS)):
        for raw, where in zip(batch.column(0).to_pylist(), batch.column(1).to_pylist()):
            row += 1
            stats.records_seen += 1
            where = where or {}
            family = where.get("family") or "m365"
            if not isinstance(raw, str):
                stats.issue(path, None, f"row {row}: no raw_data", reason="lake row without raw_data")
                continue
            data = raw.encode()
            if prefilter is not None and family == "m365" and not prefilter.wants_line(data):
                continue
            try:
                record = orjson.loads(data)
            except orjson.JSONDecodeError as exc:
                stats.issue(path, None, f"row {row}: raw_data is not JSON ({exc})", reason="lake row not JSON")
                continue
            if not isinstance(record, dict):
                stats.issue(path, None, f"row {row}: raw_data is not a JSON object", reason="lake row not JSON")
                continue
            stats.records_parsed += 1
            yield Record(record, where.get("source") or path, where.get("line"), where.get("index") or row,
                         where.get("dialect") or DIALECT, family)


# family "m365": the hunt hands this reader the unified-audit-log prefilter (applied per row above)
READERS = [Reader(DIALECT, "m365", detect, read, priority=5)]
