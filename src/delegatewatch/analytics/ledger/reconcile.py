r"""Reconcile the replayed log with standing-permission snapshots.

A snapshot taken at T is compared with the ledger's state at T, entry by entry (the snapshot's rows
are judged the way ``analytics/snapshot.py`` judges them: ``NT AUTHORITY\SELF``, the owner, Exchange's
own groups, inherited rows of the administrative groups and ``None`` rows are not grants):

* a right in the snapshot that the replay does not hold at T is **unexplained**
  (``ledger_unexplained_permission``). What the data suggests is said, and sets the severity:
  the log recorded changes to the entry that leave it without the right, or an earlier snapshot
  inside the log period did not have it (the log covers the permission's whole life: an audit gap
  or tampering, high); the log starts after the snapshot could have learnt it (granted before the log
  began, or not logged: medium for a risky right, else low); the log ends before the snapshot
  (granted after the log, low). A right an earlier snapshot held before the log began is explained.
* a right the replay holds at T that the snapshot does not show, on a mailbox (or folder) the
  snapshot covers, is **revoked or failed** (``ledger_revoked_or_failed_grant``): the revocation was
  not logged, the operation failed after it was logged, or the snapshot misses the entry.

Changes within ``[ledger] snapshot_slack_minutes`` of the snapshot time are too close to tell (an
export takes minutes) and are not judged. Each discrepancy is reported once, at the first snapshot
that shows it. Gmail delegates are reconciled only when ``[google] delegate_added_events`` names the
event (Google documents none, so without it every delegate would be "unexplained").
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from delegatewatch import config
from delegatewatch.analytics.ledger.model import GMAIL_DELEGATE, Change, Interval, Key, Ledger
from delegatewatch.analytics.ledger.replay import folder_key
from delegatewatch.analytics.snapshot import Entry, Judge, Snapshot
from delegatewatch.events import rights as R
from delegatewatch.events.model import Scope
from delegatewatch.events.principals import DN, EMAIL, GUID, SID, Kind
from delegatewatch.records import Record
from delegatewatch.records.times import iso_utc
from delegatewatch.sources.formats import snapshots as S

UNEXPLAINED = "ledger_unexplained_permission"
REVOKED_OR_FAILED = "ledger_revoked_or_failed_grant"

KIND_SCOPE = {S.MAILBOX: Scope.MAILBOX.value, S.FOLDER: Scope.FOLDER.value, S.RECIPIENT: Scope.SEND_AS.value,
              S.AD: Scope.SEND_AS.value, S.SEND_ON_BEHALF: Scope.SEND_ON_BEHALF.value, S.GMAIL: Scope.DELEGATE.value}
_KIND_RIGHTS = {S.MAILBOX: R.MAILBOX_RIGHTS, S.RECIPIENT: frozenset({R.SEND_AS}), S.AD: frozenset({R.SEND_AS}),
                S.SEND_ON_BEHALF: frozenset({R.SEND_ON_BEHALF}), S.GMAIL: frozenset({GMAIL_DELEGATE})}


def comparable(kind: str, rights: frozenset[str]) -> frozenset[str]:
    """The rights both a log and this kind of snapshot can show (``ReadPermission`` rows of
    ``Get-ADPermission`` and ``ReceiveAs`` are not in the logs the ledger reads)."""
    allowed = _KIND_RIGHTS.get(kind)
    return rights if allowed is None else rights & allowed


@dataclass
class Discrepancy:
    rule: str
    severity: str
    kind: str
    key: Key
    rights: frozenset[str]
    snapshot: Snapshot
    summary: str
    reasons: list[str]
    rows: list[Record] = field(default_factory=list)  # the snapshot rows
    changes: list[Change] = field(default_factory=list)  # the log records


@dataclass
class Reconciliation:
    discrepancies: list[Discrepancy] = field(default_factory=list)
    #: snapshots (or kinds) not compared, and why
    notes: list[str] = field(default_factory=list)
    #: entries too close to a snapshot's time to judge
    uncertain: int = 0


def _coverage(snap: Snapshot, rows: list[Record], ledger: Ledger) -> set[tuple[str, str]]:
    """(mailbox key, folder key or "") the snapshot lists, whether or not anyone but the owner holds rights."""
    out = set()
    for r in rows:
        mailbox = str(r.data.get("Mailbox") or "").strip()
        if mailbox and (snap.kind != S.GMAIL or str(r.data.get("Status") or "") != "unknown"):
            folder = folder_key(str(r.data.get("Folder") or "")) if snap.kind == S.FOLDER else ""
            out.add((ledger.key_of(mailbox), folder))
    return out


class _Reconciler:
    def __init__(self, ledger: Ledger, judge: Judge, slack: timedelta) -> None:
        self.ledger = ledger
        self.judge = judge
        self.slack = slack
        self.out = Reconciliation()
        self.reported_extra: dict[Key, frozenset[str]] = {}
        self.reported_intervals: set[int] = set()
        self.logged = {k.grantee for k in ledger.changes}
        #: entries whose snapshot grantee is a name the log's names could not be matched to
        self.unmatched: dict[Key, str] = {}

    def opaque(self, raw: str, key: str) -> bool:
        """A display name, alias or ``DOMAIN\\sam`` that the resolver could not turn into an address
        and that no log record names: the same person may be in the log under their UPN."""
        if key in self.logged or EMAIL.match(raw) or GUID.match(raw) or SID.match(raw) or DN.match(raw):
            return False
        p = self.ledger.resolver.resolve(raw)
        return p is not None and p.upn is None and p.kind in (Kind.USER, Kind.UNKNOWN)

    def entries(self, snap: Snapshot) -> dict[Key, tuple[frozenset[str], Entry]]:
        out: dict[Key, tuple[frozenset[str], Entry]] = {}
        self.unmatched = {}
        for e in snap.entries.values():
            if self.judge.assess(e) is None:
                continue
            rights = comparable(snap.kind, e.rights)
            if not rights:
                continue
            folder = folder_key(e.folder) if snap.kind == S.FOLDER else ""
            key = Key(self.ledger.key_of(e.mailbox), self.ledger.key_of(e.grantee), KIND_SCOPE[snap.kind], folder)
            if self.opaque(e.grantee, key.grantee):
                self.unmatched[key] = e.grantee
            have = out.get(key)
            out[key] = ((have[0] | rights) if have else rights, have[1] if have else e)
        return out

    def near(self, when: datetime, at: datetime) -> bool:
        return abs(when - at) <= self.slack

    def series(self, kind: str, series: list[Snapshot], rows_of: dict[str, list[Record]]) -> None:
        platform = "google" if kind == S.GMAIL else "exchange"
        period = self.ledger.periods.get(platform)
        if period is None:
            self.out.notes.append(f"{kind} snapshots not reconciled: no {platform} log records among the input")
            return
        if kind == S.GMAIL and not config.current().google.delegate_added_events:
            self.out.notes.append("Gmail delegate snapshots not reconciled: no audit event records a delegate being "
                                  "added ([google] delegate_added_events is empty)")
            return
        start, end = period
        baseline: dict[Key, frozenset[str]] = {}
        previous: tuple[Snapshot, dict[Key, tuple[frozenset[str], Entry]], set[tuple[str, str]]] | None = None
        for snap in series:
            entries = self.entries(snap)
            rows = [r for f in snap.files for r in rows_of.get(f, []) if r.data.get("SnapshotKind") == kind]
            covered = _coverage(snap, rows, self.ledger)
            if snap.time < start - self.slack:
                for key, (rights, _) in entries.items():
                    baseline[key] = baseline.get(key, frozenset()) | rights
                self.out.notes.append(f"{kind} snapshot {snap.label()} is older than the log (from {iso_utc(start)}): "
                                      "used as what was held before the log began")
                continue
            for key, (rights, entry) in entries.items():
                self.unexplained(kind, snap, key, rights, entry, baseline, previous, (start, end))
            self.revoked(kind, snap, entries, covered, (start, end))
            previous = (snap, entries, covered)

    def unexplained(self, kind, snap, key, rights, entry, baseline, previous, period) -> None:  # noqa: ANN001
        start, end = period
        held = comparable(kind, self.ledger.rights_at(key, snap.time))
        extra = rights - held - baseline.get(key, frozenset())
        if not extra or extra <= self.reported_extra.get(key, frozenset()):
            return
        log = [c for c in self.ledger.changes.get(key, []) if c.time <= snap.time + self.slack]
        if any(self.near(c.time, snap.time) for c in log):
            self.out.uncertain += 1
            return
        self.reported_extra[key] = self.reported_extra.get(key, frozenset()) | extra
        a = self.judge.assess(entry)
        risky = bool(a and a.rule)
        what = f"{self.ledger.label(key.grantee)} holds {_rights(kind, extra)} on {_where(self.ledger, key)}"
        applied = [c for c in log if "failed" not in c.action and "deny" not in c.action]
        if applied:
            last = applied[-1]
            severity = "high"
            reasons = [f"the log records this entry's changes, the last being {last.action} ({last.operation}) at "
                       f"{iso_utc(last.time)} by {last.actor or 'an unknown actor'}, which leave it without "
                       f"{_rights(kind, extra)}: a change made without an audit record (audit gap or tampering)"]
        elif previous is not None and (key.mailbox, key.folder) in previous[2] and not (
                extra & previous[1].get(key, (frozenset(), None))[0]):
            severity = "high"
            reasons = [f"not in the {kind} snapshot {previous[0].label()}, which lies inside the log period, and no "
                       f"grant was logged since: the log covers the permission's whole life, so its grant is missing "
                       "(audit gap or tampering)"]
        elif snap.time > end + self.slack:
            severity = "low"
            reasons = [f"the log ends at {iso_utc(end)}, before the snapshot: it may have been granted after that"]
        else:
            severity = "medium" if risky else "low"
            reasons = [f"no grant in the log, which starts at {iso_utc(start)}: granted before the log began (older "
                       "than its retention), or granted without an audit record; a snapshot taken before "
                       f"{iso_utc(start)} would tell which"]
        if key in self.unmatched:
            severity = "low"
            reasons.insert(0, f"the snapshot names the grantee {self.unmatched[key]!r}, a name no log record uses: "
                              "the log may name the same account by its address (give --directory to match them)")
        if a and a.rule:
            reasons.append(f"risky as {a.rule}")
        self.out.discrepancies.append(Discrepancy(
            UNEXPLAINED, severity, kind, key, extra, snap,
            f"Unexplained permission: {what} in the snapshot of {snap.time:%Y-%m-%d %H:%M} UTC, with no grant in the log",
            reasons, list(entry.rows), log[-5:]))

    def revoked(self, kind, snap, entries, covered, period) -> None:  # noqa: ANN001
        end = period[1]
        scope = KIND_SCOPE[kind]
        for iv in self.ledger.intervals:
            k = iv.key
            if k.scope != scope or not iv.holds_at(snap.time) or (k.mailbox, k.folder) not in covered:
                continue
            missing = comparable(kind, iv.rights) - entries.get(k, (frozenset(), None))[0]
            if not missing or id(iv) in self.reported_intervals:
                continue
            if self.near(iv.start, snap.time):
                self.out.uncertain += 1
                continue
            raw = Entry(kind, self.ledger.raw_names.get(k.mailbox, k.mailbox), k.folder,
                        self.ledger.raw_names.get(k.grantee, k.grantee), iv.rights, False, "")
            if self.judge.assess(raw) is None:
                continue  # a system or owner entry the snapshot reader would not report either
            self.reported_intervals.add(id(iv))
            severity = "informational" if snap.time > end + self.slack else "low"
            reasons = [f"granted at {iso_utc(iv.start)} by {iv.opened.actor or 'an unknown actor'} "
                       f"({iv.opened.operation}); no revocation in the log up to the snapshot",
                       "the revocation was not logged (an audit gap, or clean-up by whoever made the grant), the "
                       "operation failed after it was logged, or the snapshot misses the entry"]
            if severity == "informational":
                reasons.append(f"the log ends at {iso_utc(end)}, before the snapshot: it may have been revoked since")
            names = sorted(raw for key, raw in self.unmatched.items()
                           if (key.mailbox, key.scope, key.folder) == (k.mailbox, k.scope, k.folder))
            if names:
                severity = "informational"
                reasons.append(f"the snapshot names {', '.join(repr(n) for n in names)} on this entry, names the log "
                               "does not use: one may be this grantee (give --directory to match them)")
            what = f"{self.ledger.label(k.grantee)} was granted {_rights(kind, missing)} on {_where(self.ledger, k)}"
            self.out.discrepancies.append(Discrepancy(
                REVOKED_OR_FAILED, severity, kind, k, missing, snap,
                f"Grant not in the snapshot: {what}, but the {kind} snapshot of {snap.time:%Y-%m-%d %H:%M} UTC "
                "does not show it", reasons, [], [iv.opened, *iv.confirmed[-4:]]))


def _rights(kind: str, rights: frozenset[str]) -> str:
    return R.describe(rights) if kind == S.FOLDER else ", ".join(sorted(rights))


def _where(ledger: Ledger, key: Key) -> str:
    mailbox = ledger.label(key.mailbox)
    return f"{mailbox} {key.folder}" if key.folder else mailbox


def reconcile(ledger: Ledger, snapshots: dict[str, list[Snapshot]], rows: Iterable[Record],
              judge: Judge) -> Reconciliation:
    """Compare every snapshot (oldest first, per kind) with the ledger."""
    slack = timedelta(minutes=config.current().ledger.snapshot_slack_minutes)
    rows_of: dict[str, list[Record]] = {}
    for r in rows:
        rows_of.setdefault(r.source, []).append(r)
    work = _Reconciler(ledger, judge, slack)
    for kind, series in sorted(snapshots.items()):
        if kind in KIND_SCOPE:
            work.series(kind, series, rows_of)
    return work.out


__all__ = ["REVOKED_OR_FAILED", "UNEXPLAINED", "Discrepancy", "Interval", "Reconciliation", "comparable",
           "reconcile"]
