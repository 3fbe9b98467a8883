"""The permission ledger's cost: ``hunt`` with ``[ledger] enabled`` false and true on the 1 M-record
UAL benchmark file (the ledger parses and keeps every permission record), and ``delegatewatch ledger``
(read + replay + one query) on the same file. Median of 3, interleaved; peak RSS with ``os.wait4``.

    .venv/bin/python bench/ledger_bench.py [--data bench/data/ual_1m.ndjson]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def measure(cmd: list[str]) -> tuple[float, int]:
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _, status, usage = os.wait4(proc.pid, 0)
    if status != 0:
        raise SystemExit(f"failed ({status}): {' '.join(cmd)}")
    return time.perf_counter() - start, usage.ru_maxrss // 1024


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default=str(HERE / "data" / "ual_1m.ndjson"))
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    if not Path(args.data).exists():
        subprocess.run([sys.executable, str(HERE / "sim_data.py"), "--records", "1000000", "--grants", "300",
                        "--out", args.data], check=True)  # the same file as run_bench.py
    exe = str(Path(sys.executable).with_name("delegatewatch"))
    tmp = Path(tempfile.mkdtemp())
    commands = {}
    for state in ("false", "true"):
        cfg = tmp / f"ledger_{state}.toml"
        cfg.write_text(f"[ledger]\nenabled = {state}\n", encoding="utf-8")
        commands[f"hunt, [ledger] enabled = {state}"] = [exe, "hunt", args.data, "--config", str(cfg), "--format",
                                                         "jsonl", "-o", str(tmp / "out.jsonl"), "-q"]
    commands["ledger --mailbox … --at …"] = [exe, "ledger", args.data, "--mailbox", "user1@contoso.com", "--at",
                                             "2025-12-15", "-q"]
    results: dict[str, list[tuple[float, int]]] = {k: [] for k in commands}
    for _ in range(args.runs):
        for name, cmd in commands.items():
            results[name].append(measure(cmd))
    print(f"| command ({Path(args.data).name}) | median s | peak RSS MiB |\n|---|---|---|")
    for name, runs in results.items():
        print(f"| {name} | {statistics.median(r[0] for r in runs):.2f} | {max(r[1] for r in runs)} |")


if __name__ == "__main__":
    main()
