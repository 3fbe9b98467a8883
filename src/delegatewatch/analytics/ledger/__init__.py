"""The permission ledger: grants, modifications and revocations replayed into effective permissions
over time (``replay``), questions to it (``queries``), and its reconciliation with standing-permission
snapshots (``reconcile``). docs/ledger.md describes it; ``delegatewatch ledger`` asks it questions.

As a hunt analytic it receives the permission operations of the unified audit log (and of Exchange
cmdlet logs, which arrive in the same shape), Windows 5136 changes of delegate attributes and
descriptors, Google delegate / token / domain-wide-delegation events, and every snapshot row; when
snapshots are among the input it reports what the snapshots and the log disagree on.
"""

from __future__ import annotations

import hashlib
import uuid
from typing import Any

from delegatewatch import config
from delegatewatch.analytics.ledger.model import Ledger
from delegatewatch.analytics.ledger.reconcile import REVOKED_OR_FAILED, UNEXPLAINED, Discrepancy, reconcile
from delegatewatch.analytics.ledger.replay import replay
from delegatewatch.events.principals import Resolver
from delegatewatch.findings.model import Evidence, Finding
from delegatewatch.records import Record
from delegatewatch.sources.formats import snapshots as S

#: Unified-audit-log (and converted cmdlet-log) operations that change mailbox permissions.
PERMISSION_OPERATIONS = frozenset({
    "Add-MailboxPermission", "Remove-MailboxPermission", "Add-RecipientPermission", "Remove-RecipientPermission",
    "Add-ADPermission", "Set-Mailbox", "Add-MailboxFolderPermission", "Set-MailboxFolderPermission",
    "Remove-MailboxFolderPermission", "AddFolderPermissions", "ModifyFolderPermissions", "RemoveFolderPermissions",
    "New-ManagementRoleAssignment", "New-RoleGroup", "Consent to application.",
    "Add delegated permission grant.", "Add app role assignment to service principal.",
})
_WINDOWS_ATTRIBUTES = frozenset({"publicdelegates", "msexchdelegatelistlink", "ntsecuritydescriptor"})
_GOOGLE_EVENTS = frozenset({"AUTHORIZE_API_CLIENT_ACCESS", "REMOVE_API_CLIENT_ACCESS", "AUTHORIZE", "REVOKE"})

TITLES = {
    UNEXPLAINED: "Permission in a snapshot with no grant in the audit log",
    REVOKED_OR_FAILED: "Logged grant missing from a later permission snapshot (revoked without a record, or failed)",
}
RUNBOOKS = {
    UNEXPLAINED: ("1. Read the reasons: they say whether the log covers the permission's whole life (then its grant "
                  "is missing: check whether audit logging was off for the mailbox, e.g. audit bypass, or whether "
                  "records were removed) or starts later (then find an older snapshot or the grant in older logs).\n"
                  "2. Confirm the permission with the mailbox owner; remove it if unexpected.\n"
                  "3. Hunt for use of it (MailItemsAccessed, SendAs, SendOnBehalf) since the earlier snapshot."),
    REVOKED_OR_FAILED: ("1. Check the grant's record (evidence) and whether the permission still exists "
                        "(Get-MailboxPermission / Get-RecipientPermission / Get-MailboxFolderPermission).\n"
                        "2. If it is gone, find who removed it: a removal without an audit record after an "
                        "unexpected grant can be an attacker cleaning up.\n"
                        "3. Hunt for use of it between the grant and the snapshot."),
}


#: Operations of which only records holding one of these literals change permissions (the rest of
#: ``Set-Mailbox`` — quotas, system housekeeping — is ~3 % of an audit log: never parsed for the ledger).
LITERALS = {"Set-Mailbox": ("GrantSendOnBehalfTo",)}


def M365_OPERATIONS() -> dict[str, tuple[str, ...] | None]:  # noqa: N802 - the analytics hook's name
    """The permission operations, plus the directory operations that pair user ids with UPNs
    (operation → the literals its records need, None: all of them)."""
    cfg = config.current().ledger
    if not cfg.enabled:
        return {}
    return {op: LITERALS.get(op) for op in (*sorted(PERMISSION_OPERATIONS), *cfg.directory_operations)}


def _windows(data: dict[str, Any]) -> bool:
    return str(data.get("EventID")) == "5136" and str(data.get("AttributeLDAPDisplayName", "")).lower() in _WINDOWS_ATTRIBUTES


def _google(data: dict[str, Any]) -> bool:
    from delegatewatch.events.families.google import delegate_added_events, delegate_removed_events

    ev = data.get("events") if isinstance(data.get("events"), dict) else {}
    name = str(ev.get("name") or "").upper()
    return name in _GOOGLE_EVENTS or name in delegate_added_events() or name in delegate_removed_events()


def _snapshot(data: dict[str, Any]) -> bool:
    return config.current().ledger.enabled


#: Records of other families the ledger wants (``delegatewatch.analytics``): the test keeps a large
#: Security log from being held whole for the few events replayed.
FAMILIES = {"windows": _windows, "google": _google, "snapshot": _snapshot}

ATTACK = ["T1098.002"]


def rule_id(rule: str) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"https://delegatewatch/analytics/ledger/{rule}"))


def to_finding(ledger: Ledger, d: Discrepancy) -> Finding:
    rows = [Evidence(r.source, r.record_id, d.snapshot.iso, r.line) for r in d.rows[:3]]
    logged = [c.evidence for c in d.changes]
    k = d.key
    ident = hashlib.sha256("\x1f".join((d.rule, k.mailbox, k.grantee, k.scope, k.folder, d.snapshot.iso,
                                        *sorted(d.rights))).encode()).hexdigest()[:16]
    grant = d.changes[0] if d.rule == REVOKED_OR_FAILED and d.changes else None
    return Finding(
        id=ident, rule=d.rule, rule_id=rule_id(d.rule), title=TITLES[d.rule], severity=d.severity,
        time=d.snapshot.iso, attack=list(ATTACK), actor=grant.actor if grant else None,
        mailbox=_name(ledger, k.mailbox), grantee=_name(ledger, k.grantee), rights=sorted(d.rights),
        summary=d.summary, evidence=rows + logged, operation=grant.operation if grant else S.SOURCE_OF.get(d.kind, d.kind),
        folder=k.folder or None, reasons=list(d.reasons), runbook=RUNBOOKS[d.rule],
    )


def _name(ledger: Ledger, key: str) -> str:
    p = ledger.resolver.resolve(ledger.raw_names.get(key, key))
    return p.name if p is not None else key


def analyze(records: list[Record], resolver: Resolver) -> list[Finding]:
    """Replay the log records; when snapshots are among them, report the discrepancies."""
    from delegatewatch.analytics.snapshot import Judge, build_snapshots

    if not config.current().ledger.enabled:
        return []
    rows = [r for r in records if r.family == S.FAMILY]
    if not rows:
        return []  # nothing to reconcile; the grants themselves are the rules' findings
    ledger = replay(records, resolver)
    result = reconcile(ledger, build_snapshots(rows), rows, Judge(resolver))
    return [to_finding(ledger, d) for d in result.discrepancies]


__all__ = ["FAMILIES", "M365_OPERATIONS", "analyze", "replay", "to_finding"]
