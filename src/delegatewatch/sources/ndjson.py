"""NDJSON: one UAL record per line (Management Activity API records, ``jq -c`` output, the
collector's files). Compact or spaced JSON, LF or CRLF.

This is the format of whole-tenant histories, so it carries the fast path of
:mod:`delegatewatch.sources.lines`: only prefilter candidates are parsed.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import BinaryIO

import orjson

from delegatewatch.records import ReadStats, Record
from delegatewatch.records.prefilter import Prefilter
from delegatewatch.sources.lines import decode_text, iter_lines, preview
from delegatewatch.sources.ual import NotAnAuditRecord, to_audit_record

DIALECT = "ndjson"


def read(path: str, stream: BinaryIO, stats: ReadStats, prefilter: Prefilter | None,
         limit: int | None = None) -> Iterator[Record]:
    """Records of ``stream``; ``limit`` stops after that many bytes (a range of a split file,
    whose line numbers then count from the range's first line)."""
    index = 0
    for line_no, raw in iter_lines(stream, stats, prefilter, limit=limit):
        index += 1
        try:
            obj = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            try:
                obj = orjson.loads(decode_text(raw, path, line_no, stats)) if not _is_utf8(raw) else None
            except orjson.JSONDecodeError:
                obj = None
            if obj is None:
                stats.issue(path, line_no, f"not a JSON record ({exc}); line starts {preview(raw)}",
                            reason="malformed JSON line")
                continue
        try:
            rec = to_audit_record(obj)
        except NotAnAuditRecord as exc:
            stats.issue(path, line_no, str(exc), reason="not a UAL record")
            continue
        stats.records_parsed += 1
        yield Record(rec, path, line_no, index, DIALECT)


def _is_utf8(raw: bytes) -> bool:
    try:
        raw.decode("utf-8")
        return True
    except UnicodeDecodeError:
        return False
