"""Windows events as JSON lines, in the three shapes found in the wild:

* **flat** (EVTX-to-JSON / NXLog ``im_msvistalog`` / Mordor / OTRF Security-Datasets): one
  object per event with ``EventID``, ``Channel``, ``Hostname``, ``SourceName``, ``RecordNumber``
  and every EventData field at the top (``SubjectUserName``, ``AttributeLDAPDisplayName`` …);
  the time is ``TimeCreated`` when present, else ``@timestamp`` (UTC), else ``EventTime`` (the
  collector's local time without a zone: read as UTC, which may be hours off);
* **Winlogbeat / Elastic Agent (ECS)**: ``winlog.event_id``, ``winlog.channel``,
  ``winlog.provider_name``, ``winlog.computer_name``, ``winlog.record_id``,
  ``winlog.event_data.*`` (unnamed data as ``param1`` … ``paramN``), ``winlog.user.*``,
  ``@timestamp``; nested objects or dotted keys;
* **evtx_dump JSON lines** (``{"Event": {"System": …, "EventData": …}}``), the rendering of
  pyevtx-rs / evtx_dump ``-o jsonl``.

Detection looks for those keys in the first line, so unified-audit-log NDJSON (which has none
of them) is never taken; priority 90 < the UAL NDJSON reader's 200.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any, BinaryIO

import orjson

from delegatewatch.records import ReadStats, Record
from delegatewatch.records.prefilter import Prefilter
from delegatewatch.sources.formats import windows_events as W
from delegatewatch.sources.formats.windows_evtx import normalise as normalise_evtx_json
from delegatewatch.sources.lines import iter_lines, preview
from delegatewatch.sources.opening import Opened, first_json_object
from delegatewatch.sources.registry import Reader

DIALECT = "windows-jsonl"

#: Keys of the flat shape that are the collector's, not the event's (left out of the record).
_FLAT_SYSTEM = {"EventID", "Channel", "Hostname", "SourceName", "RecordNumber", "TimeCreated", "@timestamp",
                "EventTime", "EventReceivedTime", "ProviderGuid", "Computer", "Provider", "EventRecordID",
                "host", "port", "tags", "@version", "SourceModuleName", "SourceModuleType"}
_PARAM_N = re.compile(r"^param(\d+)$")


def shape(obj: Any) -> str | None:
    if not isinstance(obj, dict):
        return None
    if isinstance(obj.get("Event"), dict) and isinstance(obj["Event"].get("System"), dict):
        return "evtx"
    if isinstance(obj.get("winlog"), dict) or "winlog.event_id" in obj or "winlog.channel" in obj:
        return "ecs"
    if "EventID" in obj and any(k in obj for k in ("Channel", "SourceName", "Hostname", "ProviderGuid",
                                                    "Computer", "Provider", "EventRecordID", "RecordNumber")):
        return "flat"
    return None


def detect(opened: Opened, head: bytes) -> bool:
    obj = first_json_object(head)
    return obj is not None and shape(obj) is not None


def _get(obj: dict[str, Any], dotted: str) -> Any:
    if dotted in obj:
        return obj[dotted]
    cur: Any = obj
    for part in dotted.split("."):
        if not isinstance(cur, dict) or part not in cur:
            return None
        cur = cur[part]
    return cur


def from_flat(obj: dict[str, Any]) -> dict[str, Any]:
    time = obj.get("TimeCreated") or obj.get("@timestamp") or obj.get("EventTime")
    d = W.base(W.event_id(obj.get("EventID")), channel=obj.get("Channel"),
               provider=obj.get("SourceName") or obj.get("Provider"),
               computer=obj.get("Hostname") or obj.get("Computer"), time=time,
               record_id=obj.get("RecordNumber") if obj.get("RecordNumber") is not None else obj.get("EventRecordID"),
               user_id=obj.get("UserID"))
    for key, value in obj.items():
        if key not in _FLAT_SYSTEM and key not in d:
            d[key] = value if isinstance(value, list) and key == "Data" else W.text(value)
    return d


def from_ecs(obj: dict[str, Any]) -> dict[str, Any]:
    user = _get(obj, "winlog.user") or {}
    d = W.base(W.event_id(_get(obj, "winlog.event_id") or _get(obj, "event.code")),
               channel=_get(obj, "winlog.channel"), provider=_get(obj, "winlog.provider_name"),
               computer=_get(obj, "winlog.computer_name") or _get(obj, "host.name"),
               time=_get(obj, "winlog.time_created") or obj.get("@timestamp"), record_id=_get(obj, "winlog.record_id"),
               user_id=user.get("identifier") if isinstance(user, dict) else _get(obj, "winlog.user.identifier"))
    data = _get(obj, "winlog.event_data")
    if not isinstance(data, dict):
        prefix = "winlog.event_data."
        data = {k[len(prefix):]: v for k, v in obj.items() if k.startswith(prefix)}
    params: dict[int, str] = {}
    for key, value in data.items():
        m = _PARAM_N.match(key)
        if m:
            params[int(m.group(1))] = W.text(value)
        else:
            d[key] = W.text(value)
    if params:
        d["Data"] = [params.get(i, "") for i in range(1, max(params) + 1)]
    user_data = _get(obj, "winlog.user_data")
    if isinstance(user_data, dict):
        for key, value in user_data.items():
            if not key.startswith("xml_name"):
                d.setdefault(key, W.text(value))
    if isinstance(user, dict) and user.get("name"):
        d.setdefault("AccountName", W.text(user.get("name")))
        if user.get("domain"):
            d.setdefault("Domain", W.text(user.get("domain")))
    message = obj.get("message")
    if message and "Message" not in d:
        d["Message"] = W.text(message)
    return d


def read(path: str, stream: BinaryIO, stats: ReadStats, prefilter: Prefilter | None) -> Iterator[Record]:
    builder = W.Builder(path, DIALECT, stats)
    index = 0
    for line_no, raw in iter_lines(stream, stats, None):
        index += 1
        try:
            obj = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            stats.issue(path, line_no, f"not a JSON record ({exc}); line starts {preview(raw)}",
                        reason="malformed JSON line")
            continue
        kind = shape(obj)
        if kind is None:
            stats.issue(path, line_no, "JSON line is not a Windows event (no EventID / winlog / Event.System)",
                        reason="not a Windows event")
            continue
        try:
            d = from_flat(obj) if kind == "flat" else from_ecs(obj) if kind == "ecs" else normalise_evtx_json(obj)
        except (TypeError, AttributeError, ValueError) as exc:
            stats.issue(path, line_no, f"Windows event cannot be read ({exc})", reason="malformed Windows event")
            continue
        if d["EventID"] < 0:
            stats.issue(path, line_no, "Windows event without a numeric EventID", reason="malformed Windows event")
            continue
        yield from builder.records(d, line_no, index, raw)


READERS = [Reader(DIALECT, W.FAMILY, detect, read, priority=90)]
