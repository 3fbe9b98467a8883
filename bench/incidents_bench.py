"""Grant → use correlation at scale (findings/incidents.py): many grant findings and many more uses
and precursors, most of which join no grant (owner-like noise that passed the LogonType test,
delegations older than the data). Prints a Markdown table (time and peak memory) and whether every
injected chain became one incident with its uses.

    .venv/bin/python bench/incidents_bench.py [--grants 5000] [--activities 500000] [--users 20000]

Only the correlation is timed: records are built in memory as the hunt would hand them over
(findings, typed activities), so the figure is the cost the incidents add after reading.
"""

from __future__ import annotations

import argparse
import random
import resource
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

from delegatewatch.analytics.incident_feed import Activity
from delegatewatch.events.principals import Resolver
from delegatewatch.findings.identities import Identities
from delegatewatch.findings.incidents import build_incidents
from delegatewatch.findings.model import Evidence, Finding

START = datetime(2024, 3, 4, tzinfo=UTC)


def grant(i: int, mailbox: str, grantee: str, t: datetime) -> Finding:
    return Finding(id=f"g{i:08d}", rule="m365_mailbox_full_access_grant", rule_id="x", title="FullAccess",
                   severity="high", time=t.strftime("%Y-%m-%dT%H:%M:%SZ"), attack=["T1098.002"], actor="admin@contoso.com",
                   mailbox=mailbox, grantee=grantee, rights=["FullAccess"], summary="grant",
                   evidence=[Evidence("bench", f"grant-{i}", None)], session_id=f"s{i}")


def use(i: int, actor: str, mailbox: str, t: datetime, what: str = "read") -> Activity:
    return Activity(kind="use", what=what, time=t, actor=actor, target=mailbox, operation="MailItemsAccessed",
                    summary="read", evidence=Evidence("bench", f"use-{i}", None))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--grants", type=int, default=5000)
    ap.add_argument("--activities", type=int, default=500_000)
    ap.add_argument("--users", type=int, default=20_000)
    ap.add_argument("--chains", type=int, default=500)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    rnd = random.Random(args.seed)
    users = [f"user{i:06d}@contoso.com" for i in range(args.users)]
    span = 28 * 86400
    t0 = time.perf_counter()
    findings, activities, chains = [], [], []
    for i in range(args.grants):
        mailbox, grantee = rnd.sample(users, 2)
        t = START + timedelta(seconds=rnd.randrange(span))
        findings.append(grant(i, mailbox, grantee, t))
        if i < args.chains:  # an injected chain: the grantee reads the mailbox within a day
            u = use(len(activities), grantee, mailbox, t + timedelta(seconds=rnd.randrange(86400)))
            activities.append(u)
            chains.append((findings[-1].id, u.evidence.record_id))
    while len(activities) < args.activities:  # uses that join nothing: other actors, other mailboxes
        a, b = rnd.sample(users, 2)
        activities.append(use(len(activities), a, b, START + timedelta(seconds=rnd.randrange(span))))
    activities.sort(key=lambda a: a.time)
    build_s = time.perf_counter() - t0
    t1 = time.perf_counter()
    result = build_incidents(findings, activities, Identities(Resolver()))
    correlate_s = time.perf_counter() - t1
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    by_finding = {fid: inc for inc in result.incidents for fid in inc.findings}
    found = sum(1 for fid, rid in chains
                if rid in {e.record_id for s in by_finding[fid].uses for e in s.evidence})
    print(f"| grants | activities | users | build inputs s | correlate s | activities/s | peak RSS MB | chains found |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|")
    print(f"| {args.grants:,} | {len(activities):,} | {args.users:,} | {build_s:.2f} | {correlate_s:.2f} | "
          f"{len(activities) / correlate_s:,.0f} | {rss:,.0f} | {found}/{len(chains)} |")
    print(f"\nincidents: {len(result.incidents):,}; activities joined no grant: {result.unmatched:,}")


if __name__ == "__main__":
    main()
