"""Send-volume baselines across watch rounds (``watch/send_volume.py``): four weeks of generated mail
(the audit log's Send/SendAs records) collected in several rounds, with a restart in the middle and a
round that delivers old records again. Every injected burst is reported once, against the stored
history, and nothing else is."""

from __future__ import annotations

import dataclasses
import json
import sys
from datetime import timedelta
from pathlib import Path

import pytest
from fakes import FakeCollector

from delegatewatch import config as configuration
from delegatewatch.analytics import mailflow
from delegatewatch.watch.cli import watch_analytics
from delegatewatch.watch.loop import Watcher
from delegatewatch.watch.send_volume import SendVolumeWatch
from delegatewatch.watch.sinks import parse_sink
from delegatewatch.watch.state import WatchState

sys.path.insert(0, str(Path(__file__).parents[2]))
from tests.test_mailflow_generator import START, generate, ual_send  # noqa: E402

#: rounds by day of the four generated weeks: (first day, day after the last)
ROUNDS = [(0, 14), (14, 18), (18, 21), (21, 24), (24, 28)]


@pytest.fixture(scope="module")
def data():
    mails, truth = generate()
    records = {i: ual_send(m, i) for i, m in enumerate(mails)}
    by_round = []
    for lo, hi in ROUNDS:
        a, b = START + timedelta(days=lo), START + timedelta(days=hi)
        by_round.append([records[i] for i, m in enumerate(mails) if a <= m.time < b])
    return mails, truth, by_round


@pytest.fixture
def settings():
    before = configuration.current()
    yield configuration.Config()
    configuration.use(before)


def test_bursts_are_judged_against_the_stored_history_across_rounds_and_a_restart(tmp_path, data, settings):
    mails, truth, by_round = data
    replay = by_round[3][:500]  # the API delivers some records again in a later round
    collector = FakeCollector(tmp_path / "collected", [*by_round, replay])
    found: list = []
    out, seen = tmp_path / "findings.jsonl", 0
    state = WatchState(tmp_path / "state")
    try:
        for i in range(len(by_round) + 1):
            if i == 2:  # restart: a new process, the same state folder
                state.close()
                state = WatchState(tmp_path / "state")
            analytics, hunt_settings = watch_analytics(settings, None)
            assert [a.name for a in analytics] == ["send_volume"]
            assert not hunt_settings.send_volume.enabled  # the batch's hunt leaves volume to the analytic
            configuration.use(hunt_settings)
            w = Watcher(collector, state, [parse_sink(f"jsonl:{out}")], jobs=1, analytics=analytics)
            w.run_round()
            lines = out.read_text().splitlines() if out.exists() else []
            found += [(i, json.loads(x)) for x in lines[seen:]]
            seen = len(lines)
        # precision and recall, per injected burst; each reported exactly once
        accounts = [f["mailbox"] for _, f in found if f["rule"] == mailflow.VOLUME_RULE]
        expected = {a for a, _, _ in truth.bursts}
        assert sorted(accounts) == sorted(expected)
        quiet = set().union(*truth.quiet_accounts.values())
        assert not set(accounts) & quiet
        for account, start, end in truth.bursts:
            (rnd, f), = [(r, f) for r, f in found if f["mailbox"] == account and f["rule"] == mailflow.VOLUME_RULE]
            day = (start - START).days
            assert ROUNDS[rnd][0] <= day < ROUNDS[rnd][1]  # reported in the round that brought it
            assert f["time"][:13] == start.strftime("%Y-%m-%dT%H")
        # established accounts were judged on their own history (kept across rounds), not the batch's
        established = [f for _, f in found if f["rule"] == mailflow.VOLUME_RULE and f["mailbox"] in {
            "user011@contoso.com", "user005@contoso.com", "cfo@contoso.com"}]
        assert len(established) == 3
        assert all("its own history" in f["summary"] for f in established)
        cfo = next(f for _, f in found if f["mailbox"] == "cfo@contoso.com")
        assert cfo["grantee"] == "eve@contoso.com" and cfo["severity"] == "high"
        # the replayed records were not counted twice: stored counts equal the mail sent
        kv = state.kv("send_volume")
        stored = kv.get("a:user011@contoso.com")
        sent = sum(1 for m in mails if m.sender == "user011@contoso.com"
                   and m.time >= START + timedelta(days=28 - settings.send_volume.history_days))
        assert sum(stored["c"]) == sent
        assert all(k.startswith(("a:", "seen", "meta")) for k, _ in kv.items())
        assert len([k for k, _ in kv.items() if k.startswith("seen:")]) <= 3  # bounded
    finally:
        state.close()


def test_history_is_bounded_and_old_hours_are_not_reported_again(tmp_path, data, settings):
    mails, truth, by_round = data
    short = dataclasses.replace(settings, send_volume=dataclasses.replace(settings.send_volume, history_days=10))
    analytic = SendVolumeWatch(short)
    collector = FakeCollector(tmp_path / "collected", [by_round[0], by_round[1], by_round[1]])
    with WatchState(tmp_path / "state") as state:
        configuration.use(dataclasses.replace(short, send_volume=dataclasses.replace(short.send_volume,
                                                                                     enabled=False)))
        w = Watcher(collector, state, [], jobs=1, analytics=[analytic])
        w.run_round()
        kv = state.kv("send_volume")
        first = kv.get("a:user000@contoso.com")
        span_days = (max(first["b"]) - min(first["b"])) / 24
        assert span_days <= 10  # pruned to history_days
        r2 = w.run_round()
        assert len(r2.new_findings) >= 1  # user011's burst (day 16) is in round 2
        flagged = kv.get("a:user011@contoso.com")["f"]
        assert flagged
        r3 = w.run_round()  # the same records again: nothing new counted, nothing reported again
        assert r3.new_findings == []
        assert kv.get("a:user011@contoso.com")["f"] == flagged


def test_a_changed_window_starts_the_history_afresh(tmp_path, data, settings):
    _, _, by_round = data
    collector = FakeCollector(tmp_path / "collected", [by_round[0][:2000], by_round[1][:2000]])
    with WatchState(tmp_path / "state") as state:
        configuration.use(dataclasses.replace(settings, send_volume=dataclasses.replace(settings.send_volume,
                                                                                        enabled=False)))
        Watcher(collector, state, [], jobs=1, analytics=[SendVolumeWatch(settings)]).run_round()
        half = dataclasses.replace(settings, send_volume=dataclasses.replace(settings.send_volume, window_minutes=30))
        Watcher(collector, state, [], jobs=1, analytics=[SendVolumeWatch(half)]).run_round()
        kv = state.kv("send_volume")
        assert kv.get("meta") == {"window_minutes": 30}
        assert all(b * 1800 >= (START + timedelta(days=14)).timestamp()
                   for k, v in kv.items() if k.startswith("a:") for b in v["b"])


def test_watch_cli_reads_settings(tmp_path, settings, monkeypatch):
    from click.testing import CliRunner

    from delegatewatch.watch import cli

    seen = {}

    import delegatewatch.watch.loop as loop

    real = loop.Watcher

    def spy(*args, **kwargs):
        seen["analytics"] = kwargs.get("analytics")
        seen["hunt_window"] = configuration.current().send_volume
        return real(*args, **kwargs)

    monkeypatch.setattr(loop, "Watcher", spy)
    monkeypatch.setattr(cli, "build_collector", lambda *a, **k: FakeCollector(tmp_path / "c", []))
    good = tmp_path / "dw.toml"
    good.write_text("[send_volume]\nhistory_days = 14\nwindow_minutes = 30\n")
    r = CliRunner().invoke(cli.watch_command, ["--source", "m365", "--state", str(tmp_path / "s"), "--once",
                                               "--settings", str(good), "--sink", f"jsonl:{tmp_path / 'f.jsonl'}"])
    assert r.exit_code == 0, r.output
    (analytic,) = seen["analytics"]
    assert analytic.cfg.send_volume.history_days == 14 and analytic.cfg.send_volume.window_minutes == 30
    assert not seen["hunt_window"].enabled
    assert configuration.current().send_volume.enabled  # restored after the command
    bad = tmp_path / "bad.toml"
    bad.write_text("[send_volume]\nhistory_dayz = 14\n")
    r = CliRunner().invoke(cli.watch_command, ["--source", "m365", "--state", str(tmp_path / "s2"), "--once",
                                               "--settings", str(bad)])
    assert r.exit_code == 1 and "history_dayz" in r.output


def test_gmail_sends_feed_the_watch_baselines(tmp_path, data, settings):
    """Google collector batches: Gmail delivery events of sent mail are counted like audit-log sends."""
    from delegatewatch.engine.hunt import hunt
    from tests.test_mailflow_generator import write_gmail

    mails, truth, _ = data
    first, second = tmp_path / "gmail-1.ndjson", tmp_path / "gmail-2.ndjson"
    cut = START + timedelta(days=21)
    write_gmail([m for m in mails if m.time < cut], first)
    write_gmail([m for m in mails if m.time >= cut], second)
    analytic = SendVolumeWatch(settings)
    found = []
    with WatchState(tmp_path / "state") as state:
        for path in (first, second):
            with state.commit_batch(files=[str(path)], record_ids=[], sinks=[]) as batch:
                found += analytic.observe(hunt([str(path)], jobs=1), batch.kv(analytic.name))
    assert sorted(f.mailbox for f in found) == sorted(a for a, _, _ in truth.bursts)
    late = [f for f in found if f.time >= cut.strftime("%Y-%m-%dT%H:%M:%SZ")]
    assert late and all(Path(e.source).name == "gmail-2.ndjson" for f in late for e in f.evidence)
