"""EVTX throughput: delegatewatch's reader against iterating the same file with the ``evtx``
package alone, in the same run.

The biggest real ``.evtx`` under ``../shared/corpus/real`` is read ``--passes`` times by each
method, round-robin (so page cache and CPU frequency treat them alike); events/s is the median
pass. Methods:

* ``evtx records_json`` – ``PyEvtxParser(path).records_json()``: the Rust parse and JSON rendering only;
* ``evtx + orjson.loads`` – the same plus decoding each record's JSON (the least any consumer pays);
* ``delegatewatch reader`` – ``sources.read_file``: sniffing, parse, flattening to the Windows
  record, Exchange-cmdlet conversion, 5136 pairing;
* each again with ``number_of_threads=1`` (what one hunt worker process uses per file when many
  files run in parallel).

Real files are small (≈1 MB, tens of records), so each pass reads the file ``--repeat`` times.

    .venv/bin/python bench/evtx_bench.py [--passes 5] [--repeat 200] [--file PATH]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import orjson

ROOT = Path(__file__).resolve().parent.parent
CORPUS = ROOT.parent / "shared" / "corpus" / "real"


def _enable_evtx_sniffing() -> None:
    """Until sources/opening.py hands EVTX files to the readers (one-line change), do it here."""
    from delegatewatch.sources import opening

    if opening._sniff_bytes(opening.EVTX_MAGIC + b"\0" * 64).not_text:
        original = opening._sniff_bytes

        def sniff(head: bytes) -> opening.Opened:
            if head.startswith(opening.EVTX_MAGIC):
                return opening.Opened(None, 0, False, head[:8])
            return original(head)
        opening._sniff_bytes = sniff


def evtx_only(path: str, threads: int, decode: bool) -> int:
    import evtx

    n = 0
    for rec in evtx.PyEvtxParser(path, number_of_threads=threads).records_json():
        if decode:
            orjson.loads(rec["data"])
        n += 1
    return n


def ours(path: str, threads: int) -> int:
    from delegatewatch.records import ReadStats
    from delegatewatch.sources import read_file
    from delegatewatch.sources.formats import windows_evtx

    windows_evtx.THREADS = threads
    stats = ReadStats()
    n = sum(1 for _ in read_file(path, stats))
    if stats.skipped:
        raise SystemExit(f"{path}: {stats.issues[:3]}")
    return n


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--passes", type=int, default=5)
    ap.add_argument("--repeat", type=int, default=200, help="reads of the file per pass")
    ap.add_argument("--file", help="an .evtx file (default: the biggest real one)")
    args = ap.parse_args()
    if args.file:
        path = args.file
    else:
        files = sorted(CORPUS.rglob("*.evtx"), key=lambda p: p.stat().st_size, reverse=True) if CORPUS.is_dir() else []
        if not files:
            print("no .evtx file: pass --file or provide ../shared/corpus/real", file=sys.stderr)
            return 2
        path = str(files[0])
    _enable_evtx_sniffing()
    methods = {
        "evtx records_json": lambda t: evtx_only(path, t, False),
        "evtx + orjson.loads": lambda t: evtx_only(path, t, True),
        "delegatewatch reader": lambda t: ours(path, t),
    }
    configs = [(name, threads) for threads in (0, 1) for name in methods]
    times: dict[tuple[str, int], list[float]] = {c: [] for c in configs}
    counts: dict[tuple[str, int], int] = {}
    for (name, threads) in configs:  # warm up: page cache, imports, rule-free code paths
        counts[(name, threads)] = methods[name](threads)
    for _ in range(args.passes):
        for (name, threads) in configs:
            t0 = time.perf_counter()
            for _ in range(args.repeat):
                methods[name](threads)
            times[(name, threads)].append(time.perf_counter() - t0)
    size = os.path.getsize(path)
    print(f"File: `{Path(path).name}` ({size / 1e6:.2f} MB, {counts[configs[0]]} records), read {args.repeat}× per pass, "
          f"median of {args.passes} passes, {os.cpu_count()} CPUs, Python {sys.version.split()[0]}\n")
    print("| method | parser threads | events/s | MB/s | vs evtx alone |")
    print("|---|---|---:|---:|---:|")
    for (name, threads) in configs:
        med = statistics.median(times[(name, threads)])
        eps = counts[(name, threads)] * args.repeat / med
        base = counts[("evtx records_json", threads)] * args.repeat / statistics.median(times[("evtx records_json", threads)])
        print(f"| {name} | {threads or 'all cores'} | {eps:,.0f} | {size * args.repeat / med / 1e6:,.1f} | "
              f"{eps / base:.2f}× |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
