"""``delegatewatch collect google``: the click command (attached under ``collect`` by ``cli.py``)."""

from __future__ import annotations

import json
import logging
import os
import sys
from datetime import timedelta
from pathlib import Path

import click
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from delegatewatch.collectors.google import (
    DEFAULT_APPLICATIONS, DIRECTORY_URL, GMAIL_URL, REPORTS_URL, ConfigError, GoogleCollector, GoogleConfig,
    parse_duration, parse_time,
)


def _duration(_ctx, _param, value: str | None) -> timedelta | None:
    if value is None:
        return None
    try:
        return parse_duration(value)
    except ConfigError as exc:
        raise click.BadParameter(str(exc)) from None


def _since(_ctx, _param, value: str) -> str:
    try:
        parse_duration(value)
    except ConfigError:
        try:
            parse_time(value)
        except ConfigError:
            raise click.BadParameter(f"use a duration back from now (7d, 12h) or a date/time: {value!r}") from None
    return value


@click.command("google")
@click.option("--credentials", required=True, type=click.Path(exists=True, dir_okay=False),
              help="Service-account key file (JSON) of a client with domain-wide delegation.")
@click.option("--subject", required=True, help="Administrator to impersonate for the Reports and Directory APIs.")
@click.option("--applications", default=",".join(DEFAULT_APPLICATIONS), show_default=True,
              help="Reports API applications, comma-separated (admin, user_accounts, token, gmail, login, …). "
                   "Empty to collect only delegates.")
@click.option("--gmail-delegates", is_flag=True,
              help="Also snapshot every user's Gmail delegates (Directory users.list + Gmail delegates.list).")
@click.option("--since", default="7d", show_default=True, callback=_since,
              help="First run: collect from this far back (7d, 12h) or from this date/time. Reruns continue "
                   "from the checkpoint.")
@click.option("--until", "until", default=None, help="End of the collection (RFC 3339; default: now).")
@click.option("--window", default="1d", show_default=True, callback=_duration,
              help="Time window per request and per checkpoint step (capped at 30d for gmail, 180d otherwise).")
@click.option("--overlap", default="1h", show_default=True, callback=_duration,
              help="Re-read this much before the checkpoint on reruns, for events that arrive late "
                   "(duplicates are skipped).")
@click.option("--from-scratch", is_flag=True, help="Ignore the checkpoint and start at --since (no duplicates are written).")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False), help="Output folder.")
@click.option("--max-results", default=1000, show_default=True, type=click.IntRange(1, 1000),
              help="Page size of activities.list.")
@click.option("--workers", default=4, show_default=True, type=click.IntRange(1, 32),
              help="Parallel users for --gmail-delegates.")
@click.option("--reports-url", default=REPORTS_URL, show_default=True, help="Reports API base URL.")
@click.option("--directory-url", default=DIRECTORY_URL, show_default=True, help="Directory API base URL.")
@click.option("--gmail-url", default=GMAIL_URL, show_default=True, help="Gmail API base URL.")
@click.option("--token-uri", default=None, help="Token endpoint (default: token_uri of the key file).")
@click.option("--max-retries", default=6, show_default=True, type=click.IntRange(0, 20),
              help="Retries of a throttled or failed request.")
@click.option("--json", "as_json", is_flag=True, help="Print the run summary as JSON on stdout.")
@click.option("--quiet", "-q", is_flag=True, help="No progress and no summary table.")
def google_command(credentials: str, subject: str, applications: str, gmail_delegates: bool, since: str,
                   until: str | None, window: timedelta, overlap: timedelta, from_scratch: bool, out_dir: str,
                   max_results: int, workers: int, reports_url: str, directory_url: str, gmail_url: str,
                   token_uri: str | None, max_retries: int, as_json: bool, quiet: bool) -> None:
    """Collect Google Workspace audit activities (Reports API) and Gmail delegate snapshots.

    Exit status: 0 when everything asked for was collected, 1 when some of it failed (the files and
    the manifest say what), 2 when the settings or the key file are unusable.
    """
    err = Console(stderr=True, highlight=False, no_color=bool(os.environ.get("NO_COLOR")))
    if not err.is_terminal:
        err.width = max(err.width, 160)
    apps = tuple(a.strip() for a in applications.split(",") if a.strip())
    try:
        config = GoogleConfig(
            credentials=Path(credentials), subject=subject, out_dir=Path(out_dir), applications=apps,
            gmail_delegates=gmail_delegates, since=since, until=parse_time(until) if until else None,
            window=window, overlap=overlap, from_scratch=from_scratch, max_results=max_results,
            reports_url=reports_url, directory_url=directory_url, gmail_url=gmail_url, token_uri=token_uri,
            workers=workers, max_retries=max_retries)
        show = not quiet and err.is_terminal
        collector = GoogleCollector(config, progress=(lambda m: err.print(f"[dim]{escape(m)}[/dim]")) if show else None)
        _redact_logs(collector)
        result = collector.run_once()
    except ConfigError as exc:
        err.print(f"[red]error:[/red] {escape(str(exc))}")
        sys.exit(2)

    if as_json:
        click.echo(json.dumps({"records": result.records, "duplicates_skipped": result.duplicates,
                               "files": [str(p) for p in result.files], "manifest": str(result.manifest),
                               "snapshot": str(result.snapshot) if result.snapshot else None,
                               "errors": result.errors}, indent=2))
    elif not quiet:
        out = Console(highlight=False, no_color=bool(os.environ.get("NO_COLOR")))
        if not out.is_terminal:
            out.width = max(out.width, 160)  # piped or captured: keep advice on one line
        table = Table(title="Google Workspace collection")
        for col in ("source", "status", "windows", "records", "duplicates skipped", "collected until"):
            table.add_column(col)
        for app, info in result.applications.items():
            table.add_row(escape(app), escape(info["status"]), str(len(info["windows"])), str(info["records"]),
                          str(info["duplicates"]), escape(str(info.get("checkpoint") or "-")))
        if result.delegates is not None:
            d = result.delegates
            table.add_row("gmail delegates", "error" if d.get("error") else ("partial" if d["errors"] else "ok"),
                          "-", f"{d['users']} users", "-", escape(str(d.get("file") or "-")))
        out.print(table)
        for e in result.errors[:20]:
            where = e.get("application") or e.get("user") or e.get("source")
            out.print(f"[yellow]error[/yellow] {escape(str(where))}: {escape(str(e.get('status')))} "
                      f"{escape(str(e.get('reason')))} {escape(str(e.get('message')))}")
            if e.get("advice"):
                out.print(f"  fix: {escape(e['advice'])}")
        if len(result.errors) > 20:
            out.print(f"… and {len(result.errors) - 20} more errors: see {escape(str(result.manifest))}")
        out.print(f"manifest: {escape(str(result.manifest))}")
    sys.exit(0 if result.ok else 1)


def _redact_logs(collector: GoogleCollector) -> None:
    """Every log handler masks the key material and the tokens the collector obtains."""
    from delegatewatch.collectors.redact import RedactingFilter

    filt = RedactingFilter(collector.http.redact)
    for handler in logging.getLogger().handlers:
        handler.addFilter(filt)
