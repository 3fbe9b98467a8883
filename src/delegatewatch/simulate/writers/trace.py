"""``Get-MessageTrace | Export-Csv -NoTypeInformation`` (formats.md §7.1): one row per recipient,
newest first, US dates, every value quoted, UTF-8 with BOM, CRLF."""

from __future__ import annotations

import csv
import io
import zlib

from delegatewatch.simulate.clock import us_time
from delegatewatch.simulate.model import TRACE, Item
from delegatewatch.simulate.writers.base import DayWriter

HEADER = ["PSComputerName", "RunspaceId", "PSShowComputerName", "Organization", "MessageId", "Received",
          "SenderAddress", "RecipientAddress", "Subject", "Status", "ToIP", "FromIP", "Size", "MessageTraceId",
          "StartDate", "EndDate", "Index"]
RUNSPACE = "9c7a1f2e-3b4d-4e5f-8a9b-0c1d2e3f4a5b"


class MessageTraceWriter(DayWriter):
    name = "message-trace"
    stream = TRACE

    def __init__(self, root, date, day) -> None:
        super().__init__(root, date, day)
        head = io.StringIO()
        csv.writer(head, quoting=csv.QUOTE_ALL, lineterminator="\r\n").writerow(HEADER)
        self.out = self.open(f"message-trace/message-trace-{date}.csv", b"\xef\xbb\xbf" + head.getvalue().encode(),
                             reverse=True)

    def hour(self, items: list[Item]) -> None:
        if not items:
            return
        day0 = int(items[0].t) - int(items[0].t) % 86400
        start, end = us_time(day0), us_time(day0 + 86400)
        # Every value quoted (Export-Csv), so only quotes need escaping; built as text, not with the csv
        # module: this is the simulator's busiest writer.
        rows = []
        marks = []
        n = 0
        lead = f'"outlook.office365.com","{RUNSPACE}","False","contoso.onmicrosoft.com","'
        tail = f'","{start}","{end}","'
        for it in reversed(items):
            m = it.data
            trace_id = f"{zlib.crc32(m.message_id.encode()):08x}-6b1e-4a2f-9c3d-{zlib.crc32(m.sender.encode()):012x}"
            head = f'{lead}{m.message_id}","{us_time(it.t)}","{_q(m.sender)}","'
            mid = f'","{_q(m.subject)}","'
            rest = f'","","{m.from_ip}","{m.size}","{trace_id}{tail}'
            for r in m.recipients:
                if it.tag is not None:
                    marks.append((it, None, n))
                status = "Delivered" if r.endswith("@contoso.com") else "Resolved"
                rows.append(f'{head}{_q(r)}{mid}{status}{rest}{n}"\r\n')
                n += 1
        self.out.block("".join(rows).encode(), n, marks, n)


def _q(value: str) -> str:
    return value.replace('"', '""')
