"""The records grant → use incidents need that no rule matches: uses of a delegation and what led
to it (docs/incidents.md). The hunt feeds them here through the analytics hook and hands them to
:func:`delegatewatch.findings.incidents.build_incidents`; this module only turns records into
typed :class:`Activity` values (no findings of its own, so no ``analyze``).

* **use**: non-owner ``MailItemsAccessed`` / ``MailboxLogin`` (LogonType Admin, Delegated,
  BestAccess, DelegatedAdmin) and Exchange Server's ``MessageBind`` / ``FolderBind``, ``SendAs``,
  ``SendOnBehalf``, and ``Send`` by a non-owner logon;
* **precursor**: password resets and changes, role membership changes, and ``Update user.`` when
  it changed sign-in properties (authentication methods, UPN, alternate addresses);
* **evasion**: ``UpdateInboxRules`` (rules made in Outlook) that delete, mark read or forward.

Owner access (LogonType 0) is most of a tenant's ``MailItemsAccessed``/``MailboxLogin``, so those
operations are asked for only when the raw line carries a non-owner LogonType (``M365_REQUIRES``, a
pattern), and the parsed value is checked again as records are read (``M365_KEEP``). A record logged
with LogonType 0 is the owner's access even when ``UserId`` differs; with no LogonType at all, a
``UserId`` other than ``MailboxOwnerUPN`` is a non-owner. Transport (3) and SystemService (4) logons
are Exchange itself, not a delegate.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from delegatewatch import config
from delegatewatch.events.principals import SYSTEM_ACCOUNTS
from delegatewatch.events.ual import client_ip, succeeded
from delegatewatch.findings.model import Evidence
from delegatewatch.records import Record
from delegatewatch.records.times import iso_utc, parse_time

#: LogonType values of a non-owner logon that a delegate or admin makes (formats: detections.md §0)
NON_OWNER_LOGONS = {1: "Admin", 2: "Delegated", 5: "BestAccess", 6: "DelegatedAdmin"}
_LOGON_NAMES = {"admin": 1, "delegate": 2, "delegated": 2, "bestaccess": 5, "delegatedadmin": 6, "owner": 0,
                "transport": 3, "systemservice": 4}


#: ``"LogonType": <non-owner>`` in every spelling a reader's raw line can hold: compact and spaced
#: JSON (PowerShell writes two spaces), the doubled quotes of JSON inside a CSV field, numbers written
#: as strings, names (mailbox audit log searches, Sentinel's ``Logon_Type``). It starts with the
#: literal ``ogon`` so the regex engine can search for it fast.
LOGON_PATTERN = r'ogon_?[Tt]ype""?:\s*(?:""?)?(?:[1256]\b|[Aa]dmin|ADMIN|[Dd]eleg|DELEG|[Bb]est[Aa]ccess)'


#: reads and logons; MessageBind/FolderBind are Exchange Server's mailbox-audit reads (formats.md §4.3)
ACCESS_OPERATIONS = ("MailItemsAccessed", "MailboxLogin", "MessageBind", "FolderBind")
SEND_OPERATIONS = ("SendAs", "SendOnBehalf")
PASSWORD_OPERATIONS = ("Reset user password.", "Reset password.", "Change user password.",
                       "Set force change user password.")
ROLE_OPERATIONS = ("Add member to role.", "Add eligible member to role.", "Add scoped member to role.")
#: Update user. is a precursor only when it changed one of these (sign-in and identity properties)
SIGN_IN_PROPERTIES = ("strongauthentication", "password", "userprincipalname", "othermails", "mobile",
                      "alternativesecurityid", "searchabledevicekey")

FAMILY = __name__.rsplit(".", 1)[-1]  # the name the hunt collects this module's records under
#: folders a hiding rule moves mail to (as rules/m365_inbox_rule_hiding.yml)
HIDING_FOLDERS = ("RSS", "Conversation History", "Archive", "Deleted Items", "Junk")
_OPERATIONS = (*SEND_OPERATIONS, *PASSWORD_OPERATIONS, *ROLE_OPERATIONS, "Update user.", "UpdateInboxRules")
#: operations fed only when the line carries a non-owner LogonType (see the module text)
_REQUIRES = {op: LOGON_PATTERN for op in (*ACCESS_OPERATIONS, "Send")}
_LOGON_CHECKED = frozenset(op.lower() for op in _REQUIRES)


def M365_OPERATIONS() -> tuple[str, ...]:  # noqa: N802 - the analytics hook's name
    """Uses and precursors read whole, when ``[incidents] enabled`` (nothing is fed otherwise)."""
    return _OPERATIONS if config.current().incidents.enabled else ()


def M365_REQUIRES() -> dict[str, str]:  # noqa: N802 - the analytics hook's name
    return _REQUIRES if config.current().incidents.enabled else {}


def M365_KEEP(data: dict[str, Any]) -> bool:  # noqa: N802 - the analytics hook's name
    """Whether a fed record is worth keeping until the correlation: the parsed LogonType check of
    reads, logons and sends (``--full-parse`` feeds every one of them; most are the owner's)."""
    op = str(data.get("Operation", "")).lower()
    if op not in _LOGON_CHECKED:
        return True
    logon = logon_type(data)
    if logon is None:
        return str(data.get("MailboxOwnerUPN", "")).lower() != str(data.get("UserId", "")).lower()
    return logon in NON_OWNER_LOGONS


@dataclass(frozen=True, slots=True)
class Activity:
    """One use of a mailbox by someone else than its owner, or one precursor of a grant."""

    kind: str  # "use" | "precursor" | "evasion"
    what: str  # read | logon | send_as | send_on_behalf | send | password | role | sign_in_change | inbox_rule
    time: datetime
    actor: str | None  # who did it, as logged
    target: str | None  # use: the mailbox; precursor: the account changed
    operation: str
    summary: str
    evidence: Evidence
    session_id: str | None = None
    client_ip: str | None = None


def logon_type(data: dict[str, Any]) -> int | None:
    """LogonType as a number, from ``LogonType`` (number or numeric string), or a name there or in
    Sentinel's ``Logon_Type``; None when absent or unknown."""
    for name in ("LogonType", "Logon_Type"):
        v = data.get(name)
        if isinstance(v, bool) or v is None:
            continue
        if isinstance(v, int):
            return v
        text = str(v).strip().lower()
        if text.isdigit():
            return int(text)
        if text in _LOGON_NAMES:
            return _LOGON_NAMES[text]
    return None


def _session(data: dict[str, Any]) -> str | None:
    """SessionId, else the Entra session of the app-access context (either may be absent or odd)."""
    sid = data.get("SessionId")
    if not sid:
        context = data.get("AppAccessContext")
        sid = context.get("AADSessionId") if isinstance(context, dict) else None
    return str(sid) if sid else None


def _system(who: str | None) -> bool:
    low = (who or "").lower()
    return not low or any(low.startswith(s) or s in low for s in SYSTEM_ACCOUNTS)


def _target_user(data: dict[str, Any]) -> str | None:
    """The account an Entra record changed: the UPN in its Target list, else ObjectId."""
    for e in data.get("Target") or ():
        if isinstance(e, dict) and e.get("Type") == 5 and "@" in str(e.get("ID", "")):
            return str(e["ID"])
    obj = data.get("ObjectId")
    return str(obj) if obj else None


def _modified(data: dict[str, Any]) -> dict[str, Any]:
    return {str(p.get("Name")): p for p in data.get("ModifiedProperties") or () if isinstance(p, dict)}


def _changed_sign_in(data: dict[str, Any]) -> list[str]:
    props = _modified(data)
    names = list(props)
    included = props.get("Included Updated Properties", {}).get("NewValue") or ""
    names += [n.strip().strip('"') for n in str(included).split(",") if n.strip().strip('"')]  # "A", "B"
    return sorted({n for n in names if any(s in n.lower() for s in SIGN_IN_PROPERTIES)
                   and not n.lower().startswith(("actorid.", "targetid."))})


def _role(data: dict[str, Any]) -> str:
    props = _modified(data)
    for name in ("Role.DisplayName", "Role.WellKnownObjectName"):
        value = (props.get(name) or {}).get("NewValue")
        if value:
            return str(value).strip().strip('"')
    return "a role"


def activity(record: Record) -> Activity | None:
    """The use or precursor a record shows, or None (owner access, system accounts, failures)."""
    data = record.data
    op = str(data.get("Operation", ""))
    low = op.lower()
    when = parse_time(data.get("CreationTime"))
    if when is None or not succeeded(data):
        return None
    actor = data.get("UserId")
    actor = str(actor) if actor else None
    base = {"time": when, "actor": actor, "operation": op,
            "evidence": Evidence(record.source, record.record_id, iso_utc(when), record.line),
            "session_id": _session(data),
            "client_ip": client_ip(data)}
    if low in ("mailitemsaccessed", "mailboxlogin", "messagebind", "folderbind", "send"):
        owner = data.get("MailboxOwnerUPN")
        logon = logon_type(data)
        if _system(actor) or not owner:
            return None
        other = str(owner).lower() != (actor or "").lower()
        if logon is not None and logon not in NON_OWNER_LOGONS or logon is None and not other:
            return None
        how = NON_OWNER_LOGONS.get(logon, "non-owner") if logon is not None else "non-owner"
        if low in ("mailitemsaccessed", "messagebind", "folderbind"):
            n = data.get("OperationCount")
            what, text = "read", f"{actor} read {n or 'some'} item(s) in {owner}'s mailbox ({how} logon)"
        elif low == "mailboxlogin":
            what, text = "logon", f"{actor} logged on to {owner}'s mailbox ({how} logon)"
        else:
            what, text = "send", f"{actor} sent from {owner}'s mailbox ({how} logon)"
        return Activity(kind="use", what=what, target=str(owner), summary=text, **base)
    if low in ("sendas", "sendonbehalf"):
        mailbox = data.get("SendAsUserSmtp") if low == "sendas" else data.get("SendOnBehalfOfUserSmtp")
        mailbox = mailbox or data.get("MailboxOwnerUPN")
        if not mailbox or _system(actor) or str(mailbox).lower() == (actor or "").lower():
            return None
        item = data.get("Item")
        subject = item.get("Subject") if isinstance(item, dict) else None
        how = "as" if low == "sendas" else "on behalf of"
        text = f"{actor} sent {how} {mailbox}" + (f": {subject!r}" if subject else "")
        return Activity(kind="use", what="send_as" if low == "sendas" else "send_on_behalf", target=str(mailbox),
                        summary=text, **base)
    if low == "updateinboxrules":
        return _outlook_rule(record, base)
    target = _target_user(data)
    if target is None:
        return None
    if low in (o.lower() for o in PASSWORD_OPERATIONS):
        text = f"{actor} {op.rstrip('.').lower()} of {target}" if low != "change user password." \
            else f"{actor} changed the password of {target}"
        return Activity(kind="precursor", what="password", target=target, summary=text, **base)
    if low in (o.lower() for o in ROLE_OPERATIONS):
        return Activity(kind="precursor", what="role", target=target,
                        summary=f"{actor} added {target} to {_role(data)} ({op})", **base)
    if low == "update user.":
        changed = _changed_sign_in(data)
        if not changed:
            return None
        return Activity(kind="precursor", what="sign_in_change", target=target,
                        summary=f"{actor} changed {', '.join(changed)} of {target} ({op})", **base)
    return None


def _outlook_rule(record: Record, base: dict[str, Any]) -> Activity | None:
    """An inbox rule made in Outlook (``UpdateInboxRules``, which no rule reports unless it
    forwards) that deletes, marks read or forwards: evasion when the grantee makes it in the
    granted mailbox. Read by the event mapper, so both agree on what the rule does."""
    from delegatewatch.events.model import RuleChange
    from delegatewatch.events.principals import Resolver
    from delegatewatch.events.ual import UalMapper

    change = next((e for e in UalMapper(Resolver()).events(record) if isinstance(e, RuleChange)), None)
    props = record.data.get("OperationProperties")
    text = str(props) if isinstance(props, list) else ""
    hides = "MoveToFolderAction" in text and any(f in text for f in HIDING_FOLDERS)
    if change is None or not (change.deletes or change.marks_read or change.forwards_to or hides):
        return None
    mailbox = change.mailbox.raw if change.mailbox else None
    does = ", ".join(x for x in ("deletes" if change.deletes else "", "marks read" if change.marks_read else "",
                                 "moves to a folder nobody reads" if hides else "",
                                 f"forwards to {', '.join(change.forwards_to)}" if change.forwards_to else "") if x)
    return Activity(kind="evasion", what="inbox_rule", target=mailbox,
                    summary=f"{base['actor']} made Outlook rule {change.rule_name!r} in {mailbox}: {does}", **base)


def activities(records: Iterable[Record]) -> list[Activity]:
    """Every use and precursor in ``records`` once (records repeated across files count once)."""
    out: list[Activity] = []
    seen: set[str] = set()
    for record in records:
        rid = record.record_id
        if rid in seen:
            continue
        seen.add(rid)
        a = activity(record)
        if a is not None:
            out.append(a)
    out.sort(key=lambda a: a.time)
    return out
