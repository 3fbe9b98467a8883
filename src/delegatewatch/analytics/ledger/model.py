"""The ledger's data: who held which rights on what, from when to when, and the log records that say so."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime

from delegatewatch.analytics.ledger.identities import Identities
from delegatewatch.events import rights as R
from delegatewatch.events.model import Scope
from delegatewatch.events.principals import Resolver
from delegatewatch.findings.model import Evidence

#: Application scopes that read mail (Microsoft Graph / EWS / IMAP / POP, Gmail).
APP_READ = re.compile(r"(?i)mail\.read|full_access_as_app|ews\.accessas|imap\.accessas|pop\.accessas|"
                      r"mail\.google\.com|gmail\.readonly|gmail\.modify|gmail\.metadata")
#: Application scopes that send mail.
APP_SEND = re.compile(r"(?i)mail\.send|full_access_as_app|ews\.accessas|mail\.google\.com|gmail\.send|gmail\.compose")
GMAIL_DELEGATE = "Delegate"
CAPABILITIES = ("read", "send", "any")


@dataclass(frozen=True, slots=True)
class Key:
    """One permission entry: (mailbox, grantee, scope, folder). Keys come from ``Identities``."""

    mailbox: str
    grantee: str
    scope: str
    folder: str = ""  # "\\inbox" (lower case) for folder scope, else ""


@dataclass(slots=True)
class Change:
    """One logged change that reached the ledger (or was left out of it, with the reason)."""

    time: datetime
    action: str  # grant / modify / revoke / deny
    rights: frozenset[str]  # the rights the change names
    after: frozenset[str]  # the entry's rights after it
    operation: str
    actor: str | None
    evidence: Evidence
    target: str | None = None  # what else the change names: a management scope, an app, AutoMapping


@dataclass(slots=True)
class Interval:
    """The entry held exactly ``rights`` over [start, end); end None: still held when the log ends."""

    key: Key
    rights: frozenset[str]
    start: datetime
    end: datetime | None
    opened: Change
    closed: Change | None = None
    #: later changes that left the rights as they were (a repeated grant, the AD write of a cmdlet)
    confirmed: list[Change] = field(default_factory=list)

    def overlaps(self, start: datetime, end: datetime) -> bool:
        return self.start < end and (self.end is None or self.end > start)

    def holds_at(self, at: datetime) -> bool:
        return self.start <= at and (self.end is None or at < self.end)


def can_read(scope: str, rights: frozenset[str]) -> bool:
    """Can the holder read items of the mailbox (all of it, or the folder)?"""
    if scope in (Scope.MAILBOX.value, Scope.FOLDER.value):
        return R.can_read_items(rights)
    if scope in (Scope.DELEGATE.value, Scope.IMPERSONATION.value):
        return bool(rights)
    if scope == Scope.APP.value:
        return any(APP_READ.search(r) for r in rights)
    return False


def can_send(scope: str, rights: frozenset[str]) -> bool:
    """Can the holder send as, or on behalf of, the mailbox?"""
    if scope in (Scope.SEND_AS.value, Scope.SEND_ON_BEHALF.value, Scope.DELEGATE.value, Scope.IMPERSONATION.value):
        return bool(rights)
    if scope == Scope.APP.value:
        return any(APP_SEND.search(r) for r in rights)
    return False


def capable(scope: str, rights: frozenset[str], capability: str) -> bool:
    if capability == "read":
        return can_read(scope, rights)
    if capability == "send":
        return can_send(scope, rights)
    return bool(rights)


@dataclass
class Ledger:
    identities: Identities
    resolver: Resolver
    intervals: list[Interval] = field(default_factory=list)
    index: dict[Key, list[Interval]] = field(default_factory=dict)  # the intervals of each entry
    #: every change per entry, in time order (replayed or not)
    changes: dict[Key, list[Change]] = field(default_factory=dict)
    #: the first and last time of the log records read, per platform ("exchange", "google")
    periods: dict[str, tuple[datetime, datetime]] = field(default_factory=dict)
    #: the raw names (first seen) of each key, to judge and show entries as logged
    raw_names: dict[str, str] = field(default_factory=dict)
    replayed: int = 0
    failed: int = 0  # unsuccessful operations: logged, never applied
    denies: int = 0
    #: changes left out: (source, line, why)
    issues: list[tuple[str, int | None, str]] = field(default_factory=list)

    def rights_at(self, key: Key, at: datetime) -> frozenset[str]:
        for iv in self.index.get(key, ()):
            if iv.holds_at(at):
                return iv.rights
        return frozenset()

    def add(self, interval: Interval) -> None:
        self.intervals.append(interval)
        self.index.setdefault(interval.key, []).append(interval)

    def key_of(self, raw: str) -> str:
        """The key of a name as a user types it (``--mailbox ceo@contoso.com``, a GUID, ``Default``)."""
        p = self.resolver.resolve(raw)
        if p is None:
            return ""
        self.identities.observe(p)
        return self.identities.key(p)

    def label(self, key: str) -> str:
        return self.identities.label(key)
