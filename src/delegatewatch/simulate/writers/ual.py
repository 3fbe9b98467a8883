"""Unified audit log exports (formats.md §1–3): NDJSON of AuditData, Management Activity API content
blobs, and the three CSV dialects (new Purview search, classic Purview, ``Search-UnifiedAuditLog |
Export-Csv``). AuditData is compact JSON with ``/`` written ``\\/``, as Microsoft serialises it."""

from __future__ import annotations

import csv
import io

import orjson

from delegatewatch.simulate.clock import us_time
from delegatewatch.simulate.model import UAL, Item
from delegatewatch.simulate.ual_records import RECORD_TYPE_NAMES
from delegatewatch.simulate.writers.base import DayWriter


def audit_data(rec: dict) -> bytes:
    """``/`` can only occur inside JSON strings, so a plain replace is safe."""
    return orjson.dumps(rec).replace(b"/", b"\\/")


class NdjsonWriter(DayWriter):
    """One AuditData per line, oldest first (what collectors and SIEM exports write)."""

    name = "ual-ndjson"
    stream = UAL

    def __init__(self, root, date, day) -> None:
        super().__init__(root, date, day)
        self.out = self.open(f"ual/ual-{date}.ndjson")

    def hour(self, items: list[Item]) -> None:
        marks = [(it, it.data["Id"], n) for n, it in enumerate(items) if it.tag is not None]
        if items:
            self.out.block(b"\n".join(audit_data(it.data) for it in items) + b"\n", len(items), marks, len(items))


class BlobWriter(DayWriter):
    """``GET /api/v1.0/{tenant}/activity/feed/audit/{contentId}``: one JSON array per content blob
    (here one per hour), records not in time order."""

    name = "ual-blob"
    stream = UAL

    def hour(self, items: list[Item]) -> None:
        if not items:
            return
        hour = int(items[0].t // 3600 % 24)
        ordered = sorted(items, key=lambda it: it.data["Id"])
        f = self.open(f"ual-blobs/{self.date}/audit-general-{self.date}T{hour:02d}.json")
        f.block(orjson.dumps([it.data for it in ordered]), 0,
                [(it, it.data["Id"], 0) for it in ordered if it.tag is not None], len(ordered))


class _CsvWriter(DayWriter):
    """The CSV dialects list newest first; AuditData never holds a raw newline: one row, one line."""

    stream = UAL
    file_name = ""
    header: tuple[str, ...] = ()
    type_line = ""
    bom = b""
    quote_all = False

    def __init__(self, root, date, day) -> None:
        super().__init__(root, date, day)
        head = io.StringIO()
        if self.type_line:
            head.write(self.type_line + "\r\n")
        csv.writer(head, lineterminator="\r\n", quoting=self.quoting).writerow(self.header)
        self.out = self.open(f"ual/{self.file_name}-{date}.csv", self.bom + head.getvalue().encode(), reverse=True)

    @property
    def quoting(self) -> int:
        return csv.QUOTE_ALL if self.quote_all else csv.QUOTE_MINIMAL

    def row(self, it: Item, data: str) -> list:
        raise NotImplementedError

    def hour(self, items: list[Item]) -> None:
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\r\n", quoting=self.quoting)
        marks = []
        for n, it in enumerate(reversed(items)):
            if it.tag is not None:
                marks.append((it, it.data["Id"], n))
            w.writerow(self.row(it, audit_data(it.data).decode()))
        self.out.block(buf.getvalue().encode(), len(items), marks, len(items))


class PurviewNewWriter(_CsvWriter):
    """The current Purview audit search export (formats.md §3.1)."""

    name = "purview-new"
    file_name = "purview-audit-search"
    header = ("RecordId", "CreationDate", "RecordType", "Operation", "UserId", "AuditData", "AssociatedAdminUnits",
              "AssociatedAdminUnitsNames")

    def row(self, it: Item, data: str) -> list:
        r = it.data
        return [r["Id"], us_time(it.t), r["RecordType"], r["Operation"], r["UserId"], data, "", ""]


class PurviewClassicWriter(_CsvWriter):
    """The classic audit log export (formats.md §3.2)."""

    name = "purview-classic"
    file_name = "purview-classic"
    header = ("CreationDate", "UserIds", "Operations", "AuditData")

    def row(self, it: Item, data: str) -> list:
        r = it.data
        return [f"{r['CreationTime']}.0000000Z", r["UserId"], r["Operation"], data]


class SearchUalCsvWriter(_CsvWriter):
    """``Search-UnifiedAuditLog | Export-Csv`` in Windows PowerShell 5.1: ``#TYPE`` line, BOM, every value
    quoted. ResultIndex counts within the hour's result set (one search per hour), ResultCount is its size."""

    name = "search-ual-csv"
    file_name = "search-unifiedauditlog"
    type_line = "#TYPE System.Management.Automation.PSCustomObject"
    bom = b"\xef\xbb\xbf"
    quote_all = True
    header = ("RecordType", "CreationDate", "UserIds", "Operations", "AuditData", "ResultIndex", "ResultCount",
              "Identity", "IsValid", "ObjectState")

    def hour(self, items: list[Item]) -> None:
        self.index, self.count = 0, len(items)
        super().hour(items)

    def row(self, it: Item, data: str) -> list:
        r = it.data
        self.index += 1
        return [RECORD_TYPE_NAMES.get(r["RecordType"], str(r["RecordType"])), us_time(it.t), r["UserId"],
                r["Operation"], data, self.index, self.count, r["Id"], "True", "Unchanged"]
