"""One writer per output format; all share ``base`` (block files, reverse order, labels)."""

from __future__ import annotations

from delegatewatch.simulate.writers.admin_audit import AdminAuditXmlWriter
from delegatewatch.simulate.writers.base import DayWriter
from delegatewatch.simulate.writers.google import GoogleReportsWriter
from delegatewatch.simulate.writers.trace import MessageTraceWriter
from delegatewatch.simulate.writers.ual import (
                                                BlobWriter,
                                                NdjsonWriter,
                                                PurviewClassicWriter,
                                                PurviewNewWriter,
                                                SearchUalCsvWriter,
)
from delegatewatch.simulate.writers.windows import WindowsXmlWriter

WRITERS: dict[str, type[DayWriter]] = {w.name: w for w in (
    NdjsonWriter, BlobWriter, PurviewNewWriter, PurviewClassicWriter, SearchUalCsvWriter, MessageTraceWriter,
    WindowsXmlWriter, AdminAuditXmlWriter, GoogleReportsWriter)}
#: permission snapshots are written twice (before and after), not per day
SNAPSHOTS = "snapshots"
FORMATS = (*WRITERS, SNAPSHOTS)
UAL_FORMATS = tuple(name for name, w in WRITERS.items() if w.stream == "ual")
DEFAULT_FORMATS = ("ual-ndjson", "message-trace", "windows-xml", "admin-audit-xml", "google-reports", SNAPSHOTS)
