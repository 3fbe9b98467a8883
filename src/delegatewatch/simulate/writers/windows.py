"""Windows event logs as ``wevtutil qe <log> /f:xml`` writes them (formats.md §4.2, §5): ``<Event>``
elements one per line, no root element; one file per computer and channel. EventRecordIDs grow
through the day (each day starts a new block: other events were logged in between)."""

from __future__ import annotations

from xml.sax.saxutils import escape, quoteattr

from delegatewatch.simulate.clock import iso_z
from delegatewatch.simulate.model import WINDOWS, Item, WinEvent
from delegatewatch.simulate.writers.base import BlockFile, DayWriter

NS = "http://schemas.microsoft.com/win/2004/08/events/event"
DAY_BLOCK = 1_000_000


def event_xml(ev: WinEvent, rid: int, t: float) -> str:
    if isinstance(ev.data, dict):
        body = "".join(f"<Data Name={quoteattr(k)}>{escape(v)}</Data>" for k, v in ev.data.items())
    else:
        body = "".join(f"<Data>{escape(v)}</Data>" for v in ev.data)
    sec = f'<Security UserID="{ev.user_sid}"/>' if ev.user_sid else "<Security/>"
    qualifiers = ' Qualifiers="16384"' if ev.channel == "MSExchange Management" else ""
    return (f"<Event xmlns='{NS}'><System><Provider Name={quoteattr(ev.provider)}/>"
            f"<EventID{qualifiers}>{ev.event_id}</EventID><Version>0</Version><Level>{4 if qualifiers else 0}</Level>"
            f"<Task>{ev.task}</Task><Opcode>0</Opcode><Keywords>{ev.keywords}</Keywords>"
            f"<TimeCreated SystemTime='{iso_z(t)[:-1]}0000Z'/><EventRecordID>{rid}</EventRecordID>"
            f"<Correlation/><Execution ProcessID='{'5668' if qualifiers else '636'}' ThreadID='4020'/>"
            f"<Channel>{escape(ev.channel)}</Channel><Computer>{escape(ev.computer)}</Computer>{sec}</System>"
            f"<EventData>{body}</EventData></Event>")


class WindowsXmlWriter(DayWriter):
    name = "windows-xml"
    stream = WINDOWS

    def __init__(self, root, date, day) -> None:
        super().__init__(root, date, day)
        self.by_log: dict[tuple[str, str], BlockFile] = {}
        self.next_id: dict[tuple[str, str], int] = {}

    def hour(self, items: list[Item]) -> None:
        blocks: dict[tuple[str, str], tuple[list[bytes], list]] = {}
        for it in items:
            ev: WinEvent = it.data
            key = (ev.computer, ev.channel)
            if key not in self.by_log:
                host = ev.computer.split(".")[0]
                self.by_log[key] = self.open(f"windows/{host}-{ev.channel.replace(' ', '')}-{self.date}.xml")
                self.next_id[key] = 100_000 + self.day * DAY_BLOCK
            rid = self.next_id[key]
            self.next_id[key] = rid + 1 + (rid % 7 == 3) * 11  # other events were logged in between
            lines, marks = blocks.setdefault(key, ([], []))
            if it.tag is not None:
                marks.append((it, str(rid), len(lines)))
            lines.append(event_xml(ev, rid, it.t).encode())
        for key, (lines, marks) in blocks.items():
            self.by_log[key].block(b"\r\n".join(lines) + b"\r\n", len(lines), marks, len(lines))
