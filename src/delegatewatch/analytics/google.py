"""Whole-input analytics over Google Workspace records (family ``google``): Gmail ``delivery``
events of sent mail (``event_info.mail_event_type`` 1, formats.md §6.4) feed the send-volume and
look-alike-lure analytics of :mod:`delegatewatch.analytics.mailflow`.

Every other Google record (admin, login, token, Drive … activities) is dropped where it is read
(:func:`reduce`, in the hunt's worker processes), so only sends are kept until the input is read.
Gmail sends are analysed on their own, not merged with a Microsoft 365 tenant's sends in the same
hunt: one organisation normally runs one mail system, and the baselines are per account anyway.
"""

from __future__ import annotations

from collections.abc import Sequence

from delegatewatch.analytics import mailflow
from delegatewatch.events.principals import Resolver
from delegatewatch.findings.model import Finding
from delegatewatch.records import Record


def is_sent_mail(record: Record) -> bool:
    """A Gmail ``delivery`` event saying a message was sent (cheap: no send is built)."""
    ev = record.data.get("events")
    if isinstance(ev, list):  # an activity not split per event (given directly, not by the reader)
        return any(isinstance(e, dict) and str(e.get("name", "")).lower() == "delivery" for e in ev)
    if not isinstance(ev, dict) or str(ev.get("name", "")).lower() != "delivery":
        return False
    kind = mailflow._dig(ev.get("parameters"), "event_info.mail_event_type")
    return str(kind).strip() == "1"


def reduce(record: Record) -> Record | None:
    """The hunt keeps a Google record only when it is a sent Gmail message."""
    return record if is_sent_mail(record) else None


def analyze(records: Sequence[Record], resolver: Resolver) -> list[Finding]:
    sends = [r for r in records if is_sent_mail(r)]  # records given directly were not reduced
    return mailflow.analyze(sends, resolver) if sends else []
