#!/usr/bin/env python3
"""``delegatewatch simulate`` throughput and memory: records written per second and peak resident memory
for a given number of records (default 10 million), with every scenario and the default formats.

The tenant size follows the record count (days × users × density); the run writes to a temporary folder
(removed afterwards unless --keep) and is timed end to end, so it includes the writers and the disk.
Peak memory is the largest ``ru_maxrss`` of this process and of the worker processes (each holds one
hour of one day at a time, so it does not grow with the record count).

    .venv/bin/python bench/simulate_bench.py                       # 10 M records
    .venv/bin/python bench/simulate_bench.py --records 1000000 --jobs 2
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "src"))

from delegatewatch.simulate.run import SimConfig, simulate  # noqa: E402

#: records (all default formats) per user per day at density 1.0, measured on the simulator (10 M run)
RECORDS_PER_USER_DAY = 21.0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--records", type=int, default=10_000_000)
    ap.add_argument("--days", type=int, default=30)
    ap.add_argument("--density", type=float, default=1.0)
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--dir", type=Path, default=None, help="parent folder for the output (default: temp)")
    ap.add_argument("--keep", action="store_true")
    args = ap.parse_args()
    users = max(60, round(args.records / (args.days * args.density * RECORDS_PER_USER_DAY)))
    cfg = SimConfig(users=users, days=args.days, seed=args.seed, density=args.density, jobs=args.jobs)
    out = Path(tempfile.mkdtemp(prefix="simbench-", dir=args.dir))
    cpu0 = os.times()
    t0 = time.perf_counter()
    result = simulate(cfg, out)
    wall = time.perf_counter() - t0
    cpu1 = os.times()
    cpu = (cpu1.user - cpu0.user) + (cpu1.system - cpu0.system) + (cpu1.children_user - cpu0.children_user) + \
        (cpu1.children_system - cpu0.children_system)
    size = sum(p.stat().st_size for p in (out / "evidence").rglob("*") if p.is_file())
    peak = max(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
    if not args.keep:
        shutil.rmtree(out)
    print(f"\n### delegatewatch simulate: {result.records:,} records\n")
    print(f"`simulate --users {users} --days {args.days} --density {args.density} --seed {args.seed} "
          f"--jobs {args.jobs}` (every scenario, default formats)\n")
    print("| records | files | bytes | seconds (wall) | records/s (wall) | CPU seconds | records/s per CPU second "
          "| peak RSS MB (largest process) |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|")
    print(f"| {result.records:,} | {len(result.files):,} | {size:,} | {wall:.1f} | {result.records / wall:,.0f} | "
          f"{cpu:.1f} | {result.records / cpu:,.0f} | {peak / 1024:.0f} |")
    print(f"\nload average at the end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}; nproc {os.cpu_count()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
