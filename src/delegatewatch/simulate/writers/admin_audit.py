"""Exchange Server admin audit log, as ``New-AdminAuditLogSearch`` mails it and ``Search-AdminAuditLog``
results export to XML (formats.md §4.1): ``<SearchResults>`` with one ``<Event>`` per cmdlet run."""

from __future__ import annotations

from xml.sax.saxutils import quoteattr

from delegatewatch.simulate.clock import iso_z
from delegatewatch.simulate.model import ADMIN_AUDIT, AdminAuditEntry, Item
from delegatewatch.simulate.writers.base import DayWriter


class AdminAuditXmlWriter(DayWriter):
    name = "admin-audit-xml"
    stream = ADMIN_AUDIT

    def __init__(self, root, date, day) -> None:
        super().__init__(root, date, day)
        self.out = self.open(f"exchange-admin-audit/admin-audit-{date}.xml",
                             b'<?xml version="1.0" encoding="utf-8"?>\r\n<SearchResults>\r\n')

    def hour(self, items: list[Item]) -> None:
        parts: list[str] = []
        marks = []
        line = 0
        for it in items:
            e: AdminAuditEntry = it.data
            if it.tag is not None:
                marks.append((it, None, line))  # the reader's Id is a digest: the line names the entry
            run_date = iso_z(it.t, ms=False)[:-1] + "+00:00"
            head = (f"  <Event Caller={quoteattr(e.caller)} Cmdlet={quoteattr(e.cmdlet)} "
                    f"ObjectModified={quoteattr(e.object_modified)} RunDate=\"{run_date}\" "
                    f"Succeeded=\"{'true' if e.succeeded else 'false'}\" Error=\"None\" "
                    f"OriginatingServer={quoteattr(e.server)}>")
            lines = [head, "    <CmdletParameters>"]
            lines += [f"      <Parameter Name={quoteattr(k)} Value={quoteattr(v)} />" for k, v in e.parameters]
            lines.append("    </CmdletParameters>")
            if e.modified:
                lines.append("    <ModifiedProperties>")
                lines += [f"      <Property Name={quoteattr(n)} OldValue={quoteattr(o)} NewValue={quoteattr(v)} />"
                          for n, o, v in e.modified]
                lines.append("    </ModifiedProperties>")
            else:
                lines.append("    <ModifiedProperties />")
            lines.append("  </Event>")
            parts.extend(lines)
            line += len(lines)
        if items:
            self.out.block(("\r\n".join(parts) + "\r\n").encode(), line, marks, len(items))

    def tail(self, f) -> bytes:
        return b"</SearchResults>\r\n"
