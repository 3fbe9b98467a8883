"""Windows events, whatever carried them, as one flat record (shared by the EVTX, XML and JSON
readers in this folder).

The flat record (family ``windows``) holds the System fields under fixed names — ``EventID``
(int), ``Channel``, ``Provider``, ``Computer``, ``TimeCreated`` (ISO 8601 UTC), ``EventRecordID``,
``UserID`` (the System/Security SID, when logged) — and every named ``EventData``/``UserData``
field as a top-level key with its vendor name (``SubjectUserName``, ``MemberName``,
``AttributeLDAPDisplayName``, …); unnamed ``<Data>`` elements become the list ``Data``. Values
are text, as in the XML. ``CreationTime`` (``YYYY-MM-DDTHH:MM:SS``) is the finding time,
``Id`` the evidence record id (``EventRecordID``), ``_dedup`` the de-duplication key
(``Computer|Channel|EventRecordID``: record ids are only unique per log), ``Operation`` the
event id as text (findings show it).

Two kinds of events leave as unified-audit-log-shaped records (family ``m365``) instead, so the
cloud rules and event mapper apply to them unchanged: ``MSExchange Management`` events 1/6
(Exchange cmdlet logging) and PowerShell 4104 script blocks that run permission cmdlets; see
:mod:`.cmdlet_text`.

Enrichment (computed, not logged; documented in docs/formats-windows.md): for 5136 on
``nTSecurityDescriptor`` the reader remembers the ``Value Deleted`` (old) descriptor of each
``OpCorrelationID`` and adds ``SddlAddedAces`` to the matching ``Value Added`` event: the ACEs of
the new descriptor that the old one lacked, concatenated, or ``-`` when none.
"""

from __future__ import annotations

import hashlib
import re
from collections import OrderedDict
from datetime import datetime, timezone
from typing import Any

from delegatewatch.records import ReadStats, Record
from delegatewatch.sources.formats import cmdlet_text

FAMILY = "windows"
EXCHANGE_CHANNEL = "msexchange management"
EXCHANGE_PROVIDER = "msexchange cmdletlogs"
VALUE_ADDED = "%%14674"
VALUE_DELETED = "%%14675"

_ISO_Z = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?Z$")
_ACE = re.compile(r"\([^()]*\)")


def iso_utc(value: Any) -> str:
    """``2021-02-02T16:20:48.574049Z`` stays; other spellings (``2020-09-14 08:06:02``, offsets,
    ``… UTC``) become ISO 8601 UTC with a ``Z``. Unknown → empty."""
    if value is None:
        return ""
    s = str(value).strip()
    if not s:
        return ""
    if _ISO_Z.match(s):
        return s
    t = s.replace(" UTC", "Z").replace(" ", "T", 1)
    if t.endswith(("Z", "z")):
        t = t[:-1] + "+00:00"
    frac = re.match(r"^(.*T\d\d:\d\d:\d\d)\.(\d+)(.*)$", t)
    if frac:  # Python parses at most microseconds
        t = f"{frac.group(1)}.{frac.group(2)[:6].ljust(6, '0')}{frac.group(3)}"
    try:
        dt = datetime.fromisoformat(t)
    except ValueError:
        return ""
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    return dt.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        if "#text" in value:
            return text(value["#text"])
        return ""
    if isinstance(value, list):
        return "\n".join(text(v) for v in value)
    return str(value)


def event_id(value: Any) -> int | None:
    if isinstance(value, dict):
        value = value.get("#text")
    try:
        return int(str(value).strip())
    except (TypeError, ValueError):
        return None


def base(eid: int | None, *, channel: Any, provider: Any, computer: Any, time: Any, record_id: Any,
         user_id: Any = None) -> dict[str, Any]:
    rid = text(record_id).strip()
    d: dict[str, Any] = {
        "EventID": eid if eid is not None else -1,
        "Channel": text(channel),
        "Provider": text(provider),
        "Computer": text(computer),
        "TimeCreated": iso_utc(time),
        "EventRecordID": rid,
    }
    if user_id:
        d["UserID"] = text(user_id)
    return d


class Builder:
    """Turns normalised events into records: finishing touches, Exchange cmdlet conversion, the
    5136 descriptor pairing. One per file (the pairing only looks within a file)."""

    def __init__(self, path: str, dialect: str, stats: ReadStats) -> None:
        self.path = path
        self.dialect = dialect
        self.stats = stats
        self._old_sd: OrderedDict[tuple[str, str, str], str] = OrderedDict()

    def records(self, d: dict[str, Any], line: int | None, index: int, raw: bytes | None = None) -> list[Record]:
        eid = d.get("EventID")
        time = d.get("TimeCreated") or ""
        d["CreationTime"] = time[:19] if time else ""
        rid = d.get("EventRecordID") or ""
        if rid:
            d["Id"] = rid
            d["_dedup"] = f"{d.get('Computer', '').lower()}|{d.get('Channel', '').lower()}|{rid}"
        elif raw is not None:  # no record number (some NXLog exports): the line's own bytes
            d["_dedup"] = "sha1:" + hashlib.sha1(raw).hexdigest()
        d["Operation"] = str(eid)
        channel = str(d.get("Channel", "")).lower()
        provider = str(d.get("Provider", "")).lower()
        if eid in (1, 6) and (channel == EXCHANGE_CHANNEL or provider == EXCHANGE_PROVIDER):
            rec = self._cmdlet_log(d, line, index)
            if rec is not None:
                return [rec]
        elif eid == 4104 and d.get("ScriptBlockText"):
            recs = self._script_block(d, line, index)
            if recs:
                return recs
        elif eid == 5136 and str(d.get("AttributeLDAPDisplayName", "")).lower() == "ntsecuritydescriptor":
            self._pair_descriptor(d)
        self.stats.records_parsed += 1
        return [Record(d, self.path, line, index, self.dialect, FAMILY)]

    # -- Exchange cmdlet logging -----------------------------------------------------------
    def _cmdlet_log(self, d: dict[str, Any], line: int | None, index: int) -> Record | None:
        data = d.get("Data") if isinstance(d.get("Data"), list) else []
        succeeded = d["EventID"] == 1
        caller = None
        if data and str(data[0]).strip():
            cmdlet = str(data[0]).strip()
            params = cmdlet_text.parse_log_parameters(data[1] if len(data) > 1 else "")
            caller = str(data[2]).strip() if len(data) > 2 and str(data[2]).strip() else None
        else:
            parsed = cmdlet_text.parse_message(d.get("Message"))
            if parsed is None:
                self.stats.issue(self.path, line, f"MSExchange Management event {d['EventID']} without a cmdlet "
                                 "(no Data, message not in the documented form); kept as a Windows event",
                                 skipped=False)
                return None
            cmdlet, params, ok = parsed
            succeeded = succeeded and ok
        if caller is None:
            account = d.get("AccountName") or d.get("UserName") or ""
            domain = d.get("Domain") or d.get("DomainName") or ""
            caller = f"{domain}\\{account}" if account and domain else (account or d.get("UserID") or None)
        extra = {"EventID": d["EventID"], "Channel": d.get("Channel", ""), "Computer": d.get("Computer", ""),
                 "OriginatingServer": d.get("Computer", ""), "EventRecordID": d.get("EventRecordID", ""),
                 "TimeCreated": d.get("TimeCreated", ""), "EventSource": "MSExchange Management"}
        if len(data) > 3 and str(data[3]).startswith("S-1-"):
            extra["UserKey"] = str(data[3])
        if len(data) > 6 and data[6]:
            extra["AppPoolName"] = str(data[6])
        if "_dedup" in d:
            extra["_dedup"] = d["_dedup"]
        rid = d.get("Id") or ""
        rec = cmdlet_text.ual_record(cmdlet, params, caller=caller, time=d.get("CreationTime"),
                                     succeeded=succeeded, record_id=rid, extra=extra)
        if not rid:
            rec.pop("Id")
        self.stats.records_parsed += 1
        return Record(rec, self.path, line, index, self.dialect, "m365")

    def _script_block(self, d: dict[str, Any], line: int | None, index: int) -> list[Record]:
        script = str(d.get("ScriptBlockText") or "")
        low = script.lower()
        if not any(c in low for c in cmdlet_text.SCRIPT_CMDLETS):
            return []
        commands = list(cmdlet_text.script_commands(script))
        if not commands:
            return []
        caller = d.get("UserID") or None
        if d.get("AccountName"):
            caller = f"{d['Domain']}\\{d['AccountName']}" if d.get("Domain") else d["AccountName"]
        rid = d.get("Id") or ""
        out = []
        for n, cmd in enumerate(commands, 1):
            this_id = rid if len(commands) == 1 else (f"{rid}#{n}" if rid else "")
            extra = {"EventID": 4104, "Channel": d.get("Channel", ""), "Computer": d.get("Computer", ""),
                     "OriginatingServer": d.get("Computer", ""), "EventRecordID": d.get("EventRecordID", ""),
                     "TimeCreated": d.get("TimeCreated", ""), "EventSource": "PowerShell ScriptBlock",
                     "ScriptBlockId": d.get("ScriptBlockId", ""), "ScriptLine": cmd.line + 1,
                     "CommandText": cmd.text[:2000]}
            if d.get("UserID"):
                extra["UserKey"] = d["UserID"]
            dedup = d.get("_dedup")
            if dedup:
                extra["_dedup"] = f"{dedup}#{n}"
            rec = cmdlet_text.ual_record(cmd.cmdlet, cmd.parameters, caller=caller, time=d.get("CreationTime"),
                                         succeeded=None, record_id=this_id, extra=extra)
            if not this_id:
                rec.pop("Id")
            out.append(Record(rec, self.path, line, index, self.dialect, "m365"))
        self.stats.records_parsed += 1
        return out

    # -- 5136 descriptor pairs -----------------------------------------------------------------
    def _pair_descriptor(self, d: dict[str, Any]) -> None:
        key = (str(d.get("Computer", "")).lower(), str(d.get("OpCorrelationID", "")).lower(),
               str(d.get("ObjectDN", "")).lower())
        op = d.get("OperationType")
        if op == VALUE_DELETED:
            self._old_sd[key] = str(d.get("AttributeValue", ""))
            while len(self._old_sd) > 1024:
                self._old_sd.popitem(last=False)
        elif op == VALUE_ADDED and key in self._old_sd:
            old = set(_ACE.findall(self._old_sd.pop(key)))
            added = [a for a in _ACE.findall(str(d.get("AttributeValue", ""))) if a not in old]
            d["SddlAddedAces"] = "".join(added) or "-"


def flat_event_data(target: dict[str, Any], data: Any) -> None:
    """EventData/UserData as rendered by the evtx JSON (names → values, or unnamed ``Data``)."""
    if not isinstance(data, dict):
        return
    for key, value in data.items():
        if key == "#attributes":
            continue
        if key == "Data":
            items = value.get("#text") if isinstance(value, dict) else value
            if isinstance(items, list):
                target["Data"] = [text(v) for v in items]
            elif items is not None:
                target["Data"] = [text(items)]
            continue
        if key == "Binary":
            target["Binary"] = text(value)
            continue
        if isinstance(value, dict) and "#text" not in value and any(k != "#attributes" for k in value):
            flat_event_data(target, value)  # UserData: <LogFileCleared xmlns=…><SubjectUserSid>…
            continue
        target[key] = text(value)
