"""``delegatewatch ledger PATH...``: effective mailbox permissions over time, from the audit logs.

Reads logs (and snapshots) with the hunt's readers, replays every permission change
(``analytics/ledger``) and answers one question, picked by the options:

* ``--mailbox X --at D``: who could read X (``--can read``, the default; ``send``; ``any``) on D;
* ``--grantee Y --at D``: which mailboxes Y could reach on D (its own grants, plus Default/Anonymous);
* ``--mailbox X`` or ``--grantee Y`` alone: the full history (every interval, oldest first);
* neither: everything held at ``--at`` (or, without it, the whole history).

Snapshots among the input (or named with ``--snapshot``) are reconciled with the replay; the
discrepancies are shown after the answer (``--format jsonl``: lines with ``"type": "finding"``).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

import click
import orjson
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from delegatewatch.cli import _console, _output

FORMATS = ("table", "jsonl", "csv")
COLUMNS = ("mailbox", "grantee", "scope", "folder", "rights_text", "can", "via", "from", "until", "granted_by",
           "granted_with", "target", "ended_by", "ended_with", "evidence")


@dataclass
class LedgerRun:
    ledger: object  # analytics.ledger.model.Ledger
    stats: object  # records.ReadStats
    records: int = 0
    findings: list = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    snapshots: int = 0


def read_input(paths: Sequence[str], stats, exclude: Sequence[str] = ()) -> list:  # noqa: ANN001
    """The records the ledger replays, read by the hunt's readers: unified-audit-log permission
    operations (prefiltered), the Windows / Google events and snapshot rows ``analytics.ledger.FAMILIES``
    keeps; duplicates (same ``Id``, or file and line for snapshots) once."""
    from delegatewatch.analytics.ledger import FAMILIES, M365_OPERATIONS
    from delegatewatch.records.prefilter import Prefilter
    from delegatewatch.sources import iter_files, read_paths

    operations = M365_OPERATIONS()
    prefilter = Prefilter.for_operations(operations, operations)
    skip = {os.path.realpath(p) for p in exclude}
    files = [p for p in dict.fromkeys(iter_files(paths)) if os.path.realpath(p) not in skip]
    seen: set[str] = set()
    out = []
    for record in read_paths(files, stats, prefilter):
        keep = prefilter.wants if record.family == "m365" else FAMILIES.get(record.family)
        if keep is None or not keep(record.data):
            continue
        rid = record.data.get("_dedup") or record.data.get("Id")  # the hunt's de-duplication key
        if isinstance(rid, str) and rid:
            if rid in seen:
                stats.duplicates += 1
                continue
            seen.add(rid)
        out.append(record)
    return out


def run_ledger(paths: Sequence[str], *, directory=None, exclude: Sequence[str] = (),  # noqa: ANN001
               log_from: datetime | None = None, log_until: datetime | None = None) -> LedgerRun:
    """Read, replay, reconcile. ``log_from`` / ``log_until``: the period the logs cover, when the
    responder knows it (the default is the first and last permission record read)."""
    from delegatewatch.analytics.ledger import to_finding
    from delegatewatch.analytics.ledger.reconcile import reconcile
    from delegatewatch.analytics.ledger.replay import replay
    from delegatewatch.analytics.snapshot import Judge, build_snapshots
    from delegatewatch.events.principals import Resolver
    from delegatewatch.findings.build import sort_findings
    from delegatewatch.records import ReadStats

    stats = ReadStats()
    records = read_input(paths, stats, exclude)
    resolver = Resolver(directory)
    ledger = replay(records, resolver)
    for platform, (first, last) in ledger.periods.items():
        ledger.periods[platform] = (min(first, log_from) if log_from else first, max(last, log_until) if log_until else last)
    run = LedgerRun(ledger, stats, len(records))
    rows = [r for r in records if r.family == "snapshot"]
    if rows:
        snapshots = build_snapshots(rows)
        run.snapshots = sum(len(s) for s in snapshots.values())
        result = reconcile(ledger, snapshots, rows, Judge(resolver))
        run.findings = sort_findings(to_finding(ledger, d) for d in result.discrepancies)
        run.notes = result.notes + ([f"{result.uncertain} entries changed within [ledger] snapshot_slack_minutes "
                                     "of a snapshot: not judged"] if result.uncertain else [])
    return run


def answer(ledger, mailbox: str | None, grantee: str | None, at: str | None, can: str | None) -> tuple[str, list]:  # noqa: ANN001
    """(title, accesses) for the options given."""
    from delegatewatch.analytics.ledger import queries as Q

    when = Q.window(at)
    on = f" on {when.text}" if when else ""
    if mailbox and not grantee and when is not None:
        cap = can or "read"
        verb = {"read": "could read", "send": "could send as or on behalf of", "any": "held rights on"}[cap]
        return f"Who {verb} {mailbox}{on}", Q.who_can(ledger, mailbox, when, cap)
    if grantee and not mailbox and when is not None:
        return f"Mailboxes {grantee} could reach{on}", Q.reachable(ledger, grantee, when, can or "any")
    found = Q.history(ledger, mailbox, grantee) if (mailbox or grantee) else (
        Q.effective(ledger, when) if when else Q.history(ledger))
    if when is not None and (mailbox or grantee):
        found = [a for a in found if a.interval.overlaps(when.start, when.end)]
    if can:
        from delegatewatch.analytics.ledger.model import capable

        found = [a for a in found if capable(a.interval.key.scope, a.interval.rights, can)]
    who = " and ".join(x for x in (f"mailbox {mailbox}" if mailbox else "", f"grantee {grantee}" if grantee else "") if x)
    return (f"Permission history of {who}{on}" if who else f"Permissions held{on}" if when else "Permission history"), found


def _cell(key: str, value: object) -> str:
    if value is None:
        return ""
    if key == "evidence":
        return "; ".join(f"{os.path.basename(e['source'])}:{e['line'] or e['record_id']}" for e in value)  # type: ignore[attr-defined]
    if isinstance(value, list):
        return ", ".join(str(v) for v in value)
    return str(value)


def write_table(title: str, rows: list[dict], console: Console) -> None:
    if not rows:
        console.print(f"{escape(title)}: nobody / nothing in the log.")
        return
    t = Table(title=f"{title} ({len(rows)})", show_lines=True)
    for c in ("mailbox", "grantee", "what", "can", "from (UTC)", "until (UTC)", "granted by", "evidence"):
        t.add_column(c)
    for r in rows:
        what = r["scope"] + (f" {r['folder']}" if r["folder"] else "") + f": {r['rights_text']}"
        via = f" (as {r['via']})" if r["via"] and r["via"] != "every mailbox" else ""
        until = _cell("until", r["until"]).replace("T", " ").rstrip("Z") or "still held"
        if r["ended_with"]:
            until += f"\n[dim]{escape(r['ended_with'])} by {escape(r['ended_by'] or '?')}[/dim]"
        t.add_row(escape(r["mailbox"]), escape(r["grantee"] + via), escape(what), ", ".join(r["can"]) or "-",
                  r["from"].replace("T", " ").rstrip("Z"), until,
                  escape(f"{r['granted_by'] or '?'} ({r['granted_with']})"), escape(_cell("evidence", r["evidence"])))
    console.print(t)


def write_csv(rows: list[dict], out) -> None:  # noqa: ANN001
    import csv

    from delegatewatch.outputs.csv_out import neutralise

    w = csv.writer(out, lineterminator="\r\n")
    w.writerow(COLUMNS)
    for r in rows:
        w.writerow([neutralise(_cell(c, r[c])) for c in COLUMNS])


def summary(run: LedgerRun, console: Console) -> None:
    from delegatewatch.records.times import iso_utc

    s = run.stats  # type: ignore[assignment]
    L = run.ledger  # type: ignore[assignment]  # noqa: N806
    console.print(f"[bold]Files[/bold]: {len(s.files_read)} read, {len(s.files_skipped)} skipped")
    for path, reason in s.files_skipped:
        console.print(f"  skipped {escape(path)}: {escape(reason)}")
    console.print(f"[bold]Records[/bold]: {s.records_parsed:,} parsed, {run.records:,} about permissions, "
                  f"{s.skipped:,} skipped, {s.duplicates:,} duplicates ignored")
    for issue in s.issues[:10]:
        console.print(f"  [dim]{escape(str(issue))}[/dim]")
    console.print(f"[bold]Ledger[/bold]: {L.replayed:,} changes replayed into {len(L.intervals):,} intervals; "
                  f"{L.failed:,} failed operations and {L.denies:,} Deny entries not applied; "
                  f"{len(L.issues):,} changes left out")
    for source, line, why in L.issues[:10]:
        console.print(f"  [dim]{escape(source)}{f':{line}' if line else ''}: {escape(why)}[/dim]")
    for platform, (first, last) in sorted(L.periods.items()):
        console.print(f"  {platform} log period: {iso_utc(first)} – {iso_utc(last)}")
    if run.snapshots:
        console.print(f"[bold]Snapshots[/bold]: {run.snapshots} reconciled, {len(run.findings)} discrepancies")
    for note in run.notes:
        console.print(f"  [dim]{escape(note)}[/dim]")


@click.command("ledger")
@click.argument("paths", nargs=-1, required=True)
@click.option("--directory", type=click.Path(exists=True, dir_okay=False),
              help="Entra ID users export (CSV: id,userPrincipalName,…), to match GUIDs, SIDs and names.")
@click.option("--snapshot", "snapshot_files", multiple=True, type=click.Path(exists=True),
              help="A standing-permission snapshot to reconcile with (also found among PATHS). Repeatable.")
@click.option("--snapshot-time", "snapshot_times", multiple=True, metavar="[PATH=]TIME",
              help="When a snapshot was taken, for exports whose file name carries no date (as in audit).")
@click.option("--mailbox", help="The mailbox asked about (UPN, GUID, SID, DN, alias, display name).")
@click.option("--grantee", help="The principal asked about (Default and Anonymous too).")
@click.option("--at", "at", metavar="DATE|TIME", help="A day (2024-05-03, the whole UTC day) or an instant.")
@click.option("--log-from", metavar="TIME", help="The logs cover changes from this time (default: the first "
              "permission record read); the snapshot reconciliation judges what the log should have seen by it.")
@click.option("--log-until", metavar="TIME", help="The logs cover changes until this time (default: the last one read).")
@click.option("--can", type=click.Choice(("read", "send", "any")),
              help="Only permissions that let the holder read items / send mail / anything "
                   "(default: read for --mailbox --at, any otherwise).")
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="table", show_default=True)
@click.option("--output", "-o", type=click.Path(dir_okay=False), help="Write the answer here instead of stdout.")
@click.option("--config", "config_file", type=click.Path(exists=True, dir_okay=False),
              help="Configuration file (TOML; docs/configuration.md).")
@click.option("--quiet", "-q", is_flag=True, help="No summary.")
@click.option("--no-color", is_flag=True, help="No colours (NO_COLOR is honoured too).")
def ledger_command(paths: tuple[str, ...], directory: str | None, snapshot_files: tuple[str, ...],
                   snapshot_times: tuple[str, ...], mailbox: str | None, grantee: str | None, at: str | None,
                   log_from: str | None, log_until: str | None, can: str | None, fmt: str, output: str | None,
                   config_file: str | None, quiet: bool, no_color: bool) -> None:
    """Effective mailbox permissions over time: who could read a mailbox on a date, which mailboxes
    someone could reach, a mailbox's permission history; reconciled with permission snapshots."""
    from delegatewatch import config
    from delegatewatch.analytics.ledger import queries as Q
    from delegatewatch.audit_cli import parse_time_hints
    from delegatewatch.events.principals import Directory
    from delegatewatch.sources.formats import snapshots

    err = _console(no_color, stderr=True)
    try:
        config.use(config.load(config_file))
        users = Directory.load(directory) if directory else None
        snapshots.set_time_hints(parse_time_hints(snapshot_times))
        Q.window(at)  # a bad --at stops here, before reading anything
        period = {name: Q.window(value) for name, value in (("--log-from", log_from), ("--log-until", log_until))}
    except (ValueError, OSError) as exc:
        err.print(f"[red]error:[/red] {escape(str(exc))}")
        sys.exit(2)
    try:
        run = run_ledger([*paths, *snapshot_files], directory=users, exclude=[directory] if directory else [],
                         log_from=period["--log-from"].start if period["--log-from"] else None,
                         log_until=period["--log-until"].end if period["--log-until"] else None)
    finally:
        snapshots.set_time_hints({})
    title, found = answer(run.ledger, mailbox, grantee, at, can)
    rows = [Q.row(run.ledger, a) for a in found]  # type: ignore[arg-type]
    try:
        with _output(output) as out:
            if fmt == "jsonl":
                for r in rows:
                    out.write(orjson.dumps({"type": "permission", **r}).decode() + "\n")
                for f in run.findings:
                    d = {"type": "finding", **f.to_dict()}
                    d.pop("runbook", None)
                    out.write(orjson.dumps(d).decode() + "\n")
            elif fmt == "csv":
                write_csv(rows, out)
            else:
                console = _console(no_color) if out is sys.stdout else Console(file=out, no_color=True, width=200)
                write_table(title, rows, console)
                if run.findings:
                    from delegatewatch.engine.hunt import HuntResult
                    from delegatewatch.outputs.console import findings_table

                    console.rule("Snapshots and log disagree")
                    findings_table(HuntResult(run.findings, run.stats, []), console)  # type: ignore[arg-type]
    except OSError as exc:
        err.print(f"[red]error:[/red] cannot write {escape(str(output or 'standard output'))}: {escape(str(exc))}")
        sys.exit(2)
    if not quiet:
        summary(run, err)
        if fmt == "csv" and run.findings:
            err.print(f"{len(run.findings)} snapshot discrepancies are not in the CSV: use --format jsonl or table, "
                      "or `delegatewatch hunt` (they are findings there)")

