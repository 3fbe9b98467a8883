#!/usr/bin/env python3
"""Benchmark `delegatewatch hunt` against DuckDB and raw-I/O floors on a big UAL file.

Steps (all in one run, so the numbers are comparable as ratios on a noisy machine):
  1. build the benchmark file with the simulator (sim_data.py; reused when already there);
  2. warm the page cache (one untimed `cat`);
  3. measure, `--repeat` times each and interleaved round-robin, wall time and
     peak RSS of: the full hunt, the DuckDB reference query, `wc -l` and `cat`;
  4. print a Markdown table and write it, with machine facts and the exact
     commands, to bench/results/latest.md (latest-small.md for --size small).

Each measured command runs in its own child process, forked by the tiny
spawn_measure.py launcher; peak RSS is that child's `ru_maxrss` from os.wait4
(on Linux this also covers the child's own waited-for descendants). A child's
ru_maxrss never reads below the launcher's own RSS (a few MB), so that floor is
measured with `true` and printed; values at the floor mean "no more than that".
The reported figures are medians over the repeats.

Usage:
    .venv/bin/python bench/run_bench.py                 # 1M records, ~1.1 GB
    .venv/bin/python bench/run_bench.py --size small    # 100k records, quick smoke run
    .venv/bin/python bench/run_bench.py --hunt-cmd '{venv}/bin/delegatewatch hunt {file} --output {output}'
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import statistics
import subprocess
import sys
import tempfile
import threading
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
sys.path.insert(0, str(BENCH_DIR))
import duckdb_query  # noqa: E402
import sim_data  # noqa: E402

SIZES = {  # name: (records, injected grants, file name)
    "large": (1_000_000, 300, "ual_1m.ndjson"),
    "small": (100_000, 30, "ual_100k.ndjson"),
}
DEFAULT_HUNT = "{venv}/bin/delegatewatch hunt {file} --format jsonl --output {output} --quiet"


@dataclass
class Run:
    seconds: float
    maxrss_kb: int
    returncode: int
    stdout: str
    stderr: str


@dataclass
class Method:
    name: str
    cmd: list[str]
    discard_stdout: bool = False  # send stdout to /dev/null instead of capturing it
    runs: list[Run] = field(default_factory=list)
    error: str | None = None

    @property
    def seconds(self) -> float | None:
        return statistics.median(r.seconds for r in self.runs) if self.runs else None

    @property
    def rss_mb(self) -> float | None:
        return statistics.median(r.maxrss_kb for r in self.runs) / 1024 if self.runs else None


def measure(cmd: list[str], timeout: float, python: str, discard_stdout: bool = False) -> Run:
    """Run cmd through spawn_measure.py; return wall time and the command's peak RSS.

    The launcher (not this process) forks the command, because a child's
    ru_maxrss starts at its parent's RSS; see spawn_measure.py.
    """
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err, \
            tempfile.NamedTemporaryFile("r", suffix=".rusage") as res:
        launcher = [python, "-S", "-I", str(BENCH_DIR / "spawn_measure.py"), res.name, *cmd]
        # Capturing `cat` would write the whole file to a temp file; it must go to /dev/null.
        proc = subprocess.Popen(launcher, stdout=subprocess.DEVNULL if discard_stdout else out,
                                stderr=err, stdin=subprocess.DEVNULL,
                                start_new_session=True)
        # Kill the whole process group (launcher + command) if it runs away.
        timer = threading.Timer(timeout, lambda: _kill_group(proc.pid))
        timer.start()
        try:
            proc.wait()
        finally:
            timer.cancel()
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read().decode(errors="replace"), err.read().decode(errors="replace")
        fields = res.read().split()
        if len(fields) != 3:  # launcher itself died (killed by the timeout)
            return Run(timeout, 0, proc.returncode or -9, stdout, stderr or "killed (timeout?)")
        return Run(float(fields[0]), int(fields[1]), int(fields[2]), stdout, stderr)


def _kill_group(pid: int) -> None:
    try:
        os.killpg(pid, 9)
    except ProcessLookupError:
        pass


def machine_facts(python: str) -> dict[str, str]:
    facts = {"date (UTC)": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M")}
    facts["nproc"] = str(len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count())
    try:
        cpuinfo = Path("/proc/cpuinfo").read_text()
        facts["CPU"] = next(line.split(":", 1)[1].strip() for line in cpuinfo.splitlines()
                            if line.startswith("model name"))
    except (OSError, StopIteration):
        facts["CPU"] = platform.processor() or "unknown"
    try:
        kb = int(next(line.split()[1] for line in Path("/proc/meminfo").read_text().splitlines()
                      if line.startswith("MemTotal:")))
        facts["memory"] = f"{kb / 1024 / 1024:.1f} GiB"
    except (OSError, StopIteration):
        facts["memory"] = "unknown"
    facts["kernel"] = platform.release()
    facts["load average at start"] = " ".join(f"{x:.2f}" for x in os.getloadavg())
    # Versions as seen by the interpreter that runs the measured commands.
    probe = ("import sys, importlib.metadata as m\n"
             "def v(p):\n"
             "    try: return m.version(p)\n"
             "    except Exception: return 'not installed'\n"
             "print(sys.version.split()[0], v('duckdb'), v('orjson'), v('delegatewatch'))")
    try:
        py, duck, orj, dw = subprocess.run([python, "-c", probe], capture_output=True, text=True,
                                           check=True).stdout.split()
        facts.update({"Python": py, "duckdb": duck, "orjson": orj, "delegatewatch": dw})
    except (subprocess.CalledProcessError, ValueError, OSError):
        facts["Python"] = platform.python_version()
    try:  # read-only; fails harmlessly when the repo has no commit yet
        head = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"],
                              capture_output=True, text=True)
        facts["repo HEAD"] = head.stdout.strip() if head.returncode == 0 else "(no commit)"
        dirty = subprocess.run(["git", "-C", str(REPO), "status", "--porcelain", "--", "src"],
                               capture_output=True, text=True)
        if dirty.returncode == 0 and dirty.stdout.strip():
            facts["repo HEAD"] += " + uncommitted changes in src/"
    except OSError:
        pass
    return facts


def count_lines(path: Path) -> int:
    n = 0
    with open(path, "rb") as fh:
        while block := fh.read(1 << 20):
            n += block.count(b"\n")
    return n


def truth_ids_found(findings: Path, truth: dict) -> tuple[int, int]:
    """How many injected grant Ids (and system grant Ids) appear anywhere in the findings.

    Format-agnostic on purpose: it only assumes findings quote the record Id.
    """
    try:
        text = findings.read_text(errors="replace")
    except OSError:
        return 0, 0
    return (sum(e["Id"] in text for e in truth["grants"]),
            sum(e["Id"] in text for e in truth["system_grants"]))


def summary(error: str | None) -> str:
    """One line for an error: the exit status plus the last line of stderr."""
    if not error:
        return "not run"
    lines = [ln.strip() for ln in error.splitlines() if ln.strip()]
    return lines[0] if len(lines) == 1 else f"{lines[0].split(':')[0]}: {lines[-1]}"


def fmt(x: float | None, spec: str) -> str:
    return "–" if x is None else format(x, spec)


def render(methods: list[Method], reference: Method | None, size_bytes: int, floor_mb: float) -> str:
    rows = ["| method | seconds | MB/s | peak RSS MB | ratio to DuckDB query |",
            "|---|---:|---:|---:|---:|"]
    ref = reference.seconds if reference else None
    for m in methods:
        s = m.seconds
        if s is None:
            rows.append(f"| {m.name} | failed | – | – | – |")
            continue
        ratio = f"{s / ref:.2f}×" if ref else "–"
        rss = m.rss_mb
        # Within 10 % of the launcher floor the true peak is unknown, only bounded.
        rss_s = f"≤ {floor_mb:.0f} (floor)" if rss is not None and rss <= floor_mb * 1.1 else fmt(rss, ",.0f")
        rows.append(f"| {m.name} | {s:.2f} | {size_bytes / 1e6 / s:,.0f} | {rss_s} | {ratio} |")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", choices=SIZES, default="large",
                    help="large: 1M records (~1.1 GB); small: 100k records (smoke run)")
    ap.add_argument("--repeat", type=int, default=3, help="runs per method; medians are reported (default 3)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--hunt-cmd", help="hunt command; {file} and {output} are substituted, {venv} is the venv "
                                       f"(default: {DEFAULT_HUNT!r})")
    ap.add_argument("--venv", type=Path, default=REPO / ".venv")
    ap.add_argument("--data-dir", type=Path, default=BENCH_DIR / "data")
    ap.add_argument("--results", type=Path, help="Markdown output (default bench/results/latest.md, "
                                                 "latest-small.md for --size small)")
    ap.add_argument("--force-generate", action="store_true", help="regenerate the data file")
    ap.add_argument("--timeout", type=float, default=1800, help="seconds before a measured run is killed")
    args = ap.parse_args(argv)
    if args.repeat < 1:
        ap.error("--repeat must be >= 1")

    records, grants, fname = SIZES[args.size]
    data = args.data_dir / fname
    truth_path = sim_data.default_truth_path(data)
    results = args.results or BENCH_DIR / "results" / ("latest.md" if args.size == "large" else "latest-small.md")
    python = str(args.venv / "bin" / "python") if (args.venv / "bin" / "python").exists() else sys.executable

    # 1. data -------------------------------------------------------------------
    print(f"== data: {data}", flush=True)
    meta = sim_data.generate(data, truth_path, records, grants, args.seed,
                                 jobs=os.cpu_count() or 1, force=args.force_generate)
    size = data.stat().st_size
    truth = json.loads(truth_path.read_text())
    gen_note = ("reused existing file" if meta.get("reused")
                else f"generated in {meta['generation_seconds']:.1f} s")

    # 2. methods ----------------------------------------------------------------
    findings = Path(tempfile.gettempdir()) / f"delegatewatch-bench-{args.size}-{os.getpid()}.findings.jsonl"
    hunt_template = args.hunt_cmd or DEFAULT_HUNT
    hunt_cmd = [part.format(file=data, output=findings, venv=args.venv)
                for part in shlex.split(hunt_template)]
    duck = {v: Method(f"DuckDB filtered query ({v})",
                      [python, str(BENCH_DIR / "duckdb_query.py"), "--variant", v, str(data)])
            for v in duckdb_query.VARIANTS}
    hunt = Method("delegatewatch hunt (full)", hunt_cmd)
    # The same hunt with the analytics feeds off (bench/rules_only.toml): every rule, as in the
    # foundation issue's target, without send volume, lures, the ledger and incidents.
    rules_findings = findings.with_suffix(".rules-only.jsonl")
    hunt_rules = Method("delegatewatch hunt (rules only)",
                        [part.format(file=data, output=rules_findings, venv=args.venv) for part in shlex.split(hunt_template)]
                        + ["--config", str(BENCH_DIR / "rules_only.toml")])
    floors = [Method("wc -l", ["wc", "-l", str(data)]), Method("cat > /dev/null", ["cat", str(data)], discard_stdout=True)]

    # The launcher's own RSS is the lowest peak RSS any command can show.
    floor_mb = statistics.median(measure(["true"], 60, python).maxrss_kb for _ in range(3)) / 1024

    # Warm the page cache so no method pays for the first read from disk.
    subprocess.run(["cat", str(data)], stdout=subprocess.DEVNULL, check=True)

    # The DuckDB reference is the first variant that works (the brief's query is
    # `auto`). The extra two_column run is kept as a data point when it is not
    # the reference: it shows what schema inference costs.
    reference = None
    for v in duckdb_query.VARIANTS:
        run = measure(duck[v].cmd, args.timeout, python)
        if run.returncode == 0 and run.stdout.strip().isdigit():
            duck[v].runs.append(run)
            reference = duck[v]
            break
        duck[v].error = (run.stderr.strip().splitlines() or [f"exit {run.returncode}"])[-1]
        print(f"DuckDB variant {v} failed: {duck[v].error}", file=sys.stderr)
    extra_duck = [duck["two_column"]] if reference is not duck["two_column"] else []
    methods = [hunt, hunt_rules] + ([reference] if reference else []) + extra_duck + floors

    # 3. measure, interleaved so drift on a shared machine hits every method alike
    for rep in range(args.repeat):
        for m in methods:
            if m.error or (m is reference and rep == 0):
                continue  # failed before / reference already ran once above
            if m is hunt and findings.exists():
                findings.unlink()
            if m is hunt_rules and rules_findings.exists():
                rules_findings.unlink()
            run = measure(m.cmd, args.timeout, python, m.discard_stdout)
            if run.returncode != 0:
                m.error = f"exit {run.returncode}: " + (run.stderr.strip()[-2000:] or "(no stderr)")
                print(f"!! {m.name} failed ({summary(m.error)}); continuing without it",
                      file=sys.stderr)
                m.runs.clear()
                continue
            m.runs.append(run)
            print(f"   run {rep + 1}/{args.repeat} {m.name}: {run.seconds:.2f} s, "
                  f"{run.maxrss_kb / 1024:.0f} MB", flush=True)

    # 4. report -----------------------------------------------------------------
    duck_count = int(reference.runs[-1].stdout.strip()) if reference and reference.runs else None
    expected = truth["expected_fullaccess_query_count"]
    n_findings = count_lines(findings) if hunt.runs and findings.exists() else None
    found, found_sys = truth_ids_found(findings, truth) if n_findings is not None else (0, 0)

    table = render(methods, reference, size, floor_mb)
    lines = [
        f"# delegatewatch benchmark ({args.size}: {records:,} records)",
        "",
        f"File: `{data.relative_to(REPO) if data.is_relative_to(REPO) else data}` — {size:,} bytes "
        f"({size / 1e6:,.0f} MB, {truth['records']:,} records, {size / truth['records']:.0f} B/record), "
        f"seed {args.seed}, {gen_note}. "
        f"Page cache warm; median of {args.repeat} run(s) per method, interleaved. "
        "MB = 10^6 bytes; peak RSS is the measured process tree's `ru_maxrss` (os.wait4 in "
        f"bench/spawn_measure.py; launcher floor {floor_mb:.1f} MB, so smaller peaks show as the floor).",
        "",
        table,
        "",
        "## Answers",
        "",
    ]
    if hunt.runs:
        lines.append(f"- hunt findings written: **{n_findings:,}** "
                     f"({n_findings / records:.4%} of records; {truth['injected_grants']} attack-shaped grants "
                     f"injected, {truth['fullaccess_add_mailboxpermission_system']} routine system grants)")
        lines.append(f"- injected grant Ids present in the findings: **{found}/{len(truth['grants'])}**; "
                     f"system DiscoverySearchMailbox grant Ids present: {found_sys}/{len(truth['system_grants'])} "
                     "(should be suppressed or low severity)")
    else:
        lines.append(f"- hunt: **failed**: `{summary(hunt.error)}`")
    if hunt_rules.runs and rules_findings.exists():
        rules_found, _ = truth_ids_found(rules_findings, truth)
        lines.append(f"- rules-only hunt findings: **{count_lines(rules_findings):,}**; injected grant Ids present: "
                     f"**{rules_found}/{len(truth['grants'])}**")
    if duck_count is not None:
        ok = "matches" if duck_count == expected else "**DOES NOT match**"
        lines.append(f"- DuckDB count (FullAccess `Add-MailboxPermission`): **{duck_count}** — {ok} the truth file's "
                     f"{expected} ({truth['fullaccess_add_mailboxpermission_injected']} injected + "
                     f"{truth['fullaccess_add_mailboxpermission_system']} system)")
        lines.append(f"- DuckDB variant used as reference: `{reference.cmd[reference.cmd.index('--variant') + 1]}`")
    for v, m in duck.items():
        if m.error:
            lines.append(f"- DuckDB variant `{v}` failed: `{m.error}`")
    if hunt.error and hunt.runs == []:
        lines += ["", "### Hunt error", "", "```", hunt.error[-3000:], "```"]

    lines += ["", "## Commands", ""]
    for m in methods:
        lines.append(f"- {m.name}: `{shlex.join(m.cmd)}`" + (" (stdout to /dev/null)" if m.discard_stdout else ""))
    if reference:
        var = reference.cmd[reference.cmd.index("--variant") + 1]
        lines.append(f"- reference SQL: `{duckdb_query.sql(str(data), var)}`")
    gen_cmd = [python, "bench/sim_data.py", "--records", str(records), "--grants", str(grants),
               "--seed", str(args.seed), "--out", str(data)]
    lines.append(f"- data: `{shlex.join(gen_cmd)}`")
    lines += ["", "## Machine", ""]
    lines += [f"- {k}: {v}" for k, v in machine_facts(python).items()]
    lines += ["", "The machine may be shared and noisy; compare methods within one run, as ratios.", ""]
    report = "\n".join(lines)

    print()
    print(report)
    results.parent.mkdir(parents=True, exist_ok=True)
    results.write_text(report)
    results.with_suffix(".json").write_text(json.dumps({
        "size": args.size, "records": records, "bytes": size, "seed": args.seed, "repeat": args.repeat,
        "rss_floor_kb": round(floor_mb * 1024),
        "methods": [{"name": m.name, "cmd": m.cmd, "seconds": [r.seconds for r in m.runs],
                     "maxrss_kb": [r.maxrss_kb for r in m.runs], "median_seconds": m.seconds,
                     "error": m.error} for m in methods],
        "hunt_findings": n_findings, "truth_grant_ids_in_findings": found,
        "duckdb_count": duck_count, "expected_duckdb_count": expected,
    }, indent=2) + "\n")
    print(f"wrote {results} and {results.with_suffix('.json').name}")
    if findings.exists():
        findings.unlink()
    return 0 if duck_count == expected else 1


if __name__ == "__main__":
    sys.exit(main())
