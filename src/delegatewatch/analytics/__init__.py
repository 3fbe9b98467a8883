"""Analytics: detections over many records at once (what a single-record Sigma rule cannot see).

A module ``<family>.py`` here that defines ``analyze(records, resolver) -> list[Finding]`` receives
every record of that family read by a hunt (not only rule matches), after all input is read: e.g.
``snapshot`` compares standing-permission snapshots. ``delegatewatch.engine.hunt`` calls it.

Unified-audit-log records (family ``m365``) are prefiltered by operation, so a module that also
wants some of them lists their operations in ``M365_OPERATIONS`` (e.g. ``{"Send", "SendAs"}``, or
a function returning them, so configuration can switch them on); the prefilter then keeps them and
they reach the module's ``analyze`` with its own family's records.

A module may also define ``reduce(record)``: the hunt calls it where the record is read (in its
worker processes) and collects what it returns instead of the record (None: drop it), so a module
that needs a few fields of many records (mail sends) moves a compact, picklable form between
processes. The form must keep a mutable ``line`` (the hunt renumbers it like a record's).
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from functools import cache


@cache
def _modules() -> tuple:
    return tuple(importlib.import_module(f"{__name__}.{info.name}") for info in pkgutil.iter_modules(__path__))


def m365_feeds() -> dict[str, str]:
    """Operation (lower-case) of unified-audit-log records → the analytics module (family) they feed."""
    out: dict[str, str] = {}
    for module in _modules():
        ops = getattr(module, "M365_OPERATIONS", ())
        for op in (ops() if callable(ops) else ops):
            out[op.lower()] = module.__name__.rsplit(".", 1)[-1]
    return out


def _hook(family: str, name: str) -> Callable | None:
    try:
        module = importlib.import_module(f"delegatewatch.analytics.{family}")
    except ModuleNotFoundError:
        return None
    return getattr(module, name, None)


def analytic_for(family: str) -> Callable | None:
    return _hook(family, "analyze")


def reducer_for(family: str) -> Callable | None:
    """The analytics module's per-record ``reduce`` (see above), or None to collect records whole."""
    return _hook(family, "reduce")
