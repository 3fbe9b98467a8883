"""Questions to the ledger: who could read (or send as) a mailbox at a time, which mailboxes a
principal could reach, and the whole history of a mailbox or a grantee.

A time is a :class:`Window`: a date means the whole day (UTC) — "who could read it on 3 May" is any
interval that overlaps that day — and a date-time means that instant. No time means "when the log ends".
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from delegatewatch.analytics.ledger.identities import ANONYMOUS_KEY, DEFAULT_KEY, EVERY_MAILBOX
from delegatewatch.analytics.ledger.model import Interval, Ledger, can_read, can_send, capable
from delegatewatch.events import rights as R
from delegatewatch.events.model import Scope
from delegatewatch.events.principals import Kind
from delegatewatch.records.times import iso_utc, parse_time


@dataclass(frozen=True, slots=True)
class Window:
    start: datetime
    end: datetime
    text: str


def window(text: str | None) -> Window | None:
    """``2024-05-03`` → that day; ``2024-05-03T10:00:00Z`` → that instant; None → the end of the log."""
    if text is None or not text.strip():
        return None
    s = text.strip()
    if len(s) == 10:
        try:
            day = date.fromisoformat(s)
        except ValueError:
            day = None
        if day is not None:
            start = datetime(day.year, day.month, day.day, tzinfo=UTC)
            return Window(start, start + timedelta(days=1), s)
    at = parse_time(s)
    if at is None:
        raise ValueError(f"not a date or time: {text!r} (expected e.g. 2024-05-03 or 2024-05-03T10:00:00Z)")
    return Window(at, at + timedelta(microseconds=1), iso_utc(at) or s)


def _active(iv: Interval, when: Window | None) -> bool:
    return iv.end is None if when is None else iv.overlaps(when.start, when.end)


@dataclass(frozen=True, slots=True)
class Access:
    interval: Interval
    #: how the principal holds it when the entry is not theirs by name: "Default" / "Anonymous"
    #: (every user / anyone), or "" — and "every mailbox" for organisation-wide grants
    via: str = ""


def who_can(ledger: Ledger, mailbox: str, when: Window | None = None, capability: str = "read") -> list[Access]:
    """Who could read (``read``), send as / on behalf of (``send``) or hold anything on (``any``) ``mailbox``."""
    key = ledger.key_of(mailbox)
    out = []
    for iv in ledger.intervals:
        if iv.key.mailbox in (key, EVERY_MAILBOX) and _active(iv, when) and capable(iv.key.scope, iv.rights, capability):
            out.append(Access(iv, "every mailbox" if iv.key.mailbox == EVERY_MAILBOX else ""))
    return sorted(out, key=lambda a: (a.interval.key.grantee, a.interval.key.scope, a.interval.key.folder,
                                      a.interval.start))


def reachable(ledger: Ledger, grantee: str, when: Window | None = None, capability: str = "any") -> list[Access]:
    """The mailboxes ``grantee`` could reach: its own entries, and what Default (every user of the
    organisation) and Anonymous (anyone) held beyond calendar free/busy."""
    key = ledger.key_of(grantee)
    p = ledger.resolver.resolve(grantee)
    holders = {key: ""}
    if key not in (DEFAULT_KEY, ANONYMOUS_KEY):
        if p is None or p.kind is not Kind.EXTERNAL:
            holders[DEFAULT_KEY] = "Default"
        holders[ANONYMOUS_KEY] = "Anonymous"
    out = []
    for iv in ledger.intervals:
        via = holders.get(iv.key.grantee)
        if via is None or not _active(iv, when) or not capable(iv.key.scope, iv.rights, capability):
            continue
        if via and R.free_busy_only(iv.rights):
            continue  # everyone seeing calendar free/busy is normal, not a mailbox Y can reach
        out.append(Access(iv, via))
    return sorted(out, key=lambda a: (a.interval.key.mailbox, a.interval.key.scope, a.interval.key.folder,
                                      a.interval.start))


def history(ledger: Ledger, mailbox: str | None = None, grantee: str | None = None) -> list[Access]:
    """Every interval of a mailbox and/or a grantee (all of them when neither is given), oldest first."""
    mk = ledger.key_of(mailbox) if mailbox else None
    gk = ledger.key_of(grantee) if grantee else None
    return [Access(iv) for iv in sorted(ledger.intervals, key=lambda i: (i.start, i.key.mailbox, i.key.grantee))
            if (mk is None or iv.key.mailbox in (mk, EVERY_MAILBOX)) and (gk is None or iv.key.grantee == gk)]


def effective(ledger: Ledger, when: Window | None = None) -> list[Access]:
    """Everything held at ``when`` (when the log ends, by default)."""
    return [Access(iv) for iv in sorted(ledger.intervals, key=lambda i: (i.key.mailbox, i.key.grantee, i.start))
            if _active(iv, when)]


def rights_text(scope: str, rights: frozenset[str]) -> str:
    return R.describe(rights) if scope == Scope.FOLDER.value else ", ".join(sorted(rights))


def row(ledger: Ledger, access: Access) -> dict[str, Any]:
    """One answer as a flat dict (the jsonl / csv / table columns)."""
    iv = access.interval
    k = iv.key
    can = [c for c, ok in (("read", can_read(k.scope, iv.rights)), ("send", can_send(k.scope, iv.rights))) if ok]
    ended = iv.closed
    return {
        "mailbox": ledger.label(k.mailbox), "grantee": ledger.label(k.grantee), "scope": k.scope,
        "folder": k.folder or None, "rights": sorted(iv.rights), "rights_text": rights_text(k.scope, iv.rights),
        "can": can, "via": access.via or None, "from": iso_utc(iv.start), "until": iso_utc(iv.end),
        "granted_by": iv.opened.actor, "granted_with": iv.opened.operation, "target": iv.opened.target,
        "ended_by": ended.actor if ended else None, "ended_with": ended.operation if ended else None,
        "evidence": [{"source": c.evidence.source, "record_id": c.evidence.record_id, "time": c.evidence.time,
                      "line": c.evidence.line} for c in (iv.opened, *iv.confirmed, *([ended] if ended else []))],
    }
