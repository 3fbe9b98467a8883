"""JSON documents: a Management Activity API content blob (one array of records, usually on
one line), PowerShell ``ConvertTo-Json`` output (a pretty-printed array of wrapper objects, or a
single object when there was one record), and pretty-printed records one after another.

Parsed incrementally with ijson's C backend, so a blob of any size is read in constant memory.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import BinaryIO

import ijson

from delegatewatch.records import ReadStats, Record
from delegatewatch.records.prefilter import Prefilter
from delegatewatch.sources.ual import NotAnAuditRecord, to_audit_record

ARRAY = "json-array"
OBJECTS = "json-objects"


def read(path: str, stream: BinaryIO, stats: ReadStats, prefilter: Prefilter | None,
         *, array: bool) -> Iterator[Record]:
    prefix = "item" if array else ""
    items = ijson.items(stream, prefix, multiple_values=not array, use_float=True)
    index = 0
    try:
        for item in items:
            index += 1
            stats.records_seen += 1
            try:
                rec = to_audit_record(item)
            except NotAnAuditRecord as exc:
                stats.issue(path, None, f"record {index}: {exc}", reason="not a UAL record")
                continue
            stats.records_parsed += 1  # already parsed by ijson: the prefilter has nothing to save here
            yield Record(rec, path, None, index, ARRAY if array else OBJECTS)
    except ijson.IncompleteJSONError as exc:
        what = "ends before the JSON is complete" if "incomplete" in str(exc).lower() else f"has invalid JSON ({_short(exc)})"
        stats.issue(path, None,
                    f"file {what} after record {index}; the {index} records before were read, "
                    "anything after this point could not be",
                    reason="truncated or invalid JSON document")
    except (ijson.JSONError, UnicodeDecodeError, ValueError) as exc:
        stats.issue(path, None, f"invalid JSON after record {index} ({_short(exc)}); "
                    f"the {index} records before were read", reason="truncated or invalid JSON document")


def _short(exc: Exception) -> str:
    text = str(exc).strip().replace("\n", " ")
    return text[:160]
