"""Windows events as XML: ``wevtutil qe <log> /f:xml`` (``<Event xmlns=…>`` elements one after
another, no root element) and Event Viewer "Save as XML" / ``Get-WinEvent | % ToXml`` files
(an ``<Events>`` root, optionally with ``<RenderingInfo>`` that carries the message).

Each ``<Event …>…</Event>`` is cut out of the stream and parsed on its own (events never nest),
so one broken event costs that event — reported with its line — and the rest is read; the
file is never held in memory whole. Document type declarations are never part of a cut event,
so entity expansion cannot happen.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from typing import Any, BinaryIO

from delegatewatch.records import ReadStats, Record
from delegatewatch.records.prefilter import Prefilter
from delegatewatch.sources.formats import windows_events as W
from delegatewatch.sources.lines import preview
from delegatewatch.sources.opening import Opened
from delegatewatch.sources.registry import Reader

DIALECT = "windows-xml"
_START = re.compile(rb"<Event[\s>]")
_END = b"</Event>"
_HEAD = re.compile(rb"^(?:<\?xml[^>]*\?>\s*)?(?:<!--.*?-->\s*)*<(?:Events[\s>/]|Event[\s>])", re.DOTALL)
BLOCK = 4 << 20


def detect(opened: Opened, head: bytes) -> bool:
    return bool(_HEAD.match(head))


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def normalise(elem: ET.Element) -> dict[str, Any]:
    system = None
    event_data = None
    user_data = None
    rendering = None
    for child in elem:
        name = _local(child.tag)
        if name == "System":
            system = child
        elif name == "EventData":
            event_data = child
        elif name == "UserData":
            user_data = child
        elif name == "RenderingInfo":
            rendering = child
    fields: dict[str, Any] = {}
    if system is not None:
        for child in system:
            name = _local(child.tag)
            if name == "Provider":
                fields["Provider"] = child.get("Name") or child.get("EventSourceName")
            elif name == "TimeCreated":
                fields["TimeCreated"] = child.get("SystemTime")
            elif name == "Security":
                fields["UserID"] = child.get("UserID")
            else:
                fields[name] = (child.text or "").strip()
    d = W.base(W.event_id(fields.get("EventID")), channel=fields.get("Channel"), provider=fields.get("Provider"),
               computer=fields.get("Computer"), time=fields.get("TimeCreated"),
               record_id=fields.get("EventRecordID"), user_id=fields.get("UserID"))
    if event_data is not None:
        unnamed: list[str] = []
        for child in event_data:
            tag = _local(child.tag)
            value = "".join(child.itertext())
            if tag == "Data" and child.get("Name"):
                d[child.get("Name")] = value
            elif tag == "Data":
                unnamed.append(value)
            else:
                d[tag] = value
        if unnamed:
            d["Data"] = unnamed
    if user_data is not None:
        for holder in user_data:
            for child in holder:
                d[_local(child.tag)] = "".join(child.itertext())
    if rendering is not None:
        for child in rendering:
            if _local(child.tag) == "Message" and child.text and "Message" not in d:
                d["Message"] = child.text
    return d


def _events(stream: BinaryIO) -> Iterator[tuple[int, bytes | None, str | None]]:
    """(line, event bytes, problem) for every ``<Event>`` element in the stream."""
    buf = b""
    base_line = 1  # line number of buf[0]
    eof = False
    while True:
        m = _START.search(buf)
        end = buf.find(_END, m.end()) if m else -1
        if m and end >= 0:
            nxt = _START.search(buf, m.end())
            line = base_line + buf.count(b"\n", 0, m.start())
            if nxt is not None and nxt.start() < end:
                yield line, None, "event element not closed before the next <Event>"
                base_line += buf.count(b"\n", 0, nxt.start())
                buf = buf[nxt.start():]
                continue
            stop = end + len(_END)
            yield line, buf[m.start():stop], None
            base_line += buf.count(b"\n", 0, stop)
            buf = buf[stop:]
            continue
        if eof:
            if m:
                yield base_line + buf.count(b"\n", 0, m.start()), None, "file ends inside an <Event> element"
            return
        chunk = stream.read(BLOCK)
        if not chunk:
            eof = True
            continue
        if not m and len(buf) > 16:  # text between events (root, declaration): drop all but a tail
            keep = len(buf) - 16
            base_line += buf.count(b"\n", 0, keep)
            buf = buf[keep:]
        buf += chunk


def read(path: str, stream: BinaryIO, stats: ReadStats, prefilter: Prefilter | None) -> Iterator[Record]:
    builder = W.Builder(path, DIALECT, stats)
    index = 0
    for line, raw, problem in _events(stream):
        index += 1
        stats.records_seen += 1
        if raw is None:
            stats.issue(path, line, f"malformed event XML: {problem}", reason="malformed event XML")
            continue
        try:
            elem = ET.fromstring(raw)
        except ET.ParseError as exc:
            stats.issue(path, line, f"malformed event XML ({exc}); event starts {preview(raw)}",
                        reason="malformed event XML")
            continue
        d = normalise(elem)
        if d["EventID"] < 0:
            stats.issue(path, line, "event without a numeric EventID", reason="malformed event XML")
            continue
        yield from builder.records(d, line, index, raw)
    if index == 0:
        stats.issue(path, None, "XML with no Windows <Event> element", reason="no Windows events in XML")


READERS = [Reader(DIALECT, W.FAMILY, detect, read, priority=80)]
