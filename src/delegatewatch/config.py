"""The one configuration file (TOML): tunables users set for their organisation.

Every section has sensible defaults, so no file is needed. Sections are added by the features that
read them; each is a frozen dataclass here, documented in ``docs/configuration.md``::

    [google]
    # Reports API event names to treat as "a Gmail delegate was added" (none is documented by Google)
    delegate_added_events = ["ADD_DELEGATE"]
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any


class ConfigError(ValueError):
    pass


@dataclass(frozen=True)
class GoogleConfig:
    delegate_added_events: tuple[str, ...] = ()
    #: event names meaning "a Gmail delegate was removed" (the permission ledger replays them)
    delegate_removed_events: tuple[str, ...] = ()


@dataclass(frozen=True)
class MailflowConfig:
    """Mail sent from the organisation's accounts (``[mailflow]``): shared by the send-volume and
    the look-alike-lure analytics (docs/configuration.md)."""

    #: also analyse the unified audit log's Send/SendAs/SendOnBehalf records (message trace and
    #: tracking logs are always analysed). They are ~8 % of a tenant's audit log; the hunt's workers
    #: reduce each to a compact send (analytics/mailflow.py: reduce). False: skip them (faster).
    audit_log_sends: bool = True
    #: the organisation's mail domains (subdomains included); more are learnt from the input
    internal_domains: tuple[str, ...] = ()
    #: accounts whose sending is never analysed: service and alert mailboxes (globs, ``noreply@*``)
    service_accounts: tuple[str, ...] = ()
    #: newsletter / bulk senders, never analysed (globs)
    newsletter_senders: tuple[str, ...] = ()
    #: IANA time zone of the working day (hour-of-day and weekday/weekend profiles)
    timezone: str = "UTC"
    #: days counted as weekend (0 = Monday … 6 = Sunday)
    weekend_days: tuple[int, ...] = (5, 6)
    #: peer groups for accounts too new for their own baseline: {name = [accounts or globs]};
    #: accounts in no group are compared with the whole organisation
    peer_groups: Any = ()

    def __post_init__(self) -> None:
        groups = self.peer_groups
        if isinstance(groups, dict):
            groups = tuple((str(k), tuple(str(m) for m in v)) for k, v in groups.items())
        object.__setattr__(self, "peer_groups", tuple(groups))


@dataclass(frozen=True)
class SendVolumeConfig:
    """``[send_volume]``: per-account send-volume bursts (analytics/send_volume.py)."""

    enabled: bool = True
    #: the window one count covers, in minutes (divides a day: 15, 30, 60, 120 …)
    window_minutes: int = 60
    #: an account needs this many days with at least one send for its own baseline
    min_history_days: int = 7
    #: robust z-score (observed − median) / spread that flags a window
    min_score: float = 6.0
    #: and the window must be at least this many times the expected count …
    min_ratio: float = 3.0
    #: … at least this many messages above it …
    min_excess: int = 20
    #: … and at least this many messages in all
    min_messages: int = 25
    #: a window no busier than this quantile of the account's daily peaks (its busiest window
    #: of each active day) is normal for it: keeps steady high-volume senders quiet
    daily_peak_quantile: float = 0.9
    #: with no baseline at all (no history, no peers), a window of at least this many messages
    no_baseline_messages: int = 200
    #: days of the chart before and after a flagged window
    chart_days_before: int = 7
    chart_days_after: int = 1
    #: ``watch``: days of per-account window counts kept between rounds (the baseline's memory)
    history_days: int = 28


@dataclass(frozen=True)
class LuresConfig:
    """``[lures]``: near-duplicate messages from several internal accounts (analytics/lures.py)."""

    enabled: bool = True
    #: MinHash/LSH Jaccard threshold between two texts (subject + attachment names + body)
    similarity: float = 0.6
    #: MinHash permutations (more: finer similarity estimate, slower)
    num_perm: int = 64
    #: characters per shingle
    shingle: int = 4
    #: the campaign window, in minutes
    window_minutes: int = 240
    #: distinct internal accounts sending look-alikes in one window
    min_senders: int = 3
    #: distinct internal recipients they reach in the window
    min_recipients: int = 10
    #: … and at least min_senders of the accounts each reach this many internal recipients
    min_recipients_per_sender: int = 3
    #: share of replies (RE:, AW: …) above which a cluster concentrated on one recipient is a reply storm
    reply_share: float = 0.6
    #: share of messages going to the cluster's most common recipient that makes it a reply storm
    top_recipient_share: float = 0.5
    #: a look-alike also sent on this many other days of the input is a recurring template
    recurring_days: int = 5


@dataclass(frozen=True)
class AllowConfig:
    """Expected delegations and accounts (``[allow]``, ATT&CK DET0373's "delegator to delegate
    pairing"): their findings are kept but lowered to informational with the reason, or dropped."""

    #: expected (mailbox, grantee) pairs; shell-style globs, case-insensitive, e.g. ["ceo@*", "pa@contoso.com"]
    pairs: tuple[tuple[str, str], ...] = ()
    #: accounts whose changes are expected (migration, backup, provisioning service accounts)
    actors: tuple[str, ...] = ()
    #: principals expected to hold delegations anywhere (e.g. a journaling or archiving account)
    grantees: tuple[str, ...] = ()
    #: "lower" (keep as informational) or "drop"
    mode: str = "lower"


@dataclass(frozen=True)
class LedgerConfig:
    """``[ledger]``: the permission ledger and its reconciliation with snapshots (analytics/ledger)."""

    #: replay permission changes in hunts (and reconcile them with snapshots among the input)
    enabled: bool = True
    #: changes this close to a snapshot's time are not judged against it (an export takes minutes)
    snapshot_slack_minutes: int = 15
    #: Entra ID operations whose records pair a user's object id with the UPN, so a grant naming a
    #: GUID and a revocation naming the UPN meet without a directory file ("Update user." is frequent:
    #: add it when you have no --directory and memory to spare)
    directory_operations: tuple[str, ...] = ("Add user.", "Reset user password.", "Delete user.")


@dataclass(frozen=True)
class IncidentsConfig:
    """``[incidents]``: grant → use incidents (findings/incidents.py, docs/incidents.md). Expected
    pairs and service accounts come from ``[allow]``."""

    enabled: bool = True
    #: a use (read, logon, send as / on behalf, rule, send burst) belongs to a grant up to this long after it
    use_window_hours: float = 168.0
    #: a precursor (password reset, role change of the target or the actor) up to this long before the grant
    precursor_window_hours: float = 24.0
    #: grants of one mailbox to one grantee (or from one session) this close together are one incident
    merge_window_hours: float = 24.0
    #: a use this soon after the grant adds the "quick use" factor
    quick_use_minutes: float = 60.0
    #: risk points, 0–100 in all: the grant's own severity (a grant nobody used stays low) …
    grant_points: Any = (("informational", 0), ("low", 5), ("medium", 15), ("high", 25), ("critical", 35))
    #: … and each kind of step or circumstance, counted once
    precursor_points: int = 30
    read_points: int = 25
    send_points: int = 30
    evasion_points: int = 20
    send_burst_points: int = 15
    quick_use_points: int = 10
    same_session_points: int = 10
    #: score at or above which an incident is low, medium, high, critical (below the first: informational)
    severity_thresholds: tuple[int, ...] = (15, 35, 55, 75)
    #: an incident whose grants are all allow-listed ([allow]) scores at most this
    allowed_max_score: int = 10

    def __post_init__(self) -> None:
        points = self.grant_points
        if isinstance(points, dict):
            points = tuple((str(k), int(v)) for k, v in points.items())
        object.__setattr__(self, "grant_points", tuple(points))
        if len(self.severity_thresholds) != 4 or list(self.severity_thresholds) != sorted(self.severity_thresholds):
            raise ConfigError("[incidents] severity_thresholds: four ascending scores (low, medium, high, critical)")
        for name in ("use_window_hours", "precursor_window_hours", "merge_window_hours", "quick_use_minutes"):
            if getattr(self, name) < 0:
                raise ConfigError(f"[incidents] {name} must not be negative")


@dataclass(frozen=True)
class Config:
    allow: AllowConfig = field(default_factory=AllowConfig)
    google: GoogleConfig = field(default_factory=GoogleConfig)
    mailflow: MailflowConfig = field(default_factory=MailflowConfig)
    send_volume: SendVolumeConfig = field(default_factory=SendVolumeConfig)
    lures: LuresConfig = field(default_factory=LuresConfig)
    ledger: LedgerConfig = field(default_factory=LedgerConfig)
    incidents: IncidentsConfig = field(default_factory=IncidentsConfig)


def _section(cls: type, data: dict[str, Any], name: str) -> Any:
    known = {f.name for f in fields(cls)}
    unknown = set(data) - known
    if unknown:
        raise ConfigError(f"[{name}]: unknown setting(s) {', '.join(sorted(unknown))}; known: {', '.join(sorted(known))}")
    values = {k: tuple(tuple(x) if isinstance(x, list) else x for x in v) if isinstance(v, list) else v
              for k, v in data.items()}
    if cls is AllowConfig:
        if values.get("mode", "lower") not in ("lower", "drop"):
            raise ConfigError(f"[{name}] mode must be \"lower\" or \"drop\", not {values['mode']!r}")
        for pair in values.get("pairs", ()):
            if not (isinstance(pair, tuple) and len(pair) == 2):
                raise ConfigError(f"[{name}] pairs: each entry is [mailbox, grantee]; got {pair!r}")
    return cls(**values)


def load(path: str | Path | None) -> Config:
    if path is None:
        return Config()
    try:
        data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"{path}: {exc}") from exc
    sections = {f.name: f.type for f in fields(Config)}
    unknown = set(data) - set(sections)
    if unknown:
        raise ConfigError(f"{path}: unknown section(s) {', '.join(sorted(unknown))}")
    kwargs = {}
    for f in fields(Config):
        if f.name in data:
            cls = type(getattr(Config(), f.name))
            kwargs[f.name] = _section(cls, data[f.name], f.name)
    return Config(**kwargs)


_current = Config()


def current() -> Config:
    """The configuration of this run (set by the CLI with :func:`use`)."""
    return _current


def use(config: Config) -> None:
    global _current
    _current = config
