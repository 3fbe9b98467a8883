"""Allow-lists from the configuration (``[allow]``): expected delegations stay visible but quiet."""

from __future__ import annotations

from fnmatch import fnmatchcase

from delegatewatch.config import AllowConfig
from delegatewatch.findings.model import Finding


def _names(f: Finding, role: str) -> list[str]:
    """Every spelling of a principal in a finding: resolved name, raw value, display name."""
    value = getattr(f, role, None)
    out = [value] if value else []
    for extra in (f.raw.get(role), f.names.get(role)):
        if extra:
            out.append(extra)
    return [n.lower() for n in out]


def _matches(names: list[str], patterns: tuple[str, ...]) -> str | None:
    for pattern in patterns:
        low = pattern.lower()
        if any(fnmatchcase(n, low) for n in names):
            return pattern
    return None


def reason(f: Finding, allow: AllowConfig) -> str | None:
    """Why the finding is expected, or None."""
    mailboxes, grantees = _names(f, "mailbox"), _names(f, "grantee")
    for mailbox_pattern, grantee_pattern in allow.pairs:
        if _matches(mailboxes, (mailbox_pattern,)) and _matches(grantees, (grantee_pattern,)):
            return f"allow-listed pair {mailbox_pattern} → {grantee_pattern}"
    hit = _matches(grantees, allow.grantees)
    if hit:
        return f"allow-listed grantee {hit}"
    hit = _matches(_names(f, "actor"), allow.actors)
    if hit:
        return f"allow-listed actor {hit}"
    return None


def apply_allow_list(findings: list[Finding], allow: AllowConfig) -> list[Finding]:
    if not (allow.pairs or allow.actors or allow.grantees):
        return findings
    kept = []
    for f in findings:
        why = reason(f, allow)
        if why is None:
            kept.append(f)
        elif allow.mode == "lower":
            f.severity = "informational"
            f.reasons.append(why)
            kept.append(f)
    return kept
