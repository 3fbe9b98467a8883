"""Mail-flow analytics over many simulated mail-send events (default 10 million), streamed in
chunks: send-volume bursts and look-alike lures. Prints a Markdown table (time and peak memory per
stage) and whether the injected bursts and lures were found.

    .venv/bin/python bench/mailflow_bench.py [--events 10000000] [--accounts 20000] [--days 30]

The events are the simulator's (``delegatewatch simulate``: each person's sends by hour and weekday,
conversations, newsletters, alert mailboxes, broadcasts, reply storms) with its ``bec`` send bursts and
``lure_campaign`` campaigns injected. They are generated first, an hour at a time, into columns (account,
time, subject id, internal recipients) saved chunk by chunk to a temporary folder (so the subject
vocabulary is complete before the lure clustering), then streamed back and reduced chunk by chunk —

* volume: a chunk becomes (account, hour, count) triples (``send_volume.aggregate``); the
  triples of all chunks are the input of ``send_volume.detect_bursts(..., weights=…)``;
* lures: MinHash/LSH clustering runs once over the distinct subject skeletons (the vocabulary,
  not the events); each chunk keeps only its messages whose (cluster, time bucket) has enough
  distinct senders (``lures.candidate_mask``); ``lures.find_campaigns`` decides on those.

Peak memory is the process's maximum resident set (``ru_maxrss``), which includes the Python
interpreter, numpy, scipy and datasketch (about 150 MB before any data).
"""

from __future__ import annotations

import argparse
import gc
import resource
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

from delegatewatch import config as configuration
from delegatewatch.analytics import lures as L
from delegatewatch.analytics import send_volume as V
from delegatewatch.simulate.background import Background
from delegatewatch.simulate.model import TRACE
from delegatewatch.simulate.scenarios import LURE_TEMPLATES, inject
from delegatewatch.simulate.tenant import build_tenant

START = 1_764_547_200  # 2025-12-01 00:00 UTC, a Monday
#: ordinary messages per person per day (weekends included) at simulator density 1.0, measured (20 k accounts)
MESSAGES_PER_USER_DAY = 5.6


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


@dataclass
class Plan:
    events: int
    accounts: int
    days: int
    cases: int
    chunk: int
    seed: int = 11


def simulated(plan: Plan, folder: Path) -> tuple[list[str], list[Path], list, list, int, int]:
    """Generate the events with the simulator into chunk files: the vocabulary, the files, the injected
    bursts and lures, the number of events and of accounts (people plus service mailboxes)."""
    tenant = build_tenant(plan.accounts, plan.seed)
    density = plan.events / (plan.accounts * plan.days * MESSAGES_PER_USER_DAY)
    bg = Background(tenant, START, plan.days, density)
    index = {p.upn: p.index for p in tenant.people}
    injected = inject(["bec", "lure_campaign"], tenant, START, plan.days, plan.seed, instances=plan.cases)
    by_hour: dict[int, list] = {}
    bursts, lures = [], []
    for inj in injected:
        mails = [it for it in inj.items if it.stream == TRACE]
        for it in mails:
            by_hour.setdefault(int(it.t - START) // 3600, []).append(it)
        first = min(it.t for it in mails)
        if inj.scenario == "bec":
            bursts.append((index[mails[0].data.sender], int(first) - int(first) % 3600))
        else:
            lures.append((frozenset(index[it.data.sender] for it in mails), int(first)))
    vocab: dict[str, int] = {}
    files: list[Path] = []
    cols: list[list[int]] = [[], [], [], []]
    total = 0

    def flush() -> None:
        path = folder / f"chunk{len(files):04d}.npz"
        np.savez(path, acc=np.array(cols[0], np.int32), when=np.array(cols[1], np.int64),
                 subj=np.array(cols[2], np.int32), reach=np.array(cols[3], np.int16))
        files.append(path)
        for c in cols:
            c.clear()

    for h in range(plan.days * 24):
        for it in bg.mail_hour(h // 24, h % 24, plan.seed, audit=False) + by_hour.get(h, []):
            if it.stream != TRACE:
                continue
            m = it.data
            cols[0].append(index[m.sender])
            cols[1].append(int(it.t))
            cols[2].append(vocab.setdefault(m.subject, len(vocab)))
            cols[3].append(sum(r.endswith("@contoso.com") for r in m.recipients))
            total += 1
        if len(cols[0]) >= plan.chunk:
            flush()
    if cols[0]:
        flush()
    return list(vocab), files, bursts, lures, total, len(tenant.people)


def chunks(files: list[Path]):
    """(account, time, subject id, internal recipients) columns, chunk by chunk, from the chunk files."""
    for path in files:
        with np.load(path) as z:
            yield (z["acc"].astype(np.int64), z["when"], z["subj"].astype(np.int64), z["reach"].astype(np.int64))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--events", type=int, default=10_000_000)
    ap.add_argument("--accounts", type=int, default=20_000)
    ap.add_argument("--days", type=int, default=30)
    ap.add_argument("--cases", type=int, default=10, help="injected send bursts and lure campaigns (each)")
    ap.add_argument("--chunk", type=int, default=1_000_000)
    ap.add_argument("--debug", action="store_true", help="print the campaigns found for the injected templates")
    args = ap.parse_args()
    plan = Plan(args.events, args.accounts, args.days, args.cases, args.chunk)
    cfg = configuration.Config()
    rows: list[tuple[str, float, float, str]] = []
    base_rss = rss_mb()

    t0 = time.perf_counter()
    folder = Path(tempfile.mkdtemp(prefix="mailflow-bench-"))
    vocab, files, bursts, lures, total, n_accounts = simulated(plan, folder)
    gen_time = time.perf_counter() - t0
    rows.append(("generate the events (the simulator, not analytics)", gen_time, rss_mb(),
                 f"{total:,} events, {len(vocab):,} distinct subjects, {len(files)} chunks"))

    # -- lures, step 1: cluster the distinct texts (not the events)
    t0 = time.perf_counter()
    skeletons: dict[str, int] = {}
    skel_of = np.fromiter((skeletons.setdefault(L.text_of(L.normalise_subject(s)[0]), len(skeletons)) for s in vocab),
                          dtype=np.int64, count=len(vocab))
    labels = np.asarray(L.cluster_texts(list(skeletons), cfg.lures), dtype=np.int64)[skel_of]
    rows.append(("lures: MinHash + LSH over distinct subject skeletons", time.perf_counter() - t0, rss_mb(),
                 f"{len(skeletons):,} skeletons, {len(np.unique(labels)):,} clusters"))

    # -- stream the events: volume triples and lure candidates per chunk
    t0 = time.perf_counter()
    pieces: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
    cand: list[tuple[np.ndarray, ...]] = []
    for acc, when, subj, reach in chunks(files):
        pieces.append(V.aggregate(acc, when, cfg.send_volume.window_minutes))
        lab = labels[subj]
        keep = L.candidate_mask(lab, acc, when, reach, cfg.lures)
        cand.append((acc[keep], when[keep], subj[keep], reach[keep]))
    stream_time = time.perf_counter() - t0
    shutil.rmtree(folder)
    triples = [np.concatenate([p[i] for p in pieces]) for i in range(3)]
    rows.append(("stream: read a chunk, aggregate per (account, hour) + lure prefilter", stream_time, rss_mb(),
                 f"{len(triples[0]):,} triples; {sum(len(c[0]) for c in cand):,} lure candidates"))
    del pieces
    gc.collect()

    # -- volume
    t0 = time.perf_counter()
    found = V.detect_bursts(triples[0], triples[1], n_accounts, cfg.send_volume, weights=triples[2])
    vol_time = time.perf_counter() - t0
    hit = sum(any(b.account == a and b.start <= t < b.end + 3600 for b in found) for a, t in bursts)
    injected_accounts = {a for a, _ in bursts}
    extra = sum(b.account not in injected_accounts for b in found)
    rows.append(("volume: baselines (hour × weekday/weekend, median/IQR) + flag", vol_time, rss_mb(),
                 f"{len(found)} bursts: {hit}/{len(bursts)} injected found, {extra} others"))

    # -- lures on the candidates
    t0 = time.perf_counter()
    acc, when, subj, reach = (np.concatenate([c[i] for c in cand]) for i in range(4))
    # recipients: a conversation goes to the same people every time (only their count is kept)
    msgs = [L.Message(i, float(t), f"u{a}", vocab[s], internal=tuple(
        f"u{(s * 31 + k) % n_accounts}" for k in range(r)))
            for i, (a, t, s, r) in enumerate(zip(acc.tolist(), when.tolist(), subj.tolist(), reach.tolist()))]
    everything = L.find_campaigns(msgs, cfg.lures)
    campaigns = [c for c in everything if c.suppressed is None]
    if args.debug:  # what became of the clusters that hold the injected templates
        for c in everything:
            if any(t.split("{")[0][:12] in " ".join(c.subjects) for t in LURE_TEMPLATES):
                print("DEBUG", c.suppressed, c.senders[:8], c.subjects[:3], c.reach, c.other_days)
    lure_time = time.perf_counter() - t0
    got = {frozenset(int(s[1:]) for s in c.senders) for c in campaigns}
    lure_hit = sum(any(s <= g for g in got) for s, _ in lures)  # found with every injected sender
    need = int(cfg.lures.min_senders)
    lure_seen = sum(any(len(s & g) >= need for g in got) for s, _ in lures)  # found as a campaign at all
    others = sum(not any(len(s & g) >= need for s, _ in lures) for g in got)  # campaigns holding no injected one
    rows.append(("lures: windows, reply storms, templates on the candidates", lure_time, rss_mb(),
                 (f"{len(campaigns)} campaigns: {lure_seen}/{len(lures)} injected found "
                  f"({lure_hit} with every sender), "
                  f"{others} others")))

    analytics = sum(r[1] for r in rows if not r[0].startswith(("generate", "set-up")))
    print(f"\n### Mail-flow analytics: {total:,} mail-send events, {plan.accounts:,} accounts, {plan.days} days\n")
    print("| stage | seconds | peak RSS (MB) | result |")
    print("|---|---:|---:|---|")
    for name, secs, mem, note in rows:
        print(f"| {name} | {secs:.1f} | {mem:.0f} | {note} |")
    print(f"| **analytics total** (all but set-up and generation) | **{analytics:.1f}** | {rss_mb():.0f} | "
          f"{total / analytics / 1e6:.2f} M events/s |")
    print(f"\nRSS before any data: {base_rss:.0f} MB. Python {sys.version.split()[0]}, numpy {np.__version__}.")


if __name__ == "__main__":
    main()
