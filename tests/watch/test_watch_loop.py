"""The watch loop end to end: a fake collector writing real UAL NDJSON.gz batches, the real hunt,
and real sinks talking to local servers."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from fakes import FakeCollector, grant, noise

from delegatewatch.watch.loop import Collector, Watcher
from delegatewatch.watch.sinks import parse_sink
from delegatewatch.watch.state import StateError, WatchState

FAST = "retries=1,backoff=0.01,max_backoff=0.02,timeout=3"
HERE = Path(__file__).parent


def rid(n: int) -> str:
    return f"00000000-0000-0000-0000-{n:012d}"


def batches():
    """3 rounds; grant 1 comes again in round 2 and grant 2 in round 3 (the API repeats records)."""
    return [[grant(1), grant(2), noise(1), noise(2)],
            [grant(3), grant(1), noise(3)],
            [noise(4), grant(2), grant(4)]]


def jsonl_ids(path: Path) -> list[str]:
    return [json.loads(x)["id"] for x in path.read_text().splitlines() if x.strip()] if path.exists() else []


@pytest.fixture
def hec_env(monkeypatch):
    monkeypatch.setenv("DW_TEST_HEC", "tok-3c1d1d6e-secret")
    return "DW_TEST_HEC"


def make_sinks(tmp_path, http_server, tcp_receiver, hec_env):
    return [parse_sink(f"jsonl:{tmp_path / 'findings.jsonl'}"),
            parse_sink(f"webhook:{http_server.url}/slack/T0/B0/x,{FAST}"),
            parse_sink(f"hec:{http_server.url},{FAST}", hec_token_env=hec_env),
            parse_sink(f"syslog:tcp://127.0.0.1:{tcp_receiver.port},{FAST}")]


class Delivered:
    """What each sink received, by finding id (from the servers' side)."""

    def __init__(self, tmp_path, http_server, tcp_receiver):
        self.tmp_path, self.http, self.tcp = tmp_path, http_server, tcp_receiver

    def jsonl(self):
        return jsonl_ids(self.tmp_path / "findings.jsonl")

    def webhook(self):
        return [r.json()["blocks"][-1]["elements"][0]["text"].split("`")[1]
                for r in self.http.requests if r.path.startswith("/slack") and r.ok]

    def hec(self):
        return [e["event"]["id"] for r in self.http.requests if r.path.startswith("/services") and r.ok
                for e in _events(r.body)]

    def syslog(self):
        return [json.loads(fr.split(b"] ", 1)[1])["id"] for fr in self.tcp.wait(0, 0.1)]

    def all(self):
        return {"jsonl": self.jsonl(), "webhook": self.webhook(), "hec": self.hec(), "syslog": self.syslog()}


def _events(body: bytes):
    dec, text, i = json.JSONDecoder(), body.decode(), 0
    while i < len(text):
        obj, i = dec.raw_decode(text, i)
        yield obj


@pytest.fixture
def delivered(tmp_path, http_server, tcp_receiver):
    return Delivered(tmp_path, http_server, tcp_receiver)


def expected_ids(tmp_path) -> set[str]:
    """The findings of all grants 1..4 as a one-shot hunt computes them."""
    from delegatewatch.engine.hunt import hunt

    files = sorted((tmp_path / "collected").glob("*.ndjson.gz"))
    return {f.id for f in hunt([str(p) for p in files], jobs=1).findings}


def test_fake_collector_satisfies_the_protocol(tmp_path):
    assert isinstance(FakeCollector(tmp_path, []), Collector)


def test_three_rounds_each_finding_once_per_sink_and_restart_resends_nothing(
        tmp_path, http_server, tcp_receiver, hec_env, delivered):
    state_dir = tmp_path / "state"
    collector = FakeCollector(tmp_path / "collected", batches())
    with WatchState(state_dir) as state:
        w = Watcher(collector, state, make_sinks(tmp_path, http_server, tcp_receiver, hec_env), jobs=1)
        reports = [w.run_round() for _ in range(3)]
        w.close()
    assert [len(r.new_findings) for r in reports] == [2, 1, 1]
    assert [r.repeated for r in reports] == [0, 1, 1]  # grant 1 again in round 2, grant 2 in round 3
    assert all(r.ok for r in reports)
    want = expected_ids(tmp_path)
    assert len(want) == 4
    got = delivered.all()
    for sink, ids in got.items():
        assert sorted(ids) == sorted(want), sink  # each finding exactly once per sink

    # Restart from the state folder; the collector hands over every record again, in new blobs.
    again = FakeCollector(tmp_path / "collected-again", [sum(batches(), [])])
    with WatchState(state_dir) as state:
        w = Watcher(again, state, make_sinks(tmp_path, http_server, tcp_receiver, hec_env), jobs=1)
        r = w.run_round()
        assert r.new_findings == [] and r.repeated == 4
        assert w.run_round().new_findings == []
        w.close()
    assert delivered.all() == got  # nothing resent


def test_a_sink_down_for_a_round_gets_its_backlog_next_round(
        tmp_path, http_server, tcp_receiver, hec_env, delivered):
    collector = FakeCollector(tmp_path / "collected", batches())
    with WatchState(tmp_path / "state") as state:
        sinks = make_sinks(tmp_path, http_server, tcp_receiver, hec_env)
        w = Watcher(collector, state, sinks, jobs=1)
        w.run_round()
        http_server.down = True  # webhook and HEC answer 503 for round 2
        r2 = w.run_round()
        by_sink = {s.sink: s for s in r2.sinks}
        hec, hook = by_sink[sinks[2].display], by_sink[sinks[1].display]
        assert hec.error and hec.backlog == 1 and hook.error and hook.backlog == 1
        assert by_sink[sinks[0].display].error is None and by_sink[sinks[3].display].error is None
        assert not r2.ok
        assert len(delivered.jsonl()) == 3 and len(delivered.syslog()) == 3  # the others were not held back
        assert len(delivered.hec()) == 2 and len(delivered.webhook()) == 2
        http_server.down = False
        r3 = w.run_round()
        assert r3.ok and all(s.backlog == 0 for s in r3.sinks)
        w.close()
    want = sorted(expected_ids(tmp_path))
    for sink, ids in delivered.all().items():
        assert sorted(ids) == want, sink


def test_collector_failure_does_not_stop_delivery(tmp_path, http_server, tcp_receiver, hec_env, delivered):
    collector = FakeCollector(tmp_path / "collected", [batches()[0], [], batches()[2]], fail_rounds={1})
    with WatchState(tmp_path / "state") as state:
        w = Watcher(collector, state, [parse_sink(f"jsonl:{tmp_path / 'findings.jsonl'}")], jobs=1)
        r1 = w.run_round()
        r2 = w.run_round()
        assert r2.collect_errors and not r2.ok
        w.run_round()  # the collector's round index 2
        w.close()
    assert len(delivered.jsonl()) == 2 + 1  # grants 1, 2; then 4 (2 repeated)
    assert len(r1.new_findings) == 2


def test_crash_before_the_hunt_is_committed_rehunts_the_files(tmp_path):
    collector = FakeCollector(tmp_path / "collected", batches()[:1])
    out = tmp_path / "findings.jsonl"

    def broken_hunt(*a, **k):
        raise RuntimeError("killed (simulated)")

    with WatchState(tmp_path / "state") as state:
        w = Watcher(collector, state, [parse_sink(f"jsonl:{out}")], jobs=1, hunt_fn=broken_hunt)
        with pytest.raises(RuntimeError):
            w.run_round()
        assert len(state.pending_files()) == 1
    with WatchState(tmp_path / "state") as state:
        w = Watcher(FakeCollector(tmp_path / "none", []), state, [parse_sink(f"jsonl:{out}")], jobs=1)
        assert len(w.run_round().new_findings) == 2
        assert state.pending_files() == []
    assert len(jsonl_ids(out)) == 2


def test_state_folder_is_locked(tmp_path):
    with WatchState(tmp_path / "s"), pytest.raises(StateError, match="in use"):
        WatchState(tmp_path / "s")


def test_analytics_state_commits_with_the_batch(tmp_path):
    class Counter:
        name = "counter"

        def observe(self, result, state):
            state.set("findings", state.get("findings", 0) + len(result.findings))
            return []

    collector = FakeCollector(tmp_path / "collected", batches())
    with WatchState(tmp_path / "state") as state:
        w = Watcher(collector, state, [], jobs=1, analytics=[Counter()])
        for _ in range(3):
            w.run_round()
        assert state.kv("counter").get("findings") == 2 + 2 + 2


# -- kill -9 between sending and recording -----------------------------------------------------
CRASH_SCRIPT = textwrap.dedent("""
    import os, signal, sys
    sys.path.insert(0, {here!r})
    from pathlib import Path
    from fakes import FakeCollector, grant
    from delegatewatch.watch.loop import Watcher
    from delegatewatch.watch.sinks import parse_sink
    from delegatewatch.watch.state import WatchState

    tmp = Path({tmp!r})
    sinks = [parse_sink(s, hec_token_env="DW_TEST_HEC") for s in {specs!r}]
    last = sinks[-1]
    real_send = last.send

    def send_then_die(findings):
        real_send(findings)
        import time
        for _ in range(500):  # let the other sinks (other threads) finish and record first
            if all(state.backlog(s.key) == 0 for s in sinks[:-1]):
                break
            time.sleep(0.01)
        os.kill(os.getpid(), signal.SIGKILL)  # sent, not yet recorded as sent

    last.send = send_then_die
    state = WatchState(tmp / "state")
    Watcher(FakeCollector(tmp / "collected", [[grant(1), grant(2)]]), state, sinks, jobs=1).run_round()
""")


def test_kill_9_between_send_and_record(tmp_path, http_server, hec_env, delivered):
    """Sinks deliver in parallel threads; the last one kills the process right after its send. Then a
    restart resolves the unconfirmed sends per sink: jsonl exactly-once (read back), webhook
    at-most-once (not resent), HEC at-least-once (resent once)."""
    specs = [f"webhook:{http_server.url}/slack/T0/B0/x,{FAST}", f"hec:{http_server.url},{FAST}",
             f"jsonl:{tmp_path / 'findings.jsonl'}"]
    for crash_sink in range(3):
        for p in (tmp_path / "state", tmp_path / "collected"):
            if p.exists():
                import shutil
                shutil.rmtree(p)
        (tmp_path / "findings.jsonl").unlink(missing_ok=True)
        http_server.requests.clear()
        order = specs[:crash_sink] + specs[crash_sink + 1:] + [specs[crash_sink]]
        script = CRASH_SCRIPT.format(here=str(HERE), tmp=str(tmp_path), specs=order)
        proc = subprocess.run([sys.executable, "-c", script], env={**os.environ}, capture_output=True, timeout=60, check=False)
        assert proc.returncode == -9, proc.stderr.decode()[-2000:]
        before = delivered.all()
        kind = ["webhook", "hec", "jsonl"][crash_sink]
        assert len(before[kind]) == 2  # the crashing sink did deliver both

        with WatchState(tmp_path / "state") as state:
            sinks = [parse_sink(s, hec_token_env=hec_env) for s in specs]
            w = Watcher(FakeCollector(tmp_path / "nothing", []), state, sinks, jobs=1)
            r = w.run_round()
            w.close()
            assert all(s.backlog == 0 for s in r.sinks)
        after = delivered.all()
        want = sorted(before[kind])
        if kind == "hec":
            assert sorted(after["hec"]) == sorted(want * 2)  # at-least-once: the unconfirmed batch once more
        else:
            assert sorted(after[kind]) == want, kind  # not resent
        for other in ("webhook", "hec", "jsonl"):
            if other != kind:  # those finished and recorded before the kill: not resent
                assert sorted(after[other]) == want, other


def test_files_committed_but_never_recorded_are_hunted_on_restart(tmp_path):
    """The process died after the collector committed a part file and before watch recorded it:
    the next round finds the file under the collector's output folder and hunts it."""
    out = tmp_path / "collected"
    orphan_collector = FakeCollector(out, [[grant(41), noise(41)]])
    orphan_collector.run_once()  # committed by the collector; watch never heard of it
    sink_file = tmp_path / "findings.jsonl"
    with WatchState(tmp_path / "state") as state:
        watcher = Watcher(FakeCollector(out, []), state, [parse_sink(f"jsonl:{sink_file}")], output_dir=out)
        watcher.run_round()
        watcher.run_round()  # nothing new: the file is not hunted twice
    lines = [json.loads(x) for x in sink_file.read_text().splitlines()]
    assert [x["evidence"][0]["record_id"] for x in lines] == ["00000000-0000-0000-0000-000000000041"]


def test_gmail_delegate_snapshots_are_compared_across_rounds(tmp_path):
    """Each round collects one Gmail delegate snapshot; the delegate that appears in round 2 is a grant,
    and the standing delegation seen in both rounds is sent once."""
    import gzip

    out = tmp_path / "google"
    folder = out / "gmail-delegates"
    folder.mkdir(parents=True)

    class SnapshotCollector:
        def __init__(self) -> None:
            self.round = 0

        def run_once(self):
            self.round += 1
            delegates = [{"delegateEmail": "pa@example.com", "verificationStatus": "accepted"}]
            if self.round == 2:
                delegates.append({"delegateEmail": "attacker@evil.example", "verificationStatus": "accepted"})
            if self.round > 2:
                return type("R", (), {"files": [], "records": 0, "errors": []})()
            path = folder / f"2026-12-0{self.round}T000000Z.ndjson.gz"
            with gzip.open(path, "wt") as f:
                f.write(json.dumps({"user": "ceo@example.com", "delegates": delegates,
                                    "collected_at": f"2026-12-0{self.round}T00:00:00Z"}) + "\n")
            return type("R", (), {"files": [path], "records": 1, "errors": []})()

    sink_file = tmp_path / "findings.jsonl"
    with WatchState(tmp_path / "state") as state:
        watcher = Watcher(SnapshotCollector(), state, [parse_sink(f"jsonl:{sink_file}")], output_dir=out)
        for _ in range(3):
            watcher.run_round()
    sent = [json.loads(x) for x in sink_file.read_text().splitlines()]
    rules = [(f["rule"], f["grantee"]) for f in sent]
    assert ("snapshot_gmail_delegate_added", "attacker@evil.example") in rules
    assert sum(1 for r, g in rules if g == "pa@example.com") == 1  # the standing delegation, once
