"""Grant → use incidents: a delegation grant, what led to it and what was done with it, as one
incident with a timeline, a risk score and every evidence record (docs/incidents.md).

Built after the findings are final (context, allow-list) from

* the **findings**: grants (T1098 rules, snapshot differences), evasion (hiding and forwarding
  rules, audit bypass), send bursts and look-alike lures (analytics/mailflow.py), and role-group
  memberships, which are a precursor when the new member makes a grant soon after;
* the **activities** (analytics/incident_feed.py): non-owner reads and logons, sends as / on behalf
  of the owner, password resets, role and sign-in changes — records no rule matches.

Principals are compared by :class:`~delegatewatch.findings.identities.Identities` keys, so a grant
naming the mailbox by object id meets a password reset naming it by UPN. Windows (``[incidents]``):
grants of one mailbox to one grantee, or from one session, within ``merge_window_hours`` are one
incident; a use counts from the grant up to ``use_window_hours`` after the last grant (when several
grants could own it, the latest before it does); a precursor up to ``precursor_window_hours``
before the first grant. Uses with no grant in the data are not incidents (a delegation older than
the data, or noise); a grant with no use is an incident of one step; every finding belongs to
exactly one incident (findings that join no grant are incidents of their own).
"""

from __future__ import annotations

import hashlib
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from delegatewatch.analytics.incident_feed import Activity
from delegatewatch.config import AllowConfig, IncidentsConfig
from delegatewatch.findings.allow import reason as allow_reason
from delegatewatch.findings.identities import Identities
from delegatewatch.findings.model import SEVERITIES, Evidence, Finding
from delegatewatch.records.times import iso_utc

PRECURSOR, GRANT, USE, EVASION, SEND_BURST = "precursor", "grant", "use", "evasion", "send-burst"
#: analytics findings about sending (analytics/mailflow.py)
SEND_RULES = frozenset({"send_volume_burst", "internal_lure_campaign"})
#: ATT&CK techniques of findings that hide or divert mail, or blind the audit
EVASION_TECHNIQUES = ("T1564.008", "T1114.003", "T1562.008")
#: findings that put someone in an Exchange role group: a precursor when that member grants soon after
ROLE_RULES = frozenset({"m365_role_group_member_added", "windows_exchange_role_group_member_added",
                        "windows_exchange_privileged_group_member_added"})
READ_USES = frozenset({"read", "logon"})


@dataclass(slots=True)
class Step:
    """One entry of an incident's timeline."""

    time: str | None
    kind: str  # precursor | grant | use | evasion | send-burst
    what: str  # the finding's rule, or the activity (read, logon, send_as, password, role …)
    summary: str
    operation: str
    evidence: list[Evidence]
    finding: str | None = None  # the finding id, for steps that are findings

    def to_dict(self) -> dict[str, Any]:
        return {"time": self.time, "kind": self.kind, "what": self.what, "summary": self.summary,
                "operation": self.operation, "finding": self.finding,
                "evidence": [_evidence_dict(e) for e in self.evidence]}


@dataclass(frozen=True, slots=True)
class Factor:
    """A reason for risk points."""

    name: str
    points: int
    detail: str


@dataclass
class Incident:
    id: str
    title: str
    score: int  # 0–100
    severity: str
    factors: list[Factor]
    start: str | None
    end: str | None
    actors: list[str]
    mailboxes: list[str]
    grantees: list[str]
    steps: list[Step]
    findings: list[str]  # ids of every finding in the incident
    allowed: str | None = None  # why the incident is expected ([allow]), when it is

    @property
    def evidence(self) -> list[Evidence]:
        seen: dict[tuple[str, str], Evidence] = {}
        for s in self.steps:
            for e in s.evidence:
                seen.setdefault((e.source, e.record_id), e)
        return list(seen.values())

    @property
    def uses(self) -> list[Step]:
        return [s for s in self.steps if s.kind == USE]

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "title": self.title, "score": self.score, "severity": self.severity,
                "factors": [{"name": f.name, "points": f.points, "detail": f.detail} for f in self.factors],
                "start": self.start, "end": self.end, "actors": self.actors, "mailboxes": self.mailboxes,
                "grantees": self.grantees, "allowed": self.allowed, "findings": self.findings,
                "steps": [s.to_dict() for s in self.steps],
                "evidence": [_evidence_dict(e) for e in self.evidence]}


@dataclass
class Correlation:
    """What :func:`build_incidents` returns: the incidents and how many activities joined none."""

    incidents: list[Incident]
    activities: int = 0
    unmatched: int = 0


def _evidence_dict(e: Evidence) -> dict[str, Any]:
    return {"source": e.source, "record_id": e.record_id, "time": e.time, "line": e.line}


def _time(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        t = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return t if t.tzinfo else t.replace(tzinfo=UTC)


def _kind(f: Finding) -> str:
    if f.rule in SEND_RULES:
        return SEND_BURST
    if any(t.upper().startswith(EVASION_TECHNIQUES) for t in f.attack):
        return EVASION
    return GRANT


def _distinct(values: Iterable[str | None]) -> list[str]:
    return list(dict.fromkeys(v for v in values if v))


@dataclass
class _Cluster:
    """Grants that are one incident, and what joins them."""

    grants: list[Finding]
    first: datetime
    last: datetime
    mailboxes: set[str | None]  # keys; None: a grant without a mailbox (organisation-wide)
    grantees: set[str]
    actors: set[str]
    sessions: set[str]
    role_precursors: list[Finding] = field(default_factory=list)
    activities: list[Activity] = field(default_factory=list)
    others: list[tuple[str, Finding]] = field(default_factory=list)  # (kind, finding)


class _Correlator:
    def __init__(self, ids: Identities, cfg: IncidentsConfig) -> None:
        self.ids = ids
        self.cfg = cfg
        self.use_window = timedelta(hours=cfg.use_window_hours)
        self.precursor_window = timedelta(hours=cfg.precursor_window_hours)
        self.merge_window = timedelta(hours=cfg.merge_window_hours)

    def key(self, value: object) -> str | None:
        return self.ids.key(value)

    def keys(self, f: Finding, role: str) -> set[str]:
        return {k for k in (self.key(getattr(f, role, None)), self.key(f.raw.get(role))) if k}

    # -- grants → clusters ----------------------------------------------------------------
    def clusters(self, grants: list[tuple[datetime, Finding]]) -> list[_Cluster]:
        grants.sort(key=lambda p: (p[0], p[1].id))
        parent = list(range(len(grants)))

        def find(i: int) -> int:
            while parent[i] != i:
                parent[i] = parent[parent[i]]
                i = parent[i]
            return i

        def union(i: int, j: int) -> None:
            a, b = find(i), find(j)
            if a != b:
                parent[max(a, b)] = min(a, b)

        last: dict[tuple[str, ...], tuple[datetime, int]] = {}
        role_of: set[int] = set()
        for i, (t, f) in enumerate(grants):
            grantee, mailbox = self.key(f.grantee), self.key(f.mailbox)
            keys = [("session", f.session_id)] if f.session_id else []
            if grantee:
                keys.append(("pair", mailbox or "", grantee))
            for k in keys:
                seen = last.get(k)  # type: ignore[arg-type]
                if seen is not None and t - seen[0] <= self.merge_window:
                    union(seen[1], i)
                last[k] = (t, i)  # type: ignore[index]
            if f.rule in ROLE_RULES:
                role_of.add(i)
        # A role-group membership followed by a grant *by the new member*: one incident, the
        # membership as its precursor. Each membership joins at most the first such grant.
        for r in sorted(role_of):
            member = self.key(grants[r][1].grantee)
            for i in range(r + 1, len(grants)):
                t, f = grants[i]
                if t - grants[r][0] > self.precursor_window:
                    break
                if i not in role_of and member and self.key(f.actor) == member:
                    union(r, i)
                    break
        groups: dict[int, list[int]] = defaultdict(list)
        for i in range(len(grants)):
            groups[find(i)].append(i)
        out = []
        for members in groups.values():
            anchors = [i for i in members if i not in role_of] or members
            precursors = [grants[i][1] for i in members if i not in anchors]
            fs = [grants[i][1] for i in anchors]
            times = [grants[i][0] for i in anchors]
            c = _Cluster(grants=fs, first=min(times), last=max(times),
                         mailboxes={self.key(f.mailbox) for f in fs},
                         grantees=set().union(*(self.keys(f, "grantee") for f in fs)),
                         actors=set().union(*(self.keys(f, "actor") for f in fs)),
                         sessions={f.session_id for f in fs + precursors if f.session_id})
            c.role_precursors = precursors
            out.append(c)
        out.sort(key=lambda c: (c.first, c.grants[0].id))
        return out

    # -- joining uses, precursors and other findings ----------------------------------------
    def index(self, clusters: list[_Cluster]) -> None:
        """Clusters by grantee, mailbox, actor and session key (each list in order of first grant),
        so joining a use looks only at the grants of its own actor: most uses join nothing."""
        self.by: dict[tuple[str, str], list[_Cluster]] = defaultdict(list)
        for c in clusters:
            for role, keys in (("grantee", c.grantees), ("mailbox", c.mailboxes), ("actor", c.actors),
                               ("session", c.sessions)):
                for k in keys:
                    if k:
                        self.by[role, k].append(c)

    def candidates(self, keys: Iterable[tuple[str, str | None]]) -> list[_Cluster]:
        lists = [hit for role, k in keys if k and (hit := self.by.get((role, k)))]
        if len(lists) <= 1:
            return lists[0] if lists else []
        found = {id(c): c for hits in lists for c in hits}
        return sorted(found.values(), key=lambda c: c.first)

    @staticmethod
    def latest_before(candidates: list[_Cluster], t: datetime, ok: Callable[[_Cluster], bool]) -> _Cluster | None:
        """The candidate with the latest first grant at or before ``t`` that ``ok`` accepts."""
        best = None
        for c in candidates:
            if c.first > t:
                break
            if ok(c):
                best = c
        return best

    def use_owner(self, t: datetime, actor: str | None, mailbox: str | None, session: str | None) -> _Cluster | None:
        def ok(c: _Cluster) -> bool:
            if t > c.last + self.use_window:
                return False
            if session and session in c.sessions:
                return True
            return actor in c.grantees and (None in c.mailboxes or mailbox in c.mailboxes)
        return self.latest_before(self.candidates([("grantee", actor), ("session", session)]), t, ok)

    def precursor_owner(self, t: datetime, target: str | None, session: str | None) -> _Cluster | None:
        for c in self.candidates([("mailbox", target), ("actor", target), ("grantee", target), ("session", session)]):
            if c.first - self.precursor_window <= t <= c.last:
                return c  # the first grant it preceded
        return None

    def evasion_owner(self, t: datetime, who: set[str], mailboxes: set[str], session: str | None) -> _Cluster | None:
        """A hiding or forwarding rule (or audit bypass) by the grantee or the granting actor in the
        granted mailbox, or in the grant's session."""
        def ok(c: _Cluster) -> bool:
            if not (c.first - self.precursor_window <= t <= c.last + self.use_window):
                return False
            if session and session in c.sessions:
                return True
            return bool(mailboxes & c.mailboxes) and bool(who & (c.grantees | c.actors))
        keys = [("mailbox", k) for k in mailboxes] + [("session", session)]
        return self.latest_before(self.candidates(keys), t + self.precursor_window, ok)

    def burst_owner(self, f: Finding, t: datetime) -> _Cluster | None:
        campaign = getattr(f, "campaign", None) or {}
        senders = {self.key(s) for s in campaign.get("senders", ())} | self.keys(f, "mailbox")
        return self.latest_before(self.candidates(("mailbox", k) for k in senders), t,
                                  lambda c: t <= c.last + self.use_window)


def unreported(activities: Iterable[Activity], findings: Sequence[Finding]) -> list[Activity]:
    """The activities no finding already reports: a record that is a finding's evidence is not a
    second step. The sends behind a send-volume burst stay (the grantee sending as the owner is a use;
    the burst is a step of its own kind)."""
    reported = {e.record_id for f in findings if f.rule != "send_volume_burst" for e in f.evidence}
    return [a for a in activities if a.evidence.record_id not in reported]


def build_incidents(findings: Sequence[Finding], activities: Sequence[Activity], identities: Identities,
                    cfg: IncidentsConfig | None = None, allow: AllowConfig | None = None, *,
                    assign: bool = True) -> Correlation:
    """Findings + activities → incidents (most risky first). Sets ``incident`` on every finding
    unless ``assign`` is false."""
    cfg = cfg or IncidentsConfig()
    allow = allow or AllowConfig()
    for f in findings:  # a finding's raw and resolved spellings name one principal
        for role in ("actor", "mailbox", "grantee"):
            if f.raw.get(role):
                identities.link(getattr(f, role), f.raw[role])
    co = _Correlator(identities, cfg)
    grants: list[tuple[datetime, Finding]] = []
    loose: list[Finding] = []  # findings without a time, or not grants
    for f in findings:
        t = _time(f.time)
        if t is not None and _kind(f) == GRANT:
            grants.append((t, f))
        else:
            loose.append(f)
    clusters = co.clusters(grants)
    co.index(clusters)
    unmatched = 0
    for a in activities:
        t = a.time if a.time.tzinfo else a.time.replace(tzinfo=UTC)
        if a.kind == "use":
            owner = co.use_owner(t, co.key(a.actor), co.key(a.target), a.session_id)
        elif a.kind == EVASION:
            owner = co.evasion_owner(t, {k for k in (co.key(a.actor),) if k}, {k for k in (co.key(a.target),) if k},
                                     a.session_id)
        else:
            owner = co.precursor_owner(t, co.key(a.target), a.session_id)
        if owner is None:
            unmatched += 1
        else:
            owner.activities.append(a)
    alone: list[Finding] = []
    for f in loose:
        t = _time(f.time)
        kind = _kind(f)
        owner = None
        if t is not None and kind == EVASION:
            owner = co.evasion_owner(t, co.keys(f, "actor") | co.keys(f, "grantee"), co.keys(f, "mailbox"), f.session_id)
        elif t is not None and kind == SEND_BURST:
            owner = co.burst_owner(f, t)
        if owner is None:
            alone.append(f)
        else:
            owner.others.append((kind, f))
    incidents = [_incident(c, co, cfg, allow) for c in clusters]
    incidents += [_single(f, co, cfg, allow) for f in alone]
    incidents.sort(key=lambda i: (-i.score, i.start or "\uffff", i.id))
    by_id = {f.id: f for f in findings} if assign else {}
    for inc in incidents:
        for fid in inc.findings:
            if fid in by_id:
                by_id[fid].incident = inc.id
    return Correlation(incidents, len(activities), unmatched)


# -- one incident ---------------------------------------------------------------------------------
def _finding_step(f: Finding, kind: str) -> Step:
    return Step(f.time, kind, f.rule, f.summary, f.operation, list(f.evidence), f.id)


def _activity_step(a: Activity) -> Step:
    return Step(iso_utc(a.time), a.kind, a.what, a.summary, a.operation, [a.evidence])


def _incident_id(findings: Iterable[str]) -> str:
    """Stable across runs of the same input: from the ids of the incident's findings."""
    return "INC-" + hashlib.sha256("\x1f".join(sorted(findings)).encode()).hexdigest()[:12]


def _severity(score: int, cfg: IncidentsConfig) -> str:
    level = sum(1 for threshold in cfg.severity_thresholds if score >= threshold)
    return SEVERITIES[level]


def _grant_points(severity: str, cfg: IncidentsConfig) -> int:
    return dict(cfg.grant_points).get(severity, 0)


def _incident(c: _Cluster, co: _Correlator, cfg: IncidentsConfig, allow: AllowConfig) -> Incident:
    steps = [_finding_step(f, PRECURSOR) for f in c.role_precursors]
    steps += [_finding_step(f, GRANT) for f in c.grants]
    steps += [_activity_step(a) for a in c.activities]
    steps += [_finding_step(f, kind) for kind, f in c.others]
    steps.sort(key=lambda s: (s.time or "\uffff", s.kind != PRECURSOR, s.kind != GRANT))
    top = max(c.grants, key=lambda f: SEVERITIES.index(f.severity) if f.severity in SEVERITIES else 2)
    factors = [Factor("grant", _grant_points(top.severity, cfg), f"{top.severity} grant: {top.title}")]
    uses = [a for a in c.activities if a.kind == USE]
    precursors = [a for a in c.activities if a.kind == PRECURSOR]
    if precursors or c.role_precursors:
        what = _distinct([a.summary for a in precursors] + [f.summary for f in c.role_precursors])
        factors.append(Factor("precursor", cfg.precursor_points, "; ".join(what[:3])))
    reads = [a for a in uses if a.what in READ_USES]
    sends = [a for a in uses if a.what not in READ_USES]
    if reads:
        factors.append(Factor("read", cfg.read_points, f"{len(reads)} non-owner read(s) or logon(s) by the grantee"))
    if sends:
        factors.append(Factor("send", cfg.send_points, f"{len(sends)} message(s) sent as or on behalf of the owner"))
    evasions = [f for kind, f in c.others if kind == EVASION]
    outlook_rules = [a for a in c.activities if a.kind == EVASION]
    if evasions or outlook_rules:
        factors.append(Factor("evasion", cfg.evasion_points,
                              "; ".join(_distinct([f.title for f in evasions] + [a.summary for a in outlook_rules])[:3])))
    bursts = [f for kind, f in c.others if kind == SEND_BURST]
    if bursts:
        factors.append(Factor("send_burst", cfg.send_burst_points, "; ".join(_distinct(f.title for f in bursts))))
    if uses:
        gap = min(a.time if a.time.tzinfo else a.time.replace(tzinfo=UTC) for a in uses) - c.first
        if gap <= timedelta(minutes=cfg.quick_use_minutes):
            factors.append(Factor("quick_use", cfg.quick_use_points,
                                  f"first use {int(gap.total_seconds() // 60)} min after the grant"))
    joined = [a.session_id for a in c.activities] + [f.session_id for _, f in c.others]
    grant_records = {(f.session_id, f.evidence[0].record_id) for f in c.grants if f.session_id and f.evidence}
    per_session = Counter(sid for sid, _ in grant_records)
    if any(s and s in per_session for s in joined) or any(n > 1 for n in per_session.values()):
        factors.append(Factor("same_session", cfg.same_session_points,
                              "steps share the grant's session id, or several grants came from one session"))
    reasons = [allow_reason(f, allow) or next((r for r in f.reasons if r.startswith("allow-listed")), None)
               for f in c.grants]
    allowed = reasons[0] if reasons and all(reasons) else None
    score = min(100, sum(f.points for f in factors))
    if allowed:
        factors.append(Factor("allow-listed", min(0, cfg.allowed_max_score - score), allowed))
        score = min(score, cfg.allowed_max_score)
    names = co.ids.display
    grantees = _distinct(names(f.grantee) for f in c.grants)
    mailboxes = _distinct(names(f.mailbox) for f in c.grants)
    finding_ids = [s.finding for s in steps if s.finding]
    rights = _distinct(r for f in c.grants for r in f.rights) or _distinct(f.rule for f in c.grants)
    if grantees:
        title = f"{', '.join(grantees[:2])} given {', '.join(rights[:3])} on {', '.join(mailboxes[:2]) or 'the organisation'}"
    else:  # a setting rather than a delegate (mail delegation switched on for an org unit …)
        title = c.grants[0].summary
    if precursors or c.role_precursors:
        title += " after " + ", ".join(_distinct(_PRECURSOR_WORDS.get(a.what, a.what) for a in precursors)
                                       + (["a role-group membership"] if c.role_precursors else []))
    kinds = _distinct([_USE_WORDS.get(a.what, a.what) for a in uses]
                      + (["inbox rule / forwarding"] if evasions or outlook_rules else [])
                      + (["send burst"] if bursts else []))
    title += f"; then: {', '.join(kinds)}" if kinds else "; no use in the data"
    times = [s.time for s in steps if s.time]
    return Incident(
        id=_incident_id(finding_ids), title=title, score=score, severity=_severity(score, cfg), factors=factors,
        start=min(times, default=None), end=max(times, default=None),
        actors=_distinct(names(f.actor) for f in c.grants + c.role_precursors),
        mailboxes=mailboxes, grantees=grantees, steps=steps, findings=finding_ids, allowed=allowed)


_PRECURSOR_WORDS = {"password": "a password reset", "role": "a role change", "sign_in_change": "a sign-in change"}
_USE_WORDS = {"read": "read", "logon": "mailbox logon", "send_as": "sent as", "send_on_behalf": "sent on behalf",
              "send": "sent from the mailbox"}


def _single(f: Finding, co: _Correlator, cfg: IncidentsConfig, allow: AllowConfig) -> Incident:
    """A finding that joined no grant: an incident of one step, scored by its own severity."""
    kind = _kind(f)
    step = _finding_step(f, kind)
    factors = [Factor("grant" if kind == GRANT else "finding", _grant_points(f.severity, cfg), f"{f.severity}: {f.title}")]
    # a hiding rule or a send burst is itself a sign of abuse, with or without a grant in the data
    if kind == EVASION:
        factors.append(Factor("evasion", cfg.evasion_points, f.title))
    elif kind == SEND_BURST:
        factors.append(Factor("send_burst", cfg.send_burst_points, f.title))
    score = min(100, sum(x.points for x in factors))
    allowed = allow_reason(f, allow) or next((r for r in f.reasons if r.startswith("allow-listed")), None)
    if allowed:
        factors.append(Factor("allow-listed", min(0, cfg.allowed_max_score - score), allowed))
        score = min(score, cfg.allowed_max_score)
    title = f.summary if kind != GRANT else f"{f.summary}; no use in the data"
    names = co.ids.display
    return Incident(id=_incident_id([f.id]), title=title, score=score, severity=_severity(score, cfg),
                    factors=factors, start=f.time, end=f.time, actors=_distinct([names(f.actor)]),
                    mailboxes=_distinct([names(f.mailbox)]), grantees=_distinct([names(f.grantee)]),
                    steps=[step], findings=[f.id], allowed=allowed)
