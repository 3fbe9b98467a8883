"""What the generators hand the writers: typed items with a time, a stream and an optional label."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

#: Streams, each written by one writer family (``writers/``).
UAL = "ual"  # unified-audit-log records (dicts)
TRACE = "trace"  # mail sends (Mail), one message-trace row per recipient
WINDOWS = "windows"  # Windows events (WinEvent)
ADMIN_AUDIT = "admin_audit"  # Exchange Server admin audit log entries (AdminAuditEntry)
GOOGLE = "google"  # Google Reports activities (dicts, one per application)
STREAMS = (UAL, TRACE, WINDOWS, ADMIN_AUDIT, GOOGLE)


@dataclass(slots=True)
class Item:
    t: float  # epoch seconds, UTC
    stream: str
    data: Any
    #: scenario instance this record belongs to (None: background)
    tag: str | None = None
    #: a detector is expected to flag this record
    expect: bool = False
    #: the rule expected to flag it, when one particular rule is meant
    rule: str | None = None


@dataclass(slots=True)
class Mail:
    """One message: a message-trace row per recipient (and a UAL Send when the mailbox audits it)."""

    sender: str
    recipients: tuple[str, ...]
    subject: str
    message_id: str
    from_ip: str = "198.51.100.10"
    size: int = 24_512


@dataclass(slots=True)
class WinEvent:
    event_id: int
    channel: str
    provider: str
    computer: str
    data: dict[str, str] | list[str]
    user_sid: str | None = None
    task: int = 0
    keywords: str = "0x8020000000000000"


@dataclass(slots=True)
class AdminAuditEntry:
    caller: str
    cmdlet: str
    object_modified: str
    parameters: list[tuple[str, str]]
    modified: list[tuple[str, str, str]] = field(default_factory=list)  # (name, old, new)
    succeeded: bool = True
    server: str = "EXMBX01 (15.02.1544.009)"


@dataclass
class LabelRecord:
    """One written record of a scenario, named the way findings' evidence names it."""

    file: str  # path relative to the output folder
    record_id: str  # UAL Id, EventRecordID, uniqueQualifier, or the row's line number
    line: int | None
    time: str
    expect: bool
    stream: str
    rule: str | None = None


@dataclass
class Instance:
    """One injected scenario instance and the records that belong to it."""

    id: str
    scenario: str
    summary: str
    records: list[LabelRecord] = field(default_factory=list)
    #: findings from analytics over many records (bursts, lures) expected for this instance
    expect_rules: list[str] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)
