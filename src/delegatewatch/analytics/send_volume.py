"""Send-volume bursts: an account sending far more mail in a window than its own history says is
normal (the seed's "larger than normal volume of email sent from an account"; detections.md §2
idea 13, §3 gap 7).

Pure functions over columns (numpy), so the same code serves a hunt and ten million events:

1. *Counts*: messages per account per window (``window_minutes``, default an hour). A message is
   one send however many recipients it has (a broadcast is one send, not N): the caller groups
   message-trace rows by message id before it gets here.
2. *Baseline* from the account's own history, per **slot** = window of the day × weekday/weekend
   (in the configured time zone), over every window since the account's first send (windows
   without mail count as zero). Robust statistics, so the account's own past bursts do not
   inflate it: the slot's **median** is the expected count and its interquartile range the
   spread (floored by √expected, the Poisson noise of counts, and by 1). The account's
   **daily peaks** (the busiest window of each active day) give a second bound: a window no
   higher than the ``daily_peak_quantile`` of them is a normal busy hour for this account —
   this keeps steady high-volume senders (newsletters, alert mailboxes) quiet, while a single
   past burst (one day's peak) does not move the quantile.
3. *Minimum history*: an account with fewer than ``min_history_days`` active days is compared
   with its **peer group** (``[mailflow] peer_groups``) or, without one, with the organisation:
   per slot, the median of the established members' expected counts, spreads and daily-peak
   bounds. With no established account at all only an absolute floor (``no_baseline_messages``)
   applies.
4. *Flag* a window when all hold: observed > expected + ``min_score`` × spread (the robust
   z-score), observed > the daily-peak bound, observed ≥ ``min_ratio`` × expected, observed −
   expected ≥ ``min_excess``, observed ≥ ``min_messages``. Flagged windows of one account with at most
   one other window between them are one burst.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, tzinfo
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np

from delegatewatch.config import SendVolumeConfig

#: spread of a normal distribution from its interquartile range
IQR_TO_SIGMA = 1.349


@dataclass
class Burst:
    """One flagged episode of an account."""

    account: int  # index into the caller's account names
    start: int  # epoch seconds, start of the first flagged window
    end: int  # epoch seconds, end of the last flagged window
    peak_start: int  # epoch seconds, start of the busiest window
    peak: int  # messages in the busiest window
    total: int  # messages from start to end
    windows: int  # flagged windows
    expected: float  # expected count for the busiest window (its slot's median)
    upper: float  # highest count that was still normal there
    spread: float
    score: float  # robust z-score of the busiest window
    basis: str  # "own" | "peers:<group>" | "organisation" | "none"
    history_days: int  # the account's active days
    slot: str  # "Tue 09:00 weekday" …
    series: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class Profile:
    """Per-slot baseline of one account or peer group (for explanations and charts)."""

    expected: np.ndarray  # (slots,)
    spread: np.ndarray  # (slots,)
    peak_bound: float


def slots_of(bins: np.ndarray, window_s: int, tz: tzinfo, weekend: Sequence[int]) -> tuple[np.ndarray, np.ndarray, int]:
    """(slot, local day) of each window index in ``bins``; and the number of slots. Evaluated
    once per distinct window (a few thousand), so time zones with summer time are exact."""
    per_day = 86400 // window_s
    slot = np.empty(len(bins), dtype=np.int32)
    day = np.empty(len(bins), dtype=np.int64)
    weekend = set(weekend)
    for i, b in enumerate(bins.tolist()):
        local = datetime.fromtimestamp(b * window_s, tz)
        tod = (local.hour * 60 + local.minute) * 60 // window_s
        slot[i] = tod + (per_day if local.weekday() in weekend else 0)
        day[i] = local.toordinal()
    return slot, day, 2 * per_day


def _group_quantiles(groups: np.ndarray, values: np.ndarray, sizes: np.ndarray,
                     qs: Sequence[float]) -> tuple[np.ndarray, list[np.ndarray]]:
    """Quantiles (linear interpolation) of each group's values, where a group of ``sizes[g]``
    holds its listed (non-zero) values and zeros for the rest. Returns (unique groups, one array
    per quantile). ``sizes`` is indexed like the unique groups."""
    order = np.lexsort((values, groups))
    g = groups[order]
    v = values[order].astype(np.float64)
    uniq, start, nnz = np.unique(g, return_index=True, return_counts=True)
    n = sizes.astype(np.int64)
    zeros = n - nnz
    out = []
    for q in qs:
        pos = q * (n - 1)
        lo = np.floor(pos).astype(np.int64)
        hi = np.minimum(lo + 1, n - 1)
        frac = pos - lo

        def at(k: np.ndarray) -> np.ndarray:
            idx = start + np.clip(k - zeros, 0, None)
            idx = np.minimum(idx, len(v) - 1)
            return np.where(k < zeros, 0.0, v[idx])
        out.append(at(lo) * (1 - frac) + at(hi) * frac)
    return uniq, out


def aggregate(account: np.ndarray, when: np.ndarray, window_minutes: int,
              weights: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(account, window start in epoch seconds, messages) per (account, window) with mail: a
    chunk of a stream reduced before it is merged (``detect_bursts(..., weights=…)`` takes the
    concatenated pieces, also with repeated pairs)."""
    window_s = int(window_minutes) * 60
    account = np.asarray(account, dtype=np.int64)
    bins = np.asarray(when, dtype=np.int64) // window_s
    if len(bins) == 0:
        return account[:0], bins[:0], bins[:0]
    b0 = int(bins.min())
    nb = int(bins.max()) - b0 + 1
    keys, inverse = np.unique(account * nb + (bins - b0), return_inverse=True)
    counts = np.bincount(inverse, weights=weights, minlength=len(keys)).astype(np.int64) \
        if weights is not None else np.bincount(inverse, minlength=len(keys)).astype(np.int64)
    return keys // nb, (keys % nb + b0) * window_s, counts


def detect_bursts(account: np.ndarray, when: np.ndarray, n_accounts: int, cfg: SendVolumeConfig, *,
                  tz: str | tzinfo = "UTC", weekend: Sequence[int] = (5, 6),
                  peer_of: Sequence[int] | None = None, peer_names: Sequence[str] = (),
                  chart: bool = True, weights: np.ndarray | None = None) -> list[Burst]:
    """Bursts in the sends ``(account[i], when[i])`` (account index, epoch seconds); with
    ``weights``, row ``i`` stands for ``weights[i]`` sends (pre-aggregated input, see
    :func:`aggregate`).

    ``peer_of[a]``: index into ``peer_names`` of account ``a``'s peer group, or −1 (the
    organisation). Every array may be large (tens of millions); the work is a sort of the sends
    and then proportional to the number of (account, window) pairs with mail.
    """
    if len(when) == 0:
        return []
    zone = ZoneInfo(tz) if isinstance(tz, str) else tz
    window_s = int(cfg.window_minutes) * 60
    if window_s <= 0 or 86400 % window_s:
        raise ValueError(f"[send_volume] window_minutes must divide a day (got {cfg.window_minutes})")
    account = np.asarray(account, dtype=np.int64)
    bins = np.asarray(when, dtype=np.int64) // window_s
    b0 = int(bins.min())
    nb = int(bins.max()) - b0 + 1
    # 1. counts per (account, window): one sort of the sends
    if weights is None:
        keys, counts = np.unique(account * nb + (bins - b0), return_counts=True)
    else:
        keys, inverse = np.unique(account * nb + (bins - b0), return_inverse=True)
        counts = np.bincount(inverse, weights=np.asarray(weights), minlength=len(keys)).astype(np.int64)
    acc = keys // nb
    rel = keys % nb
    # 2. slots and days of every window in the range
    slot_of, day_of, n_slots = slots_of(np.arange(b0, b0 + nb, dtype=np.int64), window_s, zone, weekend)
    # first window of each account's first local day: zeros count from there
    first_rel = np.full(n_accounts, -1, dtype=np.int64)
    uacc, first_idx = np.unique(acc, return_index=True)
    first_rel[uacc] = rel[first_idx]
    day_start = np.searchsorted(day_of, day_of, side="left")  # first window of each window's day
    start_rel = np.where(first_rel >= 0, day_start[np.maximum(first_rel, 0)], nb)
    # windows of each slot from a start to the end: cumulative per slot
    onehot = np.zeros((n_slots, nb + 1), dtype=np.int64)
    onehot[slot_of, np.arange(1, nb + 1)] = 1
    cum = onehot.cumsum(axis=1)  # cum[s, t] = windows with slot s among the first t
    # active days per account
    ad_keys = np.unique(acc * (int(day_of.max()) - int(day_of.min()) + 1) + (day_of[rel] - int(day_of.min())))
    active_days = np.bincount(ad_keys // (int(day_of.max()) - int(day_of.min()) + 1), minlength=n_accounts)
    # 3. per (account, slot) median and quartiles, zeros included
    group = acc * n_slots + slot_of[rel]
    ug = np.unique(group)
    ga, gs = ug // n_slots, ug % n_slots
    sizes = cum[gs, nb] - cum[gs, start_rel[ga]]
    _, (q25, q50, q75) = _group_quantiles(group, counts, sizes, (0.25, 0.5, 0.75))
    expected = np.zeros((n_accounts, n_slots))
    spread = np.ones((n_accounts, n_slots))
    expected[ga, gs] = q50
    spread[ga, gs] = np.maximum.reduce([(q75 - q25) / IQR_TO_SIGMA, np.sqrt(np.maximum(q50, 1.0)), np.ones_like(q50)])
    # daily peaks per account: the busiest window of each active day
    dk = acc * (nb + 1) + day_start[rel]
    order = np.lexsort((-counts, dk))
    udk, first = np.unique(dk[order], return_index=True)
    peak_acc = udk // (nb + 1)
    peak_val = counts[order][first]
    pa, (peak_q,) = _group_quantiles(peak_acc, peak_val, np.bincount(peak_acc, minlength=n_accounts)[np.unique(peak_acc)],
                                     (float(cfg.daily_peak_quantile),))
    peak_bound = np.zeros(n_accounts)
    peak_bound[pa] = peak_q
    # 4. baselines: own, or the peer group's / organisation's for new accounts
    established = active_days >= int(cfg.min_history_days)
    basis = np.array(["own" if e else "" for e in established], dtype=object)
    base_e, base_s, base_p = expected.copy(), spread.copy(), peak_bound.copy()
    has_base = established.copy()
    peer = np.asarray(peer_of if peer_of is not None else np.full(n_accounts, -1), dtype=np.int64)
    org = _pool(expected, spread, peak_bound, established)
    groups: dict[int, Any] = {}
    for a in np.flatnonzero(~established & (first_rel >= 0)):
        pooled, label = None, "organisation"
        if peer[a] >= 0:
            if peer[a] not in groups:
                members = established & (peer == peer[a])
                groups[peer[a]] = _pool(expected, spread, peak_bound, members) if members.sum() >= 3 else None
            if groups[peer[a]] is not None:
                pooled, label = groups[peer[a]], f"peers:{peer_names[peer[a]]}"
        pooled = pooled or org
        if pooled is None:
            basis[a] = "none"
            continue
        base_e[a], base_s[a], base_p[a] = pooled
        basis[a] = label
        has_base[a] = True
    # 5. flag windows (only windows with mail can be flagged)
    e = base_e[acc, slot_of[rel]]
    s = base_s[acc, slot_of[rel]]
    upper = np.maximum(e + cfg.min_score * s, base_p[acc])
    flagged = ((counts > upper) & (counts >= cfg.min_ratio * e) & (counts - e >= cfg.min_excess)
               & (counts >= cfg.min_messages) & has_base[acc])
    flagged |= ~has_base[acc] & (counts >= cfg.no_baseline_messages)
    score = (counts - e) / s
    idx = np.flatnonzero(flagged)
    bursts: list[Burst] = []
    per_day = 86400 // window_s
    i = 0
    while i < len(idx):
        j = i
        while j + 1 < len(idx) and acc[idx[j + 1]] == acc[idx[i]] and rel[idx[j + 1]] - rel[idx[j]] <= 2:
            j += 1
        run = idx[i:j + 1]
        a = int(acc[run[0]])
        lo_rel, hi_rel = int(rel[run[0]]), int(rel[run[-1]])
        peak_i = run[np.argmax(counts[run])]
        mine = slice(*np.searchsorted(keys, [a * nb + lo_rel, a * nb + hi_rel + 1]))
        total = int(counts[mine].sum())
        sl = int(slot_of[rel[peak_i]])
        b = Burst(
            account=a, start=(b0 + lo_rel) * window_s, end=(b0 + hi_rel + 1) * window_s,
            peak_start=(b0 + int(rel[peak_i])) * window_s, peak=int(counts[peak_i]), total=total,
            windows=len(run), expected=float(e[peak_i]) if has_base[a] else math.nan,
            upper=float(upper[peak_i]) if has_base[a] else float(cfg.no_baseline_messages - 1),
            spread=float(s[peak_i]), score=float(score[peak_i]) if has_base[a] else math.nan,
            basis=str(basis[a]), history_days=int(active_days[a]),
            slot=_slot_label(sl, per_day, window_s))
        if chart:
            b.series = _series(a, lo_rel, hi_rel, keys, counts, nb, b0, window_s, slot_of, base_e[a],
                               per_day * cfg.chart_days_before, per_day * cfg.chart_days_after)
        bursts.append(b)
        i = j + 1
    return bursts


def _pool(expected: np.ndarray, spread: np.ndarray, peak: np.ndarray,
          members: np.ndarray) -> tuple[np.ndarray, np.ndarray, float] | None:
    if not members.any():
        return None
    return (np.median(expected[members], axis=0), np.median(spread[members], axis=0),
            float(np.median(peak[members])))


def _slot_label(slot: int, per_day: int, window_s: int) -> str:
    weekend = slot >= per_day
    minutes = (slot % per_day) * window_s // 60
    return f"{minutes // 60:02d}:{minutes % 60:02d} on {'weekend days' if weekend else 'weekdays'}"


def _series(a: int, lo: int, hi: int, keys: np.ndarray, counts: np.ndarray, nb: int, b0: int, window_s: int,
            slot_of: np.ndarray, expected: np.ndarray, before: int, after: int) -> list[dict[str, Any]]:
    """The chart around a burst: ``{"time", "sent", "expected"}`` per window."""
    first, last = max(0, lo - before), min(nb - 1, hi + after)
    sent = np.zeros(last - first + 1, dtype=np.int64)
    mine = slice(*np.searchsorted(keys, [a * nb + first, a * nb + last + 1]))
    sent[keys[mine] - a * nb - first] = counts[mine]
    out = []
    for k in range(last - first + 1):
        t = datetime.fromtimestamp((b0 + first + k) * window_s, UTC)
        out.append({"time": t.strftime("%Y-%m-%dT%H:%M:%SZ"), "sent": int(sent[k]),
                    "expected": round(float(expected[slot_of[first + k]]), 2)})
    return out
