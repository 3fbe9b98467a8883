"""Rule matches + typed events → findings; then the context that makes some louder.

Louder (one severity step, with the reason recorded) on: guest or external grantees, grants made
in the same session as other grants, membership of a role group that carries
ApplicationImpersonation. Quiet on revocations and on grants whose events show nothing granted.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Iterable

from delegatewatch.detections.rules import Rule
from delegatewatch.events import rights as R
from delegatewatch.events.model import Action, Event, PermissionChange, RuleChange, Scope, SettingChange
from delegatewatch.events.principals import Kind, Principal
from delegatewatch.findings.model import Evidence, Finding, raise_severity
from delegatewatch.records import Record
from delegatewatch.records.times import iso_utc, parse_time

GRANT_ACTIONS = (Action.GRANT, Action.MODIFY)


def _fid(*parts: str) -> str:
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:16]


def _name(p: Principal | None) -> str | None:
    return p.name if p else None


def _summary(rule: Rule, ev: Event | None, record: Record) -> str:
    op = record.data.get("Operation", "")
    if isinstance(ev, PermissionChange):
        who = ev.actor.label() if ev.actor else "unknown actor"
        grantee = ev.grantee.label() if ev.grantee else (ev.target or "?")
        rights = R.describe(ev.rights) if ev.scope == Scope.FOLDER else ", ".join(sorted(ev.rights)) or "?"
        where = ev.mailbox.label() if ev.mailbox else (ev.target or "the organisation")
        if ev.folder:
            where += f" folder {ev.folder}"
        return f"{who} gave {grantee} {rights} on {where} ({op})"
    if isinstance(ev, RuleChange):
        bits = [b for b in (("deletes" if ev.deletes else ""), ("marks read" if ev.marks_read else ""),
                            (f"moves to {ev.moves_to}" if ev.moves_to else ""),
                            (f"forwards to {', '.join(ev.forwards_to)}" if ev.forwards_to else "")) if b]
        who = ev.actor.label() if ev.actor else "unknown actor"
        return f"{who} set inbox rule {ev.rule_name!r} on {_name(ev.mailbox)}: {', '.join(bits) or 'see record'} ({op})"
    if isinstance(ev, SettingChange):
        return f"{_name(ev.actor)} set {ev.setting}={ev.value} on {_name(ev.target)} ({op})"
    return f"{rule.title}: {op} by {record.data.get('UserId', '?')}"


def build(rule: Rule, record: Record, events: list[Event]) -> list[Finding]:
    """One finding per granted principal (a record can add several delegates at once)."""
    # A permission rule reports permission events; the others (rules, forwarding) the rest. When a
    # record has none of the preferred kind (a T1098 rule on a setting change), keep what it has.
    about_permissions = any(t.startswith("T1098") for t in rule.attack)
    preferred = [e for e in events if isinstance(e, PermissionChange) == about_permissions]
    events = preferred or events
    relevant: list[Event | None] = [e for e in events if not (isinstance(e, PermissionChange)
                                                             and e.action not in GRANT_ACTIONS)]
    if events and not relevant:
        return []  # the record only revokes: the rule's vendor fields matched, the meaning did not
    if not relevant:
        relevant = [None]
    data = record.data
    when = iso_utc(parse_time(data.get("CreationTime")))
    evidence = [Evidence(record.source, record.record_id, when, record.line)]
    out = []
    for ev in relevant:
        actor = ev.actor if ev else None
        mailbox = getattr(ev, "mailbox", None) or getattr(ev, "target", None)
        grantee = getattr(ev, "grantee", None)
        rights = sorted(getattr(ev, "rights", ()) or ())
        f = Finding(
            id=_fid(rule.id, str(data.get("_dedup") or record.record_id), _name(grantee) or "",
                    str(getattr(ev, "target", "") or "")),
            rule=rule.name, rule_id=rule.id, title=rule.title, severity=rule.severity, time=when,
            attack=rule.attack, actor=_name(actor) or data.get("UserId"),
            mailbox=_name(mailbox) if isinstance(mailbox, Principal) else mailbox,
            grantee=_name(grantee), rights=rights, summary=_summary(rule, ev, record), evidence=evidence,
            operation=str(data.get("Operation", "")), folder=getattr(ev, "folder", None),
            grantee_kind=grantee.kind.value if grantee else None,
            session_id=(ev.session_id if ev else None) or data.get("SessionId"),
            client_ip=ev.client_ip if ev else None, runbook=rule.runbook,
        )
        for role, p in (("actor", actor), ("mailbox", mailbox), ("grantee", grantee)):
            if isinstance(p, Principal):
                if p.resolved:
                    f.raw[role] = p.raw
                if p.display_name:
                    f.names[role] = p.display_name
        out.append(f)
    return out


def apply_context(findings: list[Finding], events_by_finding: dict[str, Event | None]) -> None:
    """Severity changes that need more than one record. Mutates the findings in place."""
    for f in findings:
        if f.grantee_kind in (Kind.GUEST.value, Kind.EXTERNAL.value):
            f.severity = raise_severity(f.severity)
            f.reasons.append(f"grantee is {'a guest' if f.grantee_kind == 'guest' else 'external'}")
    # Grants from one session: an attacker's script adds several delegates in a row.
    by_session: dict[str, list[Finding]] = defaultdict(list)
    for f in findings:
        if f.session_id and f.rights:
            by_session[f.session_id].append(f)
    for sid, group in by_session.items():
        records = {f.evidence[0].record_id for f in group}
        if len(records) > 1:
            for f in group:
                f.severity = raise_severity(f.severity)
                f.reasons.append(f"one of {len(records)} grants made in session {sid}")
    # Role groups created with ApplicationImpersonation: adding members grants impersonation.
    impersonation_groups = {str(getattr(events_by_finding.get(f.id), "target", "") or "").lower()
                            for f in findings if f.rule == "m365_application_impersonation"}
    impersonation_groups.discard("")
    for f in findings:
        if f.rule == "m365_role_group_member_added":
            ev = events_by_finding.get(f.id)
            group = str(getattr(ev, "target", "") or "")
            if group.lower() in impersonation_groups or "impersonat" in group.lower():
                f.severity = "high"
                f.reasons.append(f"role group {group!r} carries ApplicationImpersonation")


def sort_findings(findings: Iterable[Finding]) -> list[Finding]:
    return sorted(findings, key=lambda f: (f.time or "", f.rule, f.id))
