"""The Microsoft 365 unified audit log dialects as registry readers (family ``m365``)."""

from __future__ import annotations


from delegatewatch.sources import csv_exports, json_document, ndjson
from delegatewatch.sources.opening import SNIFF_BYTES, Opened, first_json_object
from delegatewatch.sources.registry import Reader

#: Keys that make a JSON object a unified-audit-log record (or a PowerShell/CSV wrapper of one).
UAL_KEYS = frozenset({"Operation", "CreationTime", "RecordType", "AuditData", "Operations", "Workload"})


def _is_ndjson(opened: Opened, head: bytes) -> bool:
    if head[:1] != b"{":
        return False
    if b"\n" not in head and len(opened.head) >= SNIFF_BYTES // 2:
        return True  # one line longer than the sniff window: a long record
    return first_json_object(head) is not None


def _is_array(opened: Opened, head: bytes) -> bool:
    return head[:1] == b"["


def _is_objects(opened: Opened, head: bytes) -> bool:
    return head[:1] == b"{"  # pretty-printed record(s): what NDJSON did not claim


def _csv(dialect: str):  # noqa: ANN202
    def detect(opened: Opened, head: bytes) -> bool:
        return csv_exports.sniff_dialect(head) == dialect
    return detect


def _read_array(path, stream, stats, prefilter):  # noqa: ANN001, ANN202
    return json_document.read(path, stream, stats, prefilter, array=True)


def _read_objects(path, stream, stats, prefilter):  # noqa: ANN001, ANN202
    return json_document.read(path, stream, stats, prefilter, array=False)


def _read_csv(dialect: str):  # noqa: ANN202
    def read(path, stream, stats, prefilter):  # noqa: ANN001, ANN202
        return csv_exports.read(path, stream, stats, prefilter, dialect)
    return read


# Priorities leave room: specific families (Windows, Google, snapshots) detect at < 100 and claim
# their files first; these generic JSON readers come last.
READERS = [
    Reader(ndjson.DIALECT, "m365", _is_ndjson, ndjson.read, priority=200, splittable=True),
    Reader(json_document.ARRAY, "m365", _is_array, _read_array, priority=210),
    Reader(json_document.OBJECTS, "m365", _is_objects, _read_objects, priority=220),
    *(Reader(d, "m365", _csv(d), _read_csv(d), priority=150)
      for d in (csv_exports.NEW, csv_exports.CLASSIC, csv_exports.POWERSHELL)),
]
