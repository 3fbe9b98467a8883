"""The finding: the contract other tools script against (BRIEF "Contracts"). Extend, don't break."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

SEVERITIES = ("informational", "low", "medium", "high", "critical")


def raise_severity(level: str, steps: int = 1) -> str:
    i = SEVERITIES.index(level) if level in SEVERITIES else 2
    return SEVERITIES[min(len(SEVERITIES) - 1, i + steps)]


@dataclass(slots=True)
class Evidence:
    source: str
    record_id: str
    time: str | None
    line: int | None = None


@dataclass
class Finding:
    id: str
    rule: str  # rule name (file stem), stable
    rule_id: str  # Sigma rule id
    title: str
    severity: str
    time: str | None
    attack: list[str]
    actor: str | None
    mailbox: str | None
    grantee: str | None
    rights: list[str]
    summary: str
    evidence: list[Evidence]
    operation: str = ""
    folder: str | None = None
    grantee_kind: str | None = None
    session_id: str | None = None
    client_ip: str | None = None
    #: Raw values as logged, when resolution changed them (GUID → UPN …).
    raw: dict[str, str] = field(default_factory=dict)
    #: Display names from the directory, when known.
    names: dict[str, str] = field(default_factory=dict)
    #: Why the severity differs from the rule's level.
    reasons: list[str] = field(default_factory=list)
    runbook: str = ""
    #: the incident the finding belongs to (findings/incidents.py), set by the hunt
    incident: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
