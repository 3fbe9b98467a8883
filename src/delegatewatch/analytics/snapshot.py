r"""Standing-permission snapshots: what is risky *now*, and what changed between two snapshots.

Input: every record of family ``snapshot`` (``delegatewatch.sources.formats.snapshots``). Records
are grouped into snapshots: one per kind (``MailboxPermission``, ``MailboxFolderPermission``,
``RecipientPermission``, ``SendOnBehalf``, ``ADPermission``, ``GmailDelegate``) and file; files of
one kind whose snapshot times lie within :data:`SAME_SNAPSHOT_GAP` of each other are one snapshot
(an export written as one file per mailbox). Within a snapshot, rows are merged per
(mailbox, folder, grantee); Deny rows are not grants and are dropped.

(a) **Risky standing permissions** in the latest snapshot of each kind:

* Default / Anonymous able to read items in a folder other than the calendar
  (``snapshot_default_folder_read``, high; anonymous critical), other rights there
  (``snapshot_default_folder_access``), only FolderVisible (``snapshot_default_folder_visible``, low),
  calendar items readable (``snapshot_default_calendar_read``, low; calendar free/busy is normal and quiet);
* anyone but the owner, ``NT AUTHORITY\SELF`` and Exchange's own groups and accounts holding
  FullAccess or Receive-As (``snapshot_full_access_standing``), ChangePermission / ChangeOwner
  (``snapshot_mailbox_control_standing``), Send As (``snapshot_send_as_standing``), Send on behalf
  (``snapshot_send_on_behalf_standing``), being a Gmail delegate (``snapshot_gmail_delegate_standing``),
  reading another mailbox's non-calendar folder (``snapshot_folder_read_standing``, low);
  rights held by an orphaned SID (a deleted account, ``S-1-5-21-…``) are ``snapshot_orphaned_sid_permission``.
  Everyone / Authenticated Users / Domain Users holding a mailbox right is two steps louder.
  Inherited rows of the administrative and Exchange groups (the database defaults) are ignored;
  an inherited row of anyone else is reported (it was set on the database or a container and
  applies to every mailbox below it). Guests and external grantees are made louder by the hunt's
  context step (``findings.build.apply_context``), as for every finding.

(b) **Changes** between consecutive snapshots of a kind: an entry (or a right) in the later snapshot
not in the earlier is a grant (``snapshot_permission_added``; ``snapshot_gmail_delegate_added``),
one step louder than the standing risk when it made the entry risky, informational when what was
added is benign; an entry or right gone is ``snapshot_permission_removed`` (informational). Gmail
users whose delegates could not be read in either snapshot are not compared.
"""

from __future__ import annotations

import hashlib
import itertools
import os
import re
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from delegatewatch.events import rights as R
from delegatewatch.events.principals import EMAIL, Kind, Principal, Resolver
from delegatewatch.findings.model import SEVERITIES, Evidence, Finding, raise_severity
from delegatewatch.records import Record
from delegatewatch.records.times import iso_utc, parse_time
from delegatewatch.sources.formats import snapshots as S

ATTACK = ["T1098.002"]
#: Files of one kind whose snapshot times are this close are parts of one snapshot.
SAME_SNAPSHOT_GAP = timedelta(hours=1)
#: Evidence rows listed per finding (an entry merged from many rows names the first ones).
MAX_EVIDENCE = 5

RECEIVE_AS = "ReceiveAs"
GMAIL_DELEGATE = "Delegate"
#: Gmail ``verificationStatus`` values of a delegate that can (or soon can) use the mailbox.
GMAIL_EFFECTIVE = {"accepted", "pending", "verificationstatusunspecified", ""}

_SID = re.compile(r"^S-1-5-(\d+)(?:-\d+)*$", re.IGNORECASE)
_ORPHANED_SID = re.compile(r"^S-1-5-21(?:-\d+){4}$", re.IGNORECASE)
_NT_PREFIX = re.compile(r"^NT(?: User)?:", re.IGNORECASE)

#: Exchange's and Windows' own service groups and accounts (formats.md §5.5): never reported.
EXCHANGE_SERVICE = frozenset({
    "exchange servers", "exchange trusted subsystem", "exchange windows permissions", "managed availability servers",
    "exchangelegacyinterop", "exchange domain servers", "exchange enterprise servers", "exchange services",
    "exchange install domain servers", "exchange organization administrators", "exchange view-only administrators",
    "exchange recipient administrators", "exchange public folder administrators",
})
#: Administrative groups that hold inherited rights on every mailbox by default (§5.5): their
#: inherited rows are ignored; an explicit grant to one of them is still reported.
ADMIN_GROUPS = frozenset({
    "administrator", "administrators", "domain admins", "enterprise admins", "schema admins",
    "organization management", "compliance management", "delegated setup", "discovery management", "help desk",
    "hygiene management", "public folder management", "recipient management", "records management",
    "server management", "view-only organization management",
})
#: Principals that mean "every account": a mailbox right for them opens the mailbox to everyone.
EVERYONE = frozenset({"everyone", "s-1-1-0", "nt authority\\authenticated users", "authenticated users", "s-1-5-11",
                      "domain users"})

CALENDAR_NAMES = frozenset({
    "calendar", "calendrier", "kalender", "calendario", "agenda", "календарь", "kalenteri", "naptár", "kalendář",
    "kalendarz", "ημερολόγιο", "takvim", "予定表", "日历", "行事曆", "일정", "lịch", "calendari", "koledar",
    "kalendár", "календар", "kalendorius", "kalendārs",
})

TITLES = {
    "snapshot_default_folder_read": "Default or Anonymous can read a mailbox folder (standing permission)",
    "snapshot_default_folder_access": "Default or Anonymous holds rights on a mailbox folder (standing permission)",
    "snapshot_default_folder_visible": "Default or Anonymous can see a mailbox folder (FolderVisible)",
    "snapshot_default_calendar_read": "Default or Anonymous can read calendar items (standing permission)",
    "snapshot_folder_read_standing": "Someone other than the owner can read a mailbox folder (standing permission)",
    "snapshot_full_access_standing": "FullAccess to a mailbox (standing permission)",
    "snapshot_mailbox_control_standing": "ChangePermission or ChangeOwner on a mailbox (standing permission)",
    "snapshot_send_as_standing": "Send As on a mailbox (standing permission)",
    "snapshot_send_on_behalf_standing": "Send on behalf of a mailbox (standing permission)",
    "snapshot_gmail_delegate_standing": "Gmail delegate of a mailbox (standing permission)",
    "snapshot_orphaned_sid_permission": "Mailbox permission held by an orphaned SID (deleted account)",
    "snapshot_permission_added": "Permission added between two snapshots",
    "snapshot_gmail_delegate_added": "Gmail delegate added between two snapshots",
    "snapshot_permission_removed": "Permission removed between two snapshots",
}

RUNBOOKS = {
    "standing": ("1. Confirm with the mailbox owner (or the shared mailbox's manager) that the grantee needs "
                 "this access.\n2. If not, remove it (Remove-MailboxPermission / Remove-RecipientPermission / "
                 "Set-Mailbox -GrantSendOnBehalfTo @{remove=...} / Set-MailboxFolderPermission -AccessRights None "
                 "/ Gmail settings.delegates.delete).\n3. Hunt the audit log for when it was granted and by whom "
                 "(delegatewatch hunt), and for use of it (MailItemsAccessed, SendAs, SendOnBehalf)."),
    "default": ("1. Default/Anonymous rights apply to every user in the organisation (or to anyone): set them to "
                "None on this folder (Set-MailboxFolderPermission -Identity 'mbx:\\Folder' -User Default "
                "-AccessRights None) unless the owner shares the folder on purpose.\n2. Hunt the audit log for "
                "the change (AddFolderPermissions/ModifyFolderPermissions, Set-MailboxFolderPermission) and for "
                "reads by other users."),
    "added": ("1. The permission appeared between the two snapshots named in the summary: find the grant in the "
              "audit log of that period (delegatewatch hunt) to learn who made it.\n2. Confirm it with the mailbox "
              "owner; remove it if unexpected, and look for use of it since."),
    "gmail": ("1. No audit event records a user adding a Gmail delegate: this snapshot difference is the evidence.\n"
              "2. Confirm with the user; if unexpected remove the delegate (users.settings.delegates.delete), check "
              "domain-wide delegation grants and the user's sign-ins, and review mail read or sent since."),
    "removed": "Informational: the permission was removed between the snapshots. Confirm the removal was planned.",
}


def rule_id(rule: str) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"https://delegatewatch/analytics/snapshot/{rule}"))


def _fid(*parts: str) -> str:
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:16]


# -- entries and snapshots -----------------------------------------------------------------------
@dataclass
class Entry:
    """One (mailbox, folder, grantee) of one snapshot, merged from its rows."""

    kind: str
    mailbox: str
    folder: str
    grantee: str  # cleaned raw value (``NT User:`` prefix removed)
    rights: frozenset[str]
    inherited: bool
    status: str
    rows: list[Record] = field(default_factory=list)
    exported_rights: str = ""

    @property
    def key(self) -> tuple[str, str, str, str]:
        return (self.kind, self.mailbox.lower(), self.folder.lower(), self.grantee.lower())


@dataclass
class Snapshot:
    kind: str
    time: datetime
    files: list[str] = field(default_factory=list)
    time_sources: set[str] = field(default_factory=set)
    entries: dict[tuple[str, str, str, str], Entry] = field(default_factory=dict)
    unknown: set[str] = field(default_factory=set)  # Gmail users whose delegates were not read
    rows: int = 0
    last: datetime | None = None

    @property
    def iso(self) -> str:
        return iso_utc(self.time) or ""

    def label(self) -> str:
        names = ", ".join(os.path.basename(f) for f in self.files[:3]) + (" …" if len(self.files) > 3 else "")
        return f"{self.time:%Y-%m-%d %H:%M} UTC ({names})"


def _clean(grantee: str) -> str:
    return _NT_PREFIX.sub("", grantee.strip()).strip()


def _rights(kind: str, data: dict) -> frozenset[str]:
    value = data.get("AccessRights", "")
    if kind == S.SEND_ON_BEHALF:
        return frozenset({R.SEND_ON_BEHALF})
    if kind == S.GMAIL:
        status = str(data.get("Status") or "").lower()
        return frozenset({GMAIL_DELEGATE}) if status in GMAIL_EFFECTIVE and data.get("Grantee") else frozenset()
    if kind == S.AD:
        out = set()
        for tok in R.tokens(value):
            low = tok.lower().removeprefix("ms-exch-")
            out.add(R.SEND_AS if low in ("send-as", "sendas") else RECEIVE_AS if low in ("receive-as", "receiveas")
                    else tok)
        return frozenset(out)
    return R.normalise(value)


def _truthy(value: object) -> bool:
    return str(value or "").strip().strip("$").lower() in ("true", "1", "yes", "y")


def _record_time(record: Record) -> datetime:
    hint = S.time_hint(record.source)
    t = parse_time(hint) if hint else parse_time(record.data.get("SnapshotTime"))
    return t or datetime(1970, 1, 1, tzinfo=UTC)


def build_snapshots(records: Iterable[Record]) -> dict[str, list[Snapshot]]:
    """Snapshots per kind, oldest first."""
    per_file: dict[tuple[str, str], list[Record]] = {}
    for r in records:
        if r.family != S.FAMILY:
            continue
        per_file.setdefault((str(r.data.get("SnapshotKind") or ""), r.source), []).append(r)
    out: dict[str, list[Snapshot]] = {}
    ordered = sorted(((kind, source, min(_record_time(r) for r in rows), rows)
                      for (kind, source), rows in per_file.items()), key=lambda t: (t[0], t[2], t[1]))
    for kind, source, when, rows in ordered:
        series = out.setdefault(kind, [])
        snap = series[-1] if series else None
        if snap is None or snap.last is None or when - snap.last > SAME_SNAPSHOT_GAP:
            snap = Snapshot(kind, when)
            series.append(snap)
        snap.last = when
        snap.files.append(source)
        for r in rows:
            _add_row(snap, r)
    return out


def _add_row(snap: Snapshot, r: Record) -> None:
    d = r.data
    snap.rows += 1
    snap.time_sources.add(str(d.get("SnapshotTimeSource") or "unknown") if not S.time_hint(r.source) else "hint")
    mailbox = str(d.get("Mailbox") or "").strip()
    if snap.kind == S.GMAIL and str(d.get("Status") or "") == "unknown":
        snap.unknown.add(mailbox.lower())
        return
    grantee = _clean(str(d.get("Grantee") or ""))
    if not grantee or _truthy(d.get("Deny")):
        return  # a coverage marker, or a Deny row (not a grant)
    rights = _rights(snap.kind, d)
    entry = Entry(snap.kind, mailbox, str(d.get("Folder") or ""), grantee, rights, _truthy(d.get("IsInherited")),
                  str(d.get("Status") or ""), [r], str(d.get("AccessRights") or ""))
    have = snap.entries.get(entry.key)
    if have is None:
        snap.entries[entry.key] = entry
    else:
        have.rights |= rights
        have.inherited = have.inherited and entry.inherited
        have.rows.append(r)
        if entry.exported_rights and entry.exported_rights not in have.exported_rights:
            have.exported_rights = ", ".join(x for x in (have.exported_rights, entry.exported_rights) if x)


# -- judging one entry ---------------------------------------------------------------------------
@dataclass
class Assessment:
    rule: str | None  # None: a real grant, but nothing risky (reported only when it changes)
    severity: str
    phrase: str  # "Default can read ceo@contoso.com \Inbox (Reviewer)"
    reasons: list[str] = field(default_factory=list)


class Judge:
    def __init__(self, resolver: Resolver) -> None:
        self.resolver = resolver

    def principal(self, raw: str) -> Principal | None:
        return self.resolver.resolve(raw)

    def label(self, raw: str) -> str:
        p = self.principal(raw)
        return p.label() if p else raw

    def _same(self, mailbox: str, grantee: str) -> bool:
        a, b = mailbox.strip().lower(), grantee.strip().lower()
        if not a or not b:
            return False
        pa, pb = self.principal(mailbox), self.principal(grantee)
        if a == b or (pa and pb and pa.object_id and pa.object_id == pb.object_id):
            return True
        if pa and pb and pa.upn and pb.upn and pa.upn.lower() == pb.upn.lower():
            return True
        ea, eb = "@" in a, "@" in b
        if ea and eb:
            return False
        name_a = a.split("@")[0] if ea else a.rsplit("\\", 1)[-1].rsplit("/", 1)[-1]
        name_b = b.split("@")[0] if eb else b.rsplit("\\", 1)[-1].rsplit("/", 1)[-1]
        return name_a == name_b

    def assess(self, e: Entry) -> Assessment | None:
        """None: a default or system row, never reported (not even when it changes)."""
        if not e.rights:
            return None
        low = e.grantee.lower()
        bare = low.rsplit("\\", 1)[-1]
        p = self.principal(e.grantee)
        kind = p.kind if p else Kind.UNKNOWN
        if kind in (Kind.SELF, Kind.SYSTEM, Kind.GROUP) and bare not in ADMIN_GROUPS:
            return None
        if low.startswith(("nt authority\\", "builtin\\")) and low not in EVERYONE:
            return None
        if bare in EXCHANGE_SERVICE:
            return None
        sid = _SID.match(e.grantee)
        if sid and not _ORPHANED_SID.match(e.grantee) and low not in EVERYONE:
            return None  # well-known SIDs: SYSTEM, NETWORK SERVICE, BUILTIN\…
        admin = bare in ADMIN_GROUPS
        if admin and e.inherited:
            return None  # the database's default ACL
        if e.mailbox and self._same(e.mailbox, e.grantee):
            return None  # the owner
        everyone = kind in (Kind.DEFAULT, Kind.ANONYMOUS) or low in EVERYONE
        if e.kind == S.FOLDER:
            a = self._folder(e, p, kind, everyone)
        else:
            a = self._mailbox(e, everyone)
        if a is None:
            return None
        if a.rule and _ORPHANED_SID.match(e.grantee) and not everyone:
            a.rule, a.severity = "snapshot_orphaned_sid_permission", "low"
            a.reasons.append("the grantee is an orphaned SID (its account was deleted); remove the entry")
        if a.rule and e.inherited:
            a.reasons.append("inherited: set on the mailbox database or a parent container, so it applies to every "
                             "mailbox below it")
        if a.rule and admin:
            a.reasons.append(f"explicit grant to the administrative group {e.grantee}")
        return a

    def _where(self, e: Entry) -> str:
        mbx = self.label(e.mailbox) if e.mailbox else "an unknown mailbox"
        if e.kind != S.FOLDER:
            return mbx
        return f"the root folder of {mbx}" if is_root(e.folder) else f"{mbx} {e.folder}"

    def _folder(self, e: Entry, p: Principal | None, kind: Kind, everyone: bool) -> Assessment | None:
        who = self.label(e.grantee)
        role = R.role_of(e.rights) or ", ".join(sorted(e.rights))
        where = self._where(e)
        calendar = is_calendar(e.folder)
        reads = R.can_read_items(e.rights)
        if everyone:
            anonymous = kind == Kind.ANONYMOUS
            if R.free_busy_only(e.rights):
                return None  # free/busy: normal
            if calendar:
                if reads:
                    return Assessment("snapshot_default_calendar_read", "medium" if anonymous else "low",
                                      f"{who} can read calendar items in {where} ({role})")
                return Assessment(None, "informational", f"{who} has {role} on {where}")
            if reads:
                return Assessment("snapshot_default_folder_read", "critical" if anonymous else "high",
                                  f"{who} can read {where} ({role})")
            if e.rights == {R.FOLDER_VISIBLE}:
                return Assessment("snapshot_default_folder_visible", "low", f"{who} can see {where} (FolderVisible)")
            return Assessment("snapshot_default_folder_access", "high" if anonymous else "medium",
                              f"{who} has {role} on {where}")
        if reads and not calendar:
            return Assessment("snapshot_folder_read_standing", "low", f"{who} can read {where} ({role})")
        return Assessment(None, "informational", f"{who} has {role} on {where}")

    def _mailbox(self, e: Entry, everyone: bool) -> Assessment | None:
        who = self.label(e.grantee)
        mbx = self.label(e.mailbox) if e.mailbox else "an unknown mailbox"
        r = e.rights
        if R.FULL_ACCESS in r or RECEIVE_AS in r:
            right = "FullAccess" if R.FULL_ACCESS in r else "Receive-As"
            a = Assessment("snapshot_full_access_standing", "medium", f"{who} has {right} to {mbx}")
        elif r & {"ChangePermission", "ChangeOwner"}:
            a = Assessment("snapshot_mailbox_control_standing", "medium",
                           f"{who} has {', '.join(sorted(r & {'ChangePermission', 'ChangeOwner'}))} on {mbx}")
        elif R.SEND_AS in r:
            a = Assessment("snapshot_send_as_standing", "medium", f"{who} can send as {mbx}")
        elif R.SEND_ON_BEHALF in r:
            a = Assessment("snapshot_send_on_behalf_standing", "low", f"{who} can send on behalf of {mbx}")
        elif GMAIL_DELEGATE in r:
            status = e.status or "status not given"
            a = Assessment("snapshot_gmail_delegate_standing", "low" if e.status.lower() == "pending" else "medium",
                           f"{who} is a Gmail delegate of {mbx} ({status})")
            if e.status.lower() == "pending":
                a.reasons.append("pending: usable once the delegate accepts")
        else:
            return Assessment(None, "informational", f"{who} has {', '.join(sorted(r))} on {mbx}")
        if everyone:
            a.severity = raise_severity(a.severity, 2)
            a.reasons.append(f"{e.grantee} means every account: the mailbox is open to everyone")
        return a


def is_calendar(folder: str) -> bool:
    first = folder.strip("\\").split("\\", 1)[0].strip().lower()
    return first in CALENDAR_NAMES


def is_root(folder: str) -> bool:
    return folder.strip() in ("", "\\")


# -- findings ------------------------------------------------------------------------------------
def _finding(judge: Judge, rule: str, severity: str, e: Entry, snap: Snapshot, summary: str, reasons: list[str],
             rights: Iterable[str], runbook: str, *, id_extra: str = "", evidence_rows: list[Record] | None = None,
             grantee_kind: bool = True) -> Finding:
    rights = sorted(rights)  # used twice below: never a one-shot iterator
    rows = evidence_rows if evidence_rows is not None else e.rows
    evidence = [Evidence(r.source, r.record_id, iso_utc(_record_time(r)), r.line) for r in rows[:MAX_EVIDENCE]]
    if len(rows) > MAX_EVIDENCE:
        reasons = [*reasons, f"{len(rows)} rows in all; the first {MAX_EVIDENCE} are listed as evidence"]
    g = judge.principal(e.grantee)
    m = judge.principal(e.mailbox) if e.mailbox else None
    f = Finding(
        # A standing risk is the same finding in every snapshot that shows it (so `watch` alerts it
        # once); a change is tied to the snapshots it was seen between (id_extra).
        id=_fid(rule, *e.key, *rights) if not id_extra else _fid(rule, *e.key, id_extra),
        rule=rule, rule_id=rule_id(rule), title=TITLES[rule], severity=severity, time=snap.iso, attack=list(ATTACK),
        actor=None, mailbox=m.name if m else (e.mailbox or None), grantee=g.name if g else e.grantee,
        rights=sorted(rights), summary=summary, evidence=evidence, operation=S.SOURCE_OF.get(e.kind, e.kind),
        folder=e.folder or None, grantee_kind=(g.kind.value if g and grantee_kind else None),
        reasons=list(reasons), runbook=runbook,
    )
    for role, p in (("mailbox", m), ("grantee", g)):
        if p is not None:
            if p.resolved:
                f.raw[role] = p.raw
            if p.display_name and p.kind not in (Kind.DEFAULT, Kind.ANONYMOUS):
                f.names[role] = p.display_name
    return f


def _observe_domains(resolver: Resolver, snapshots: dict[str, list[Snapshot]]) -> None:
    """Mailboxes are the organisation's own: their domains tell external grantees apart."""
    for series in snapshots.values():
        for snap in series:
            for e in snap.entries.values():
                m = EMAIL.match(e.mailbox)
                if m and "#ext#" not in e.mailbox.lower():
                    resolver.observe_org_domain(m.group(1))
            for user in snap.unknown:
                m = EMAIL.match(user)
                if m:
                    resolver.observe_org_domain(m.group(1))


def standing(judge: Judge, snap: Snapshot) -> list[Finding]:
    out = []
    for e in snap.entries.values():
        a = judge.assess(e)
        if a is None or a.rule is None:
            continue
        reasons = [*a.reasons, f"in the latest {e.kind} snapshot, {snap.label()}"]
        runbook = RUNBOOKS["default" if a.rule.startswith("snapshot_default") else "standing"]
        out.append(_finding(judge, a.rule, a.severity, e, snap, a.phrase, reasons, e.rights, runbook))
    return out


def _rights_text(kind: str, rights: Iterable[str]) -> str:
    rights = frozenset(rights)
    if kind == S.FOLDER:
        return R.describe(rights)
    return ", ".join(sorted(rights))


def changes(judge: Judge, before: Snapshot, after: Snapshot) -> list[Finding]:
    out = []
    since = f"since {before.time:%Y-%m-%d %H:%M} UTC"
    for key in sorted(set(before.entries) | set(after.entries)):
        kind, mailbox = key[0], key[1]
        if kind == S.GMAIL and (mailbox in before.unknown or mailbox in after.unknown):
            continue  # delegates unknown in one of the two: no comparison
        old, new = before.entries.get(key), after.entries.get(key)
        old_rights = old.rights if old else frozenset()
        new_rights = new.rights if new else frozenset()
        gained, lost = new_rights - old_rights, old_rights - new_rights
        if new is not None and gained:
            now = judge.assess(new)
            was = judge.assess(old) if old is not None and old.rights else None
            if now is not None:
                rule = "snapshot_gmail_delegate_added" if kind == S.GMAIL else "snapshot_permission_added"
                if now.rule and (was is None or was.rule != now.rule
                                 or SEVERITIES.index(was.severity) < SEVERITIES.index(now.severity)):
                    severity = raise_severity(now.severity)
                elif now.rule:
                    severity = now.severity
                else:
                    severity = "informational"
                if old is None or not old.rights:
                    summary = f"Added {since}: {now.phrase}"
                else:
                    summary = (f"Changed {since}: {now.phrase}; gained {_rights_text(kind, gained)} "
                               f"(had {_rights_text(kind, old_rights)})")
                reasons = [*now.reasons, f"not in {before.label()}; present in {after.label()}"]
                if now.rule:
                    reasons.append(f"risky as {now.rule}")
                if "mtime" in before.time_sources | after.time_sources:
                    reasons.append("snapshot order comes from file modification times (a copy resets them); put "
                                   "the date in the file name or give --snapshot-time")
                runbook = RUNBOOKS["gmail" if kind == S.GMAIL else "added"]
                out.append(_finding(judge, rule, severity, new, after, summary, reasons, gained, runbook,
                                    id_extra=f"added|{before.iso}"))
        if old is not None and lost:
            was = judge.assess(old)
            if was is None:
                continue
            g = judge.principal(old.grantee)
            who = g.label() if g else old.grantee
            kind_note = f" ({g.kind.value})" if g and g.kind in (Kind.GUEST, Kind.EXTERNAL) else ""
            where = judge._where(old)
            if new is None or not new.rights:
                summary = f"Removed {since}: {who}{kind_note} no longer holds {_rights_text(kind, lost)} on {where}"
            else:
                summary = (f"Reduced {since}: {who}{kind_note} no longer holds {_rights_text(kind, lost)} on {where} "
                           f"(now {_rights_text(kind, new_rights)})")
            reasons = [f"present in {before.label()}; not in {after.label()}"]
            out.append(_finding(judge, "snapshot_permission_removed", "informational", old, after, summary,
                                reasons, lost, RUNBOOKS["removed"], id_extra=f"removed|{after.iso}",
                                grantee_kind=False))
    return out


def analyze(records: list[Record], resolver: Resolver) -> list[Finding]:
    """Risky standing permissions in the latest snapshot of each kind, and the changes between
    consecutive snapshots of a kind."""
    snapshots = build_snapshots(records)
    _observe_domains(resolver, snapshots)
    judge = Judge(resolver)
    findings: list[Finding] = []
    for series in snapshots.values():
        findings.extend(standing(judge, series[-1]))
        for before, after in itertools.pairwise(series):
            findings.extend(changes(judge, before, after))
    return findings


def describe(records: Iterable[Record]) -> list[dict]:
    """The snapshots found, for a summary: kind, time, how the time was known, files, rows, entries."""
    out = []
    for kind, series in sorted(build_snapshots(records).items()):
        for n, snap in enumerate(series, 1):
            out.append({"kind": kind, "sequence": n, "of": len(series), "time": snap.iso,
                        "time_source": ", ".join(sorted(snap.time_sources)), "files": list(snap.files),
                        "rows": snap.rows, "entries": len(snap.entries), "unknown": len(snap.unknown)})
    return out
