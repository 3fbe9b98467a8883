"""Google Workspace Admin SDK Reports API activities (family ``google``).

Shapes read, all detected from content:

* ``activities.list`` **pages** (``{"kind":"admin#reports#activities","items":[…],"nextPageToken":…}``),
  pretty-printed or compact, one or several pages one after another, or a JSON array of pages or
  activities; also ``{"items": […]}`` without ``kind`` (ScubaGoggles' ``Raw.gmail_logs``);
* **one activity per line** (NDJSON; ``collect google`` writes these as ``.ndjson.gz``), and one
  compact page per line;
* Elastic's single-event objects (``events`` an object, not an array: the integration's test logs);
* a **ScubaGoggles report** (``ScubaResults_*.json``): every ``Raw.<product>_logs.items`` activity.

One record per (activity, event), so a rule sees one event's name and parameters at a time::

    {"Id": id.uniqueQualifier, "_dedup": "app|time|uniqueQualifier|event index",
     "CreationTime": "YYYY-MM-DDTHH:MM:SS" (UTC), "id": {…}, "actor": {…}, "ipAddress": …,
     "ownerDomain": …, "networkInfo": {…},
     "events": {"type": …, "name": …, "index": i, "parameters": {NAME: value, …}}}

Parameter values are text: ``value`` as is (numbers in decimal), ``boolValue`` as ``true``/``false``,
``intValue`` in decimal, ``multiValue`` / ``multiIntValue`` joined with ``", "``; ``messageValue``
becomes a nested dict of the same kind (``events.parameters.event_info.mail_event_type`` for Gmail
``delivery`` events), ``multiMessageValue`` a list of such dicts (JSON text for rules).
``sensitiveParameters`` are merged in when their name is not already used.

Line files are parsed line by line (orjson): a bad line costs that line, with its number. Other
documents are parsed incrementally (ijson, fed a line at a time so errors carry a line number); after
invalid JSON, reading resumes at the next line that starts a top-level ``{`` or ``[`` in column 0
(the next page of a concatenated export).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any, BinaryIO

import ijson
import orjson
from ijson.common import ObjectBuilder

from delegatewatch.records import ReadStats, Record
from delegatewatch.records.prefilter import Prefilter
from delegatewatch.records.times import parse_time
from delegatewatch.sources.lines import decode_text, iter_lines, preview
from delegatewatch.sources.opening import Opened, first_json_object
from delegatewatch.sources.registry import Reader

FAMILY = "google"
LINES = "google-reports-ndjson"
DOCUMENT = "google-reports-json"
SCUBA = "google-scubagoggles-report"

#: Top-level keys of an activity (everything else of a document is not read into memory).
ACTIVITY_KEYS = frozenset({"kind", "id", "etag", "actor", "ownerDomain", "ipAddress", "events",
                           "networkInfo", "resourceDetails"})
#: Activity fields copied into the record (``id``, ``events`` are handled on their own).
_COPIED = ("actor", "ipAddress", "ownerDomain", "networkInfo")


# -- detection --------------------------------------------------------------------------------
def _looks_google(head: bytes) -> bool:
    if head[:1] not in (b"{", b"["):
        return False
    if b"admin#reports#activit" in head:  # "admin#reports#activity" and "…#activities"
        return True
    return b'"uniqueQualifier"' in head and b'"applicationName"' in head


def _is_lines(opened: Opened, head: bytes) -> bool:
    return _looks_google(head) and first_json_object(head) is not None


def _is_document(opened: Opened, head: bytes) -> bool:
    return _looks_google(head) and not first_json_object(head) is not None


def _is_scuba(opened: Opened, head: bytes) -> bool:
    return (head[:1] == b"{" and b'"MetaData"' in head[:4096]
            and (b'"ScubaGoggles"' in head or b'"Google Workspace"' in head))


# -- parameters and records -------------------------------------------------------------------
def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, (int, float)):
        return str(value)
    return orjson.dumps(value).decode()


def _message(value: Any) -> dict[str, Any]:
    """A ``messageValue`` (``{"parameter": [...]}``) as a dict of its parameters."""
    if isinstance(value, dict):
        return parameters(value.get("parameter") or value.get("parameters") or [])
    if isinstance(value, list):  # tolerate a bare parameter list
        return parameters(value)
    return {}


def _value(param: dict[str, Any]) -> Any:
    if "value" in param:
        return _text(param["value"])
    if "boolValue" in param:
        return _text(bool(param["boolValue"]) if not isinstance(param["boolValue"], str)
                     else param["boolValue"].lower() == "true")
    if "intValue" in param:
        return _text(param["intValue"])
    if "multiValue" in param:
        vals = param["multiValue"]
        return ", ".join(_text(v) for v in vals) if isinstance(vals, list) else _text(vals)
    if "multiIntValue" in param:
        vals = param["multiIntValue"]
        return ", ".join(_text(v) for v in vals) if isinstance(vals, list) else _text(vals)
    if "messageValue" in param:
        return _message(param["messageValue"])
    if "multiMessageValue" in param:
        vals = param["multiMessageValue"]
        return [_message(v) for v in vals] if isinstance(vals, list) else [_message(vals)]
    return ""


def parameters(items: Iterable[Any]) -> dict[str, Any]:
    """Reports API parameters (``[{"name": …, "value"|"boolValue"|…: …}]``) as ``{name: value}``."""
    out: dict[str, Any] = {}
    if not isinstance(items, list):
        return out
    for p in items:
        if not isinstance(p, dict) or "name" not in p:
            continue
        name = str(p["name"])
        val = _value(p)
        if name in out:
            old = out[name]
            if isinstance(old, str) and isinstance(val, str):
                out[name] = f"{old}, {val}" if old else val  # a name given twice keeps both values
            continue
        out[name] = val
    return out


def _time_text(raw: Any) -> str:
    dt = parse_time(raw)
    return dt.strftime("%Y-%m-%dT%H:%M:%S") if dt else ""


def _actor_name(actor: Any) -> str:
    if not isinstance(actor, dict):
        return ""
    return _text(actor.get("email") or actor.get("key") or actor.get("profileId") or "")


def _configured() -> frozenset[str]:
    """``[google] delegate_added_events``: event names marked ``delegatewatch.mapping:
    gmail_delegate_added`` for the rule ``google_gmail_delegate_added_configured``."""
    from delegatewatch import config

    return frozenset(n.strip().upper() for n in config.current().google.delegate_added_events if n.strip())


class NotAnActivity(ValueError):
    pass


def is_activity(obj: Any) -> bool:
    return isinstance(obj, dict) and isinstance(obj.get("id"), dict) and "events" in obj


def activity_records(activity: dict[str, Any]) -> list[dict[str, Any]]:
    """The records of one activity: one per event."""
    ident = activity.get("id")
    if not isinstance(ident, dict):
        raise NotAnActivity("activity has no id object")
    events = activity.get("events")
    if isinstance(events, dict):  # Elastic's post-split shape: one event per document
        events = [events]
    if not isinstance(events, list):
        raise NotAnActivity("activity has no events")
    uq = _text(ident.get("uniqueQualifier"))
    app = _text(ident.get("applicationName"))
    when = _text(ident.get("time"))
    ident = {k: (_text(v) if not isinstance(v, (dict, list)) else v) for k, v in ident.items()}
    configured = _configured()
    out = []
    for i, ev in enumerate(events):
        if not isinstance(ev, dict):
            continue
        params = parameters(ev.get("parameters") or [])
        for name, val in parameters(ev.get("sensitiveParameters") or []).items():
            params.setdefault(name, val)
        data: dict[str, Any] = {
            "Id": uq,
            "_dedup": f"{app}|{when}|{uq}|{i}",
            "CreationTime": _time_text(when),
            "id": ident,
        }
        for key in _COPIED:
            if key in activity:
                v = activity[key]
                data[key] = ({k: (_text(x) if not isinstance(x, (dict, list)) else x) for k, x in v.items()}
                             if isinstance(v, dict) else _text(v))
        name = _text(ev.get("name"))
        data["events"] = {"type": _text(ev.get("type")), "name": name, "index": str(i), "parameters": params}
        # UAL-style aliases that findings fall back on (actor and operation of a finding whose
        # rule reports no typed event); rules use the vendor names above.
        data["Operation"] = name
        data["UserId"] = _actor_name(data.get("actor"))
        if configured and name.upper() in configured:
            data["delegatewatch"] = {"mapping": "gmail_delegate_added"}
        out.append(data)
    return out


def _expand(obj: Any) -> Iterator[Any]:
    """Activities in a decoded value: a page, a list, or one activity. Non-activities are yielded
    as they are (the caller reports them)."""
    if isinstance(obj, list):
        for item in obj:
            yield from _expand(item)
    elif isinstance(obj, dict) and not is_activity(obj) and ("items" in obj or obj.get("kind") == "admin#reports#activities"):
        items = obj.get("items") or []
        yield from (items if isinstance(items, list) else [items])
    else:
        yield obj


def _records_of(obj: Any, path: str, line: int | None, stats: ReadStats, counter: list[int],
                dialect: str, where: str) -> Iterator[Record]:
    for act in _expand(obj):
        stats.records_seen += 1
        try:
            if not is_activity(act):
                raise NotAnActivity("not a Reports API activity (no id object and events)")
            recs = activity_records(act)
        except NotAnActivity as exc:
            stats.issue(path, line, f"{where}: {exc}", reason="not a Google Reports API activity")
            continue
        stats.records_parsed += 1
        for data in recs:
            counter[0] += 1
            yield Record(data, path, line, counter[0], dialect, FAMILY)


# -- line files -------------------------------------------------------------------------------
def read_lines(path: str, stream: BinaryIO, stats: ReadStats, prefilter: Prefilter | None,
               limit: int | None = None) -> Iterator[Record]:
    counter = [0]
    for line_no, raw in iter_lines(stream, stats, None, limit=limit):
        stats.records_seen -= 1  # _records_of counts activities, not lines
        try:
            obj = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            try:
                obj = orjson.loads(decode_text(raw, path, line_no, stats))
            except (orjson.JSONDecodeError, UnicodeError):
                stats.records_seen += 1
                stats.issue(path, line_no, f"not a JSON activity ({exc}); line starts {preview(raw)}",
                            reason="malformed JSON line")
                continue
        yield from _records_of(obj, path, line_no, stats, counter, LINES, f"line {line_no}")


# -- documents (streamed) ---------------------------------------------------------------------
def _item_prefix(prefix: str) -> bool:
    """An element of a top-level array, or of any ``items`` array (pages; ScubaGoggles' Raw)."""
    return prefix == "item" or prefix == "items.item" or prefix.endswith(".items.item")


class _Walker:
    """Builds activities from ijson events without holding the whole document."""

    def __init__(self) -> None:
        self.item: ObjectBuilder | None = None
        self.item_prefix = ""
        self.item_line = 0
        self.top: ObjectBuilder | None = None
        self.top_key: str | None = None
        self.top_line = 0

    def reset(self) -> None:
        self.__init__()

    def feed(self, events: list, line: int) -> Iterator[tuple[Any, int]]:
        for prefix, event, value in events:
            if self.item is not None:
                self.item.event(event, value)
                if prefix == self.item_prefix and event in ("end_map", "end_array"):
                    yield self.item.value, self.item_line
                    self.item = None
                continue
            if event in ("start_map", "start_array") and _item_prefix(prefix):
                self.item, self.item_prefix, self.item_line = ObjectBuilder(), prefix, line
                self.item.event(event, value)
                continue
            if prefix == "":
                if event == "start_map":
                    self.top, self.top_key, self.top_line = ObjectBuilder(), None, line
                    self.top.event(event, value)
                elif event == "map_key":
                    self.top_key = value
                    if value in ACTIVITY_KEYS and self.top is not None:
                        self.top.event(event, value)
                elif event == "end_map":
                    if self.top is not None:
                        self.top.event(event, value)
                        obj = self.top.value
                        if is_activity(obj):
                            yield obj, self.top_line
                        elif not (set(obj) & {"items", "kind"}) and obj:
                            yield obj, self.top_line  # something else: reported by the caller
                    self.top = None
                elif event not in ("start_array", "end_array"):
                    yield value, line  # a bare scalar at the top level
                continue
            if self.top is not None and self.top_key in ACTIVITY_KEYS and prefix.partition(".")[0] == self.top_key:
                self.top.event(event, value)


def _read_document(path: str, stream: BinaryIO, stats: ReadStats, dialect: str) -> Iterator[Record]:
    counter = [0]
    events = ijson.sendable_list()
    coro = ijson.parse_coro(events, multiple_values=True, use_float=True)
    walker = _Walker()
    line_no = 0
    skipping_from: int | None = None  # line of the last error, while looking for a place to resume
    error = ""
    for raw in stream:
        line_no += 1
        if skipping_from is not None:
            if raw[:1] in (b"{", b"["):
                stats.issue(path, skipping_from, f"{error}; lines {skipping_from}–{line_no - 1} skipped, "
                            f"reading resumes at line {line_no}", reason="invalid JSON in document")
                skipping_from = None
                events = ijson.sendable_list()
                coro = ijson.parse_coro(events, multiple_values=True, use_float=True)
                walker.reset()
            else:
                continue
        try:
            coro.send(raw)
        except (ijson.JSONError, ijson.IncompleteJSONError, UnicodeDecodeError, ValueError) as exc:
            error = f"invalid JSON ({_short(exc)})"
            for obj, at in walker.feed(events, line_no):
                yield from _records_of(obj, path, at, stats, counter, dialect, f"line {at}")
            del events[:]
            skipping_from = line_no
            continue
        if events:
            for obj, at in walker.feed(events, line_no):
                yield from _records_of(obj, path, at, stats, counter, dialect, f"line {at}")
            del events[:]
    if skipping_from is not None:
        stats.issue(path, skipping_from, f"{error}; the rest of the file (lines {skipping_from}–{line_no}) "
                    "could not be read", reason="invalid JSON in document")
        return
    try:
        coro.close()
    except (ijson.JSONError, ijson.IncompleteJSONError, ValueError) as exc:
        stats.issue(path, line_no, f"file ends before the JSON is complete ({_short(exc)}); "
                    f"{counter[0]} records before were read", reason="truncated or invalid JSON document")
    for obj, at in walker.feed(events, line_no):
        yield from _records_of(obj, path, at, stats, counter, dialect, f"line {at}")


def _short(exc: Exception) -> str:
    text = " ".join(str(exc).split())
    return text[:160]


def read_document(path: str, stream: BinaryIO, stats: ReadStats, prefilter: Prefilter | None) -> Iterator[Record]:
    return _read_document(path, stream, stats, DOCUMENT)


def read_scuba(path: str, stream: BinaryIO, stats: ReadStats, prefilter: Prefilter | None) -> Iterator[Record]:
    return _read_document(path, stream, stats, SCUBA)


READERS = [
    Reader(SCUBA, FAMILY, _is_scuba, read_scuba, priority=40),
    Reader(LINES, FAMILY, _is_lines, read_lines, priority=50, splittable=True),
    Reader(DOCUMENT, FAMILY, _is_document, read_document, priority=55),
]
