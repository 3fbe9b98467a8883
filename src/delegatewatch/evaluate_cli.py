"""``delegatewatch evaluate``: precision and recall of findings against a simulation's labels."""

from __future__ import annotations

import json
import sys

import click
from rich.markup import escape
from rich.table import Table

from delegatewatch.cli import _console
from delegatewatch.findings.model import SEVERITIES


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{value:.0%}"


@click.command("evaluate")
@click.option("--labels", "labels", type=click.Path(exists=True, dir_okay=False), required=True,
              help="labels.json written by delegatewatch simulate.")
@click.option("--findings", "findings", type=click.Path(exists=True, dir_okay=False), required=True,
              help="Findings JSON lines (hunt --format jsonl).")
@click.option("--min-severity", type=click.Choice(SEVERITIES), default="low", show_default=True,
              help="Findings below this severity are not counted (allow-listed ones are informational).")
@click.option("--format", "fmt", type=click.Choice(("table", "json")), default="table", show_default=True)
@click.option("--check", is_flag=True,
              help="Exit 1 when a scenario instance is missed or a background record has a medium+ finding.")
def evaluate_command(labels: str, findings: str, min_severity: str, fmt: str, check: bool) -> None:
    """Precision and recall per scenario and overall, and the findings on background records."""
    from delegatewatch.evaluate import evaluate_files
    from delegatewatch.simulate.labels import LabelsError

    err = _console(False, stderr=True)
    try:
        result = evaluate_files(labels, findings, min_severity=min_severity)
    except (LabelsError, OSError, UnicodeDecodeError) as exc:
        err.print(f"[red]error:[/red] {escape(str(exc))}")
        sys.exit(2)
    for problem in result.problems[:20]:
        err.print(f"[yellow]skipped:[/yellow] {escape(problem)}")
    if len(result.problems) > 20:
        err.print(f"[yellow]skipped:[/yellow] … and {len(result.problems) - 20} more lines")
    loud = result.background_at_or_above("medium")
    missed = sum(s.instances - s.instances_found for s in result.scenarios.values())
    if fmt == "json":
        click.echo(json.dumps(result.to_dict(), indent=1))
    else:
        console = _console(False)
        table = Table(title=f"Scenarios (findings at {min_severity} or above)")
        for col in ("scenario", "instances found", "expected detections found", "recall", "findings on it",
                    "precision", "missed"):
            table.add_column(col, justify="left" if col in ("scenario", "missed") else "right")
        for s in result.scenarios.values():
            table.add_row(s.scenario, f"{s.instances_found}/{s.instances}", f"{s.expected_found}/{s.expected}",
                          _pct(s.recall), str(s.findings), _pct(s.precision), escape("; ".join(s.missed[:3])))
        console.print(table)
        by_sev = result.to_dict()["background_by_severity"]
        console.print(f"Overall: recall {_pct(result.recall)}, precision {_pct(result.precision)} "
                      f"({result.attributed} of {result.findings} findings are on scenario records)")
        console.print("Findings on background records: " + (", ".join(
            f"{by_sev[s]} {s}" for s in reversed(SEVERITIES) if by_sev.get(s)) or "none"))
        for f in loud[:20]:
            console.print(f"  {escape(str(f.get('severity')))} {escape(str(f.get('rule')))}: "
                          f"{escape(str(f.get('summary')))}")
    if check and (missed or loud):
        sys.exit(1)
