"""Send-volume baselines across `watch` rounds: a watch :class:`~delegatewatch.watch.loop.Analytic`.

A hunt of one round's batch (minutes of mail) sees too little history for a per-account baseline.
This analytic keeps every account's message counts per window (``[send_volume] window_minutes``)
in the watch state, for the last ``[send_volume] history_days`` days, and judges each new batch's
sends against them with the hunt's own scoring (:func:`delegatewatch.analytics.send_volume.detect_bursts`
over the stored counts plus the batch's, as pre-aggregated weights). So the baseline survives
restarts and grows round by round.

State (namespace ``send_volume``, committed with the batch):

* ``meta``: ``{"window_minutes": W}`` — a different window later starts the history afresh;
* ``a:<account>``: ``{"b": [window index …], "c": [messages …], "f": [window indices already reported]}``
  — windows with mail only, pruned to ``history_days`` before the newest window seen;
* ``seen:<day>``: the sends (message id, else record id) counted that UTC day, so a record the API
  delivers again in a later round is not counted twice; kept for the three days up to the newest day
  seen (``seen``: ``{"newest": day}``). Sends older than that are not counted (they cannot be told
  from repeats).

A burst is reported when one of its windows got mail in this batch and had not been reported
before; an episode that goes on into later rounds keeps its finding id (account and first window),
so it is alerted once. Late records for an old window count there and can flag it then.
"""

from __future__ import annotations

import logging
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from delegatewatch import config as configuration
from delegatewatch.analytics import mailflow
from delegatewatch.analytics import send_volume as V
from delegatewatch.engine.hunt import HuntResult
from delegatewatch.events.principals import Directory, Resolver
from delegatewatch.findings.model import Finding
from delegatewatch.records import ReadStats, Record
from delegatewatch.records.prefilter import Prefilter
from delegatewatch.sources import read_file
from delegatewatch.watch.state import KeyValue

log = logging.getLogger("delegatewatch.watch")

NAME = "send_volume"
#: days of send ids kept to recognise records delivered again
_SEEN_DAYS = 3


def batch_records(paths: Iterable[str], audit_log_sends: bool) -> Iterable[Record]:
    """The records of a batch's files that can be sends: the audit log's Send operations through the
    prefilter (nothing else of the audit log is parsed), and every record of the other families."""
    prefilter = Prefilter.for_operations(mailflow.AUDIT_LOG_SEND_OPERATIONS)
    for path in paths:
        for record in read_file(path, ReadStats(), prefilter):  # issues: the round's hunt reports them
            if record.family != "m365" or audit_log_sends:
                yield record


class SendVolumeWatch:
    """Per-account send-volume baselines kept in the watch state (module docstring)."""

    name = NAME

    def __init__(self, cfg: configuration.Config | None = None, directory: Directory | None = None) -> None:
        self.cfg = cfg or configuration.current()
        self.directory = directory

    def observe(self, result: HuntResult, state: KeyValue) -> list[Finding]:
        vc = self.cfg.send_volume
        if not vc.enabled:
            return []
        window_s = int(vc.window_minutes) * 60
        meta = state.get("meta")
        if meta is not None and meta.get("window_minutes") != vc.window_minutes:
            log.warning("send volume: window changed from %s to %s minutes; the stored history starts afresh",
                        meta.get("window_minutes"), vc.window_minutes)
            for key, _ in list(state.items()):
                state.delete(key)
        state.set("meta", {"window_minutes": vc.window_minutes})
        paths = [p for p, _ in result.stats.files_read]
        sends, domains = mailflow.sends_from_records(batch_records(paths, self.cfg.mailflow.audit_log_sends),
                                                     Resolver(self.directory))
        new = _unseen(mailflow.our_sends(sends, domains, self.cfg.mailflow), state)
        if not new:
            return []
        touched: dict[str, Counter[int]] = defaultdict(Counter)
        for s in new:
            touched[s.sender][int(s.time.timestamp()) // window_s] += 1
        history = {key[2:]: value for key, value in state.items() if key.startswith("a:")}
        counts = {a: Counter(dict(zip(h["b"], h["c"]))) for a, h in history.items()}
        for account, add in touched.items():
            counts.setdefault(account, Counter()).update(add)
        newest = max(max(c) for c in counts.values() if c)
        horizon = newest - int(vc.history_days) * 86400 // window_s
        names = sorted(counts)
        acc, bins, weights = _columns(names, counts, horizon)
        peers, peer_names = mailflow.peer_index(names, self.cfg.mailflow)
        bursts = V.detect_bursts(acc, bins * window_s, len(names), vc, tz=self.cfg.mailflow.timezone,
                                 weekend=self.cfg.mailflow.weekend_days, peer_of=peers, peer_names=peer_names,
                                 weights=weights)
        flagged = {a: set(h.get("f", ())) for a, h in history.items()}
        findings: list[Finding] = []
        for b in bursts:
            account = names[b.account]
            windows = set(range(b.start // window_s, b.end // window_s))
            fresh = (windows & set(touched.get(account, ()))) - flagged.get(account, set())
            if not fresh:
                continue  # judged in an earlier round, or not about this batch's mail
            flagged.setdefault(account, set()).update(windows)
            mine = [s for s in new if s.sender == account and b.start <= s.time.timestamp() < b.end]
            findings.append(mailflow._volume_finding(b, account, mine, vc))
        _save(state, names, counts, flagged, history, set(touched), horizon)
        return findings


def _unseen(sends: Sequence[mailflow.Send], state: KeyValue) -> list[mailflow.Send]:
    """The sends not counted in an earlier round; remembers them by UTC day for ``_SEEN_DAYS`` days
    up to the newest day seen. Sends of days before what an earlier round remembered cannot be told
    from records delivered again, so they are not counted: a repeat would add a false burst, a late
    record only a little history."""
    meta = state.get("seen", {"newest": None})
    by_day: dict[int, list[mailflow.Send]] = defaultdict(list)
    for s in sends:
        by_day[int(s.time.timestamp()) // 86400].append(s)
    if not by_day:
        return []
    previous = meta["newest"]
    newest = max(by_day) if previous is None else max(previous, *by_day)
    remembered = None if previous is None else previous - _SEEN_DAYS + 1  # the ids kept before this round
    out: list[mailflow.Send] = []
    late = 0
    for day, group in sorted(by_day.items()):
        if remembered is not None and day < remembered:
            late += len(group)
            continue
        seen = set(state.get(f"seen:{day}", ()))
        before = len(seen)
        for s in group:
            key = s.message_id or (s.evidence[0].record_id if s.evidence else None)
            if key is None or key not in seen:
                out.append(s)
                if key is not None:
                    seen.add(key)
        if len(seen) != before:
            state.set(f"seen:{day}", sorted(seen))
    if late:
        log.info("send volume: %d send(s) older than %d days before the newest were not counted (possible repeats)",
                 late, _SEEN_DAYS)
    state.set("seen", {"newest": newest})
    for key, _ in list(state.items()):
        if key.startswith("seen:") and int(key[5:]) < newest - _SEEN_DAYS + 1:
            state.delete(key)
    return out


def _columns(names: Sequence[str], counts: dict[str, Counter[int]],
             horizon: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    acc: list[int] = []
    bins: list[int] = []
    weights: list[int] = []
    for i, a in enumerate(names):
        for b, n in counts[a].items():
            if b >= horizon:
                acc.append(i)
                bins.append(b)
                weights.append(n)
    return (np.asarray(acc, dtype=np.int64), np.asarray(bins, dtype=np.int64), np.asarray(weights, dtype=np.int64))


def _save(state: KeyValue, names: Sequence[str], counts: dict[str, Counter[int]], flagged: dict[str, set[int]],
          history: dict[str, Any], touched: set[str], horizon: int) -> None:
    """Write back the accounts whose history changed (new mail, a new report, or windows aged out)."""
    for a in names:
        kept = sorted(b for b in counts[a] if b >= horizon)
        flags = sorted(b for b in flagged.get(a, ()) if b >= horizon)
        old = history.get(a)
        if not kept:
            if old is not None:
                state.delete(f"a:{a}")
            continue
        if a in touched or old is None or len(kept) != len(old["b"]) or flags != old.get("f", []):
            state.set(f"a:{a}", {"b": kept, "c": [counts[a][b] for b in kept], "f": flags})
