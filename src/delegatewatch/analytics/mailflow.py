"""Mail sent from the organisation's accounts: one send record from every source, then the
send-volume (``send_volume``) and look-alike-lure (``lures``) analytics over them.

Sources of sends (normalised by :func:`sends_from_records` into :class:`Send`):

* unified audit log ``Send`` / ``SendAs`` / ``SendOnBehalf`` (asked for through
  ``M365_OPERATIONS``; mapped by :class:`delegatewatch.events.ual.UalMapper`): the mailbox sent
  from, the acting user (a delegate for SendAs/SendOnBehalf), subject, Internet message id,
  ``recipientCount`` / ``recipientList``, ``Item.Attachments``;
* message trace exports (family ``mailflow``, ``sources/formats/mailflow.py``): rows of one
  message (one per recipient) grouped by message id into one send with its recipients;
* historical-search CSVs: a summary row per message (recipients from ``recipient_status``), or
  the extended report's ``RECEIVE``/``STOREDRIVER`` and ``SUBMIT`` events;
* Exchange Server message tracking logs: ``SUBMIT`` events, and ``RECEIVE`` with source
  ``STOREDRIVER`` (mailbox submissions = user sends);
* Gmail ``delivery`` events with ``event_info.mail_event_type`` 1 (message sent): records of
  family ``google`` — see :func:`google_send`. The hunt hands ``google`` records to
  ``analytics/google.py``, which keeps the sent-mail ones and passes them to :func:`analyze`.

A message seen by several sources (a UAL ``Send`` and its message-trace rows) is one send: they
are merged by Internet message id (the UAL record gives the acting user, the trace the
recipients). Recipients are split internal/external by the organisation's domains
(``[mailflow] internal_domains``, the directory, the domains the audit log shows, outbound
message-trace senders; as a last resort the domain present in most message-trace rows).
"""

from __future__ import annotations

import fnmatch
import gc
import hashlib
import logging
import math
import sys
import uuid
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from operator import attrgetter
from typing import Any

import numpy as np

from delegatewatch import config as configuration
from delegatewatch.analytics import lures as L
from delegatewatch.analytics import send_volume as V
from delegatewatch.events.principals import Resolver
from delegatewatch.events import ual as ual_events
from delegatewatch.findings.model import Evidence, Finding
from delegatewatch.records import Record
from delegatewatch.records.times import iso_utc, parse_time
from delegatewatch.sources.formats import mailflow as formats

log = logging.getLogger(__name__)

FAMILY = "mailflow"
AUDIT_LOG_SEND_OPERATIONS = frozenset({"Send", "SendAs", "SendOnBehalf"})
_AUDIT_SEND_LOWER = frozenset(o.lower() for o in AUDIT_LOG_SEND_OPERATIONS)


def M365_OPERATIONS() -> frozenset[str]:  # noqa: N802 - the analytics hook's name
    """The unified-audit-log sends, when ``[mailflow] audit_log_sends`` is on (see config.py)."""
    from delegatewatch import config

    return AUDIT_LOG_SEND_OPERATIONS if config.current().mailflow.audit_log_sends else frozenset()

VOLUME_RULE = "send_volume_burst"
LURE_RULE = "internal_lure_campaign"
VOLUME_RULE_ID = str(uuid.uuid5(uuid.NAMESPACE_URL, "delegatewatch/analytics/send_volume_burst"))
LURE_RULE_ID = str(uuid.uuid5(uuid.NAMESPACE_URL, "delegatewatch/analytics/internal_lure_campaign"))
VOLUME_TITLE = "Larger than normal volume of mail sent from an account"
LURE_TITLE = "Look-alike messages sent by several internal accounts (internal spearphishing)"

VOLUME_RUNBOOK = (
    "1. Open the chart and the evidence: which client, IP and acting user sent the burst? Sends as or on "
    "behalf of the mailbox by another account point to a delegate permission (look for Add-MailboxPermission, "
    "Add-RecipientPermission, Set-Mailbox -GrantSendOnBehalfTo grants to that account). "
    "2. Read a sample of the messages (subjects in the summary; message trace by message id): spam, "
    "phishing, or a legitimate mailing? 3. If not expected: block sign-in / revoke sessions of the acting "
    "account, remove delegate permissions it holds, purge the messages, and warn the recipients. "
    "4. If expected (a new newsletter or alert mailbox): add it to [mailflow] service_accounts or "
    "newsletter_senders.")
LURE_RUNBOOK = (
    "1. Treat every listed account as compromised until shown otherwise: check their sign-ins, delegate "
    "permissions granted to or by them, inbox rules and forwarding. 2. Pull the messages by message id "
    "(evidence) and check links and attachments. 3. Purge the messages from all recipients' mailboxes "
    "and block the URLs / attachment hashes. 4. Tell the recipients. A recurring legitimate template "
    "(timesheets, status reports) that fires this: raise [lures] min_senders or add the senders to "
    "[mailflow] service_accounts.")

_WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")


# -- the send record ----------------------------------------------------------------------------
@dataclass(slots=True)
class Send:
    """One message sent, whatever source said so."""

    time: datetime
    sender: str  # the mailbox sent from (lower case)
    actor: str | None  # the acting user, when the source names one (UAL UserId; Gmail actor)
    subject: str | None
    message_id: str | None  # Internet message id, without <> and lower case
    recipients: tuple[str, ...] = ()  # addresses, lower case, when the source lists them
    recipient_count: int | None = None  # the source's count (UAL recipientCount), else len(recipients)
    attachments: tuple[str, ...] = ()
    operation: str = "Send"  # Send | SendAs | SendOnBehalf | trace | SUBMIT | delivery …
    sources: tuple[str, ...] = ()  # dialects that reported it
    evidence: list[Evidence] = field(default_factory=list)
    client_ip: str | None = None
    direction: str | None = None  # "outbound" | "inbound" | None (unknown)
    body: str | None = None
    internal_recipients: int | None = None  # filled by classify()
    external_recipients: int | None = None

    @property
    def as_delegate(self) -> bool:
        return self.operation.lower() in ("sendas", "sendonbehalf") or bool(
            self.actor and self.actor != self.sender and "@" in self.actor)

    @property
    def count(self) -> int | None:
        if self.recipients:
            return max(len(self.recipients), self.recipient_count or 0)
        return self.recipient_count


@dataclass(slots=True)
class AuditSend:
    """A unified-audit-log send reduced where it was read (a hunt's worker process, :func:`reduce`):
    the fields the analytics and the evidence need, with names still raw (the directory resolves
    them in the hunt's process). ~10× smaller to pickle than the record; ``line`` is renumbered by
    the hunt like a record's."""

    time: float  # epoch seconds of CreationTime
    operation: str  # Send | SendAs | SendOnBehalf
    owner: str | None  # the mailbox sent from (SendAsUserSmtp, SendOnBehalfOfUserSmtp, MailboxOwnerUPN)
    user: str | None  # UserId: the acting account
    subject: str | None
    message_id: str | None  # normalised like Send.message_id
    recipients: tuple[str, ...]
    recipient_count: int | None
    attachments: tuple[str, ...]
    client_ip: str | None
    domains: tuple[str, ...]  # the organisation's domains the record shows (events.ual.org_domains)
    source: str
    record_id: str
    line: int | None
    dialect: str

    def __reduce__(self) -> tuple:
        # a positional tuple pickles in ~60 % of the time and size of the slots dataclass default
        return (AuditSend, _AUDIT_SEND_FIELDS(self))


_AUDIT_SEND_FIELDS = attrgetter(*(f.name for f in fields(AuditSend)))


def reduce(record: Record) -> Record | AuditSend | None:
    """The analytics hook's per-record step, run where the record is read: a UAL send → its
    :class:`AuditSend` (None for a failed send or one without a time); other records unchanged.
    Repeated strings are interned so pickling sends each one once per unit."""
    if record.family != "m365":
        return record
    data = record.data
    op = data.get("Operation")
    if not isinstance(op, str) or op.lower() not in _AUDIT_SEND_LOWER:
        return None
    when = parse_time(data.get("CreationTime"))
    if when is None or not ual_events.succeeded(data):
        return None
    item = data.get("Item") if isinstance(data.get("Item"), dict) else {}
    rlist = data.get("recipientList")
    recipients = tuple(a for a in (_addr(r.get("Address")) for r in rlist if isinstance(r, dict)) if a) \
        if isinstance(rlist, list) else ()
    count = data.get("recipientCount")
    owner = data.get("SendAsUserSmtp") or data.get("SendOnBehalfOfUserSmtp") or data.get("MailboxOwnerUPN")
    user = data.get("UserId")
    subject = item.get("Subject")
    return AuditSend(
        time=when.timestamp(), operation=sys.intern(op),
        owner=_intern(owner), user=_intern(user),
        subject=subject if isinstance(subject, str) else None, message_id=_mid(item.get("InternetMessageId")),
        recipients=tuple(sys.intern(r) for r in recipients),
        recipient_count=count if isinstance(count, int) and not isinstance(count, bool) else None,
        attachments=L.attachment_names(item.get("Attachments")), client_ip=ual_events.client_ip(data),
        domains=tuple(sys.intern(d.strip().lower()) for d in ual_events.org_domains(data)), source=sys.intern(record.source),
        record_id=record.record_id, line=record.line, dialect=sys.intern(record.dialect))


def _intern(value: Any) -> Any:
    return sys.intern(value) if isinstance(value, str) else None


def _mid(value: Any) -> str | None:
    if not isinstance(value, str):
        return None
    v = value.strip().strip("<>").strip().lower()
    return v or None


def _addr(value: Any) -> str | None:
    if not isinstance(value, str):
        return None
    v = value.strip().strip("<>").strip().lower()
    return v or None


def _split(value: str | None) -> list[str]:
    if not value:
        return []
    return [a for a in (x.strip().strip("<>").lower() for x in value.replace(",", ";").split(";")) if a]


def _ev(record: Record, when: datetime | None) -> Evidence:
    iso = record.data.get("_time")  # mail-flow readers store the row's time as ISO 8601 UTC
    return Evidence(record.source, record.record_id, iso if isinstance(iso, str) else iso_utc(when), record.line)


_TIMES: dict[str, datetime | None] = {}


def _time(value: Any) -> datetime | None:
    """``_time`` of a mail-flow record (ISO, from the reader); memoised: rows of a message share it."""
    if not isinstance(value, str):
        return None
    hit = _TIMES.get(value)
    if hit is None:
        if len(_TIMES) > 200_000:
            _TIMES.clear()
        hit = _TIMES[value] = parse_time(value)
    return hit


class _Builder:
    """Records → sends, merged by message id."""

    def __init__(self, resolver: Resolver) -> None:
        self.resolver = resolver
        self.sends: list[Send] = []
        self.by_mid: dict[str, Send] = {}
        self.groups: dict[tuple[str, str], Send] = {}  # message-trace rows of one message
        self.recipients_of: dict[int, set[str]] = {}
        self.outbound_domains: Counter[str] = Counter()
        self.trace_domains: Counter[str] = Counter()
        self.trace_rows = 0
        self.skipped = Counter()
        self.observed: set[str] = set()

    def name(self, raw: Any) -> str | None:
        a = _addr(raw)
        if a is None:
            return None
        p = self.resolver.resolve(a)
        return (p.name if p else a).lower()

    def add(self, record: Record | AuditSend) -> None:
        if isinstance(record, AuditSend):
            self._audit(record)
        elif record.family == "m365":
            reduced = reduce(record)
            if isinstance(reduced, AuditSend):
                self._audit(reduced)
        elif record.family == FAMILY:
            if record.dialect == formats.MESSAGE_TRACE:
                self._trace(record)
            elif record.dialect == formats.HISTORICAL:
                self._historical(record)
            elif record.dialect == formats.MSGTRK:
                self._msgtrk(record)
        elif record.family == "google":
            send = google_send(record, self)
            if send is not None:
                self._keep(send)

    # -- merging
    def _keep(self, send: Send) -> None:
        if send.message_id:
            known = self.by_mid.get(send.message_id)
            if known is not None:
                _merge(known, send)
                return
            self.by_mid[send.message_id] = send
        self.sends.append(send)

    # -- unified audit log (reduced by :func:`reduce` where the record was read)
    def _audit(self, a: AuditSend) -> None:
        for d in a.domains:
            if d not in self.observed:  # the resolver's own check costs more, 80 k times
                self.observed.add(d)
                self.resolver.observe_org_domain(d)
        owner, user = self.resolver.resolve(a.owner), self.resolver.resolve(a.user)
        sender = (owner.name if owner else None) or (user.name if user else None)
        if not sender:
            self.skipped["UAL send without a mailbox"] += 1
            return
        when = datetime.fromtimestamp(a.time, UTC)
        iso = when.replace(tzinfo=None, microsecond=0).isoformat() + "Z"  # iso_utc, without its astimezone
        self._keep(Send(
            time=when, sender=sender.lower(), actor=user.name.lower() if user else None, subject=a.subject,
            message_id=a.message_id, recipients=a.recipients, recipient_count=a.recipient_count,
            attachments=a.attachments, operation=a.operation, sources=(a.dialect,),
            evidence=[Evidence(a.source, a.record_id, iso, a.line)], client_ip=a.client_ip,
            direction="outbound"))

    # -- message trace: one row per recipient
    def _trace(self, record: Record) -> None:
        d = record.data
        when = _time(d.get("_time"))
        sender = _addr(_get(d, "SenderAddress"))
        rcpt = _addr(_get(d, "RecipientAddress"))
        self.trace_rows += 1
        self.trace_domains.update({a.rsplit("@", 1)[1] for a in (sender, rcpt) if a and "@" in a})
        if when is None or not sender:
            self.skipped["message-trace row without time or sender"] += 1
            return
        mid = _mid(_get(d, "MessageId")) or _mid(_get(d, "MessageTraceId"))
        key = (mid or f"{record.source}:{record.line}", sender)
        send = self.groups.get(key)
        status = (_get(d, "Status") or "").strip().lower()
        if send is None:
            new = Send(time=when, sender=self.name(sender) or sender, actor=None, subject=_get(d, "Subject"),
                       message_id=mid, operation="trace", sources=(record.dialect,),
                       client_ip=(_get(d, "FromIP") or None))
            if mid and mid in self.by_mid:  # the same message from the audit log or another export
                send = self.by_mid[mid]
                _merge(send, new)
            else:
                self._keep(new)
                send = new
            self.groups[key] = send
        send.time = min(send.time, when)
        send.evidence.append(_ev(record, when))
        if rcpt and status != "expanded":
            seen = self.recipients_of.setdefault(id(send), set(send.recipients))
            if rcpt not in seen:
                seen.add(rcpt)
                send.recipients = (*send.recipients, rcpt) if len(seen) < 64 else tuple(seen)

    # -- historical search
    def _historical(self, record: Record) -> None:
        d = {k.lower(): v for k, v in record.data.items()}
        when = _time(record.data.get("_time"))
        event = (d.get("event_id") or "").strip().upper()
        if event and not (event == "SUBMIT" or (event == "RECEIVE" and (d.get("source") or "").upper() == "STOREDRIVER")):
            return
        sender = _addr(d.get("sender_address"))
        if when is None or not sender:
            self.skipped["historical-search row without time or sender"] += 1
            return
        direction = _direction(d.get("directionality"))
        if direction == "outbound" and "@" in sender:
            self.outbound_domains[sender.rsplit("@", 1)[1]] += 1
        if d.get("recipient_status"):
            recipients = [part.split("##", 1)[0].strip().lower() for part in d["recipient_status"].split(";")]
        else:
            recipients = _split(d.get("recipient_address"))
        count = d.get("recipient_count")
        self._keep(Send(time=when, sender=self.name(sender) or sender, actor=None,
                        subject=d.get("message_subject") or d.get("subject"),
                        message_id=_mid(d.get("message_id")), recipients=tuple(r for r in recipients if r),
                        recipient_count=int(count) if count and count.isdigit() else None,
                        operation=event or "trace", sources=(record.dialect,), evidence=[_ev(record, when)],
                        client_ip=d.get("original_client_ip") or d.get("client_ip") or None, direction=direction))

    # -- Exchange Server message tracking log
    def _msgtrk(self, record: Record) -> None:
        d = record.data
        event = (d.get("event-id") or "").strip().upper()
        source = (d.get("source") or "").strip().upper()
        if not (event == "SUBMIT" or (event == "RECEIVE" and source == "STOREDRIVER")):
            return
        when = _time(d.get("_time"))
        sender = _addr(d.get("sender-address")) or _addr(d.get("return-path"))
        if when is None or not sender:
            self.skipped["tracking-log row without time or sender"] += 1
            return
        direction = _direction(d.get("directionality")) or "outbound"
        if "@" in sender:
            self.outbound_domains[sender.rsplit("@", 1)[1]] += 1
        count = (d.get("recipient-count") or "").strip()
        self._keep(Send(time=when, sender=self.name(sender) or sender, actor=None, subject=d.get("message-subject"),
                        message_id=_mid(d.get("message-id")), recipients=tuple(_split(d.get("recipient-address"))),
                        recipient_count=int(count) if count.isdigit() else None, operation=event,
                        sources=(record.dialect,), evidence=[_ev(record, when)],
                        client_ip=d.get("original-client-ip") or d.get("client-ip") or None, direction=direction))


def _get(d: dict[str, Any], name: str) -> str | None:
    v = d.get(name)
    if v is None:  # a header spelled in another case
        low = name.lower()
        v = next((val for k, val in d.items() if k.lower() == low), None)
    return v if isinstance(v, str) else None


def _direction(value: Any) -> str | None:
    v = str(value or "").strip().lower()
    if v in ("2", "originating", "outbound"):
        return "outbound"
    if v in ("1", "incoming", "inbound"):
        return "inbound"
    return None


def _merge(into: Send, other: Send) -> None:
    """Two sources' view of one message: keep the earliest time and every detail either has."""
    into.time = min(into.time, other.time)
    if other.actor and (not into.actor or other.operation.lower() in ("sendas", "sendonbehalf")):
        into.actor = other.actor
    if other.operation.lower() in ("send", "sendas", "sendonbehalf"):
        into.operation = other.operation
    into.subject = into.subject or other.subject
    if len(other.recipients) > len(into.recipients):
        into.recipients = other.recipients
    into.recipient_count = max(into.recipient_count or 0, other.recipient_count or 0) or None
    into.attachments = into.attachments or other.attachments
    into.client_ip = into.client_ip or other.client_ip
    into.direction = into.direction or other.direction
    into.sources = tuple(dict.fromkeys((*into.sources, *other.sources)))
    into.evidence.extend(e for e in other.evidence if e not in into.evidence)


# -- Gmail (records of the google family, via analytics/google.py) ----------------------------------------------
def _gparams(params: Any) -> dict[str, Any]:
    """Reports API parameters (``[{name, value|intValue|boolValue|multiValue|messageValue}]``) or an
    already flattened dict → a nested dict."""
    if isinstance(params, dict):
        return params
    out: dict[str, Any] = {}
    for p in params or []:
        if not isinstance(p, dict) or "name" not in p:
            continue
        if "messageValue" in p:
            out[p["name"]] = _gparams((p["messageValue"] or {}).get("parameter"))
        elif "multiMessageValue" in p:
            out[p["name"]] = [_gparams((m or {}).get("parameter")) for m in p["multiMessageValue"] or []]
        else:
            for key in ("value", "intValue", "boolValue", "multiValue", "multiIntValue"):
                if key in p:
                    out[p["name"]] = p[key]
                    break
    return out


def _dig(d: Any, dotted: str) -> Any:
    for part in dotted.split("."):
        if isinstance(d, dict):
            d = d.get(part)
        else:
            return None
    return d


def google_send(record: Record, builder: _Builder | None = None) -> Send | None:
    """A Gmail ``delivery`` event with ``event_info.mail_event_type`` 1 (message sent) → a send.

    Accepts the Reports API activity (``events`` a list, parameters as name/value lists with
    ``messageValue``) and a reader's one-event-per-record form (``events`` a dict, parameters
    nested dicts). The ``message`` sub-parameter names are not documented verbatim (formats.md
    §6.4, UNCERTAIN): read like the Google event mapper reads them (``message_info`` or
    ``message``; sender ``source.from_header_address`` / ``source.address``; ``subject``;
    ``rfc2822_message_id`` / ``message_id``; ``event_info.success`` false = failed), plus
    ``destination[].address`` and ``attachment[].file_name``."""
    data = record.data
    events = data.get("events")
    events = [events] if isinstance(events, dict) else (events or [])
    for ev in events:
        if not isinstance(ev, dict) or str(ev.get("name", "")).lower() != "delivery":
            continue
        params = _gparams(ev.get("parameters"))
        kind = _dig(params, "event_info.mail_event_type")
        try:
            if int(kind) != 1:
                continue
        except (TypeError, ValueError):
            continue
        if str(_dig(params, "event_info.success")).lower() == "false":
            return None  # a failed send (as events/families/google.py reads it)
        msg = next((m for m in (params.get("message_info"), params.get("message")) if isinstance(m, dict)), {})
        when = parse_time(_dig(data, "id.time"))
        sender = (_addr(_dig(msg, "source.from_header_address")) or _addr(_dig(msg, "source.address"))
                  or _addr(msg.get("source_address")) or _addr(_dig(data, "actor.email")))
        if when is None or not sender:
            return None
        dest = msg.get("destination")
        dest = dest if isinstance(dest, list) else ([dest] if isinstance(dest, dict) else [])
        recipients = tuple(a for a in (_addr(x.get("address")) for x in dest if isinstance(x, dict)) if a)
        atts = msg.get("attachment")
        names = tuple(str(a.get("file_name")) for a in atts if isinstance(a, dict) and a.get("file_name")) \
            if isinstance(atts, list) else ()
        name = builder.name(sender) if builder else sender
        return Send(time=when, sender=name or sender, actor=_addr(_dig(data, "actor.email")),
                    subject=msg.get("subject"), message_id=_mid(msg.get("rfc2822_message_id") or msg.get("message_id")),
                    recipients=recipients, attachments=names, operation="delivery",
                    sources=(record.dialect,), evidence=[_ev(record, when)],
                    client_ip=data.get("ipAddress"), direction="outbound")
    return None


# -- public entry points -----------------------------------------------------------------------
def _dedup(records: Iterable[Record | AuditSend]) -> Iterable[Record | AuditSend]:
    seen: set[str] = set()
    for r in records:
        if isinstance(r, AuditSend):  # reduced in a hunt's worker: units of other files may repeat it
            if r.record_id in seen:
                continue
            seen.add(r.record_id)
            yield r
            continue
        key = r.data.get("_dedup") or r.data.get("Id")
        if isinstance(key, str) and key:
            if key in seen:
                continue
            seen.add(key)
        yield r


def sends_from_records(records: Iterable[Record | AuditSend], resolver: Resolver) -> tuple[list[Send], set[str]]:
    """The sends in ``records`` (any family), merged by message id and classified; and the
    organisation's domains used to classify them."""
    b = _Builder(resolver)
    for r in _dedup(records):
        b.add(r)
    domains = org_domains(b, resolver, configuration.current().mailflow)
    sends = sorted(b.sends, key=lambda s: s.time)
    classify(sends, domains)
    return sends, domains


def org_domains(b: _Builder, resolver: Resolver, cfg: configuration.MailflowConfig) -> set[str]:
    domains = {d.lower().lstrip("@") for d in cfg.internal_domains}
    domains |= set(resolver.org_domains)
    domains |= {d for d, n in b.outbound_domains.items() if n}
    if not domains and b.trace_rows:
        # Every message-trace row has an internal sender or recipient: a domain in most rows is ours.
        domains = {d for d, n in b.trace_domains.items() if n > 0.5 * b.trace_rows}
    return domains


_INTERNAL_CACHE: dict[tuple[str, frozenset[str]], bool] = {}


def is_internal(address: str, domains: set[str] | frozenset[str]) -> bool:
    if "@" not in address:
        return not address.startswith("smtp:")  # an Exchange legacy DN or a bare alias
    dom = address.rsplit("@", 1)[1]
    if dom in domains:
        return True
    key = (dom, domains if isinstance(domains, frozenset) else frozenset(domains))
    hit = _INTERNAL_CACHE.get(key)
    if hit is None:
        if len(_INTERNAL_CACHE) > 100_000:
            _INTERNAL_CACHE.clear()
        hit = _INTERNAL_CACHE[key] = any(dom.endswith("." + d) for d in domains)
    return hit


def classify(sends: Sequence[Send], domains: set[str]) -> None:
    for s in sends:
        if s.recipients:
            internal = sum(1 for r in s.recipients if is_internal(r, domains))
            s.internal_recipients, s.external_recipients = internal, len(s.recipients) - internal
        if s.direction is None and "@" in s.sender:
            s.direction = "outbound" if is_internal(s.sender, domains) else "inbound"


def _allowed(address: str, cfg: configuration.MailflowConfig) -> bool:
    return any(fnmatch.fnmatchcase(address, p.lower()) for p in (*cfg.service_accounts, *cfg.newsletter_senders))


def analyze(records: Sequence[Record | AuditSend], resolver: Resolver) -> list[Finding]:
    """Every mail-flow record and UAL send of a hunt → send-volume and lure findings."""
    with _gc_paused():
        sends, domains = sends_from_records(records, resolver)
        return analyze_sends(sends, domains)


@contextmanager
def _gc_paused() -> Iterator[None]:
    """Hundreds of thousands of small, acyclic objects (sends, messages) are made here: the cyclic
    collector would rescan the growing heap again and again (half of this step's time)."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


def analyze_sends(sends: Sequence[Send], domains: set[str], cfg: configuration.Config | None = None) -> list[Finding]:
    """The analytics over sends already built (``sends_from_records``, or another front end)."""
    cfg = cfg or configuration.current()
    ours = our_sends(sends, domains, cfg.mailflow)
    findings: list[Finding] = []
    if cfg.send_volume.enabled:
        findings += volume_findings(ours, cfg)
    if cfg.lures.enabled:
        findings += lure_findings(ours, cfg, domains or None)
    return findings


def our_sends(sends: Sequence[Send], domains: set[str], cfg: configuration.MailflowConfig) -> list[Send]:
    """The sends the analytics judge: from the organisation's own accounts (not inbound mail), minus
    service accounts and newsletter senders."""
    if domains:
        return [s for s in sends if is_internal(s.sender, domains) and s.direction != "inbound"
                and not _allowed(s.sender, cfg)]
    return [s for s in sends if s.direction == "outbound" and not _allowed(s.sender, cfg)]


# -- send volume --------------------------------------------------------------------------------
class Anomaly(dict):
    """``finding.anomaly``: the burst for the report's chart (``account``, ``series``) and its
    details; ``to_ocsf()`` gives the OCSF ``anomaly_analysis`` for the OCSF writer."""

    def to_ocsf(self) -> dict[str, Any]:
        start, end = _ms(self["window"]["start"]), _ms(self["window"]["end"])
        span = {"start_time": start, "end_time": end,
                "duration_mins": int(self["window"]["minutes"]), "type_id": 99, "type": "Window"}
        expected = self["expected"]
        return {
            "analysis_targets": [{"name": self["account"], "type": "Mailbox"}],
            "anomalies": [{"observation_parameter": "messages_sent", "observation_type": "Count",
                           "observations": [{"value": str(self["observed"]), "count": int(self["observed"]),
                                             "timespan": span}],
                           "observed_pattern": f"burst: robust score {self['score']}"}],
            "baselines": [{"observation_parameter": "messages_sent", "observation_type": "Count",
                           "observations": [{"value": "unknown" if expected is None else str(expected)}],
                           "observed_pattern": self["baseline"]["description"]}],
        }


def _ms(iso: str) -> int:
    return int(datetime.fromisoformat(iso).timestamp() * 1000)


def _fid(*parts: str) -> str:
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:16]


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def peer_index(accounts: Sequence[str], cfg: configuration.MailflowConfig) -> tuple[np.ndarray, list[str]]:
    names = [g for g, _ in cfg.peer_groups]
    out = np.full(len(accounts), -1, dtype=np.int64)
    for i, a in enumerate(accounts):
        for gi, (_, members) in enumerate(cfg.peer_groups):
            if any(fnmatch.fnmatchcase(a, m.lower()) for m in members):
                out[i] = gi
                break
    return out, names


def volume_findings(sends: Sequence[Send], cfg: configuration.Config) -> list[Finding]:
    if not sends:
        return []
    accounts: dict[str, int] = {}
    acc = np.fromiter((accounts.setdefault(s.sender, len(accounts)) for s in sends), dtype=np.int64, count=len(sends))
    when = np.fromiter((int(s.time.timestamp()) for s in sends), dtype=np.int64, count=len(sends))
    names = list(accounts)
    peers, peer_names = peer_index(names, cfg.mailflow)
    vc = cfg.send_volume
    bursts = V.detect_bursts(acc, when, len(names), vc, tz=cfg.mailflow.timezone, weekend=cfg.mailflow.weekend_days,
                             peer_of=peers, peer_names=peer_names)
    by_account: dict[int, list[int]] = defaultdict(list)
    for i, a in enumerate(acc.tolist()):
        by_account[a].append(i)
    out = []
    for b in bursts:
        idx = [i for i in by_account[b.account] if b.start <= when[i] < b.end]
        out.append(_volume_finding(b, names[b.account], [sends[i] for i in idx], vc))
    return out


def _volume_finding(b: V.Burst, account: str, sends: Sequence[Send], vc: configuration.SendVolumeConfig) -> Finding:
    delegates = Counter(s.actor for s in sends if s.as_delegate and s.actor and s.actor != account)
    internal = sum(s.internal_recipients or 0 for s in sends)
    external = sum(s.external_recipients or 0 for s in sends)
    subjects = Counter((s.subject or "(no subject)") for s in sends).most_common(3)
    peak_local = datetime.fromtimestamp(b.peak_start, UTC)
    expected = None if math.isnan(b.expected) else round(b.expected, 2)
    if b.basis == "own":
        basis = f"its own history ({b.history_days} active days)"
    elif b.basis.startswith("peers:"):
        basis = f"peer group {b.basis[6:]} (account has {b.history_days} active days, fewer than {vc.min_history_days})"
    elif b.basis == "organisation":
        basis = f"the organisation's accounts (account has {b.history_days} active days, fewer than {vc.min_history_days})"
    else:
        basis = "no baseline (no account has enough history): absolute threshold"
    window_text = f"{_iso(b.start)} – {_iso(b.end)}"
    summary = (f"{account} sent {b.total} messages in {window_text} (peak {b.peak} in the {vc.window_minutes}-minute "
               f"window from {peak_local:%Y-%m-%d %H:%M} UTC); "
               + (f"expected about {expected:g} for {b.slot}, normal up to {b.upper:.0f}, robust score {b.score:.1f}; "
                  if expected is not None else f"threshold {vc.no_baseline_messages} messages; ")
               + f"baseline: {basis}. Recipients: {internal} internal, {external} external"
               + (f"; sent by delegates: {', '.join(f'{a} ({n})' for a, n in delegates.most_common())}" if delegates else "")
               + f". Top subjects: {'; '.join(f'{s!r} ×{n}' for s, n in subjects)}.")
    severity, reasons = "medium", []
    if b.basis != "own":
        severity = "low"
        reasons.append("baseline from peers or an absolute threshold: the account is new")
    elif b.score >= 3 * vc.min_score and b.peak >= 3 * max(b.upper, 1):
        severity = "high"
        reasons.append(f"far above normal: {b.peak} against normal up to {b.upper:.0f}")
    delegate_sends = sum(delegates.values())
    if delegate_sends * 2 >= len(sends) and delegates:
        severity = "high"
        reasons.append(f"{delegate_sends} of {len(sends)} messages were sent as or on behalf of the mailbox by "
                       f"another account")
    attack = ["T1098.002"]
    if internal > external:
        attack.append("T1534")
    grantee = delegates.most_common(1)[0][0] if delegates and delegate_sends * 2 >= len(sends) else None
    actors = Counter(s.actor or s.sender for s in sends)
    anomaly = Anomaly(
        account=account,
        window={"start": _iso(b.start), "end": _iso(b.end), "minutes": int(vc.window_minutes)},
        peak={"start": _iso(b.peak_start), "sent": b.peak},
        observed=b.peak, total=b.total, expected=expected, upper=round(b.upper, 2), spread=round(b.spread, 2),
        score=None if math.isnan(b.score) else round(b.score, 2),
        baseline={"basis": b.basis, "history_days": b.history_days, "slot": b.slot,
                  "description": f"median of the {b.slot} windows of {basis}; spread from the interquartile range; "
                                 f"normal up to {b.upper:.0f}"},
        recipients={"internal": internal, "external": external},
        delegates=dict(delegates),
        series=b.series,
    )
    f = Finding(
        id=_fid(VOLUME_RULE, account, str(b.start)), rule=VOLUME_RULE, rule_id=VOLUME_RULE_ID, title=VOLUME_TITLE,
        severity=severity, time=_iso(b.start), attack=attack, actor=actors.most_common(1)[0][0] if actors else account,
        mailbox=account, grantee=grantee, rights=["SendAs"] if grantee and any(
            s.operation.lower() == "sendas" for s in sends) else (["SendOnBehalf"] if grantee else []),
        summary=summary, evidence=[s.evidence[0] for s in sends if s.evidence],
        operation=Counter(s.operation for s in sends).most_common(1)[0][0] if sends else "",
        client_ip=Counter(s.client_ip for s in sends if s.client_ip).most_common(1)[0][0]
        if any(s.client_ip for s in sends) else None,
        reasons=reasons, runbook=VOLUME_RUNBOOK)
    f.anomaly = anomaly  # type: ignore[attr-defined]
    return f


# -- look-alike lures ---------------------------------------------------------------------------
def lure_messages(sends: Sequence[Send], domains: set[str] | None = None) -> list[L.Message]:
    out = []
    for i, s in enumerate(sends):
        internal: tuple[str, ...] | None
        if s.recipients:
            internal = tuple(r for r in s.recipients if domains is None or is_internal(r, domains))
        else:
            internal = None
        out.append(L.Message(i, s.time.timestamp(), s.sender, s.subject, s.attachments, s.body, internal,
                             s.recipient_count))
    return out


def lure_findings(sends: Sequence[Send], cfg: configuration.Config, domains: set[str] | None = None) -> list[Finding]:
    if not sends:
        return []
    if domains is None:
        domains = _domains_of(sends)
    try:
        campaigns = L.find_campaigns(lure_messages(sends, domains), cfg.lures)
    except ImportError as exc:  # datasketch missing: say so, keep the other findings
        log.warning("look-alike lure analytic skipped: %s (pip install datasketch)", exc)
        return []
    out = []
    for c in campaigns:
        if c.suppressed:
            log.info("look-alike cluster not reported (%s): %s", c.suppressed, c.subjects[:3])
            continue
        msgs = [sends[m.ref] for m in c.messages]
        evidence = [e for s in msgs for e in s.evidence]
        per_sender = Counter(s.sender for s in msgs)
        summary = (f"{len(c.senders)} internal accounts sent {len(msgs)} look-alike messages to {c.reach} internal "
                   f"recipients between {_iso(c.start)} and {_iso(c.end)}: "
                   f"{', '.join(f'{a} ({n})' for a, n in sorted(per_sender.items()))}. Subjects: "
                   f"{'; '.join(repr(s) for s in c.subjects[:5])}{' …' if len(c.subjects) > 5 else ''}"
                   + (f". Attachments: {', '.join(c.attachments[:5])}" if c.attachments else "") + ".")
        delegates = sorted({s.actor for s in msgs if s.as_delegate and s.actor})
        reasons = [f"accounts: {', '.join(c.senders)}"]
        if delegates:
            reasons.append(f"sent as or on behalf of the mailbox by: {', '.join(delegates)}")
        f = Finding(
            id=_fid(LURE_RULE, str(c.start), *c.senders), rule=LURE_RULE, rule_id=LURE_RULE_ID, title=LURE_TITLE,
            severity="high", time=_iso(c.start), attack=["T1534"], actor=msgs[0].actor or msgs[0].sender,
            mailbox=msgs[0].sender, grantee=None, rights=[], summary=summary, evidence=evidence,
            operation=Counter(s.operation for s in msgs).most_common(1)[0][0], reasons=reasons, runbook=LURE_RUNBOOK)
        f.campaign = {  # type: ignore[attr-defined]
            "senders": c.senders, "subjects": c.subjects, "attachments": c.attachments,
            "window": {"start": _iso(c.start), "end": _iso(c.end)}, "messages": len(msgs), "reach": c.reach,
            "reply_share": round(c.reply_share, 2), "top_recipient_share": c.top_recipient_share,
        }
        out.append(f)
    return out


def _domains_of(sends: Sequence[Send]) -> set[str]:
    return {s.sender.rsplit("@", 1)[1] for s in sends if "@" in s.sender}
