"""Command line: ``delegatewatch hunt``, ``delegatewatch rules list|test``."""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TextIO

import click
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn

from delegatewatch import __version__

FORMATS = ("table", "jsonl", "csv", "ocsf", "html")


def _console(no_color: bool, stderr: bool = False) -> Console:
    console = Console(stderr=stderr, no_color=no_color or bool(os.environ.get("NO_COLOR")), highlight=False)
    if not console.is_terminal:
        console.width = max(console.width, 140)  # piped or captured: don't squeeze the table to 80
    return console


@contextlib.contextmanager
def _output(path: str | None) -> Iterator[TextIO]:
    if path in (None, "-"):
        yield sys.stdout
    else:
        with open(path, "w", encoding="utf-8", newline="") as f:
            yield f


class LazyGroup(click.Group):
    """A group whose subcommands are imported only when used (click's documented lazy-loading
    pattern): ``hunt`` does not pay for the collectors' HTTP and auth libraries."""

    def __init__(self, *args, lazy: dict[str, str] | None = None, **kwargs) -> None:  # noqa: ANN002, ANN003
        super().__init__(*args, **kwargs)
        self.lazy = lazy or {}

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted([*super().list_commands(ctx), *self.lazy])

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name in self.lazy:
            module, attr = self.lazy[name].split(":")
            import importlib

            return getattr(importlib.import_module(module), attr)
        return super().get_command(ctx, name)


@click.group(cls=LazyGroup, lazy={
    "watch": "delegatewatch.watch.cli:watch_command",
    "audit": "delegatewatch.audit_cli:audit_command",
    "ledger": "delegatewatch.ledger_cli:ledger_command",
    "doctor": "delegatewatch.collectors.doctor_cli:doctor_command",
    "simulate": "delegatewatch.simulate.cli:simulate_command",
    "evaluate": "delegatewatch.evaluate_cli:evaluate_command",
})
@click.version_option(__version__, prog_name="delegatewatch")
def main() -> None:
    """Find additional email delegate permissions (MITRE ATT&CK T1098.002) and their abuse."""


def _engine_options(command: Callable) -> Callable:
    """--engine, --spark-master, --spark-conf (hunt and export-events)."""
    for option in reversed([
        click.option("--engine", type=click.Choice(("embedded", "spark")), default="embedded", show_default=True,
                     help="embedded: DuckDB in this process and worker processes; spark: Spark tasks "
                          "(docs/spark.md)."),
        click.option("--spark-master", default=None, metavar="URL",
                     help="Spark master for --engine spark (default local[*]; under spark-submit, the submitted one)."),
        click.option("--spark-conf", multiple=True, metavar="KEY=VALUE",
                     help="Spark configuration for --engine spark, repeatable (e.g. spark.executor.memory=4g)."),
    ]):
        command = option(command)
    return command


def _spark_settings(master: str | None, conf_pairs: tuple[str, ...]):  # noqa: ANN202
    from delegatewatch.engine.spark import SparkSettings, parse_conf

    return SparkSettings(master=master, conf=parse_conf(conf_pairs))


@main.command()
@click.argument("paths", nargs=-1, required=True)
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="table", show_default=True,
              help="Output format for the findings.")
@click.option("--output", "-o", type=click.Path(dir_okay=False), help="Write findings here instead of stdout.")
@click.option("--report", type=click.Path(dir_okay=False),
              help="Also write the HTML investigation report here (any --format).")
@click.option("--incidents", "incidents_out", type=click.Path(dir_okay=False),
              help="Also write the grant → use incidents here, one JSON object per line.")
@click.option("--directory", type=click.Path(exists=True, dir_okay=False),
              help="Entra ID users export (CSV: id,userPrincipalName,displayName,userType,accountEnabled,mail).")
@click.option("--rules", "rules_dir", type=click.Path(exists=True, file_okay=False),
              help="Use the Sigma rules in this folder instead of the built-in ones.")
@click.option("--config", "config_file", type=click.Path(exists=True, dir_okay=False),
              help="Configuration file (TOML; docs/configuration.md).")
@click.option("--full-parse", is_flag=True, help="Parse and validate every record, not only those a rule can match.")
@click.option("--jobs", "-j", type=click.IntRange(min=1), default=None,
              help="Worker processes for large inputs (default: the number of cores, at most 8).")
@_engine_options
@click.option("--quiet", "-q", is_flag=True, help="No progress bar and no summary.")
@click.option("--no-color", is_flag=True, help="No colours (NO_COLOR is honoured too).")
def hunt(paths: tuple[str, ...], fmt: str, output: str | None, report: str | None, incidents_out: str | None,
         directory: str | None, rules_dir: str | None, config_file: str | None, full_parse: bool, jobs: int | None,
         engine: str, spark_master: str | None, spark_conf: tuple[str, ...], quiet: bool, no_color: bool) -> None:
    """Hunt audit exports (files or folders, recursively; with --engine spark also file://, s3a://,
    abfss://, gs://, hdfs:// URIs) for delegate-permission grants and their abuse."""
    from delegatewatch.detections.rules import RuleError, load_rules
    from delegatewatch.engine.hunt import hunt as run_hunt
    from delegatewatch.events.principals import Directory
    from delegatewatch.outputs import console as console_out
    from delegatewatch.outputs import csv_out, jsonl
    from delegatewatch.sources import iter_files
    from delegatewatch.sources.uris import is_uri, local_path

    from delegatewatch import config

    err = _console(no_color, stderr=True)
    try:
        config.use(config.load(config_file))
        rules = load_rules(Path(rules_dir) if rules_dir else None)
        users = Directory.load(directory) if directory else None
    except (RuleError, ValueError, OSError) as exc:
        err.print(f"[red]error:[/red] {escape(str(exc))}")
        sys.exit(2)
    if engine == "embedded" and any(is_uri(local_path(p)) for p in paths):
        err.print("[red]error:[/red] URI inputs (s3a://, abfss://, file:// …) are read with --engine spark")
        sys.exit(2)
    if engine == "spark":
        result = _spark_hunt(list(paths), users, rules, full_parse, directory, spark_master, spark_conf, err)
    else:
        files = [p for p in iter_files(paths) if os.path.isfile(p) and p != directory]
        total = sum(os.path.getsize(p) for p in files)
        show_progress = not quiet and err.is_terminal and total > 0
        with Progress(TextColumn("[progress.description]{task.description}"), BarColumn(), DownloadColumn(),
                      TimeRemainingColumn(), console=err, disable=not show_progress, transient=True) as progress:
            task = progress.add_task("hunting", total=total)

            def on_progress(path: str, size: int) -> None:
                if path:
                    progress.update(task, advance=size, description=f"hunting {Path(path).name}")
                else:
                    progress.update(task, advance=size)

            result = run_hunt(list(paths), directory=users, rules=rules, full_parse=full_parse, jobs=jobs,
                              exclude=[directory] if directory else [], on_progress=on_progress)

    try:
        with _output(output) as out:
            if fmt == "jsonl":
                jsonl.write(result.findings, out)
            elif fmt == "ocsf":
                from delegatewatch.outputs import ocsf

                ocsf.write(result.findings, out, records=result.records)
            elif fmt == "html":
                from delegatewatch.outputs import html

                html.write(result, out)
            elif fmt == "csv":
                csv_out.write(result.findings, out)
            else:
                console_out.findings_table(result, _console(no_color) if out is sys.stdout else
                                           Console(file=out, no_color=True, width=200))
        if report:
            from delegatewatch.outputs import html

            html.write(result, report)
        if incidents_out:
            with _output(incidents_out) as out:
                jsonl.write_incidents(result.incidents, out)
    except OSError as exc:
        err.print(f"[red]error:[/red] cannot write {escape(str(output or report or incidents_out or 'standard output'))}: "
                  f"{escape(str(exc))}")
        sys.exit(2)
    if not quiet:
        console_out.summary(result, err)


def _spark_hunt(paths: list[str], users: object, rules: list, full_parse: bool, directory: str | None,
                master: str | None, conf_pairs: tuple[str, ...], err: Console):  # noqa: ANN202
    """``hunt --engine spark``: a clear message, exit 2, when Spark cannot start or a conf pair is bad."""
    from delegatewatch.engine.spark import SparkJobFailed, SparkUnavailable, spark_hunt

    try:
        return spark_hunt(paths, settings=_spark_settings(master, conf_pairs), directory=users, rules=rules,  # type: ignore[arg-type]
                          full_parse=full_parse, exclude=[directory] if directory else [])
    except (SparkUnavailable, SparkJobFailed, ValueError) as exc:
        err.print(f"[red]error:[/red] {escape(str(exc))}")
        sys.exit(2)


@main.command("export-events")
@click.argument("paths", nargs=-1, required=True)
@click.option("--format", "fmt", type=click.Choice(("ocsf", "parquet", "lake")), default="ocsf", show_default=True,
              help="OCSF JSON lines; Parquet in the Amazon Security Lake layout; or the event lake (every record, "
                   "OCSF-aligned Parquet by event_day, huntable: docs/spark.md).")
@click.option("--output", "-o", required=True,
              help="File for ocsf ('-' for stdout; a folder gets events.ocsf.jsonl); folder for parquet; folder or "
                   "URI for lake.")
@click.option("--directory", type=click.Path(exists=True, dir_okay=False), help="Entra ID users export (CSV).")
@click.option("--region", default="us-east-1", show_default=True, help="Security Lake partition: region.")
@click.option("--account-id", default="000000000000", show_default=True, help="Security Lake partition: account.")
@_engine_options
@click.option("--quiet", "-q", is_flag=True, help="No summary.")
def export_events_cmd(paths: tuple[str, ...], fmt: str, output: str, directory: str | None, region: str,
                      account_id: str, engine: str, spark_master: str | None, spark_conf: tuple[str, ...],
                      quiet: bool) -> None:
    """Write the normalised events of audit exports as OCSF: permission changes as User Access
    Management (3005), sent mail as Email Activity (4009); or every record into the event lake."""
    from delegatewatch.engine.export_events import export_events
    from delegatewatch.events.principals import Directory

    err = _console(False, stderr=True)
    exclude = [directory] if directory else []
    try:
        users = Directory.load(directory) if directory else None
        if engine == "spark" and fmt != "lake":
            raise ValueError("--engine spark writes --format lake only")
        if fmt == "lake" and engine == "spark":
            from delegatewatch.engine.spark_lake import spark_export_lake

            result = spark_export_lake(list(paths), output, settings=_spark_settings(spark_master, spark_conf),
                                       directory=users, exclude=exclude)
        elif fmt == "lake":
            from delegatewatch.engine.export_lake import export_lake

            result = export_lake(list(paths), output, directory=users, exclude=exclude)
        else:
            target = sys.stdout if output == "-" else output
            result = export_events(list(paths), fmt, target, directory=users, region=region, account_id=account_id)
    except (ValueError, OSError, RuntimeError) as exc:  # RuntimeError: SparkUnavailable
        err.print(f"[red]error:[/red] {escape(str(exc))}")
        sys.exit(2)
    if not quiet:
        err.print(escape(result.summary()))


@main.group()
def rules() -> None:
    """List and test the detection rules."""


@rules.command("list")
@click.option("--rules", "rules_dir", type=click.Path(exists=True, file_okay=False))
@click.option("--verbose", "-v", is_flag=True, help="Show description, false positives and runbook.")
def rules_list(rules_dir: str | None, verbose: bool) -> None:
    """List the rules with their level and ATT&CK techniques."""
    from rich.table import Table

    from delegatewatch.detections.rules import load_rules

    console = _console(False)
    loaded = load_rules(Path(rules_dir) if rules_dir else None)
    if verbose:
        for r in loaded:
            console.rule(f"{r.name} ({r.severity})")
            console.print(escape(f"{r.title}\n{r.id}  {', '.join(r.attack)}\n\n{r.description}"))
            console.print("[bold]False positives[/bold]: " + escape("; ".join(r.falsepositives)))
            console.print("[bold]Runbook[/bold]:\n" + escape(r.runbook))
        return
    t = Table(title=f"{len(loaded)} rules")
    for c in ("rule", "level", "ATT&CK", "title"):
        t.add_column(c)
    for r in loaded:
        t.add_row(r.name, r.severity, ", ".join(r.attack), escape(r.title))
    console.print(t)


@rules.command("export")
@click.option("--target", type=click.Choice(("splunk", "kusto", "elasticsearch", "databricks")), required=True,
              help="Query language and field mapping (docs/rules-export.md).")
@click.option("--table", help="Table or index to search (kusto: OfficeActivity, databricks: a table name).")
@click.option("--rules", "rules_dir", type=click.Path(exists=True, file_okay=False))
@click.option("--output", "-o", type=click.Path(dir_okay=False), help="Write the queries here instead of stdout.")
def rules_export(target: str, table: str | None, rules_dir: str | None, output: str | None) -> None:
    """Convert the rules to Splunk SPL, Kusto (Sentinel), Elasticsearch Lucene or Spark SQL (Databricks)."""
    from delegatewatch.detections.export import ExportError, export_rules
    from delegatewatch.detections.rules import RuleError, load_rules

    err = _console(False, stderr=True)
    try:
        text = export_rules(load_rules(Path(rules_dir) if rules_dir else None), target, table=table)
        with _output(output) as out:
            out.write(text if text.endswith("\n") else text + "\n")
    except (ExportError, RuleError, OSError) as exc:
        err.print(f"[red]error:[/red] {escape(str(exc))}")
        sys.exit(2)


@rules.command("test")
@click.option("--rules", "rules_dir", type=click.Path(exists=True, file_okay=False))
def rules_test(rules_dir: str | None) -> None:
    """Run every rule's own positive and negative test records; exit 1 on any failure."""
    from delegatewatch.detections.rules import RuleError, load_rules
    from delegatewatch.detections.testing import run_rule_tests, validate_rules

    console = _console(False)
    try:
        loaded = load_rules(Path(rules_dir) if rules_dir else None, use_cache=False)  # always re-validate
    except RuleError as exc:
        console.print(f"[red]error:[/red] {escape(str(exc))}")
        sys.exit(2)
    failures = 0
    problems = validate_rules(loaded)
    for problem in problems:
        console.print(f"[red]FAIL[/red] pySigma validation: {escape(problem)}")
    failures += len(problems)
    for outcome in run_rule_tests(loaded):
        mark = "[green]ok[/green]" if outcome.ok else "[red]FAIL[/red]"
        console.print(f"{mark} {outcome.rule.name}: {outcome.passed}/{outcome.total} records as expected")
        for problem in outcome.problems:
            console.print(f"    {escape(problem)}")
        failures += not outcome.ok
    console.print(f"{len(loaded) - failures} passed, {failures} failed")  # validation problems count as failures
    sys.exit(1 if failures else 0)


@main.group(cls=LazyGroup, lazy={"m365": "delegatewatch.collectors.m365_cli:m365_command",
                                 "google": "delegatewatch.collectors.google_cli:google_command"})
def collect() -> None:
    """Collect audit records from the vendors' APIs into compressed NDJSON (checkpointed)."""


