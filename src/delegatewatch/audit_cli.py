"""``delegatewatch audit SNAPSHOT...``: risky standing permissions and what changed between snapshots.

The click command ``audit_command`` is attached to the main CLI by ``cli.py``. It reads permission
snapshot files (``delegatewatch.sources.formats.snapshots``) and runs the same analytic the hunt
runs for family ``snapshot`` (``delegatewatch.analytics.snapshot``), followed by the same severity
context (``findings.build.apply_context``), so ``hunt`` and ``audit`` report the same findings for
the same snapshots. Files that are not snapshots (audit logs) are listed as skipped: ``hunt`` reads them.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field

import click
from rich.console import Console
from rich.markup import escape
from rich.table import Table

FORMATS = ("table", "jsonl", "csv")
CHANGE_RULES = frozenset({"snapshot_permission_added", "snapshot_permission_removed", "snapshot_gmail_delegate_added"})


@dataclass
class AuditResult:
    hunt: object  # delegatewatch.engine.hunt.HuntResult (what the outputs take)
    snapshots: list[dict] = field(default_factory=list)
    rows: int = 0

    @property
    def findings(self) -> list:
        return self.hunt.findings  # type: ignore[attr-defined]

    @property
    def stats(self):
        return self.hunt.stats  # type: ignore[attr-defined]


def run_audit(paths: Sequence[str], *, directory=None, exclude: Sequence[str] = ()) -> AuditResult:
    """Read the snapshots under ``paths`` and judge them. ``directory``: an optional
    ``events.principals.Directory``."""
    from delegatewatch.analytics.snapshot import analyze, describe
    from delegatewatch.engine.hunt import HuntResult
    from delegatewatch.events.principals import Resolver
    from delegatewatch.findings.build import apply_context, sort_findings
    from delegatewatch.records import ReadStats
    from delegatewatch.sources import iter_files, read_file
    from delegatewatch.sources.formats.snapshots import FAMILY

    stats = ReadStats()
    skip = {os.path.realpath(p) for p in exclude}
    seen_files: set[str] = set()
    seen_rows: set[str] = set()
    records = []
    for path in iter_files(paths):
        real = os.path.realpath(path)
        if real in skip or real in seen_files:
            continue
        seen_files.add(real)
        if not os.path.exists(path):
            stats.skip_file(path, "no such file or folder")
            continue
        for record in read_file(path, stats, families={FAMILY: "a permission snapshot"}):
            key = record.data.get("_dedup")
            if isinstance(key, str):
                if key in seen_rows:
                    stats.duplicates += 1
                    continue
                seen_rows.add(key)
            records.append(record)
    findings = analyze(records, Resolver(directory))
    apply_context(findings, {})
    result = HuntResult(sort_findings(findings), stats, [], len(records))
    for f in result.findings:
        result.by_severity[f.severity] = result.by_severity.get(f.severity, 0) + 1
    return AuditResult(result, describe(records), len(records))


def parse_time_hints(values: Sequence[str]) -> dict[str, str]:
    """``--snapshot-time [PATH=]TIME`` values → ``{path or "*": time}``."""
    hints: dict[str, str] = {}
    for value in values:
        path, sep, when = value.rpartition("=")
        if not sep:
            path, when = "*", value
        if path != "*" and not os.path.exists(path):
            raise ValueError(f"--snapshot-time {value!r}: no such file or folder {path!r}")
        hints[path] = when.strip()
    return hints


# The same output and console helpers as hunt (one place decides NO_COLOR and stdout handling).
from delegatewatch.cli import _console, _output  # noqa: E402


def snapshots_table(snapshots: list[dict], console: Console) -> None:
    if not snapshots:
        console.print("No permission snapshots found.")
        return
    t = Table(title=f"{len(snapshots)} snapshots")
    for c in ("kind", "#", "time (UTC)", "time from", "rows", "entries", "files"):
        t.add_column(c)
    for s in snapshots:
        files = ", ".join(os.path.basename(f) for f in s["files"][:3]) + (" …" if len(s["files"]) > 3 else "")
        t.add_row(s["kind"], f"{s['sequence']}/{s['of']}", s["time"].replace("T", " ").rstrip("Z"),
                  s["time_source"], str(s["rows"]), str(s["entries"]) + (f" ({s['unknown']} unknown)"
                                                                         if s["unknown"] else ""), escape(files))
    console.print(t)


def write_table(result: AuditResult, console: Console) -> None:
    from delegatewatch.engine.hunt import HuntResult
    from delegatewatch.outputs import console as console_out

    snapshots_table(result.snapshots, console)
    standing = [f for f in result.findings if f.rule not in CHANGE_RULES]
    changed = [f for f in result.findings if f.rule in CHANGE_RULES]
    for title, subset in (("Risky standing permissions (latest snapshot of each kind)", standing),
                          ("Changes between snapshots", changed)):
        console.rule(title)
        if title.startswith("Changes") and not any(s["of"] > 1 for s in result.snapshots):
            console.print("Only one snapshot of each kind: nothing to compare (give two or more, e.g. a week apart).")
            continue
        console_out.findings_table(HuntResult(subset, result.stats, []), console)


def summary(result: AuditResult, console: Console) -> None:
    from delegatewatch.findings.model import SEVERITIES
    from delegatewatch.outputs.console import STYLE

    s = result.stats
    console.print(f"[bold]Files[/bold]: {len(s.files_read)} read, {len(s.files_skipped)} skipped")
    for path, reason in s.files_skipped:
        console.print(f"  skipped {escape(path)}: {escape(reason)}")
    console.print(f"[bold]Rows[/bold]: {s.records_parsed:,} read into {result.rows:,} permission records, "
                  f"{s.skipped:,} skipped, {s.warnings:,} read with warnings, {s.duplicates:,} duplicates ignored; "
                  f"{len(result.snapshots)} snapshots")
    for reason, n in s.skip_reasons.most_common():
        console.print(f"  {n:,} skipped: {escape(reason)}")
    for issue in s.issues[:20]:
        console.print(f"  [dim]{escape(str(issue))}[/dim]")
    if len(s.issues) > 20:
        console.print(f"  [dim]… and {s.skipped + s.warnings - 20:,} more (counted above by reason)[/dim]")
    by = result.hunt.by_severity  # type: ignore[attr-defined]
    counts = ", ".join(f"[{STYLE[sev]}]{by.get(sev, 0)} {sev}[/]" for sev in reversed(SEVERITIES))
    console.print(f"[bold]Findings[/bold]: {len(result.findings)} ({counts})")


@click.command("audit")
@click.argument("paths", nargs=-1, required=True)
@click.option("--directory", type=click.Path(exists=True, dir_okay=False),
              help="Entra ID users export (CSV: id,userPrincipalName,displayName,userType,accountEnabled,mail).")
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="table", show_default=True,
              help="Output format for the findings.")
@click.option("--output", "-o", type=click.Path(dir_okay=False), help="Write findings here instead of stdout.")
@click.option("--snapshot-time", "snapshot_times", multiple=True, metavar="[PATH=]TIME",
              help="When a snapshot was taken (ISO 8601), for CSV exports whose file name carries no date; "
                   "PATH may be a file or folder, without it the time applies to every snapshot. Repeatable.")
@click.option("--quiet", "-q", is_flag=True, help="No summary.")
@click.option("--no-color", is_flag=True, help="No colours (NO_COLOR is honoured too).")
def audit_command(paths: tuple[str, ...], directory: str | None, fmt: str, output: str | None,
                  snapshot_times: tuple[str, ...], quiet: bool, no_color: bool) -> None:
    """Audit permission snapshots (Get-MailboxPermission, Get-MailboxFolderPermission,
    Get-RecipientPermission, Get-Mailbox GrantSendOnBehalfTo, Get-ADPermission exports; Gmail delegate
    snapshots): which mailboxes are open to everyone, to guests, to odd accounts, and what changed
    between snapshots."""
    from delegatewatch.events.principals import Directory
    from delegatewatch.outputs import csv_out, jsonl
    from delegatewatch.sources.formats import snapshots

    err = _console(no_color, stderr=True)
    try:
        users = Directory.load(directory) if directory else None
        snapshots.set_time_hints(parse_time_hints(snapshot_times))
    except (ValueError, OSError) as exc:
        err.print(f"[red]error:[/red] {escape(str(exc))}")
        sys.exit(2)
    try:
        result = run_audit(list(paths), directory=users, exclude=[directory] if directory else [])
    finally:
        snapshots.set_time_hints({})
    try:
        with _output(output) as out:
            if fmt == "jsonl":
                jsonl.write(result.findings, out)
            elif fmt == "csv":
                csv_out.write(result.findings, out)
            else:
                write_table(result, _console(no_color) if out is sys.stdout else
                            Console(file=out, no_color=True, width=200))
    except OSError as exc:
        err.print(f"[red]error:[/red] cannot write {escape(str(output or 'standard output'))}: {escape(str(exc))}")
        sys.exit(2)
    if not quiet:
        summary(result, err)
        if not result.snapshots:
            err.print("[yellow]No permission snapshots were found[/yellow] (docs/audit.md lists the exports read).")
