"""Analytics: detections over many records at once (what a single-record Sigma rule cannot see).

A module ``<family>.py`` here that defines ``analyze(records, resolver) -> list[Finding]`` receives
every record of that family read by a hunt (not only rule matches), after all input is read: e.g.
``snapshot`` compares standing-permission snapshots. ``delegatewatch.engine.hunt`` calls it.

Unified-audit-log records (family ``m365``) are prefiltered by operation, so a module that also
wants some of them lists their operations in ``M365_OPERATIONS`` (e.g. ``{"Send", "SendAs"}``, or
a function returning them, so configuration can switch them on); the prefilter then keeps them and
they reach the module's ``analyze`` with its own family's records.

Operations that are a large share of real audit logs and mostly irrelevant (``MailItemsAccessed``
and ``MailboxLogin``: owner access is most of them) can be asked for conditionally:
``M365_REQUIRES = {"MailItemsAccessed": r'ogon_?[Tt]ype""?:…'}`` feeds a record of that operation only
when the pattern (a regular expression over the raw line, as written) matches; the prefilter's second
stage drops the rest before parsing. It may over-match, so the module re-checks the parsed value;
``--full-parse`` feeds them all. ``M365_KEEP(record) -> bool`` (optional) is that re-check, made as
the records are read so only the wanted ones are held in memory. A module without ``analyze`` is
only fed (the hunt hands its records on, e.g. to the incidents).
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from functools import cache


@cache
def _modules() -> tuple:
    return tuple(importlib.import_module(f"{__name__}.{info.name}") for info in pkgutil.iter_modules(__path__))


def _wanted(module) -> dict[str, str | None]:  # noqa: ANN001
    """A module's operations (lower-case) → the pattern a line must match (None: every line)."""
    ops = getattr(module, "M365_OPERATIONS", ())
    out: dict[str, str | None] = {op.lower(): None for op in (ops() if callable(ops) else ops)}
    for op, pattern in getattr(module, "M365_REQUIRES", {}).items():
        out.setdefault(op.lower(), pattern)
    return out


def m365_feeds() -> dict[str, tuple[str, ...]]:
    """Operation (lower-case) of unified-audit-log records → the analytics modules (families) they feed."""
    out: dict[str, tuple[str, ...]] = {}
    for module in _modules():
        for op in _wanted(module):
            out[op] = (*out.get(op, ()), module.__name__.rsplit(".", 1)[-1])
    return out


def m365_feed_filters() -> dict[str, Callable[[dict], bool]]:
    """Module (family) → its ``M365_KEEP`` test of a parsed record, for the modules that have one."""
    return {module.__name__.rsplit(".", 1)[-1]: module.M365_KEEP for module in _modules()
            if callable(getattr(module, "M365_KEEP", None))}


def m365_feed_names() -> set[str]:
    """The operations of :func:`m365_feeds`, spelt as the modules spell them (the audit log's
    spelling, which the prefilter searches for), conditional ones included."""
    names: set[str] = set()
    for module in _modules():
        ops = getattr(module, "M365_OPERATIONS", ())
        names.update(ops() if callable(ops) else ops)
        names.update(getattr(module, "M365_REQUIRES", {}))
    return names


def m365_feed_patterns() -> dict[str, str | None]:
    """Operation (lower-case) → the pattern a line must match to feed any module (None: every
    record of the operation is wanted)."""
    out: dict[str, str | None] = {}
    for module in _modules():
        for op, pattern in _wanted(module).items():
            if op not in out:
                out[op] = pattern
            elif out[op] is not None:
                out[op] = None if pattern is None else f"(?:{out[op]})|(?:{pattern})"
    return out


def analytic_for(family: str) -> Callable | None:
    try:
        module = importlib.import_module(f"delegatewatch.analytics.{family}")
    except ModuleNotFoundError:
        return None
    return getattr(module, "analyze", None)
