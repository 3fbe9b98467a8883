"""Unified-audit-log sends reduced in the hunt's worker processes (``mailflow.reduce``): the compact
form keeps what the analytics and the evidence need, pickles small, and a parallel hunt over a
split file gives the same send findings (ids, evidence lines) as a single-process one."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest

from delegatewatch import config as configuration
from delegatewatch.analytics import mailflow
from delegatewatch.engine import hunt as hunt_mod
from delegatewatch.events.principals import Resolver
from delegatewatch.records import Record
from tests.test_mailflow_generator import Mail, generate, ual_send, write_ual


def _record(mail: Mail, i: int = 1, **over) -> Record:
    data = {**ual_send(mail, i), **over}
    return Record(data, "ual.json", 40 + i, i, "ndjson")


def test_reduce_keeps_what_the_analytics_need() -> None:
    from datetime import UTC, datetime

    m = Mail(datetime(2024, 4, 15, 9, 12, 31, tzinfo=UTC), "megan@contoso.com", "Q2 planning",
             ["a@contoso.com", "b@fabrikam.com"], actor="eve@contoso.com", operation="SendAs",
             attachments=["plan.xlsx"], mid="<ABC@prod.outlook.com>")
    r = _record(m, 7, recipientList=[{"Address": "A@contoso.com"}, {"Address": "b@fabrikam.com"}])
    a = mailflow.reduce(r)
    assert isinstance(a, mailflow.AuditSend)
    assert (a.operation, a.owner, a.user) == ("SendAs", "megan@contoso.com", "eve@contoso.com")
    assert a.message_id == "abc@prod.outlook.com" and a.attachments == ("plan.xlsx",)
    assert a.recipients == ("a@contoso.com", "b@fabrikam.com") and a.recipient_count == 2
    assert a.client_ip == "203.0.113.77" and a.line == 47 and a.record_id == r.record_id
    assert "contoso.com" in a.domains and "contoso.onmicrosoft.com" in a.domains
    assert a.time == m.time.timestamp()
    assert pickle.loads(pickle.dumps(a)) == a
    # and built into a send exactly as before: the delegate is the actor, the evidence the record's line
    sends, _ = mailflow.sends_from_records([a], Resolver())
    (s,) = sends
    assert s.sender == "megan@contoso.com" and s.actor == "eve@contoso.com" and s.as_delegate
    assert s.evidence[0].line == 47 and s.evidence[0].time == "2024-04-15T09:12:31Z"
    assert mailflow.sends_from_records([r], Resolver())[0][0].evidence == s.evidence  # the Record path agrees


def test_reduce_drops_what_is_not_a_send() -> None:
    from datetime import UTC, datetime

    m = Mail(datetime(2024, 4, 15, 9, tzinfo=UTC), "megan@contoso.com", "x", ["a@contoso.com"])
    assert mailflow.reduce(_record(m, ResultStatus="Failed")) is None
    assert mailflow.reduce(_record(m, CreationTime="not a time")) is None
    assert mailflow.reduce(_record(m, Operation="MailItemsAccessed")) is None
    other = Record({"x": 1}, "t.csv", 2, 2, "message-trace-csv", "mailflow")
    assert mailflow.reduce(other) is other  # other families travel whole


def test_audit_log_sends_are_on_by_default() -> None:
    assert configuration.Config().mailflow.audit_log_sends
    assert {"send", "sendas", "sendonbehalf"} <= set(hunt_mod.m365_feeds())


@pytest.fixture(scope="module")
def ual_file(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, object]:
    folder = tmp_path_factory.mktemp("ual_sends")
    mails, truth = generate()
    write_ual(mails, folder / "ual_sends.ndjson")
    return folder / "ual_sends.ndjson", truth


def _sends(result) -> list[tuple]:
    return sorted((f.id, f.rule, f.severity, tuple((e.record_id, e.line) for e in f.evidence))
                  for f in result.findings if f.rule in (mailflow.VOLUME_RULE, mailflow.LURE_RULE))


def test_parallel_hunt_reduces_sends_in_workers_with_the_same_findings(ual_file, monkeypatch) -> None:
    path, truth = ual_file
    monkeypatch.setattr(hunt_mod, "SPLIT_MIN", 1 << 20)
    monkeypatch.setattr(hunt_mod, "PARALLEL_MIN", 1 << 20)
    one = hunt_mod.hunt([str(path)], jobs=1)
    assert len(hunt_mod.plan([str(path)], 2, one.stats)) == 2  # really split into ranges (one per worker)
    two = hunt_mod.hunt([str(path)], jobs=2)
    assert _sends(one) == _sends(two) and _sends(one)
    bursts = {f.mailbox for f in two.findings if f.rule == mailflow.VOLUME_RULE}
    assert bursts == {a for a, _, _ in truth.bursts}
    lures = sorted(frozenset(f.campaign["senders"]) for f in two.findings if f.rule == mailflow.LURE_RULE)
    assert lures == sorted(s for s, _, _ in truth.lures)


def test_sends_repeated_in_two_files_count_once(ual_file, tmp_path) -> None:
    path, truth = ual_file
    copy = tmp_path / "again.ndjson"
    copy.write_bytes(path.read_bytes())  # an overlapping second export: the same record ids
    once = hunt_mod.hunt([str(path)], jobs=1)
    twice = hunt_mod.hunt([str(path), str(copy)], jobs=1)
    assert [f.summary for f in twice.findings if f.rule == mailflow.VOLUME_RULE] == \
           [f.summary for f in once.findings if f.rule == mailflow.VOLUME_RULE]
