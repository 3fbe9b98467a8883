"""The watch loop: collect → hunt the new files → queue new findings per sink → deliver.

Each round:

1. ``collector.run_once()`` commits new NDJSON.gz part files; their paths are recorded in the state
   as *pending* at once (a crash before the hunt is committed re-hunts them on restart).
2. The pending files are hunted with the rules. A finding is new unless its records were already
   hunted in an earlier round (a record the API delivers again in a later blob) or its id was
   already found. One transaction marks the files hunted, remembers the records and findings, and
   queues each new finding in every sink's outbox. Stateful analytics (:class:`Analytic`; the
   send-volume baselines of :mod:`delegatewatch.watch.send_volume`) run here, with their own
   key/value state committed in the same transaction.
3. Every sink drains its outbox in its own thread: a slow or failed sink holds back no other; what it
   could not take stays queued and is retried next round.

Delivery across crashes is decided per sink (``Sink.delivery``, docs/watch.md): findings are marked
in flight before a send and sent after it, and on start the in-flight ones are resolved by the sink.
"""

from __future__ import annotations

import logging
import os
import re
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from delegatewatch.detections.rules import Rule, load_rules
from delegatewatch.engine.hunt import HuntResult, hunt
from delegatewatch.events.principals import Directory
from delegatewatch.findings.model import Finding
from delegatewatch.watch.sinks import (
    AT_MOST_ONCE,
    EXACTLY_ONCE,
    Sink,
    SinkError,
    finding_dict,
    finding_from_dict,
)
from delegatewatch.watch.state import KeyValue, WatchState

log = logging.getLogger("delegatewatch.watch")


# -- what the loop needs from collectors and analytics ----------------------------------------
@runtime_checkable
class CollectResultLike(Protocol):
    files: list[Path]  # NDJSON.gz part files newly committed this round
    records: int
    errors: list[Any]


@runtime_checkable
class Collector(Protocol):
    def run_once(self) -> CollectResultLike: ...


class Analytic(Protocol):
    """An analytic that keeps state between batches (e.g. send-volume baselines,
    :class:`delegatewatch.watch.send_volume.SendVolumeWatch`). ``observe`` runs inside the
    batch's transaction; what it writes to ``state`` commits together with the batch."""

    name: str

    def observe(self, result: HuntResult, state: KeyValue) -> list[Finding]: ...


# -- reports -----------------------------------------------------------------------------------
@dataclass
class SinkReport:
    sink: str
    delivered: int = 0
    backlog: int = 0
    error: str | None = None


@dataclass
class RoundReport:
    round: int
    files: int = 0
    records: int = 0
    new_findings: list[str] = field(default_factory=list)
    repeated: int = 0  # findings whose records or ids were seen in an earlier round
    collect_errors: list[str] = field(default_factory=list)
    hunt_issues: int = 0
    sinks: list[SinkReport] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.collect_errors and all(s.error is None for s in self.sinks)

    def summary(self) -> str:
        parts = [(f"round {self.round}: {self.files} file(s), {self.records} record(s) collected, "
                  f"{len(self.new_findings)} new finding(s)")]
        if self.repeated:
            parts.append(f"{self.repeated} already known")
        if self.collect_errors:
            parts.append(f"{len(self.collect_errors)} collector error(s)")
        for s in self.sinks:
            state = f"{s.delivered} sent" + (f", {s.backlog} in backlog" if s.backlog else "")
            parts.append(f"{s.sink}: {state}" + (" (failed)" if s.error else ""))
        return "; ".join(parts)


_GUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")


def _record_key(e) -> str:  # noqa: ANN001
    """A record's identity across rounds: the UAL Id is global (the same record in two blobs is one);
    other families' ids (a snapshot's row number, a Windows EventRecordID) only mean something in
    their file."""
    return e.record_id if _GUID.match(e.record_id) else f"{e.source}#{e.record_id}"


class Watcher:
    def __init__(self, collector: Collector, state: WatchState, sinks: Sequence[Sink], *,
                 rules: Sequence[Rule] | None = None, directory: Directory | None = None, jobs: int | None = None,
                 analytics: Sequence[Analytic] = (), hunt_fn: Callable[..., HuntResult] = hunt,
                 output_dir: str | os.PathLike[str] | None = None) -> None:
        keys = [s.key for s in sinks]
        if len(set(keys)) != len(keys):
            raise ValueError("two sinks have the same name: give one of them name=…")
        self.collector = collector
        self.state = state
        self.sinks = list(sinks)
        self.rules = list(rules) if rules is not None else load_rules()
        self.directory = directory
        self.jobs = jobs
        self.analytics = list(analytics)
        self.hunt_fn = hunt_fn
        self.output_dir = output_dir
        self.stop = threading.Event()
        self._recovered = False

    # -- after a crash ----------------------------------------------------------------------------
    def recover(self) -> None:
        """Resolve sends a previous run started and did not record (it was killed in between)."""
        self._recovered = True
        for sink in self.sinks:
            items = self.state.inflight(sink.key)
            if not items:
                continue
            findings = [finding_from_dict(i.finding) for i in items]
            try:
                held = sink.recover(findings)
            except Exception as exc:  # noqa: BLE001 - cannot tell: resend (a duplicate beats a loss)
                log.warning("%s: cannot check what it holds (%s); sending the unconfirmed findings again",
                            sink.display, exc)
                held = set()
            ids = [i.finding_id for i in items]
            again = [i for i in ids if i not in held]
            if sink.delivery == AT_MOST_ONCE and held:
                log.warning("%s: %d finding(s) were being sent when the last run stopped; at-most-once delivery: "
                            "not sending them again (they may not have arrived): %s", sink.display, len(held),
                            ", ".join(sorted(held)))
            elif again:
                log.warning("%s: %d finding(s) were being sent when the last run stopped; sending them again",
                            sink.display, len(again))
            self.state.mark_sent(sink.key, [i for i in ids if i in held])
            self.state.requeue(sink.key, again, "unconfirmed when the last run stopped")

    # -- one round --------------------------------------------------------------------------------
    def run_round(self) -> RoundReport:
        if not self._recovered:
            self.recover()
        report = RoundReport(round=self.state.round + 1)
        try:
            collected = self.collector.run_once()
        except Exception as exc:  # noqa: BLE001 - a failing API must not stop delivery of the backlog
            log.error("collector failed: %s", exc)
            report.collect_errors.append(str(exc))
        else:
            report.records = int(getattr(collected, "records", 0) or 0)
            report.collect_errors += [str(e) for e in getattr(collected, "errors", None) or []]
            for e in report.collect_errors:
                log.warning("collector: %s", e)
            self.state.add_pending_files(collected.files)
        self._reconcile()
        self._hunt(report)
        report.sinks = self.deliver()
        return report

    def _reconcile(self) -> None:
        """Committed collector files this state never recorded: the process died after the collector
        committed them and before they were marked pending. Hunt them now, so no batch is skipped.
        (Collectors write finished part files under their final names; hidden names are unfinished.)"""
        if self.output_dir is None or not os.path.isdir(self.output_dir):
            return
        root = Path(self.output_dir)
        found = sorted(str(p) for p in root.rglob("*.ndjson.gz")
                       if not any(part.startswith(".") for part in p.relative_to(root).parts))
        unknown = self.state.unknown_files(found)
        if unknown:
            log.warning("%d collected file(s) were never hunted (the last run stopped in between); hunting them now",
                        len(unknown))
            self.state.add_pending_files(unknown)

    #: folders whose files are successive snapshots (collect google --gmail-delegates writes these)
    SNAPSHOT_FOLDERS = ("gmail-delegates",)

    def _snapshot_context(self, files: list[str]) -> list[str]:
        """For each new snapshot file, the previous snapshot in its folder: snapshots are compared with
        each other (a delegate present now but not before is a grant), so a batch holding only the new
        one must see the old one too."""
        context = []
        for folder in sorted({os.path.dirname(f) for f in files
                              if os.path.basename(os.path.dirname(f)) in self.SNAPSHOT_FOLDERS}):
            previous = self.state.last_hunted_in(folder)
            if previous and previous not in files and os.path.exists(previous):
                context.append(previous)
        return context

    def _hunt(self, report: RoundReport) -> None:
        files = self.state.pending_files()
        report.files = len(files)
        if not files:
            return
        present = [f for f in files if os.path.exists(f)]
        for f in set(files) - set(present):
            log.warning("collected file %s is gone; skipping it", f)
        context = self._snapshot_context(present)
        result = self.hunt_fn(present + context, rules=self.rules, directory=self.directory, jobs=self.jobs)
        report.hunt_issues = len(result.stats.issues) if hasattr(result.stats, "issues") else 0
        for issue in getattr(result.stats, "issues", [])[:20]:
            log.warning("hunt: %s", issue)
        record_ids = {_record_key(e) for f in result.findings for e in f.evidence if e.record_id}
        known = self.state.known_records(record_ids)
        fresh: list[Finding] = []
        for f in result.findings:
            ids = {_record_key(e) for e in f.evidence if e.record_id}
            if context and f.evidence and all(e.source in context for e in f.evidence):
                report.repeated += 1  # about the previous snapshot only: reported when it was new
            elif ids and ids <= known:
                report.repeated += 1  # every record behind it was hunted in an earlier round
            else:
                fresh.append(f)
        with self.state.commit_batch(files=files, record_ids=record_ids, sinks=[s.key for s in self.sinks]) as batch:
            new = batch.queue(finding_dict(f) for f in fresh)
            for analytic in self.analytics:
                new += batch.queue(finding_dict(f) for f in analytic.observe(result, batch.kv(analytic.name)))
        report.repeated += len({f.id for f in fresh} - set(new))  # ids found in an earlier round
        report.new_findings = new

    # -- delivery ---------------------------------------------------------------------------------
    def deliver(self) -> list[SinkReport]:
        if not self.sinks:
            return []
        with ThreadPoolExecutor(max_workers=len(self.sinks), thread_name_prefix="sink") as pool:
            return list(pool.map(self._drain, self.sinks))

    def _drain(self, sink: Sink) -> SinkReport:
        report = SinkReport(sink.display)
        while True:
            items = self.state.take(sink.key, sink.batch_size)
            if not items:
                break
            ids = [i.finding_id for i in items]
            findings = [finding_from_dict(i.finding) for i in items]
            try:
                sink.send(findings)
            except SinkError as exc:
                done = set(exc.delivered_ids) if exc.delivered_ids is not None else set(ids[: exc.delivered])
                rest = [i for i in ids if i not in done]
                if sink.delivery == EXACTLY_ONCE and rest:
                    try:
                        done |= sink.recover([f for f in findings if f.id in set(rest)])
                    except Exception as rexc:  # noqa: BLE001 - cannot tell: send them again
                        log.debug("%s: cannot read back what it holds: %s", sink.display, rexc)
                    rest = [i for i in ids if i not in done]
                self.state.mark_sent(sink.key, [i for i in ids if i in done])
                self.state.requeue(sink.key, rest, str(exc))
                report.delivered += len(done)
                report.error = str(exc)
                log.error("%s: %s; %d finding(s) kept for the next round", sink.display, exc, len(rest))
                break
            except Exception as exc:
                self.state.requeue(sink.key, ids, repr(exc))
                report.error = repr(exc)
                log.exception("%s failed; %d finding(s) kept for the next round", sink.display, len(ids))
                break
            self.state.mark_sent(sink.key, ids)
            report.delivered += len(ids)
        report.backlog = self.state.backlog(sink.key)
        return report

    # -- forever ----------------------------------------------------------------------------------
    def run(self, interval: float, *, once: bool = False,
            on_round: Callable[[RoundReport], None] | None = None) -> RoundReport | None:
        """Rounds every ``interval`` seconds (from the start of one to the start of the next) until
        :attr:`stop` is set; the round under way is finished first."""
        last: RoundReport | None = None
        while not self.stop.is_set():
            started = time.monotonic()
            try:
                last = self.run_round()
            except Exception as exc:
                log.exception("round failed (its files stay pending, its findings queued)")
                last = RoundReport(round=self.state.round + 1, collect_errors=[f"round failed: {exc}"])
            log.info("%s", last.summary())
            if on_round is not None:
                on_round(last)
            if once:
                break
            self.stop.wait(max(0.0, interval - (time.monotonic() - started)))
        return last

    def close(self) -> None:
        for sink in self.sinks:
            try:
                sink.close()
            except Exception as exc:  # noqa: BLE001
                log.debug("%s: close failed: %s", sink.display, exc)
