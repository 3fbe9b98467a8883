"""``delegatewatch simulate``: write a simulated tenant (evidence, directory, allow-list, labels)."""

from __future__ import annotations

import os
import sys

import click
from rich.markup import escape

from delegatewatch.cli import _console
from delegatewatch.simulate.scenarios import SCENARIOS
from delegatewatch.simulate.writers import DEFAULT_FORMATS, FORMATS


def _names(value: str | None, allowed: tuple[str, ...], what: str) -> tuple[str, ...] | None:
    if value is None:
        return None
    names = tuple(dict.fromkeys(n.strip() for n in value.split(",") if n.strip()))
    if names == ("all",):
        return allowed
    if names == ("none",):
        return ()
    bad = [n for n in names if n not in allowed]
    if bad:
        raise click.BadParameter(f"unknown {what} {', '.join(bad)}; choose from {', '.join(allowed)} (or 'all')")
    return names


@click.command("simulate")
@click.option("--users", type=click.IntRange(min=60), default=200, show_default=True, help="Ordinary user accounts.")
@click.option("--days", type=click.IntRange(min=14), default=14, show_default=True, help="Days of activity.")
@click.option("--scenarios", default="all", show_default=True,
              help=f"Comma-separated attack scenarios, 'all' or 'none': {', '.join(SCENARIOS)}.")
@click.option("--formats", default=",".join(DEFAULT_FORMATS), show_default=True,
              help=f"Comma-separated output formats, or 'all': {', '.join(FORMATS)}. Several UAL dialects take "
                   "turns by day.")
@click.option("--seed", type=int, default=1, show_default=True, help="Same seed and options, same bytes.")
@click.option("--start", default="2025-12-01", show_default=True, help="First day (UTC, YYYY-MM-DD).")
@click.option("--density", type=float, default=1.0, show_default=True,
              help="Multiplies every background rate (docs/simulate.md).")
@click.option("--instances", type=click.IntRange(min=1), default=1, show_default=True,
              help="Instances of each scenario (each on its own day and accounts).")
@click.option("--jobs", "-j", type=click.IntRange(min=1), default=1, show_default=True,
              help="Worker processes (days are split between them; the output does not change).")
@click.option("--out", "out", type=click.Path(file_okay=False), required=True, help="Output folder.")
def simulate_command(users: int, days: int, scenarios: str, formats: str, seed: int, start: str, density: float,
                     instances: int, jobs: int, out: str) -> None:
    """Write a simulated tenant with labelled attack scenarios: OUT/evidence (hunt it), OUT/directory.csv,
    OUT/delegatewatch.toml (the organisation's expected delegation) and OUT/labels.json (ground truth)."""
    from delegatewatch.simulate.run import SimConfig, simulate

    err = _console(False, stderr=True)
    try:
        cfg = SimConfig(users=users, days=days, seed=seed, start=start, density=density, instances=instances, jobs=jobs,
                        scenarios=_names(scenarios, tuple(SCENARIOS), "scenario") or (),
                        formats=_names(formats, FORMATS, "format") or ())
        cfg.check()
        if not cfg.formats:
            raise ValueError("--formats names no format")
        result = simulate(cfg, out)
    except (ValueError, OSError) as exc:
        err.print(f"[red]error:[/red] {escape(str(exc))}")
        sys.exit(2)
    rate = result.records / result.seconds if result.seconds else 0.0
    console = _console(False)
    console.print(f"Wrote {result.records:,} records in {len(result.files):,} files to "
                  f"{escape(os.path.join(out, 'evidence'))} in {result.seconds:.1f} s ({rate:,.0f} records/s)")
    for inst in result.instances[:20]:
        expected = sum(r.expect for r in inst.records)
        console.print(f"  {inst.id}: {len(inst.records)} records ({expected} expected to be flagged"
                      + (f"; expects {', '.join(inst.expect_rules)}" if inst.expect_rules else "") + ")")
    if len(result.instances) > 20:
        console.print(f"  … and {len(result.instances) - 20} more instances (labels.json)")
    if result.dropped:
        err.print(f"[yellow]note:[/yellow] no format chosen for some records of {', '.join(result.dropped)}")
    console.print(f"Hunt:     delegatewatch hunt {escape(out)}/evidence --directory {escape(out)}/directory.csv "
                  f"--config {escape(out)}/delegatewatch.toml --format jsonl --output findings.jsonl")
    console.print(f"Evaluate: delegatewatch evaluate --labels {escape(out)}/labels.json --findings findings.jsonl")
