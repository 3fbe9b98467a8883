"""The event lake: every record read, normalised, as Parquet partitioned by event day.

Layout: ``<root>/event_day=YYYY-MM-DD/part-<run>-<unit>.parquet`` (Hive-style, so Spark, DuckDB's
``hive_partitioning`` and pandas/pyarrow datasets all see an ``event_day`` column); records
without a time go to ``event_day=unknown``. One row per record, OCSF-aligned:

* the OCSF attributes of the record's first exported event (:mod:`delegatewatch.outputs.ocsf_events`:
  User Access Management 3005, Email Activity 4009), or a Base Event (``class_uid`` 0, activity 99
  *Other*) for records whose events have no OCSF class here (mailbox access, inbox rules …) or
  none at all — the record is kept either way, so a hunt over the lake sees all of the input;
* ``raw_data``: the record as delegatewatch read it (JSON), which is what the rules and analytics
  read back (:mod:`delegatewatch.sources.formats.event_lake`);
* ``unmapped``: provenance (original source, line, position, dialect, family, record id) and the
  typed event's kind, mailbox, folder, scope and action.

Parts are named by run (UTC time first) and unit, so sorted file names replay the input order
within a day and later exports into the same lake sort after earlier ones.
"""

from __future__ import annotations

import posixpath
from collections import Counter
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.parquet as pq

from delegatewatch.events.model import Event, PermissionChange
from delegatewatch.events.principals import Resolver
from delegatewatch.events.registry import mapper_for
from delegatewatch.outputs.ocsf_events import to_ocsf
from delegatewatch.records import ReadStats, Record
from delegatewatch.records.times import parse_time
from delegatewatch.sources.uris import resolve

PARTITION = "event_day"
UNKNOWN_DAY = "unknown"
FLUSH_ROWS = 20_000
#: Keys that carry a record's time when none of its events does.
_TIME_KEYS = ("CreationTime", "TimeCreated", "SnapshotTime", "time", "Timestamp", "Received")

_USER = pa.struct([("name", pa.string()), ("uid", pa.string()), ("email_addr", pa.string())])
SCHEMA = pa.schema([
    ("time", pa.int64()),
    ("time_dt", pa.timestamp("ms", tz="UTC")),
    ("class_uid", pa.int32()),
    ("class_name", pa.string()),
    ("category_uid", pa.int32()),
    ("activity_id", pa.int32()),
    ("activity_name", pa.string()),
    ("type_uid", pa.int64()),
    ("severity_id", pa.int32()),
    ("status_id", pa.int32()),
    ("message", pa.string()),
    ("metadata", pa.struct([("version", pa.string()), ("uid", pa.string()), ("original_event_uid", pa.string()),
                            ("log_name", pa.string()), ("event_code", pa.string()),
                            ("product", pa.struct([("name", pa.string()), ("vendor_name", pa.string())]))])),
    ("actor", pa.struct([("user", _USER)])),
    ("user", _USER),
    ("privileges", pa.list_(pa.string())),
    ("raw_data", pa.string()),
    ("unmapped", pa.struct([("source", pa.string()), ("line", pa.int64()), ("index", pa.int64()),
                            ("dialect", pa.string()), ("family", pa.string()), ("record_id", pa.string()),
                            ("event_kind", pa.string()), ("mailbox", pa.string()), ("folder", pa.string()),
                            ("scope", pa.string()), ("action", pa.string())])),
])


def _user(u: dict[str, Any] | None) -> dict[str, Any] | None:
    return None if not u else {"name": u.get("name"), "uid": u.get("uid"), "email_addr": u.get("email_addr")}


def _record_time(record: Record, events: list[Event]) -> datetime | None:
    for ev in events:
        if ev.time is not None:
            return ev.time
    for key in _TIME_KEYS:
        when = parse_time(record.data.get(key))
        if when is not None:
            return when
    return None


def lake_row(record: Record, events: list[Event]) -> tuple[str, dict[str, Any]]:
    """(event day, row) for one record and its typed events."""
    ocsf, first = None, events[0] if events else None
    for ev in events:  # the first event with an OCSF class names the row's class
        ocsf = to_ocsf(ev, record.record_id)
        if ocsf is not None:
            first = ev
            break
    when = _record_time(record, events)
    if when is not None and when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    ms = int(when.timestamp() * 1000) if when is not None else None
    o = ocsf or {}
    meta = o.get("metadata") or {}
    row: dict[str, Any] = {
        "time": ms, "time_dt": when,
        "class_uid": o.get("class_uid", 0), "class_name": o.get("class_name", "Base Event"),
        "category_uid": o.get("category_uid", 0), "activity_id": o.get("activity_id", 99),
        "activity_name": o.get("activity_name", "Other"), "type_uid": o.get("type_uid", 99),
        "severity_id": o.get("severity_id", 1), "status_id": o.get("status_id"), "message": o.get("message"),
        "metadata": {"version": meta.get("version"), "uid": record.record_id,
                     "original_event_uid": record.record_id, "log_name": record.dialect,
                     "event_code": first.operation if first else _text(record.data.get("Operation")),
                     "product": meta.get("product")},
        "actor": {"user": _user((o.get("actor") or {}).get("user"))},
        "user": _user(o.get("user")),
        "privileges": o.get("privileges"),
        "raw_data": orjson.dumps(record.data, default=str).decode(),
        "unmapped": {"source": record.source, "line": record.line, "index": record.index, "dialect": record.dialect,
                     "family": record.family, "record_id": record.record_id,
                     "event_kind": first.kind if first else None,
                     "mailbox": _name(getattr(first, "mailbox", None)), "folder": getattr(first, "folder", None),
                     "scope": first.scope.value if isinstance(first, PermissionChange) else None,
                     "action": first.action.value if isinstance(first, PermissionChange) else None},
    }
    return (when.strftime("%Y-%m-%d") if when is not None else UNKNOWN_DAY), row


def _text(value: object) -> str | None:
    return value if isinstance(value, str) else None


def _name(principal: object) -> str | None:
    return getattr(principal, "name", None)


def rows(records: Iterable[Record], resolver: Resolver, stats: ReadStats) -> Iterator[tuple[str, dict[str, Any]]]:
    """(event day, row) for every record; a record no mapper understands is still written (as a
    Base Event) and counted as a warning naming its file and line."""
    mappers: dict[str, Any] = {}
    for record in records:
        mapper = mappers.get(record.family) or mappers.setdefault(record.family, mapper_for(record.family, resolver))
        try:
            if hasattr(mapper, "observe"):
                mapper.observe(record.data)
            events = mapper.events(record)
        except (TypeError, ValueError, AttributeError, KeyError) as exc:  # a shape no mapper expected
            stats.issue(record.source, record.line, f"record {record.record_id} not mapped: {exc!r}",
                        skipped=False, reason="not mapped")
            events = []
        yield lake_row(record, events)


class LakeWriter:
    """Rows → one Parquet part per event day under ``root`` (a path or any URI pyarrow writes)."""

    def __init__(self, root: str, part: str) -> None:
        self.fs, self.root = resolve(root)
        self.root_uri = root.rstrip("/")
        self.part = part
        self._writers: dict[str, pq.ParquetWriter] = {}
        self._pending: dict[str, list[dict[str, Any]]] = {}
        self.days: Counter[str] = Counter()
        self.files: list[str] = []

    def add(self, day: str, row: dict[str, Any]) -> None:
        pending = self._pending.setdefault(day, [])
        pending.append(row)
        self.days[day] += 1
        if len(pending) >= FLUSH_ROWS:
            self._flush(day)

    def _flush(self, day: str) -> None:
        pending = self._pending.get(day)
        if not pending:
            return
        writer = self._writers.get(day)
        if writer is None:
            folder = posixpath.join(self.root, f"{PARTITION}={day}")
            self.fs.create_dir(folder, recursive=True)
            name = f"{self.part}.parquet"
            writer = pq.ParquetWriter(self.fs.open_output_stream(posixpath.join(folder, name)), SCHEMA,
                                      compression="zstd")
            self._writers[day] = writer
            self.files.append(f"{self.root_uri}/{PARTITION}={day}/{name}")
        writer.write_table(pa.Table.from_pylist(pending, SCHEMA))
        pending.clear()

    def close(self) -> list[str]:
        for day in list(self._pending):
            self._flush(day)
        for writer in self._writers.values():
            writer.close()
        self._writers.clear()
        return self.files


def run_name() -> str:
    """A part-name prefix for one export run: UTC time first, so runs sort in the order made."""
    import uuid

    return f"{datetime.now(UTC):%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:8]}"
