"""The CSV exports of the unified audit log, told apart by their header:

* ``purview-csv``: the current Purview audit search export,
  ``RecordId,CreationDate,RecordType,Operation,UserId,AuditData,AssociatedAdminUnits,...``;
* ``purview-classic-csv``: the older export, ``CreationDate,UserIds,Operations,AuditData``
  (also ``CreationDate,UserIds,RecordType,AuditData`` from the docs' Select-Object recipe);
* ``powershell-csv``: ``Search-UnifiedAuditLog | Export-Csv``: every field quoted, RecordType
  as an enum name, optionally a ``#TYPE …`` first line, BOM and CRLF.

All three carry the record as JSON in ``AuditData``; the other columns only fill gaps.
Rows are parsed one line at a time (see :mod:`delegatewatch.sources.lines`), so a broken quote
costs one row with a message, not the rest of the file.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from typing import BinaryIO

from delegatewatch.records import ReadStats, Record
from delegatewatch.records.prefilter import Prefilter
from delegatewatch.sources.lines import csv_row, decode_text, header_line, iter_lines
from delegatewatch.sources.ual import NotAnAuditRecord, to_audit_record

NEW = "purview-csv"
CLASSIC = "purview-classic-csv"
POWERSHELL = "powershell-csv"


def parse_header(line: str) -> list[str] | None:
    try:
        return next(csv.reader([line]))
    except (csv.Error, StopIteration):
        return None


def dialect_of(header: list[str], quoted: bool) -> str | None:
    cols = {c.strip() for c in header}
    if "AuditData" not in cols:
        return None
    if "RecordId" in cols or "AssociatedAdminUnits" in cols:
        return NEW
    if quoted or "ResultIndex" in cols:
        return POWERSHELL
    if "UserIds" in cols or "Operations" in cols:
        return CLASSIC
    return CLASSIC


def sniff_dialect(head: bytes) -> str | None:
    """The UAL CSV dialect of a file whose first bytes are ``head``, or None."""
    text = head.decode("utf-8", "replace")
    lines = [ln for ln in text.splitlines() if ln.strip()]
    quoted = False
    if lines and lines[0].startswith("#TYPE"):
        lines, quoted = lines[1:], True
    if not lines:
        return None
    header = parse_header(lines[0])
    if not header:
        return None
    return dialect_of(header, quoted or lines[0].lstrip().startswith('"'))


def read(path: str, stream: BinaryIO, stats: ReadStats, prefilter: Prefilter | None,
         dialect: str) -> Iterator[Record]:
    found = header_line(stream)
    if found is None:
        return
    text, header_lines = found
    header = [c.strip() for c in (parse_header(text) or [])]
    audit_at = header.index("AuditData")
    width = len(header)
    index = 0
    for line_no, raw in iter_lines(stream, stats, prefilter, first_line=header_lines + 1):
        index += 1
        text = decode_text(raw, path, line_no, stats)
        row = csv_row(text, path, line_no, stats)
        if row is None:
            continue
        if len(row) <= audit_at:
            stats.issue(path, line_no, f"row has {len(row)} fields, expected {width} "
                        f"(AuditData is column {audit_at + 1})", reason="malformed CSV row")
            continue
        columns = {name: value for name, value in zip(header, row) if name != "AuditData"}
        try:
            rec = to_audit_record({"AuditData": row[audit_at]}, columns)
        except NotAnAuditRecord as exc:
            stats.issue(path, line_no, str(exc), reason="AuditData is not a UAL record")
            continue
        stats.records_parsed += 1
        yield Record(rec, path, line_no, index, dialect)
