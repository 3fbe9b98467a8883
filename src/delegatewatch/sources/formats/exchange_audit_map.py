"""Exchange admin-audit and mailbox-audit entries → unified-audit-log-shaped records.

The readers in :mod:`exchange_audit` turn each export row or XML ``<Event>`` into a flat
``{name: text}`` dict (CSV columns or XML attributes, same names) plus, for the XML, the
parameter / property / source-item child elements. This module maps those onto the UAL field
names the Microsoft 365 rules and :class:`~delegatewatch.events.ual.UalMapper` read, so the cloud
rules apply unchanged (docs/formats-exchange.md has the mapping and what is uncertain).

No module-level ``READERS`` here: this is a helper of ``exchange_audit``.
"""

from __future__ import annotations

import hashlib
import re
import uuid
from collections.abc import Iterable
from datetime import datetime, timezone
from typing import Any

from delegatewatch.records.times import parse_time

ADMIN_SOURCE = "AdminAuditLog"
MAILBOX_SOURCE = "MailboxAuditLog"

#: Search-MailboxAuditLog logon type names (formats.md §4.3) → the UAL LogonType enum (§2.5).
LOGON_TYPES = {"owner": 0, "admin": 1, "delegate": 2, "delegated": 2, "transport": 3, "systemservice": 4,
               "bestaccess": 5, "delegatedadmin": 6}

#: Columns PowerShell adds to every exported object; never part of the audit entry.
PS_METADATA = frozenset({"RunspaceId", "IsValid", "ObjectState", "PSComputerName", "PSShowComputerName",
                         "PSSourceJobInstanceId"})

# -- times ------------------------------------------------------------------------------------
_SLASH = re.compile(r"^(\d{1,2})/(\d{1,2})/(\d{4})[ T](\d{1,2}):(\d{2})(?::(\d{2}))?(?:[.,]\d+)?(?: ?([AaPp][Mm]))?$")
_DOTTED = re.compile(r"^(\d{1,2})\.(\d{1,2})\.(\d{4})[ T](\d{1,2}):(\d{2})(?::(\d{2}))?(?:[.,]\d+)?$")
_ISO_SPACE = re.compile(r"^\d{4}-\d{2}-\d{2}[ T]\d")


def slash_order(value: str) -> str | None:
    """``"dmy"`` or ``"mdy"`` when a slash date says which (a part above 12), else None."""
    m = _SLASH.match(value.strip())
    if not m:
        return None
    a, b = int(m.group(1)), int(m.group(2))
    if a > 12 >= b:
        return "dmy"
    if b > 12 >= a:
        return "mdy"
    return None


def parse_when(value: object, order: str = "mdy") -> datetime | None:
    """An export's time as UTC: ISO 8601 with or without offset (the XML exports), PowerShell's
    ``\\/Date(ms)\\/``, and the locale spellings of ``Export-Csv``: ``M/D/YYYY h:mm:ss AM`` (en-US),
    ``D/M/YYYY HH:mm:ss`` (``order="dmy"``: en-GB, fr-FR …) and ``D.M.YYYY HH:mm:ss`` (de-DE …).
    A time without a zone is taken as UTC (docs/formats-exchange.md: it is the exporting machine's
    local time, which the file does not record)."""
    if not isinstance(value, str) or not value.strip():
        return None
    s = value.strip()
    if s.upper().endswith(" UTC"):
        s = s[:-4].strip()
    m = _SLASH.match(s)
    if m:
        a, b, year, hour, minute, sec, ampm = m.groups()
        month, day = (int(b), int(a)) if order == "dmy" else (int(a), int(b))
        return _build(int(year), month, day, int(hour), int(minute), int(sec or 0), ampm)
    m = _DOTTED.match(s)
    if m:
        day, month, year, hour, minute, sec = m.groups()
        return _build(int(year), int(month), int(day), int(hour), int(minute), int(sec or 0), None)
    if _ISO_SPACE.match(s):
        s = s[:10] + "T" + s[11:]
    return parse_time(s)


def _build(year: int, month: int, day: int, hour: int, minute: int, sec: int, ampm: str | None) -> datetime | None:
    if ampm:
        if hour > 12:
            return None
        hour = hour % 12 + (12 if ampm.lower() == "pm" else 0)
    try:
        return datetime(year, month, day, hour, minute, sec, tzinfo=timezone.utc)
    except ValueError:
        return None


def ual_time(when: datetime) -> str:
    """UAL ``CreationTime``: UTC, ``YYYY-MM-DDTHH:MM:SS``, no zone, no fraction."""
    return when.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")


# -- the parameter list as text ----------------------------------------------------------------
#: Attribute types of LDAP distinguished names: ``CN=x, OU=y`` inside a value is not a new parameter.
_DN_KEYS = frozenset({"cn", "ou", "dc", "o", "l", "st", "c", "street", "uid"})
_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]*")
_TYPE_NAME = re.compile(r"^(?:Deserialized\.)?(?:System|Microsoft)\.[\w.`\[\], ]+$")
_DASH_PARAMS = re.compile(r"""(?:^|\s)-([A-Za-z][A-Za-z0-9_]*)(?::(\S+)|\s+(?!-[A-Za-z])("(?:[^"]|"")*"|'(?:[^']|'')*'|\S+))?""")


class ValuesLost(ValueError):
    """The column holds only a type name or the parameter names: Export-Csv of the raw object."""


def parse_parameter_text(text: str | None) -> list[tuple[str, str]]:
    """(name, value) pairs from the parameter collection as an export writes it.

    Accepted spellings (docs/formats-exchange.md): the audit entry's own ``Name=Value`` items
    (``AdminAuditLogCmdletParameter.Parse`` splits on the first ``=``), separated by new lines,
    ``;`` or ``,`` and optionally wrapped in ``{…}`` / ``@{…}``; ``Name : Value`` (scripts that format
    ``"{0} : {1}"``); and the cmdlet-log form ``-Name "Value" -Other Value``. A separator only splits
    where the next item starts with ``Name=`` / ``Name:`` at the top level (not inside quotes or
    braces, and not an LDAP DN key such as ``OU=``), so values keep their commas
    (``AccessRights=DeleteItem, FullAccess``, ``Identity=Doe, John``).

    Raises :class:`ValuesLost` when the text is only a .NET type name or a list of bare names —
    what ``Export-Csv`` writes for the unexpanded collection.
    """
    if text is None:
        return []
    s = text.strip()
    if not s:
        return []
    if _TYPE_NAME.match(s):
        raise ValuesLost(s)
    if s.startswith("@{") and s.endswith("}"):
        s = s[2:-1].strip()
    elif s.startswith("{") and s.endswith("}"):
        s = s[1:-1].strip()
    if s.startswith("-") and _DASH_PARAMS.match(s):
        return [(m.group(1), _unquote(m.group(2) or m.group(3) or "True")) for m in _DASH_PARAMS.finditer(s)]
    items = _split_items(s)
    pairs: list[tuple[str, str]] = []
    for item in items:
        m = re.match(r"\s*([A-Za-z][A-Za-z0-9_]*)\s*(=|:)\s?(.*)$", item, re.DOTALL)
        if m:
            pairs.append((m.group(1), _unquote(m.group(3).strip())))
        elif pairs:
            # a line that continues the previous value (a value with a new line in it)
            name, value = pairs[-1]
            pairs[-1] = (name, f"{value}\n{item.strip()}" if value else item.strip())
        elif item.strip():
            pairs.append(("", item.strip()))
    if pairs and all(not n for n, _ in pairs):
        names = [v.strip().strip("'\"") for v in re.split(r"[,;\n]", s)]
        if all(_NAME.fullmatch(n) for n in names if n):
            raise ValuesLost(s)
    return [(n, v) for n, v in pairs if n]


def _split_items(s: str) -> list[str]:
    items: list[str] = []
    depth = 0
    quote = ""
    start = 0
    i = 0
    n = len(s)
    while i < n:
        ch = s[i]
        if quote:
            if ch == quote:
                quote = ""
        elif ch in "\"'" and (i == 0 or s[i - 1] in "=:{,;( \t\n"):
            quote = ch
        elif ch in "{[(":
            depth += 1
        elif ch in "}])":
            depth = max(0, depth - 1)
        elif depth == 0 and ch in ",;\n" and _item_starts(s, i + 1):
            items.append(s[start:i])
            start = i + 1
        i += 1
    items.append(s[start:])
    return [it for it in items if it.strip()]


def _item_starts(s: str, pos: int) -> bool:
    m = re.match(r"[ \t\r\n]*([A-Za-z][A-Za-z0-9_]*)[ \t]*(=|:)", s[pos:pos + 80])
    if not m:
        return False
    if m.group(2) == ":" and s[pos + m.end():pos + m.end() + 1] == "\\":
        return False  # "mailbox:\Inbox" is a folder identity, not "Name: value"
    return m.group(1).lower() not in _DN_KEYS


def _unquote(value: str) -> str:
    v = value.strip()
    if len(v) >= 2 and v[0] == v[-1] and v[0] in "\"'":
        q = v[0]
        return v[1:-1].replace(q + q, q)
    return v


def normalise_value(name: str, value: str | None) -> str:
    """One spelling for a parameter value, whichever export it came from: outer white space off,
    a multi-valued list (``{FullAccess, ReadPermission}``, ``FullAccess,ReadPermission``) as
    ``FullAccess, ReadPermission`` — how the unified audit log writes AccessRights."""
    v = (value or "").strip()
    if v.startswith("{") and v.endswith("}") and not v.startswith("@{"):
        v = v[1:-1].strip()
    if name.lower() in ("accessrights", "extendedrights", "roles") and "," in v:
        v = ", ".join(p.strip().strip("'\"") for p in v.split(",") if p.strip())
    return v


def parameter_list(pairs: Iterable[tuple[str | None, str | None]]) -> list[dict[str, str]]:
    """UAL ``Parameters``: ``[{Name, Value}]`` in first-seen order; a name given more than once (a
    multi-valued parameter written as repeated elements) is one entry with the values joined ``, ``."""
    out: dict[str, dict[str, str]] = {}
    for name, value in pairs:
        if not name:
            continue
        v = normalise_value(name, value)
        key = name.lower()
        if key in out:
            if v and v not in out[key]["Value"].split(", "):
                out[key]["Value"] = f"{out[key]['Value']}, {v}" if out[key]["Value"] else v
        else:
            out[key] = {"Name": name, "Value": v}
    return list(out.values())


def stable_id(*parts: object) -> str:
    """A GUID-shaped id from the entry's content: the same entry read from the XML and the CSV
    export gets the same ``Id``, so the hunt's de-duplication counts it once."""
    text = "\x1f".join("" if p is None else str(p) for p in parts)
    return str(uuid.UUID(bytes=hashlib.sha256(text.encode("utf-8")).digest()[:16]))


def _params_key(params: list[dict[str, str]]) -> str:
    return "\x1e".join(sorted(f"{p['Name'].lower()}={p['Value']}" for p in params))


def _bool_text(value: str | None) -> str | None:
    v = (value or "").strip().lower()
    if v in ("true", "1", "yes", "$true"):
        return "True"
    if v in ("false", "0", "no", "$false"):
        return "False"
    return None


_SYSTEM_CALLER = re.compile(r"^(NT AUTHORITY\\SYSTEM|S-1-5-18$)", re.IGNORECASE)


# -- admin audit ----------------------------------------------------------------------------------
def admin_record(fields: dict[str, str], params: list[dict[str, str]] | None,
                 modified: list[dict[str, str]] | str | None, when: datetime | None) -> dict[str, Any]:
    """One admin-audit entry (XML attributes or CSV columns by their export names) as an
    ExchangeAdmin (RecordType 1) UAL record. ``params`` None: the export did not carry values."""
    cmdlet = (fields.get("CmdletName") or fields.get("Cmdlet") or "").strip()
    caller = (fields.get("Caller") or "").strip()
    obj = (fields.get("ObjectModified") or "").strip()
    error = (fields.get("Error") or "").strip()
    status = _bool_text(fields.get("Succeeded"))
    if status is None:
        status = "False" if error and error.lower() not in ("none", "$null") else "True"
    created = ual_time(when) if when is not None else None
    record: dict[str, Any] = {
        "Id": stable_id("exchange-admin-audit", caller.lower(), cmdlet.lower(), created or fields.get("RunDate", ""),
                        obj.lower(), _params_key(params or [])),
        "RecordType": 1,
        "CreationTime": created,
        "Operation": cmdlet,
        "UserId": caller,
        "UserKey": caller,
        "UserType": 4 if _SYSTEM_CALLER.match(caller) else 2,
        "Workload": "Exchange",
        "ResultStatus": status,
        "ObjectId": obj,
        "Source": ADMIN_SOURCE,
    }
    if created is None:
        del record["CreationTime"]
    if params is not None:
        record["Parameters"] = params
    if modified:
        record["ModifiedProperties"] = modified
    if error and error.lower() != "none":
        record["Error"] = error
    server = (fields.get("OriginatingServer") or "").strip()
    if server:
        record["OriginatingServer"] = server
    external = _bool_text(fields.get("ExternalAccess"))
    if external is not None:
        record["ExternalAccess"] = external == "True"
    for key in ("ModifiedObjectResolvedName", "ClientIP", "SessionId", "AppId", "ClientAppId"):
        if (fields.get(key) or "").strip():
            record[key] = fields[key].strip()
    return record


# -- mailbox audit --------------------------------------------------------------------------------
#: Export names that map onto a UAL name of their own (the rest are kept under their export name).
_MAILBOX_RENAMED = frozenset({
    "Operation", "OperationResult", "LogonType", "InternalLogonType", "LastAccessed", "ItemId", "ItemSubject",
    "ItemInternetMessageId", "FolderId", "FolderPathName", "FolderName", "MemberRights", "MemberSid", "MemberUpn",
    "AuditOperationsCountInAggregatedRecord", "OperationProperties", "Identity", "Owner",
})


def logon_type(value: str | None) -> int | str | None:
    v = (value or "").strip()
    if not v:
        return None
    if v.isdigit():
        return int(v)
    return LOGON_TYPES.get(v.lower(), v)


def _looks_upn(value: str | None) -> bool:
    return bool(value) and "@" in value and " " not in value.strip()  # type: ignore[operator]


def mailbox_record(fields: dict[str, str], when: datetime | None,
                   source_items: list[dict[str, str]] | None = None) -> dict[str, Any]:
    """One mailbox-audit entry (``Search-MailboxAuditLog -ShowDetails`` columns or the XML's
    ``<Event>`` attributes) as an ExchangeItem (RecordType 2) UAL record."""
    f = {k: v.strip() if isinstance(v, str) else v for k, v in fields.items()}
    op = f.get("Operation") or ""
    logon = logon_type(f.get("LogonType"))
    owner = f.get("MailboxOwnerUPN") or ""
    # The logon user: the owner for Owner logons; otherwise the best name the export carries.
    names = [f.get("LogonUserDisplayName"), f.get("DelegateUserDisplayName"), f.get("LogonUserDN")]
    user = owner if logon == 0 and owner else (
        next((n for n in names if _looks_upn(n)), None) or next((n for n in names if n), None)
        or f.get("LogonUserSid") or (owner if logon in (None, 0) else ""))
    sid = f.get("LogonUserSid") or ""
    created = ual_time(when) if when is not None else None
    record: dict[str, Any] = {
        "RecordType": 2,
        "CreationTime": created,
        "Operation": op,
        "UserId": user or "",
        "UserKey": sid or user or "",
        "UserType": 4 if sid == "S-1-5-18" else (2 if logon == 1 else 0),
        "Workload": "Exchange",
        "ResultStatus": f.get("OperationResult") or "Succeeded",
        "Source": MAILBOX_SOURCE,
    }
    if created is None:
        del record["CreationTime"]
    if logon is not None:
        record["LogonType"] = logon
    internal = logon_type(f.get("InternalLogonType"))
    if internal is not None:
        record["InternalLogonType"] = internal
    for key, value in f.items():
        if key in _MAILBOX_RENAMED or key in PS_METADATA or key in record or value in (None, ""):
            continue
        if key in ("CrossMailboxOperation", "ExternalAccess"):
            b = _bool_text(value)
            record[key] = (b == "True") if b else value
        else:
            record[key] = value
    if f.get("Owner") and "MailboxResolvedOwnerName" not in record:
        record["MailboxResolvedOwnerName"] = f["Owner"]  # the XML's name for it
    item: dict[str, Any] = {}
    folder: dict[str, Any] = {}
    for src, dst in (("ItemId", "Id"), ("ItemSubject", "Subject"), ("ItemInternetMessageId", "InternetMessageId")):
        if f.get(src):
            item[dst] = f[src]
    if source_items:
        first = source_items[0]
        subject = first.get("Subject") or first.get("SourceItemSubject") or first.get("ItemSubject")
        if subject and "Subject" not in item:
            item["Subject"] = subject
        iid = first.get("ItemId") or first.get("SourceItemId") or first.get("Id")
        if iid and "Id" not in item:
            item["Id"] = iid
        record["AffectedItems"] = [{k: v for k, v in si.items() if v} for si in source_items]
    for src, dst in (("FolderId", "Id"), ("FolderPathName", "Path"), ("FolderName", "Name"),
                     ("MemberUpn", "MemberUpn"), ("MemberSid", "MemberSid"), ("MemberRights", "MemberRights")):
        if f.get(src):
            folder[dst] = f[src]
    if folder:
        item["ParentFolder"] = folder
    if item:
        record["Item"] = item
    count = f.get("AuditOperationsCountInAggregatedRecord")
    if count and count.isdigit():
        record["OperationCount"] = int(count)
    props = f.get("OperationProperties")
    if props:
        try:
            pairs = parse_parameter_text(props)
        except ValuesLost:
            pairs = []
        record["OperationProperties"] = [{"Name": n, "Value": v} for n, v in pairs] if pairs else props
    if f.get("Identity"):
        record["AuditRecordIdentity"] = f["Identity"]
    record["Id"] = stable_id(
        "exchange-mailbox-audit", (f.get("MailboxGuid") or owner or f.get("MailboxResolvedOwnerName")
                                   or f.get("Owner") or "").lower(),
        created or f.get("LastAccessed", ""), op.lower(), str(logon), (sid or user or "").lower(),
        f.get("ItemId") or item.get("Id") or "", f.get("FolderId") or f.get("FolderPathName") or "",
        (f.get("MemberUpn") or "").lower(), f.get("MemberRights") or "", f.get("ClientIPAddress") or "")
    return record
