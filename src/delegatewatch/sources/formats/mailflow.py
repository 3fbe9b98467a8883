"""Mail-flow exports (family ``mailflow``): who sent what, when, to how many.

Three dialects, recognised by content (formats.md §7):

* ``message-trace-csv``: ``Get-MessageTrace`` / ``Get-MessageTraceV2 | Export-Csv``: one row per
  (message, recipient): ``Received, SenderAddress, RecipientAddress, Subject, Status, MessageId,
  MessageTraceId …`` (optionally a ``#TYPE`` line, the PowerShell-remoting columns
  ``PSComputerName, RunspaceId …``, BOM, UTF-16);
* ``historical-search-csv``: Start-HistoricalSearch / EAC downloadable reports: the enhanced summary
  (one row per message: ``origin_timestamp_utc, sender_address, recipient_status, message_subject,
  message_id, directionality …``) or the extended report (event rows: ``date_time_utc, event_id,
  source, recipient_address …``);
* ``exchange-msgtrk``: Exchange Server message tracking logs (``MSGTRK*.log``): ``#Software``,
  ``#Version``, ``#Log-Type``, ``#Date`` and ``#Fields:`` header lines, then CSV rows.

Each row becomes one record: the row as a dict of the file's own column names (so rules can be
written on vendor names), with provenance (file, line). Rows of one message are grouped into one
send later, by the mail-flow analytic (``analytics/mailflow.py``), after all files are read: a
message's rows may come from several exports. A malformed row is reported with file and line and
skipped; the rest of the file is read.

Records carry ``_dedup`` (a digest of the raw row), so a row repeated by overlapping exports is
read once.
"""

from __future__ import annotations

import csv
import hashlib
import re
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import BinaryIO

from delegatewatch.records import ReadStats, Record
from delegatewatch.records.prefilter import Prefilter
from delegatewatch.records.times import iso_utc, parse_time
from delegatewatch.sources.lines import csv_row, decode_text, iter_lines, preview
from delegatewatch.sources.opening import Opened
from delegatewatch.sources.registry import Reader

FAMILY = "mailflow"
MESSAGE_TRACE = "message-trace-csv"
HISTORICAL = "historical-search-csv"
MSGTRK = "exchange-msgtrk"

#: Columns that make a CSV a Get-MessageTrace(V2) export (all of them needed).
TRACE_COLUMNS = {"senderaddress", "recipientaddress"}
TRACE_ANY = {"messageid", "messagetraceid"}
TRACE_TIME = {"received", "receivedtime", "date"}
#: Historical-search time columns (the docs say ``origin_timestamp``; files say ``…_utc``).
HISTORICAL_TIME = ("origin_timestamp_utc", "origin_timestamp", "date_time_utc", "date_time")


def _header(line: str) -> list[str] | None:
    try:
        cols = next(csv.reader([line]))
    except (csv.Error, StopIteration):
        return None
    return [c.strip().strip("\ufeff") for c in cols]


def _first_lines(head: bytes, n: int = 8) -> list[str]:
    text = head.decode("utf-8", "replace")
    return [ln.strip() for ln in text.splitlines() if ln.strip()][:n]


def csv_dialect(head: bytes) -> str | None:
    lines = _first_lines(head)
    if lines and lines[0].startswith("#TYPE"):
        lines = lines[1:]
    if not lines:
        return None
    cols = {c.lower() for c in (_header(lines[0]) or [])}
    if "auditdata" in cols:
        return None  # a unified-audit-log export
    if TRACE_COLUMNS <= cols and cols & TRACE_ANY and cols & TRACE_TIME:
        return MESSAGE_TRACE
    if "sender_address" in cols and any(t in cols for t in HISTORICAL_TIME) and (
            "recipient_status" in cols or "recipient_address" in cols or "message_id" in cols):
        return HISTORICAL
    return None


def is_msgtrk(head: bytes) -> bool:
    lines = _first_lines(head, 6)
    if not lines or not lines[0].startswith("#"):
        return False
    text = "\n".join(lines).lower()
    return ("#log-type: message tracking log" in text
            or ("#software: microsoft exchange" in text and "#fields: date-time" in text)
            or any(ln.lower().startswith("#fields: date-time,") and "event-id" in ln.lower() for ln in lines))


_DAY_FIRST = re.compile(r"^(\d{1,2})[./](\d{1,2})[./](\d{4})[ T](\d{1,2}):(\d{2})(?::(\d{2}))?$")


def parse_trace_time(value: str | None) -> datetime | None:
    """Message-trace times: ISO 8601 (``2024-04-15T09:12:33.1234567Z``; fractions of any length),
    PowerShell's US ``4/15/2024 9:12:33 AM``, and day-first local spellings
    (``15.04.2024 09:12:33``, ``15/04/2024 09:12``) when the US reading is impossible. All UTC."""
    if not value:
        return None
    s = value.strip()
    m = re.match(r"^(\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2})\.(\d+)(Z|[+-]\d{2}:?\d{2})?$", s)
    if m:  # Python reads at most 6 fraction digits
        s = f"{m.group(1)}.{m.group(2)[:6].ljust(6, '0')}{m.group(3) or ''}"
    dt = parse_time(s)
    if dt is not None:
        return dt
    m = _DAY_FIRST.match(s)
    if m:
        day, month, year, hour, minute, sec = m.groups()
        try:
            return datetime(int(year), int(month), int(day), int(hour), int(minute), int(sec or 0), tzinfo=UTC)
        except ValueError:
            return None
    return None


def time_column(dialect: str, header: list[str]) -> str | None:
    low = {c.lower(): c for c in header}
    names = {MESSAGE_TRACE: ("received", "receivedtime", "date"), HISTORICAL: HISTORICAL_TIME,
             MSGTRK: ("date-time",)}[dialect]
    return next((low[n] for n in names if n in low), None)


def _digest(raw: bytes) -> str:
    return "mailflow:" + hashlib.blake2b(raw, digest_size=12).hexdigest()


def _rows(path: str, stream: BinaryIO, stats: ReadStats, dialect: str, *,
          header_from_stream: bool) -> Iterator[Record]:
    """CSV rows one line at a time (a broken quote costs one row). ``header_from_stream``: the
    first non-comment line is the header (the CSV exports); otherwise ``#Fields:`` lines set it
    (message tracking logs, which may repeat the header block when a service restarts)."""
    header: list[str] | None = None
    when: str | None = None
    last_raw: str | None = None
    last_iso: str | None = None
    index = 0
    for line_no, raw in iter_lines(stream, stats, None):
        text = decode_text(raw, path, line_no, stats)
        if text.startswith("#"):
            stats.records_seen -= 1  # header and comment lines are not records
            low = text.lower()
            if low.startswith("#fields:"):
                header = [c.strip() for c in (_header(text.split(":", 1)[1].strip()) or [])]
                when = time_column(dialect, header)
            continue
        if header is None:
            if header_from_stream:
                header = _header(text)
                stats.records_seen -= 1
                if not header:
                    stats.issue(path, line_no, f"unreadable CSV header {preview(text)}", reason="malformed CSV header")
                    return
                when = time_column(dialect, header)
                continue
            stats.issue(path, line_no, "row before any #Fields: header line", reason="malformed log row")
            continue
        row = csv_row(text, path, line_no, stats)
        if row is None:
            continue
        if len(row) != len(header):
            stats.issue(path, line_no, f"row has {len(row)} fields, the header has {len(header)}; "
                        f"row starts {preview(text)}", reason="malformed CSV row")
            continue
        data = dict(zip(header, row))
        raw_time = data.get(when) if when else None
        if raw_time != last_raw:  # rows of one message share their time: parse it once
            dt = parse_trace_time(raw_time)
            last_raw, last_iso = raw_time, iso_utc(dt) if dt else None
        if last_iso is None:
            stats.issue(path, line_no, f"no readable time in column {when or '(none)'}: "
                        f"{preview(raw_time or '')}", reason="mail-flow row without a time")
            continue
        data["_time"] = last_iso
        data["_dedup"] = _digest(raw)
        index += 1
        stats.records_parsed += 1
        yield Record(data, path, line_no, index, dialect, FAMILY)


def _read_csv(dialect: str):
    def read(path: str, stream: BinaryIO, stats: ReadStats, prefilter: Prefilter | None) -> Iterator[Record]:
        return _rows(path, stream, stats, dialect, header_from_stream=True)
    return read


def _read_msgtrk(path: str, stream: BinaryIO, stats: ReadStats, prefilter: Prefilter | None) -> Iterator[Record]:
    return _rows(path, stream, stats, MSGTRK, header_from_stream=False)


def _detect_csv(dialect: str):
    def detect(opened: Opened, head: bytes) -> bool:
        return csv_dialect(head) == dialect
    return detect


def _detect_msgtrk(opened: Opened, head: bytes) -> bool:
    return is_msgtrk(head)


# Before the unified-audit-log CSV readers (150), which need an AuditData column anyway.
READERS = [
    Reader(MESSAGE_TRACE, FAMILY, _detect_csv(MESSAGE_TRACE), _read_csv(MESSAGE_TRACE), priority=80),
    Reader(HISTORICAL, FAMILY, _detect_csv(HISTORICAL), _read_csv(HISTORICAL), priority=81),
    Reader(MSGTRK, FAMILY, _detect_msgtrk, _read_msgtrk, priority=82),
]
