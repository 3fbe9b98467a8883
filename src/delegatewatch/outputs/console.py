"""The console: findings table and the run summary, with rich. ``NO_COLOR`` is honoured by rich."""

from __future__ import annotations

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from delegatewatch.engine.hunt import HuntResult
from delegatewatch.findings.model import SEVERITIES

STYLE = {"critical": "bold white on red", "high": "bold red", "medium": "yellow", "low": "cyan",
         "informational": "dim"}


def findings_table(result: HuntResult, console: Console) -> None:
    if not result.findings:
        console.print("No findings.")
        return
    t = Table(title=f"{len(result.findings)} findings", show_lines=True)
    t.add_column("time (UTC)", no_wrap=True)
    t.add_column("severity", no_wrap=True)
    t.add_column("finding")
    for f in result.findings:
        ev = f.evidence[0]
        where = f"{ev.source.rsplit('/', 1)[-1]}:{ev.line}" if ev.line else ev.source.rsplit("/", 1)[-1]
        text = (f"[bold]{escape(f.rule)}[/bold]\n{escape(f.summary)}"
                + "".join(f"\n[dim]↑ {escape(r)}[/dim]" for r in f.reasons)
                + f"\n[dim]{escape(where)}  Id {escape(ev.record_id)}[/dim]")
        t.add_row((f.time or "").replace("T", " ").rstrip("Z"), f"[{STYLE.get(f.severity, '')}]{f.severity}[/]", text)
    console.print(t)


def summary(result: HuntResult, console: Console) -> None:
    s = result.stats
    console.print(f"[bold]Files[/bold]: {len(s.files_read)} read, {len(s.files_skipped)} skipped")
    for path, reason in s.files_skipped:
        console.print(f"  skipped {escape(path)}: {escape(reason)}")
    console.print(f"[bold]Records[/bold]: {s.records_seen:,} in input, {s.records_parsed:,} parsed, "
                  f"{s.duplicates:,} duplicates (same Id) ignored, {result.candidates:,} checked by "
                  f"{len(result.rules)} rules, {s.skipped:,} skipped, {s.warnings:,} read with warnings")
    if s.records_parsed < s.records_seen:
        console.print("  [dim](lines that name no operation any rule looks at are counted, not parsed; "
                      "use --full-parse to parse and validate everything)[/dim]")
    for reason, n in s.skip_reasons.most_common():
        console.print(f"  {n:,} skipped: {escape(reason)}")
    for issue in s.issues[:20]:
        console.print(f"  [dim]{escape(str(issue))}[/dim]")
    if len(s.issues) > 20:
        more = s.skipped + s.warnings - 20
        console.print(f"  [dim]… and {more:,} more (every one is counted above by reason)[/dim]")
    counts = ", ".join(f"[{STYLE[sev]}]{result.by_severity.get(sev, 0)} {sev}[/]" for sev in reversed(SEVERITIES))
    console.print(f"[bold]Findings[/bold]: {len(result.findings)} ({counts})")
    incidents_summary(result, console)


def incidents_summary(result: HuntResult, console: Console, top: int = 5) -> None:
    """How many grant → use incidents, by severity, and the riskiest few (the rest: --incidents, --report)."""
    incs = result.incidents
    if not incs and not result.activities:
        return
    by = {sev: sum(1 for i in incs if i.severity == sev) for sev in SEVERITIES}
    counts = ", ".join(f"[{STYLE[sev]}]{by[sev]} {sev}[/]" for sev in reversed(SEVERITIES))
    used = sum(1 for i in incs if i.uses)
    console.print(f"[bold]Incidents[/bold]: {len(incs)} ({counts}); {used} with a use of the grant; "
                  f"{result.activities:,} uses/precursors read, {result.activities_unmatched:,} joined no grant")
    for inc in incs[:top]:
        if inc.severity in ("informational", "low"):
            break
        console.print(f"  [{STYLE.get(inc.severity, '')}]{inc.score:>3} {inc.severity}[/] {escape(inc.id)} "
                      f"{escape(inc.title)} [dim]({len(inc.steps)} steps, {escape(inc.start or '?')})[/dim]")
