"""Recognise a file's dialect from its content (never from its name)."""

from __future__ import annotations

from dataclasses import dataclass

import orjson

from delegatewatch.sources import csv_exports, json_document, ndjson
from delegatewatch.sources.opening import SNIFF_BYTES, Opened


@dataclass(frozen=True, slots=True)
class Detected:
    dialect: str | None
    reason: str | None = None  # why the file is skipped, when dialect is None


def detect(opened: Opened) -> Detected:
    if opened.not_text:
        return Detected(None, opened.not_text)
    head = opened.head.lstrip()
    if not head:
        return Detected(None, "empty file (only whitespace)")
    first = head[:1]
    if first == b"[":
        return Detected(json_document.ARRAY)
    if first == b"{":
        line, newline, _ = head.partition(b"\n")
        if not newline and len(opened.head) >= SNIFF_BYTES // 2:
            return Detected(ndjson.DIALECT)  # one line longer than the sniff window: a long record
        line = line.strip()
        try:
            obj = orjson.loads(line)
        except orjson.JSONDecodeError:
            obj = None
        if isinstance(obj, dict):
            return Detected(ndjson.DIALECT)
        # Pretty-printed object(s) (ConvertTo-Json of one record), one after another.
        return Detected(json_document.OBJECTS)
    if first == b"<":
        return Detected(None, "XML (Windows event or Exchange admin-audit export): not supported yet")
    text = head.decode("utf-8", "replace")
    lines = [ln for ln in text.splitlines() if ln.strip()]
    quoted = False
    if lines and lines[0].startswith("#TYPE"):
        lines = lines[1:]
        quoted = True
    if lines:
        header = csv_exports.parse_header(lines[0])
        if header:
            quoted = quoted or lines[0].lstrip().startswith('"')
            dialect = csv_exports.dialect_of(header, quoted)
            if dialect:
                return Detected(dialect)
            if len(header) > 1:
                return Detected(None, f"CSV without an AuditData column (columns: {', '.join(header[:6])}…): "
                                      "not a unified audit log export")
    first_line = lines[0][:80] if lines else ""
    return Detected(None, f"unrecognised text format (first line {first_line!r})")
