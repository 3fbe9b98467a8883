"""``delegatewatch watch``: the click command (attached to the main CLI as ``watch_command``)."""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import json
import logging
import os
import re
import signal
import sys
import types
import typing
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import click

SOURCES = ("m365", "google")
#: source → (module, class). The collectors live in delegatewatch.collectors (written separately).
COLLECTORS = {"m365": ("delegatewatch.collectors.m365", "M365Collector"),
              "google": ("delegatewatch.collectors.google", "GoogleCollector")}
_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)?", re.IGNORECASE)
_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, None: 1}
#: loggers that would print a webhook URL (a secret on Slack and Teams) or request details
_QUIET_LOGGERS = ("httpx", "httpcore", "hpack", "urllib3")

log = logging.getLogger("delegatewatch.watch")


def parse_duration(text: str) -> float:
    """``30s``, ``5m``, ``1h``, ``7d``, ``1d12h``, ``250ms``, or plain seconds."""
    spec = text.strip()
    parts = list(_DURATION.finditer(spec))
    if not spec or not parts or "".join(m.group(0) for m in parts) != spec or \
            (len(parts) > 1 and any(m.group(2) is None for m in parts)):
        raise ValueError(f"not a duration: {text!r} (use e.g. 30s, 5m, 1h)")
    return sum(float(m.group(1)) * _UNITS[(m.group(2) or "").lower() or None] for m in parts)


def parse_extra_options(args: list[str]) -> dict[str, Any]:
    """``--tenant-id X --dry-run --page-size=100`` → {"tenant_id": "X", "dry_run": True, "page_size": "100"}."""
    out: dict[str, Any] = {}
    i = 0
    while i < len(args):
        a = args[i]
        if not a.startswith("--") or a == "--":
            raise ValueError(f"unexpected argument {a!r} (collector options are --name value)")
        name, eq, value = a[2:].partition("=")
        key = name.replace("-", "_")
        if eq:
            out[key] = value
        elif i + 1 < len(args) and not args[i + 1].startswith("--"):
            out[key] = args[i + 1]
            i += 1
        else:
            out[key] = True
        i += 1
    return out


def load_config_file(path: str) -> dict[str, Any]:
    """JSON, YAML or TOML (by extension; YAML otherwise). A top-level ``collector:`` or source-named
    table is used when present."""
    text = Path(path).read_text(encoding="utf-8")
    suffix = Path(path).suffix.lower()
    if suffix == ".json":
        data = json.loads(text)
    elif suffix == ".toml":
        import tomllib

        data = tomllib.loads(text)
    else:
        import yaml

        data = yaml.safe_load(text) or {}
    if not isinstance(data, dict):
        raise ValueError(f"{path}: the configuration must be a mapping")
    return data


def _convert(value: Any, hint: Any) -> Any:
    if not isinstance(value, str):
        return value
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        hint = args[0] if len(args) == 1 else str
    if hint is bool:
        return value.lower() in ("1", "true", "yes", "on")
    if hint in (int, float, Path):
        return hint(value)
    if hint is timedelta:
        return timedelta(seconds=parse_duration(value))
    if hint is datetime:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    if typing.get_origin(hint) in (tuple, list):
        items = tuple(v.strip() for v in value.split(",") if v.strip())
        return items if typing.get_origin(hint) is tuple else list(items)
    return value


def resolve_env_options(config: dict[str, Any], fields: set[str], secrets: list[str]) -> dict[str, Any]:
    """``secret_env: VAR`` → ``secret: <value of VAR>`` when the config has a ``secret`` field (secrets
    never sit in a file or on the command line); ``secret_env`` itself is kept when it is a field too."""
    out = dict(config)
    for key, var in config.items():
        if not key.endswith("_env") or not isinstance(var, str):
            continue
        target = key[: -len("_env")]
        if target in fields:
            value = os.environ.get(var)
            if not value:
                raise ValueError(f"environment variable {var} (for {target}) is not set or empty")
            out[target] = value
            secrets.append(value)
            if key not in fields:
                del out[key]
    return out


def make_config(cls: type, config: dict[str, Any], secrets: list[str] | None = None) -> Any:
    """Build the collector's config from a dict, following the type its ``__init__`` declares:
    ``from_dict``/pydantic ``model_validate``/a dataclass; a plain dict otherwise."""
    try:
        params = list(inspect.signature(cls).parameters.values())
        hints = typing.get_type_hints(cls.__init__)
    except (TypeError, ValueError, NameError):
        return config
    if not params:
        return config
    ann = hints.get(params[0].name)
    if ann is None or not isinstance(ann, type) or ann in (dict, typing.Any):
        return config
    if hasattr(ann, "from_dict"):
        return ann.from_dict(config)
    if hasattr(ann, "model_validate"):
        return ann.model_validate(config)
    if dataclasses.is_dataclass(ann):
        fields = {f.name: f for f in dataclasses.fields(ann)}
        config = resolve_env_options(config, set(fields), secrets if secrets is not None else [])
        unknown = sorted(set(config) - set(fields))
        if unknown:
            raise ValueError(f"unknown collector option(s): {', '.join(unknown)} "
                             f"(known: {', '.join(sorted(fields))})")
        types = typing.get_type_hints(ann)
        return ann(**{k: _convert(v, types.get(k, str)) for k, v in config.items()})
    return config


def build_collector(source: str, config: dict[str, Any], secrets: list[str] | None = None) -> Any:
    module_name, class_name = COLLECTORS[source]
    try:
        try:
            cls = getattr(importlib.import_module("delegatewatch.collectors"), class_name)
        except AttributeError:
            cls = getattr(importlib.import_module(module_name), class_name)
    except (ImportError, AttributeError) as exc:
        raise click.ClickException(f"the {source} collector is not available in this installation ({exc})") from None
    return cls(make_config(cls, config, secrets))


class _Redact(logging.Filter):
    """Defence in depth: the values of secrets read from the environment never reach a log line."""

    def __init__(self, secrets: list[str]) -> None:
        super().__init__()
        self.secrets = secrets

    def filter(self, record: logging.LogRecord) -> bool:
        live = [s for s in self.secrets if s and len(s) >= 4]
        if live:
            text = record.getMessage()
            if any(s in text for s in live):
                for s in live:
                    text = text.replace(s, "***")
                record.msg, record.args = text, None
        return True


def _setup_logging(level: str, secrets: list[str]) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(_Redact(secrets))
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger("delegatewatch")
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    root.propagate = False
    for name in _QUIET_LOGGERS:  # never at INFO/DEBUG: they print full URLs and request details
        logging.getLogger(name).setLevel(logging.WARNING)


def watch_analytics(settings: Any, users: Any) -> tuple[list[Any], Any]:
    """The analytics that keep state between rounds, and the configuration the rounds' hunts use:
    send volume is judged by :class:`SendVolumeWatch` against the stored history, so each batch's
    hunt (which sees minutes of mail) does not judge it again."""
    from delegatewatch.watch.send_volume import SendVolumeWatch

    if not settings.send_volume.enabled:
        return [], settings
    return [SendVolumeWatch(settings, users)], dataclasses.replace(
        settings, send_volume=dataclasses.replace(settings.send_volume, enabled=False))


@click.command("watch", context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
@click.option("--source", type=click.Choice(SOURCES), required=True, help="Which API to collect from.")
@click.option("--config", "config_file", type=click.Path(exists=True, dir_okay=False),
              help="Collector configuration (YAML, JSON or TOML); options on the command line override it.")
@click.option("--state", "state_dir", required=True, type=click.Path(file_okay=False),
              help="State folder: what was hunted and what each sink was sent (kept across restarts).")
@click.option("--interval", default="5m", show_default=True, help="Time between the starts of two rounds (30s, 5m, 1h).")
@click.option("--sink", "sink_specs", multiple=True,
              help="Where findings go (repeatable): stdout, jsonl:PATH, webhook:URL[,format=slack|teams], "
                   "syslog:udp|tcp|tls://HOST:PORT, hec:URL. Default: stdout.")
@click.option("--hec-token-env", metavar="VAR", help="Environment variable holding the Splunk HEC token.")
@click.option("--once", is_flag=True, help="One round, then exit (1 when a sink or the collector failed).")
@click.option("--rules", "rules_dir", type=click.Path(exists=True, file_okay=False),
              help="Use the Sigma rules in this folder instead of the built-in ones.")
@click.option("--directory", type=click.Path(exists=True, dir_okay=False), help="Entra ID users export (CSV).")
@click.option("--jobs", "-j", type=click.IntRange(min=1), default=None, help="Worker processes for large batches.")
@click.option("--settings", "settings_file", type=click.Path(exists=True, dir_okay=False),
              help="delegatewatch configuration (TOML, docs/configuration.md; hunt's --config): [allow], "
                   "[mailflow], [send_volume], [lures] ….")
@click.option("--log-level", type=click.Choice(("debug", "info", "warning", "error"), case_sensitive=False),
              default="info", show_default=True)
@click.pass_context
def watch_command(ctx: click.Context, source: str, config_file: str | None, state_dir: str, interval: str,
                  sink_specs: tuple[str, ...], hec_token_env: str | None, once: bool, rules_dir: str | None,
                  directory: str | None, jobs: int | None, settings_file: str | None, log_level: str) -> None:
    """Collect audit records continuously, hunt each new batch, and send new findings to sinks.

    Options this command does not know are passed to the collector (--tenant-id X → tenant_id).
    """
    from delegatewatch import config as configuration
    from delegatewatch.detections.rules import RuleError, load_rules
    from delegatewatch.events.principals import Directory
    from delegatewatch.watch.loop import Watcher
    from delegatewatch.watch.sinks import parse_sink
    from delegatewatch.watch.state import StateError, WatchState

    secrets: list[str] = []
    if hec_token_env and os.environ.get(hec_token_env):
        secrets.append(os.environ[hec_token_env])
    _setup_logging(log_level, secrets)
    try:
        seconds = parse_duration(interval)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--interval") from None
    try:
        sinks = [parse_sink(s, hec_token_env=hec_token_env) for s in (sink_specs or ("stdout",))]
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--sink") from None
    try:
        config = load_config_file(config_file) if config_file else {}
        config = dict(config.get(source, config.get("collector", config)))
        config.update(parse_extra_options(list(ctx.args)))
        rules = load_rules(Path(rules_dir) if rules_dir else None)
        users = Directory.load(directory) if directory else None
        settings = configuration.load(settings_file)
    except (ValueError, OSError, RuleError) as exc:
        raise click.ClickException(str(exc)) from None
    try:
        collector = build_collector(source, config, secrets)
    except (ValueError, TypeError) as exc:
        raise click.ClickException(f"collector configuration: {exc}") from None
    try:
        state = WatchState(state_dir)
    except (StateError, OSError) as exc:
        raise click.ClickException(str(exc)) from None

    collector_config = getattr(collector, "config", None)
    output_dir = getattr(collector_config, "out", None) or getattr(collector_config, "out_dir", None)
    analytics, hunt_settings = watch_analytics(settings, users)
    previous_settings = configuration.current()
    configuration.use(hunt_settings)
    watcher = Watcher(collector, state, sinks, rules=rules, directory=users, jobs=jobs, output_dir=output_dir,
                      analytics=analytics)

    def stop(signum: int, _frame: object) -> None:
        log.info("%s received: stopping after this round", signal.Signals(signum).name)
        watcher.stop.set()
        signal.signal(signal.SIGINT, signal.default_int_handler)  # a second Ctrl-C interrupts at once

    previous = {s: signal.signal(s, stop) for s in (signal.SIGTERM, signal.SIGINT)}
    log.info("watching %s every %ss; state in %s; sinks: %s", source, f"{seconds:g}", state_dir,
             ", ".join(f"{s.display} ({s.delivery})" for s in sinks))
    try:
        last = watcher.run(seconds, once=once)
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
        watcher.close()
        state.close()
        configuration.use(previous_settings)
        if hasattr(collector, "close"):
            collector.close()
    if once and last is not None and not last.ok:
        ctx.exit(1)
