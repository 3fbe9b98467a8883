"""Mail-flow analytics over many generated mail-send events (default 10 million), streamed in
chunks: send-volume bursts and look-alike lures. Prints a Markdown table (time and peak memory per
stage) and whether the injected bursts and lures were found.

    .venv/bin/python bench/mailflow_bench.py [--events 10000000] [--accounts 20000] [--days 30]

The events never exist as Python objects: each chunk of columns (account, time, subject id,
recipients) is generated with numpy and reduced at once —

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
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

from delegatewatch import config as configuration
from delegatewatch.analytics import lures as L
from delegatewatch.analytics import send_volume as V

START = 1_709_510_400  # 2024-03-04 00:00 UTC, a Monday
WORDS = np.array(["budget", "forecast", "review", "contract", "draft", "agenda", "slides", "report", "invoice", "client", "project", "design", "meeting", "notes", "hiring", "plan", "roadmap", "launch", "campaign", "audit", "policy", "training", "offsite", "survey", "feedback", "summary", "proposal", "quote", "order", "shipment", "vendor", "release", "sprint", "backlog", "migration", "customer", "renewal", "pricing", "security", "update", "onboarding", "benefits", "travel", "expense", "approval", "schedule", "workshop", "webinar", "partner", "legal", "review", "compliance", "quarterly", "annual", "target", "pipeline"])


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


@dataclass
class Plan:
    events: int
    accounts: int
    days: int
    vocab: int
    chunk: int
    seed: int = 11


def vocabulary(plan: Plan, rng: np.random.Generator) -> list[str]:
    """Conversation subjects (each belongs to a small thread of people) + everyday common ones."""
    syllables = np.array([a + b for a in "bcdfghklmnprstvz" for b in ("a", "e", "i", "o", "u", "ai", "ou")])
    lexicon = np.unique(["".join(rng.choice(syllables, int(rng.integers(2, 4)))) for _ in range(8000)])
    lexicon = np.concatenate([WORDS, lexicon])  # business words and names, projects, places …
    idx = rng.integers(0, len(lexicon), size=(plan.vocab, 5))
    subjects = [" ".join(lexicon[row[:int(k)]]).capitalize() + f" {n}"
                for row, k, n in zip(idx, rng.integers(3, 6, plan.vocab), rng.integers(1, 10_000, plan.vocab))]
    subjects[:20] = ["Quick question", "Meeting notes", "Lunch?", "Call me", "Updated deck", "Thanks!", "FYI",
                     "Agenda for tomorrow", "Weekly report", "Out today", "Draft attached", "Can you review",
                     "Follow up", "Reminder", "Notes from the call", "Question about the invoice", "Slides",
                     "Timesheet", "Expenses", "Hello"]
    return subjects


LURE_TEMPLATES = ["Action required: verify your payroll account for {w}", "Shared document: {w} bonus review",
                  "Your mailbox is almost full - validate {w} access", "Invoice {w} overdue - please confirm payment",
                  "HR: updated {w} policy acknowledgement required"]


def chunks(plan: Plan, rng: np.random.Generator, activity: np.ndarray, thread_owner: np.ndarray):
    """(account, time, subject id, internal recipients) columns, chunk by chunk."""
    weekday_w = np.array([1.0 if (d % 7) < 5 else 0.08 for d in range(plan.days)])
    day_p = weekday_w / weekday_w.sum()
    hour_w = np.array([0.02] * 7 + [0.6, 1, 1, 1, 1, 0.7, 1, 1, 1, 0.9, 0.5] + [0.1] * 6)
    hour_p = hour_w / hour_w.sum()
    acc_p = activity / activity.sum()
    left = plan.events
    while left > 0:
        n = min(plan.chunk, left)
        left -= n
        common = rng.random(n) < 0.1
        subject = np.where(common, rng.integers(0, 20, n), rng.integers(20, plan.vocab, n))
        # a conversation's messages come from its few participants; common subjects from anyone
        account = np.where(common, rng.choice(plan.accounts, n, p=acc_p),
                           (thread_owner[subject] + rng.integers(0, 4, n)) % plan.accounts)
        when = (START + rng.choice(plan.days, n, p=day_p) * 86400 + rng.choice(24, n, p=hour_p) * 3600
                + rng.integers(0, 3600, n))
        reach = np.minimum(rng.geometric(0.55, n), 40)
        yield account.astype(np.int64), when.astype(np.int64), subject.astype(np.int64), reach.astype(np.int64)


def injected(plan: Plan, rng: np.random.Generator, vocab: list[str]):
    """Bursts (300 sends in an hour from 20 accounts) and five lure campaigns of four senders."""
    bursts, rows = [], []
    for k in range(20):
        a = int(rng.integers(0, plan.accounts))
        t0 = START + int(rng.integers(8, plan.days)) * 86400 + 14 * 3600
        bursts.append((a, t0))
        rows.append((np.full(300, a), t0 + rng.integers(0, 3600, 300), rng.integers(20, plan.vocab, 300),
                     np.full(300, 2)))
    lures = []
    for k, template in enumerate(LURE_TEMPLATES):
        senders = rng.choice(plan.accounts, 4, replace=False)
        t0 = START + int(rng.integers(3, plan.days)) * 86400 + 10 * 3600
        ids = []
        for s in senders:
            for j in range(3):
                vocab.append(template.format(w=str(rng.choice(WORDS))))
                ids.append(len(vocab) - 1)
        n = len(ids)
        rows.append((np.repeat(senders, 3), t0 + rng.integers(0, 5400, n), np.array(ids), np.full(n, 12)))
        lures.append((frozenset(int(s) for s in senders), t0))
    cols = [np.concatenate([r[i] for r in rows]).astype(np.int64) for i in range(4)]
    return cols, bursts, lures


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--events", type=int, default=10_000_000)
    ap.add_argument("--accounts", type=int, default=20_000)
    ap.add_argument("--days", type=int, default=30)
    ap.add_argument("--vocab", type=int, default=300_000, help="distinct conversation subjects")
    ap.add_argument("--chunk", type=int, default=1_000_000)
    ap.add_argument("--debug", action="store_true", help="print the campaigns found for the injected templates")
    args = ap.parse_args()
    plan = Plan(args.events, args.accounts, args.days, args.vocab, args.chunk)
    cfg = configuration.Config()
    rng = np.random.default_rng(plan.seed)
    rows: list[tuple[str, float, float, str]] = []
    base_rss = rss_mb()

    t0 = time.perf_counter()
    vocab = vocabulary(plan, rng)
    (inj_acc, inj_when, inj_subj, inj_reach), bursts, lures = injected(plan, rng, vocab)
    activity = rng.lognormal(0, 0.8, plan.accounts)
    thread_owner = rng.integers(0, plan.accounts, len(vocab))
    rows.append(("set-up: vocabulary and injected cases", time.perf_counter() - t0, rss_mb(),
                 f"{len(vocab):,} distinct subjects"))

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
    gen_time = 0.0
    pieces: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
    cand: list[tuple[np.ndarray, ...]] = []
    total = 0
    stream = chunks(plan, rng, activity, thread_owner)
    first = True
    while True:
        g0 = time.perf_counter()
        try:
            acc, when, subj, reach = next(stream)
        except StopIteration:
            break
        if first:  # the injected cases travel in the first chunk
            acc, when, subj, reach = (np.concatenate([a, b]) for a, b in
                                      zip((acc, when, subj, reach), (inj_acc, inj_when, inj_subj, inj_reach)))
            first = False
        gen_time += time.perf_counter() - g0
        total += len(acc)
        pieces.append(V.aggregate(acc, when, cfg.send_volume.window_minutes))
        lab = labels[subj]
        keep = L.candidate_mask(lab, acc, when, reach, cfg.lures)
        cand.append((acc[keep], when[keep], subj[keep], reach[keep]))
    stream_time = time.perf_counter() - t0 - gen_time
    triples = [np.concatenate([p[i] for p in pieces]) for i in range(3)]
    rows.append(("generate the events (numpy, not analytics)", gen_time, rss_mb(), f"{total:,} events"))
    rows.append(("stream: aggregate per (account, hour) + lure prefilter per chunk", stream_time, rss_mb(),
                 f"{len(triples[0]):,} triples; {sum(len(c[0]) for c in cand):,} lure candidates"))
    del pieces
    gc.collect()

    # -- volume
    t0 = time.perf_counter()
    found = V.detect_bursts(triples[0], triples[1], plan.accounts, cfg.send_volume, weights=triples[2])
    vol_time = time.perf_counter() - t0
    hit = sum(any(b.account == a and b.start <= t < b.end + 3600 for b in found) for a, t in bursts)
    injected_accounts = {a for a, _ in bursts}
    extra = sum(b.account not in injected_accounts for b in found)
    rows.append(("volume: baselines (hour × weekday/weekend, median/IQR) + flag", vol_time, rss_mb(),
                 f"{len(found)} bursts: {hit}/{len(bursts)} injected found, {extra} others"))

    # -- lures on the candidates
    t0 = time.perf_counter()
    acc, when, subj, reach = (np.concatenate([c[i] for c in cand]) for i in range(4))
    # recipients: a conversation goes to the same people every time; a common subject to anyone
    msgs = [L.Message(i, float(t), f"u{a}", vocab[s], internal=tuple(
        f"u{((s * 31 if s >= 20 else a * 7919 + i) + k) % plan.accounts}" for k in range(r)))
            for i, (a, t, s, r) in enumerate(zip(acc.tolist(), when.tolist(), subj.tolist(), reach.tolist()))]
    everything = L.find_campaigns(msgs, cfg.lures)
    campaigns = [c for c in everything if c.suppressed is None]
    if args.debug:  # what became of the clusters that hold the injected templates
        for c in everything:
            if any(t.split("{")[0][:12] in " ".join(c.subjects) for t in LURE_TEMPLATES):
                print("DEBUG", c.suppressed, c.senders[:8], c.subjects[:3], c.reach, c.other_days)
    lure_time = time.perf_counter() - t0
    got = {frozenset(int(s[1:]) for s in c.senders) for c in campaigns}
    lure_hit = sum(any(s <= g for g in got) for s, _ in lures)
    rows.append(("lures: windows, reply storms, templates on the candidates", lure_time, rss_mb(),
                 (f"{len(campaigns)} campaigns: {lure_hit}/{len(lures)} injected found, "
                  f"{len(campaigns) - lure_hit} others")))

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
