#!/usr/bin/env python3
"""Benchmark the hunt on Spark ``local[2]`` against the embedded engine on the same big UAL file.

Uses the data set of ``run_bench.py`` (same sizes, same generator, reused when already there) and
measures, ``--repeat`` times each, interleaved, each in a fresh child process:

  * embedded: ``delegatewatch hunt FILE --format jsonl --output … --quiet`` (wall time, peak RSS);
  * Spark: a child that starts a ``local[2]`` session and runs ``spark_hunt`` — its own clock splits
    the time into session start-up (JVM + SparkContext), planning, the Spark job (sources + rules
    on the executors) and the driver's merge; the wall time of the whole child is shown too.

Findings must be identical (the JSON lines are compared); a difference fails the run. Writes a
Markdown table with machine facts to bench/results/spark-latest.md (spark-latest-small.md for
``--size small``).

    .venv/bin/python bench/spark_bench.py [--size small] [--repeat 3] [--master local[2]]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
sys.path.insert(0, str(BENCH_DIR))
import sim_data  # noqa: E402
import run_bench  # noqa: E402


def child(data: str, output: str, master: str) -> None:
    """In a fresh interpreter: one Spark hunt, timings as JSON on stdout, findings to ``output``."""
    t0 = time.perf_counter()
    from delegatewatch.engine.spark import SparkSettings, SparkTimings, session, spark_hunt
    from delegatewatch.outputs import jsonl

    imported = time.perf_counter()
    spark = session(SparkSettings(master=master, conf={"spark.ui.showConsoleProgress": "false"}))
    spark.sparkContext.setLogLevel("ERROR")
    started = time.perf_counter()
    timings = SparkTimings()
    result = spark_hunt([data], spark=spark, timings=timings)
    done = time.perf_counter()
    with open(output, "w", encoding="utf-8") as out:
        jsonl.write(result.findings, out)
    spark.stop()
    print(json.dumps({"imports": imported - t0, "startup": started - imported, "plan": timings.plan,
                      "scan": timings.scan, "merge": timings.merge, "hunt": done - started,
                      "units": timings.units, "findings": len(result.findings)}))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size", choices=run_bench.SIZES, default="large")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--master", default="local[2]")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--venv", type=Path, default=REPO / ".venv")
    ap.add_argument("--data-dir", type=Path, default=BENCH_DIR / "data")
    ap.add_argument("--results", type=Path)
    ap.add_argument("--timeout", type=float, default=1800)
    ap.add_argument("--child", nargs=2, metavar=("DATA", "OUTPUT"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        child(*args.child, args.master)
        return 0

    records, grants, fname = run_bench.SIZES[args.size]
    data = args.data_dir / fname
    sim_data.generate(data, sim_data.default_truth_path(data), records, grants, args.seed,
                          jobs=os.cpu_count() or 1)
    python = str(args.venv / "bin" / "python") if (args.venv / "bin" / "python").exists() else sys.executable
    tmp = Path(tempfile.mkdtemp(prefix="delegatewatch-spark-bench-"))
    emb_out, spark_out = tmp / "embedded.jsonl", tmp / "spark.jsonl"
    embedded_cmd = [str(Path(python).parent / "delegatewatch"), "hunt", str(data), "--format", "jsonl",
                    "--output", str(emb_out), "--quiet"]
    spark_cmd = [python, str(Path(__file__).resolve()), "--master", args.master, "--child", str(data), str(spark_out)]
    env_note = os.environ.get("PYTHONPATH", "")
    run_bench.subprocess.run(["cat", str(data)], stdout=run_bench.subprocess.DEVNULL, check=True)  # warm cache

    embedded: list[run_bench.Run] = []
    spark_runs: list[tuple[run_bench.Run, dict]] = []
    for i in range(args.repeat):
        print(f"== round {i + 1}/{args.repeat}", flush=True)
        run = run_bench.measure(embedded_cmd, args.timeout, python)
        if run.returncode != 0:
            print(run.stderr[-3000:], file=sys.stderr)
            return 1
        embedded.append(run)
        run = run_bench.measure(spark_cmd, args.timeout, python)
        if run.returncode != 0:
            print(run.stderr[-3000:], file=sys.stderr)
            return 1
        spark_runs.append((run, json.loads(run.stdout.strip().splitlines()[-1])))
        if emb_out.read_bytes() != spark_out.read_bytes():
            print("FINDINGS DIFFER between the embedded and the Spark hunt", file=sys.stderr)
            return 1

    def med(values: list[float]) -> float:
        return statistics.median(values)

    size = data.stat().st_size
    e_sec = med([r.seconds for r in embedded])
    s_wall = med([r.seconds for r, _ in spark_runs])
    part = {k: med([t[k] for _, t in spark_runs]) for k in ("imports", "startup", "plan", "scan", "merge", "hunt")}
    t = spark_runs[0][1]
    facts = run_bench.machine_facts(python)
    lines = [
        f"# Spark benchmark ({args.size}: {records:,} records, {size / 1e9:.2f} GB)", "",
        f"Median of {args.repeat} interleaved runs, page cache warm. Findings identical in every run "
        f"({t['findings']} findings; {t['units']} units = byte ranges on Spark).", "",
        "| engine | seconds | MB/s | notes |", "|---|---:|---:|---|",
        f"| embedded: `delegatewatch hunt FILE --format jsonl` | {e_sec:.2f} | {size / 1e6 / e_sec:,.0f} | "
        f"whole process; peak RSS {med([r.maxrss_kb for r in embedded]) / 1024:.0f} MB |",
        f"| Spark `{args.master}`: whole child process | {s_wall:.2f} | {size / 1e6 / s_wall:,.0f} | "
        "interpreter, imports, JVM start, hunt, stop |",
        f"| Spark: session start-up (JVM + SparkContext) | {part['startup']:.2f} | | paid once per session |",
        f"| Spark: hunt on a running session | {part['hunt']:.2f} | {size / 1e6 / part['hunt']:,.0f} | "
        f"plan {part['plan']:.2f} + Spark job {part['scan']:.2f} + driver merge {part['merge']:.2f} |",
        "", "Machine: " + ", ".join(f"{k} {v}" for k, v in facts.items()), "",
        "Commands:", "", "```", " ".join(embedded_cmd), " ".join(spark_cmd),
        f"# PYTHONPATH={env_note}" if env_note else "", "```", "",
    ]
    text = "\n".join(lines)
    print(text)
    results = args.results or BENCH_DIR / "results" / ("spark-latest.md" if args.size == "large"
                                                      else "spark-latest-small.md")
    results.parent.mkdir(parents=True, exist_ok=True)
    results.write_text(text)
    print(f"written: {results}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
