"""Exchange Server / Exchange Online admin-audit and mailbox-audit exports (family ``m365``).

* ``exchange-audit-xml``: the XML report of ``New-AdminAuditLogSearch`` / the EAC "Export to XML",
  and of ``New-MailboxAuditLogSearch`` (``SearchResult.xml``): a ``<SearchResults>`` root with one
  ``<Event …>`` per entry. Admin events carry ``Cmdlet``/``Caller``/``RunDate`` attributes with
  ``<CmdletParameters><Parameter Name Value/>`` and ``<ModifiedProperties><Property …/>``; mailbox
  events carry ``Operation``/``LastAccessed``/``LogonType``/``MailboxOwnerUPN`` … attributes.
* ``exchange-admin-audit-csv``: ``Search-AdminAuditLog | Export-Csv`` (header with ``RunDate`` and
  ``CmdletName``/``Cmdlet``), the parameter collection flattened to text.
* ``exchange-mailbox-audit-csv``: ``Search-MailboxAuditLog -ShowDetails | Export-Csv`` (header with
  ``LastAccessed`` and ``Operation``).

Every entry becomes a unified-audit-log-shaped record (:mod:`exchange_audit_map`), so the cloud
rules and ``UalMapper`` apply unchanged. Detection is by content, never by file name.

Untrusted XML: the parser is the stdlib's expat (what ``xml.etree.ElementTree.iterparse`` runs on),
driven directly so that each ``<Event>`` keeps its line number and so that a document type
declaration is refused before anything in it is processed: no DTD, no entity declarations
(billion-laughs), no external entities (nothing is ever fetched) — the measures ``defusedxml``
takes, without the dependency. A broken ``<Event>`` costs that event: the reader reports it with
its line and starts again at the next ``<Event``.
"""

from __future__ import annotations

import csv
import re
from collections import deque
from collections.abc import Callable, Iterator
from typing import BinaryIO
from xml.parsers import expat

from delegatewatch.records import ReadStats, Record
from delegatewatch.records.prefilter import Prefilter
from delegatewatch.sources.formats import exchange_audit_map as M
from delegatewatch.sources.lines import decode_text, header_line, iter_lines, preview
from delegatewatch.sources.opening import Opened
from delegatewatch.sources.registry import Reader

XML = "exchange-audit-xml"
ADMIN_CSV = "exchange-admin-audit-csv"
MAILBOX_CSV = "exchange-mailbox-audit-csv"

FAMILY = "m365"
CHUNK = 1 << 20
#: A CSV record may span lines (a quoted value with new lines); past this many lines an open
#: quote is taken as broken: its first line is reported and the lines after it are read again.
MAX_RECORD_LINES = 64
#: Rows read before deciding whether slash dates are month/day or day/month.
DATE_LOOKAHEAD = 2000

# -- detection --------------------------------------------------------------------------------
_PROLOG = re.compile(rb"\A(?:<\?xml[^>]*\?>|<!--.*?-->|<!DOCTYPE[^\[>]*(?:\[.*?\])?\s*>|\s+)*", re.DOTALL)
_ROOT = re.compile(rb"<([A-Za-z_][\w.:-]*)")


def _is_xml(opened: Opened, head: bytes) -> bool:
    if head[:1] != b"<":
        return False
    m = _PROLOG.match(head)
    rest = head[m.end():] if m else head
    if rest[:1] != b"<" and b"<!DOCTYPE" in head[:4096]:
        # a DOCTYPE whose internal subset is longer than the sniffed head: claim the file when
        # the root named after DOCTYPE is ours, so the refusal is reported by this reader
        dm = re.search(rb"<!DOCTYPE\s+([\w.:-]+)", head)
        return bool(dm and dm.group(1) == b"SearchResults")
    root = _ROOT.match(rest)
    return bool(root and root.group(1) == b"SearchResults")


def _header(head: bytes) -> tuple[list[str], str] | None:
    """The CSV header's column names and delimiter, from the file's first bytes."""
    text = head.decode("utf-8", "replace")
    lines = [ln for ln in text.splitlines() if ln.strip()]
    if lines and lines[0].startswith("#TYPE"):
        lines = lines[1:]
    if not lines:
        return None
    return _parse_header(lines[0])


def _parse_header(line: str) -> tuple[list[str], str] | None:
    best: tuple[list[str], str] | None = None
    for delim in (",", ";", "\t", "|"):
        try:
            cols = next(csv.reader([line], delimiter=delim))
        except (csv.Error, StopIteration):
            continue
        cols = [c.strip().lstrip("\ufeff") for c in cols]
        if best is None or len(cols) > len(best[0]):
            best = (cols, delim)
    return best


def csv_kind(cols: list[str]) -> str | None:
    names = set(cols)
    if "AuditData" in names:
        return None  # the unified audit log's own exports
    if "RunDate" in names and ("CmdletName" in names or "Cmdlet" in names):
        return ADMIN_CSV
    if "LastAccessed" in names and "Operation" in names and names & {
            "MailboxOwnerUPN", "MailboxGuid", "LogonType", "MailboxResolvedOwnerName", "LogonUserDisplayName"}:
        return MAILBOX_CSV
    return None


def _csv_detect(kind: str):  # noqa: ANN202
    def detect(opened: Opened, head: bytes) -> bool:
        found = _header(head)
        return bool(found) and csv_kind(found[0]) == kind  # type: ignore[index]
    return detect


# -- CSV ----------------------------------------------------------------------------------------
def _csv_rows(path: str, stream: BinaryIO, stats: ReadStats) -> Iterator[tuple[int, dict[str, str]]]:
    """(first line, {column: value}) for every row; broken rows are reported and skipped.

    Rows are assembled from lines while a quote is open (values may hold new lines). A row that
    does not parse, or has the wrong number of fields, costs only its first line: the lines it
    swallowed are read again as rows of their own.
    """
    header: tuple[list[str], str] | None = None
    header_lines = 0
    while header is None:  # lines that are no header (a title, a note) are passed over
        found = header_line(stream)
        if found is None:
            return
        text, read = found
        header_lines += read
        header = _parse_header(text)
    cols, delim = header
    width = len(cols)
    lines = iter_lines(stream, stats, None, first_line=header_lines + 1)
    replay: deque[tuple[int, str]] = deque()

    def next_line() -> tuple[int, str] | None:
        if replay:
            return replay.popleft()
        got = next(lines, None)
        if got is None:
            return None
        line_no, raw = got
        return line_no, decode_text(raw, path, line_no, stats)

    while True:
        first = next_line()
        if first is None:
            return
        pending = [first]
        while sum(t.count('"') for _, t in pending) % 2 and len(pending) < MAX_RECORD_LINES:
            more = next_line()
            if more is None:
                break
            pending.append(more)
        start = pending[0][0]
        text = "\n".join(t for _, t in pending)
        problem = None
        row: list[str] = []
        if text.count('"') % 2:
            problem = "broken CSV quoting (a quote is never closed)"
        else:
            try:
                row = next(csv.reader([text], delimiter=delim, strict=True))
            except (csv.Error, StopIteration) as exc:
                problem = f"malformed CSV row ({exc})"
            else:
                if len(row) != width:
                    problem = f"row has {len(row)} fields, expected {width}"
        if problem:
            stats.issue(path, start, f"{problem}; row starts {preview(pending[0][1])}", reason="malformed CSV row")
            for item in reversed(pending[1:]):
                replay.appendleft(item)
            continue
        yield start, {c: v for c, v in zip(cols, row) if c}


def _with_date_order(path: str, rows: Iterator[tuple[int, dict[str, str]]], column: str,
                     stats: ReadStats) -> Iterator[tuple[int, dict[str, str], str]]:
    """Rows with the slash-date order of this file (``mdy`` or ``dmy``), decided on the first
    :data:`DATE_LOOKAHEAD` rows; a later row that contradicts it is read its own way, with a note."""
    ahead: list[tuple[int, dict[str, str]]] = []
    order: str | None = None
    ambiguous = False
    for item in rows:
        ahead.append(item)
        o = M.slash_order(item[1].get(column, ""))
        if o:
            order = o
            break
        if "/" in item[1].get(column, ""):
            ambiguous = True
        if len(ahead) >= DATE_LOOKAHEAD:
            break
    if order is None:
        order = "mdy"
        if ambiguous:
            stats.issue(path, ahead[0][0] if ahead else None,
                        f"{column} dates such as {ahead[0][1].get(column)!r} could be month/day or day/month; "
                        "read as month/day (en-US). Re-export with ISO dates if the exporting machine used "
                        "another locale", skipped=False)
    for line, row in ahead:
        yield line, row, order
    noted = False
    for line, row in rows:
        o = M.slash_order(row.get(column, ""))
        if o and o != order and not noted:
            stats.issue(path, line, f"{column} {row.get(column)!r} is {o}, unlike the rows before it "
                        f"({order}); each row is read the way its own date allows", skipped=False)
            noted = True
        yield line, row, o or order


def _when(path: str, line: int | None, value: str | None, order: str, column: str, stats: ReadStats):  # noqa: ANN202
    when = M.parse_when(value, order)
    if when is None:
        stats.issue(path, line, f"{column} {value!r} is not a time this reader knows; record kept without "
                    "CreationTime", skipped=False)
    return when


def read_admin_csv(path: str, stream: BinaryIO, stats: ReadStats,
                   prefilter: Prefilter | None = None) -> Iterator[Record]:
    index = 0
    lost_noted = False
    for line, row, order in _with_date_order(path, _csv_rows(path, stream, stats), "RunDate", stats):
        index += 1
        text = row.get("CmdletParameters", row.get("Parameters"))
        params: list[dict[str, str]] | None
        try:
            params = M.parameter_list(M.parse_parameter_text(text))
        except M.ValuesLost:
            params = None
            if not lost_noted:
                stats.issue(path, line, f"CmdletParameters is {preview(text or '')}: Export-Csv of the unexpanded "
                            "parameter collection keeps only names or a type name, so the values (User, "
                            "AccessRights …) are lost and permission rules cannot match this file. Use the XML "
                            "export, or expand the parameters (docs/formats-exchange.md)", skipped=False)
                lost_noted = True
        modified = _modified_from_text(row.get("ModifiedProperties"))
        when = _when(path, line, row.get("RunDate"), order, "RunDate", stats)
        record = M.admin_record(row, params, modified, when)
        if not record["Operation"]:
            stats.issue(path, line, "row has no cmdlet name (CmdletName is empty)", reason="admin audit row without cmdlet")
            continue
        stats.records_parsed += 1
        yield Record(record, path, line, index, ADMIN_CSV, FAMILY)


def _modified_from_text(text: str | None) -> list[dict[str, str]] | str | None:
    if not text or not text.strip():
        return None
    try:
        pairs = M.parse_parameter_text(text)
    except M.ValuesLost:
        return None
    if not pairs:
        return text.strip()
    return [{"Name": n, "NewValue": v} for n, v in pairs]


def read_mailbox_csv(path: str, stream: BinaryIO, stats: ReadStats,
                     prefilter: Prefilter | None = None) -> Iterator[Record]:
    index = 0
    for line, row, order in _with_date_order(path, _csv_rows(path, stream, stats), "LastAccessed", stats):
        index += 1
        if not (row.get("Operation") or "").strip():
            stats.issue(path, line, "row has no Operation", reason="mailbox audit row without operation")
            continue
        when = _when(path, line, row.get("LastAccessed"), order, "LastAccessed", stats)
        stats.records_parsed += 1
        yield Record(M.mailbox_record(row, when), path, line, index, MAILBOX_CSV, FAMILY)


# -- XML ----------------------------------------------------------------------------------------
class _Refused(Exception):
    """The document declares a DTD or entities: not an export, and not safe to expand."""


_EVENT_START = re.compile(rb"<Event[\s>/]")
_RESYNC_PREFIX = b"<SearchResults>"


class _Run:
    """One expat parser over the file from ``start_abs`` on (the whole file, or from the
    ``<Event`` after an error, with a synthetic root in front)."""

    def __init__(self, start_abs: int, line_offset: int, synthetic_root: bool) -> None:
        p = expat.ParserCreate(encoding="utf-8")  # the stream is UTF-8 whatever the declaration says
        p.SetParamEntityParsing(expat.XML_PARAM_ENTITY_PARSING_NEVER)
        p.StartDoctypeDeclHandler = self._doctype
        p.EntityDeclHandler = self._entity
        p.UnparsedEntityDeclHandler = self._entity
        p.ExternalEntityRefHandler = self._external
        p.StartElementHandler = self._start
        p.EndElementHandler = self._end
        self.p = p
        self.start_abs = start_abs
        self.line_offset = line_offset
        self.prefix = len(_RESYNC_PREFIX) if synthetic_root else 0
        self.done: list[tuple[int, dict[str, str], list, list, list]] = []
        self.cur: tuple[int, dict[str, str], list, list, list] | None = None
        self.seen = 0
        self.unclosed: list[int] = []  # lines of events a new <Event> started inside
        self.section = ""
        if synthetic_root:
            p.Parse(_RESYNC_PREFIX, False)

    def line(self) -> int:
        return self.p.CurrentLineNumber + self.line_offset

    def error_abs(self) -> int:
        idx = self.p.ErrorByteIndex
        if idx < 0:
            idx = self.p.CurrentByteIndex
        return self.start_abs + max(idx - self.prefix, 0)

    # handlers
    def _doctype(self, name, sysid, pubid, has_internal):  # noqa: ANN001
        raise _Refused(f"document type declaration (<!DOCTYPE {name}…>) at line {self.line()} refused: "
                       "audit exports never carry one, and DTD entities are how XML bombs and external-entity "
                       "attacks work; nothing was expanded or fetched, and the file was not read")

    def _entity(self, *args):  # noqa: ANN002
        raise _Refused(f"entity declaration at line {self.line()} refused; the file was not read")

    def _external(self, context, base, sysid, pubid):  # noqa: ANN001
        raise _Refused(f"external entity reference at line {self.line()} refused (nothing fetched)")

    def _start(self, name: str, attrs: dict[str, str]) -> None:
        if name == "Event":
            if self.cur is not None:
                self.unclosed.append(self.cur[0])
            self.seen += 1
            self.cur = (self.line(), dict(attrs), [], [], [])
            self.section = ""
            return
        if self.cur is None:
            return
        if name in ("CmdletParameters", "ModifiedProperties", "SourceItems", "SourceFolders"):
            self.section = name
        elif name == "Parameter":
            self.cur[2].append((attrs.get("Name"), attrs.get("Value")))
        elif name == "Property":
            self.cur[3].append({k: attrs[k] for k in ("Name", "NewValue", "OldValue") if k in attrs})
        elif self.section == "SourceItems" and attrs:
            self.cur[4].append(dict(attrs))

    def _end(self, name: str) -> None:
        if name == "Event" and self.cur is not None:
            self.done.append(self.cur)
            self.cur = None
        elif name in ("CmdletParameters", "ModifiedProperties", "SourceItems", "SourceFolders"):
            self.section = ""


def _xml_record(path: str, event: tuple, index: int, stats: ReadStats) -> Record | None:
    line, attrs, params, props, items = event
    if "Cmdlet" in attrs or "CmdletName" in attrs:
        when = M.parse_when(attrs.get("RunDate"))
        if when is None:
            stats.issue(path, line, f"RunDate {attrs.get('RunDate')!r} is not a time this reader knows; record kept "
                        "without CreationTime", skipped=False)
        record = M.admin_record(attrs, M.parameter_list(params), props or None, when)
        if not record["Operation"]:
            stats.issue(path, line, "<Event> with an empty Cmdlet attribute", reason="admin audit event without cmdlet")
            return None
        return Record(record, path, line, index, XML, FAMILY)
    if "Operation" in attrs or "LastAccessed" in attrs:
        if not attrs.get("Operation"):
            stats.issue(path, line, "<Event> with an empty Operation attribute", reason="mailbox audit event without operation")
            return None
        when = M.parse_when(attrs.get("LastAccessed"))
        if when is None:
            stats.issue(path, line, f"LastAccessed {attrs.get('LastAccessed')!r} is not a time this reader knows; "
                        "record kept without CreationTime", skipped=False)
        return Record(M.mailbox_record(attrs, when, items or None), path, line, index, XML, FAMILY)
    stats.issue(path, line, "<Event> with neither a Cmdlet (admin audit) nor an Operation (mailbox audit) attribute",
                reason="unknown Exchange audit event")
    return None


def read_xml(path: str, stream: BinaryIO, stats: ReadStats, prefilter: Prefilter | None = None) -> Iterator[Record]:
    index = 0
    pos = 0  # absolute offset (in the UTF-8 stream) of the next chunk
    lines_before = 0  # new lines before ``pos``
    run = _Run(0, 0, False)
    # what the current parser was fed lately, (data, abs offset, new lines before): at least the
    # last 1 MiB, so an error can be traced back to the <Event> tag it is in and the next one found
    recent: deque[tuple[bytes, int, int]] = deque()
    window = max(2 * CHUNK, 1 << 20)
    todo: deque[tuple[bytes, int, int]] = deque()

    def drain() -> Iterator[Record]:
        nonlocal index
        for line in run.unclosed:
            stats.issue(path, line, "<Event> is never closed (a new <Event> starts inside it); skipped",
                        reason="broken XML event")
        run.unclosed.clear()
        for event in run.done:
            index += 1
            rec = _xml_record(path, event, index, stats)
            if rec is not None:
                stats.records_parsed += 1
                yield rec
        stats.records_seen += run.seen
        run.seen = 0
        run.done.clear()

    single_byte: list[str | None] = []  # a declared single-byte encoding: chunks are transcoded to UTF-8

    def read_chunk() -> bytes:
        data = stream.read(CHUNK)
        if stats.on_bytes is not None and data:
            stats.on_bytes(len(data))
        if not single_byte:
            single_byte.append(_declared_single_byte(data))
        if single_byte[0] and data:
            data = data.decode(single_byte[0], "replace").encode("utf-8")
        return data

    while True:
        if not todo:
            data = read_chunk()
            if data:
                todo.append((data, pos, lines_before))
                pos += len(data)
                lines_before += data.count(b"\n")
        if not todo:  # end of file
            try:
                run.p.Parse(b"", True)
            except _Refused as exc:
                stats.issue(path, run.line(), str(exc), reason="XML with a DTD refused")
                return
            except expat.ExpatError as exc:
                yield from drain()
                tag_line = None if run.cur is not None else _event_tag_line(recent, run.error_abs())
                if tag_line is not None:
                    stats.records_seen += 1
                if run.cur is not None or tag_line is not None:
                    stats.issue(path, run.cur[0] if run.cur is not None else tag_line,
                                "file ends inside this <Event> (truncated export?); the event is skipped, every "
                                "event before it was read", reason="truncated XML")
                else:
                    stats.issue(path, run.line(), f"XML ends early ({expat.ErrorString(exc.code)}): the "
                                "closing </SearchResults> is missing (truncated export?); every complete "
                                "event was read", skipped=False)
                return
            yield from drain()
            return
        data, dabs, dlines = todo.popleft()
        recent.append((data, dabs, dlines))
        while len(recent) > 2 and dabs + len(data) - recent[1][1] >= window:
            recent.popleft()
        try:
            run.p.Parse(data, False)
        except _Refused as exc:
            stats.issue(path, run.line(), str(exc), reason="XML with a DTD refused")
            return
        except expat.ExpatError as exc:
            yield from drain()
            err_abs = run.error_abs()
            err_line = exc.lineno + run.line_offset
            what = expat.ErrorString(exc.code)
            tag_line = None if run.cur is not None else _event_tag_line(recent, err_abs)
            if tag_line is not None:
                stats.records_seen += 1  # the handler never saw this <Event>: its start tag is broken
            if run.cur is not None or tag_line is not None:
                stats.issue(path, run.cur[0] if run.cur is not None else tag_line,
                            f"malformed XML in this <Event> ({what} at line {err_line}, column {exc.offset + 1}); "
                            "the event is skipped, reading goes on at the next <Event>", reason="broken XML event")
            else:
                stats.issue(path, err_line, f"malformed XML ({what}, column {exc.offset + 1}) outside any "
                            "<Event>; reading goes on at the next <Event>", skipped=False)
            found = _resync(read_chunk, recent, err_abs)
            if found is None:
                return
            rest, rabs, rlines = found
            pos = rabs + len(rest)
            lines_before = rlines + rest.count(b"\n")
            run = _Run(rabs, rlines, True)
            recent.clear()
            todo.appendleft((rest, rabs, rlines))
            continue
        yield from drain()


_DECLARED = re.compile(rb"""\A<\?xml[^>]*?encoding\s*=\s*["']([A-Za-z0-9._-]+)["']""")
_SINGLE_BYTE = {"iso-8859-1": "cp1252", "latin-1": "cp1252", "latin1": "cp1252", "windows-1252": "cp1252",
                "cp1252": "cp1252", "us-ascii": "ascii", "ascii": "ascii"}


def _declared_single_byte(head: bytes) -> str | None:
    """Windows-1252 / Latin-1 named in the XML declaration (read as Windows-1252, which maps every
    byte): the sniffer passes such files through as bytes, and expat is told the stream is UTF-8."""
    m = _DECLARED.match(head.lstrip())
    if not m:
        return None
    enc = _SINGLE_BYTE.get(m.group(1).decode("ascii").lower())
    return None if enc == "ascii" else enc


def _event_tag_line(recent: deque[tuple[bytes, int, int]], err_abs: int) -> int | None:
    """The line of the ``<Event`` start tag that ``err_abs`` falls in (an error the start-element
    handler never saw: a broken attribute, a truncated tag), or None."""
    if not recent:
        return None
    buf = b"".join(d for d, _, _ in recent)
    base_abs, base_lines = recent[0][1], recent[0][2]
    rel = min(max(err_abs - base_abs, 0), len(buf))
    at = buf.rfind(b"<Event", max(0, rel - (1 << 20)), rel + len(b"<Event"))
    if at < 0 or not _EVENT_START.match(buf, at) or b">" in buf[at:rel]:
        return None
    return base_lines + buf.count(b"\n", 0, at) + 1


def _resync(read_chunk: Callable[[], bytes], recent: deque[tuple[bytes, int, int]],
            err_abs: int) -> tuple[bytes, int, int] | None:
    """The rest of the file from the first ``<Event`` after ``err_abs``: (bytes from there to the
    end of what was read, its absolute offset, new lines before it); None at end of file."""
    buf = b"".join(d for d, _, _ in recent)
    base_abs, base_lines = recent[0][1], recent[0][2]
    start = max(err_abs + 1 - base_abs, 0)
    while True:
        m = _EVENT_START.search(buf, start)
        if m:
            at = m.start()
            return buf[at:], base_abs + at, base_lines + buf.count(b"\n", 0, at)
        more = read_chunk()
        if not more:
            return None
        keep = max(len(buf) - 16, start)
        base_lines += buf.count(b"\n", 0, keep)
        base_abs += keep
        buf = buf[keep:] + more
        start = 0


READERS = [
    Reader(XML, FAMILY, _is_xml, read_xml, priority=58),
    Reader(ADMIN_CSV, FAMILY, _csv_detect(ADMIN_CSV), read_admin_csv, priority=58),
    Reader(MAILBOX_CSV, FAMILY, _csv_detect(MAILBOX_CSV), read_mailbox_csv, priority=58),
]
