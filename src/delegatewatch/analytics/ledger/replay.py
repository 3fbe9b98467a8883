r"""Replay permission changes, in time order, into intervals of effective rights.

Input: records of any family; each is mapped to typed events by its family's mapper (the same as the
hunt's), and every :class:`PermissionChange` on a mailbox, folder, Send As, Send on behalf, delegate,
impersonation or application scope is applied to its entry (mailbox, grantee, scope, folder):

* folder permissions are *set*: ``Add-``/``Set-MailboxFolderPermission`` and the audit records'
  ``MemberRights`` give the whole new set; ``Remove-…``, ``RemoveFolderPermissions`` and ``None`` clear it;
* other scopes *add* and *remove* rights: ``Add-MailboxPermission -AccessRights FullAccess`` adds
  FullAccess, ``Remove-MailboxPermission`` removes what it names (everything when it names nothing);
* ``Set-Mailbox -GrantSendOnBehalfTo a,b`` replaces the list (whoever is not named loses the right;
  ``$null`` clears it), the ``@{Add=…; Remove=…}`` form adds and removes;
* impersonation roles and application permissions without a mailbox apply to every mailbox (``*``).

Only successful operations change state; failed ones and Deny entries are kept in the entry's
change list (its history) and counted. Changes without a time, mailbox or grantee are listed as
issues with their file and line, never guessed.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from delegatewatch.analytics.ledger.identities import EVERY_MAILBOX, Identities
from delegatewatch.analytics.ledger.model import APP_READ, APP_SEND, Change, Interval, Key, Ledger
from delegatewatch.events.model import Action, PermissionChange, Scope
from delegatewatch.events.principals import Resolver
from delegatewatch.events.registry import mapper_for
from delegatewatch.events.ual import split_identities
from delegatewatch.findings.model import Evidence
from delegatewatch.records import Record
from delegatewatch.records.flatten import parameters
from delegatewatch.records.times import iso_utc, parse_time

SCOPES = frozenset({Scope.MAILBOX, Scope.FOLDER, Scope.SEND_AS, Scope.SEND_ON_BEHALF, Scope.DELEGATE,
                    Scope.IMPERSONATION, Scope.APP})
#: scopes whose grants without a mailbox reach every mailbox
ORG_WIDE = frozenset({Scope.IMPERSONATION, Scope.APP})


def platform(family: str) -> str:
    return "google" if family == "google" else "exchange"


def folder_key(folder: str | None) -> str:
    r"""``\Inbox``, ``Inbox``, ``/Inbox/`` → ``\inbox``; the root (``\``, ``Top of Information Store``) → ``\``."""
    f = (folder or "").strip().replace("/", "\\").strip("\\").lower()
    return "\\" if f in ("", "top of information store") else "\\" + f


def _record_time(record: Record) -> datetime | None:
    d = record.data
    ident = d.get("id") if isinstance(d.get("id"), dict) else {}
    return parse_time(d.get("CreationTime") or d.get("TimeCreated") or ident.get("time"))


def _replaces_list(event: PermissionChange) -> bool:
    """``Set-Mailbox -GrantSendOnBehalfTo a,b`` (the whole list) rather than ``@{Add=…}``."""
    if event.operation.lower() != "set-mailbox":
        return False
    value = parameters(event.record.data).get("grantsendonbehalfto")
    _, removed = split_identities(value)
    return not removed and "add" not in (value or "").lower()


class _Replay:
    def __init__(self, ledger: Ledger, events_by_record: dict[int, list[PermissionChange]]) -> None:
        self.ledger = ledger
        self.events_by_record = events_by_record
        self.open: dict[Key, Interval] = {}
        self.replaced: set[int] = set()  # records whose Send-on-behalf list was applied

    def change(self, ev: PermissionChange, key: Key, after: frozenset[str], action: str) -> Change:
        r = ev.record
        actor = ev.actor.name if ev.actor else None
        return Change(ev.time, action, ev.rights, after, ev.operation, actor,  # type: ignore[arg-type]
                      Evidence(r.source, r.record_id, iso_utc(ev.time), r.line), ev.target)

    def apply(self, ev: PermissionChange, key: Key, new: frozenset[str], action: str) -> None:
        cur = self.open.get(key)
        change = self.change(ev, key, new, action)
        self.ledger.changes.setdefault(key, []).append(change)
        if cur is not None and cur.rights == new:
            cur.confirmed.append(change)
            return
        if cur is None and not new:
            return  # nothing held, nothing granted (a revocation of what the log never showed)
        if cur is not None:
            cur.end, cur.closed = ev.time, change
            del self.open[key]
        if new:
            iv = Interval(key, new, ev.time, None, change)  # type: ignore[arg-type]
            self.ledger.add(iv)
            self.open[key] = iv

    def note(self, ev: PermissionChange, key: Key, action: str) -> None:
        """A change that does not alter state (failed, Deny): history only."""
        cur = self.open.get(key)
        self.ledger.changes.setdefault(key, []).append(
            self.change(ev, key, cur.rights if cur else frozenset(), action))

    def event(self, ev: PermissionChange, mailbox: str, grantee: str) -> None:
        scope = ev.scope
        key = Key(mailbox, grantee, scope.value, folder_key(ev.folder) if scope is Scope.FOLDER else "")
        if not ev.succeeded:
            self.ledger.failed += 1
            self.note(ev, key, f"{ev.action.value} (failed, not applied)")
            return
        if ev.action is Action.DENY:
            self.ledger.denies += 1
            self.note(ev, key, "deny (not modelled)")
            return
        if scope is Scope.SEND_ON_BEHALF and _replaces_list(ev) and id(ev.record) not in self.replaced:
            self.replaced.add(id(ev.record))
            self.replace_list(ev, mailbox)
        if not grantee:  # Set-Mailbox -GrantSendOnBehalfTo $null: handled by replace_list
            return
        cur = self.open.get(key)
        have = cur.rights if cur else frozenset()
        if ev.action is Action.REVOKE:
            new = frozenset() if scope in (Scope.FOLDER, Scope.APP) or not ev.rights else have - ev.rights
        elif scope is Scope.FOLDER:
            new = ev.rights
        else:
            new = have | ev.rights
        self.ledger.replayed += 1
        self.apply(ev, key, new, ev.action.value)

    def replace_list(self, ev: PermissionChange, mailbox: str) -> None:
        """The whole Send-on-behalf list was set: everyone not in it loses the right."""
        named = {self.ledger.identities.key(e.grantee) for e in _events_of(ev.record, self.events_by_record)}
        for key in [k for k in self.open if k.mailbox == mailbox and k.scope == Scope.SEND_ON_BEHALF.value]:
            if key.grantee not in named:
                self.apply(ev, key, frozenset(), "revoke (not in the new list)")


def _events_of(record: Record, by_record: dict[int, list[PermissionChange]]) -> list[PermissionChange]:
    return [e for e in by_record.get(id(record), []) if e.action is Action.GRANT and e.grantee is not None]


def _keep(ev: PermissionChange) -> bool:
    if ev.scope not in SCOPES:
        return False
    if ev.scope is Scope.APP and ev.action is not Action.REVOKE:
        return any(APP_READ.search(r) or APP_SEND.search(r) for r in ev.rights)  # mail scopes only
    return True


def map_events(records: Iterable[Record], resolver: Resolver,
               identities: Identities) -> tuple[list[PermissionChange], dict[str, tuple[datetime, datetime]]]:
    """Permission changes of the records (mapped as the hunt maps them) and the period each
    platform's log covers. Teaches ``identities`` every pair of names the records give."""
    records = list(records)
    mappers: dict[str, Any] = {}
    for r in records:
        mapper = mappers.get(r.family) or mappers.setdefault(r.family, mapper_for(r.family, resolver))
        if hasattr(mapper, "observe"):
            mapper.observe(r.data)
        identities.learn(r.data)
    events: list[PermissionChange] = []
    periods: dict[str, tuple[datetime, datetime]] = {}
    for r in records:
        when = _record_time(r)
        if when is not None:
            first, last = periods.get(platform(r.family), (when, when))
            periods[platform(r.family)] = (min(first, when), max(last, when))
        for ev in mappers[r.family].events(r):
            if isinstance(ev, PermissionChange) and _keep(ev):
                identities.observe(ev.mailbox)
                identities.observe(ev.grantee)
                events.append(ev)
    return events, periods


def replay(records: Iterable[Record], resolver: Resolver) -> Ledger:
    """The ledger of ``records`` (log records of any family; snapshot rows are not replayed)."""
    identities = Identities()
    events, periods = map_events((r for r in records if r.family != "snapshot"), resolver, identities)
    ledger = Ledger(identities, resolver, periods=periods)
    by_record: dict[int, list[PermissionChange]] = {}
    for ev in events:
        by_record.setdefault(id(ev.record), []).append(ev)
    run = _Replay(ledger, by_record)
    order = sorted((ev for ev in events if ev.time is not None), key=lambda e: e.time)  # stable: input order on ties
    for ev in events:
        if ev.time is None:
            ledger.issues.append((ev.record.source, ev.record.line, f"{ev.operation}: no time; not replayed"))
    for ev in order:
        grantee = identities.key(ev.grantee)
        if ev.mailbox is None and ev.scope in ORG_WIDE:
            mailbox = EVERY_MAILBOX
        else:
            mailbox = identities.key(ev.mailbox)
        for role, p in (("mailbox", ev.mailbox), ("grantee", ev.grantee)):
            if p is not None:
                ledger.raw_names.setdefault(mailbox if role == "mailbox" else grantee, p.raw)
        if not mailbox:
            ledger.issues.append((ev.record.source, ev.record.line, f"{ev.operation}: no mailbox named; not replayed"))
            continue
        if not grantee and not (ev.scope is Scope.SEND_ON_BEHALF and ev.action is Action.REVOKE):
            ledger.issues.append((ev.record.source, ev.record.line, f"{ev.operation}: no grantee named; not replayed"))
            continue
        run.event(ev, mailbox, grantee)
    return ledger
