"""Send-volume bursts on generated multi-week mail flow: precision and recall per case, and the
properties of the baseline (robust to past bursts, time zones, peer groups for new accounts)."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from functools import cache

import numpy as np
import pytest

from delegatewatch import config as configuration
from delegatewatch.analytics import mailflow
from delegatewatch.analytics import send_volume as V
from tests.test_mailflow_generator import START, generate, to_sends


@cache
def _data():
    mails, truth = generate()
    return mails, truth, to_sends(mails)


@cache
def _findings():
    _, truth, sends = _data()
    return mailflow.volume_findings(sends, configuration.Config()), truth


def _window(f) -> tuple[datetime, datetime]:
    a = f.anomaly["window"]
    return (datetime.fromisoformat(a["start"]),
            datetime.fromisoformat(a["end"]))


def scores_by_case():
    findings, truth = _findings()
    table = {}
    matched: set[str] = set()
    tp = 0
    for account, start, end in truth.bursts:
        hit = [f for f in findings if f.mailbox == account and _window(f)[0] < end and _window(f)[1] > start]
        tp += bool(hit)
        matched |= {f.id for f in hit}
    burst_accounts = {a for a, _, _ in truth.bursts}
    about_bursts = [f for f in findings if f.mailbox in burst_accounts]
    table["burst"] = {"tp": tp, "fp": len([f for f in about_bursts if f.id not in matched]),
                      "fn": len(truth.bursts) - tp}
    for case, accounts in truth.quiet_accounts.items():
        fp = [f for f in findings if f.mailbox in accounts or f.actor in accounts]
        table[case] = {"tp": 0, "fp": len(fp), "fn": 0}
    others = [f for f in findings if f.mailbox not in burst_accounts
              and not any(f.mailbox in a for a in truth.quiet_accounts.values())]
    table["ordinary_users"] = {"tp": 0, "fp": len(others), "fn": 0}
    for row in table.values():
        row["precision"] = row["tp"] / (row["tp"] + row["fp"]) if row["tp"] + row["fp"] else 1.0
        row["recall"] = row["tp"] / (row["tp"] + row["fn"]) if row["tp"] + row["fn"] else 1.0
    return table


@pytest.mark.parametrize("case", ["burst", "steady_high_volume", "broadcast", "reply_storm", "assistant",
                                  "new_account", "ordinary_users"])
def test_precision_and_recall_per_case(case: str) -> None:
    row = scores_by_case()[case]
    assert row["precision"] == 1.0, (case, row)
    assert row["recall"] == 1.0, (case, row)


def test_burst_findings_explain_themselves() -> None:
    findings, _ = _findings()
    by_account = {f.mailbox: f for f in findings}
    cfo = by_account["cfo@contoso.com"]
    assert cfo.severity == "high" and cfo.grantee == "eve@contoso.com" and cfo.rights == ["SendAs"]
    assert "sent by delegates: eve@contoso.com (80)" in cfo.summary
    assert cfo.attack == ["T1098.002"]  # the recipients were external
    user = by_account["user011@contoso.com"]
    a = user.anomaly
    assert a["observed"] == 120 and a["baseline"]["basis"] == "own" and a["baseline"]["history_days"] >= 7
    assert a["expected"] is not None and a["expected"] < 5 and a["score"] > 6
    assert "expected about" in user.summary and "normal up to" in user.summary
    assert len(user.evidence) == 120  # one per message
    fresh = by_account["fresh@contoso.com"]
    assert fresh.severity == "low" and fresh.anomaly["baseline"]["basis"] == "organisation"
    # the chart series the HTML report draws: hourly points around the burst, with the expected line
    series = a["series"]
    assert {"time", "sent", "expected"} == set(series[0])
    assert max(p["sent"] for p in series) == 120 and len(series) >= 7 * 24


def test_anomaly_is_valid_ocsf() -> None:
    from delegatewatch.outputs import ocsf
    from tests.test_ocsf import strict_validate

    findings, _ = _findings()
    for f in findings:
        obj = ocsf.finding_to_ocsf(f)
        strict_validate(obj)
        (analysis,) = obj["anomaly_analyses"]
        assert analysis["anomalies"][0]["observations"][0]["count"] == f.anomaly["observed"]
        assert analysis["analysis_targets"][0]["name"] == f.mailbox


def _cfg(**kw) -> configuration.SendVolumeConfig:
    return dataclasses.replace(configuration.SendVolumeConfig(), **kw)


def _steady(days: int = 21, per_hour: int = 2, account: int = 0, seed: int = 1) -> list[tuple[int, int]]:
    rnd = np.random.default_rng(seed)
    out = []
    for d in range(days):
        for h in range(9, 17):
            base = int((START + timedelta(days=d, hours=h)).timestamp())
            for s in rnd.integers(0, 3600, rnd.poisson(per_hour)):
                out.append((account, base + int(s)))
    return out


def _run(events, n_accounts: int = 1, **kw):
    acc = np.array([a for a, _ in events])
    when = np.array([t for _, t in events])
    tz = kw.pop("tz", "UTC")
    peer_of, peer_names = kw.pop("peer_of", None), kw.pop("peer_names", ())
    return V.detect_bursts(acc, when, n_accounts, _cfg(**kw), tz=tz, peer_of=peer_of, peer_names=peer_names)


def test_past_bursts_do_not_inflate_the_baseline() -> None:
    ev = _steady()
    for day in (3, 15):  # two bursts, twelve days apart: both are found
        base = int((START + timedelta(days=day, hours=13)).timestamp())
        ev += [(0, base + i * 30) for i in range(80)]
    bursts = _run(ev)
    assert [datetime.fromtimestamp(b.start, UTC).day for b in bursts] == [7, 19]
    assert all(b.expected <= 3 for b in bursts)


def test_steady_high_volume_is_quiet_and_a_real_jump_is_not() -> None:
    ev = _steady(per_hour=200)
    assert _run(ev) == []
    base = int((START + timedelta(days=10, hours=11)).timestamp())
    ev += [(0, base + i % 3600) for i in range(1000)]
    (b,) = _run(ev)
    assert b.peak > 1000 and b.expected > 150


def test_slots_follow_the_configured_time_zone() -> None:
    # an account that works 09–17 in Tokyo (00–08 UTC); a burst at 03:00 Tokyo time is off-hours
    ev = [(a, t - 9 * 3600) for a, t in _steady()]
    base = int((START + timedelta(days=12, hours=3)).timestamp()) - 9 * 3600
    ev += [(0, base + i * 60) for i in range(40)]
    (b,) = _run(ev, tz="Asia/Tokyo")
    assert b.slot.startswith("03:00") and b.expected == 0


def test_new_accounts_use_their_peer_group() -> None:
    ev = []
    for a in range(4):  # four established sales accounts sending ~30 an hour
        ev += _steady(per_hour=30, account=a, seed=a)
    day = int((START + timedelta(days=20, hours=10)).timestamp())
    for a in range(6, 12):  # six established accounts elsewhere, about one an hour
        ev += _steady(per_hour=1, account=a, seed=a)
    ev += [(4, day + i * 100) for i in range(35)]  # a new sales account at sales volume: normal
    ev += [(5, day + i * 10) for i in range(35)]  # a new account elsewhere at that volume: not normal
    peer_of = np.array([0, 0, 0, 0, 0, -1] + [-1] * 6)
    bursts = _run(ev, n_accounts=12, peer_of=peer_of, peer_names=["sales"])
    assert {b.account: b.basis for b in bursts} == {5: "organisation"}
    # with its group's context the new sales account's volume is ordinary
    ev += [(4, day + 86400 + i * 10) for i in range(200)]
    bursts = _run(ev, n_accounts=12, peer_of=peer_of, peer_names=["sales"])
    assert {b.account: b.basis for b in bursts}[4] == "peers:sales"


def test_no_baseline_at_all_uses_the_absolute_floor() -> None:
    t = int(START.timestamp())
    assert _run([(0, t + i) for i in range(150)]) == []
    (b,) = _run([(0, t + i) for i in range(250)])
    assert b.basis == "none" and b.peak == 250


def test_window_must_divide_a_day() -> None:
    with pytest.raises(ValueError, match="window_minutes"):
        _run(_steady(), window_minutes=7)
    assert _run(_steady(), window_minutes=30) == []


def test_allow_lists_silence_accounts() -> None:
    _, _, sends = _data()
    cfg = configuration.Config(mailflow=configuration.MailflowConfig(service_accounts=("user011@*",)))
    configuration.use(cfg)
    try:
        from delegatewatch.analytics.mailflow import _allowed

        kept = [s for s in sends if not _allowed(s.sender, cfg.mailflow)]
        assert not any(f.mailbox == "user011@contoso.com" for f in mailflow.volume_findings(kept, cfg))
    finally:
        configuration.use(configuration.Config())


def test_every_benign_look_alike_is_scored() -> None:
    _, truth, _ = _data()
    assert {"steady_high_volume", "broadcast", "reply_storm", "assistant"} <= set(truth.quiet_accounts)
    assert set(truth.quiet_accounts) <= set(scores_by_case())
