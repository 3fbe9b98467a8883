"""Analytics: detections over many records at once (what a single-record Sigma rule cannot see).

A module ``<family>.py`` here that defines ``analyze(records, resolver) -> list[Finding]`` receives
every record of that family read by a hunt (not only rule matches), after all input is read: e.g.
``snapshot`` compares standing-permission snapshots. ``delegatewatch.engine.hunt`` calls it.

Unified-audit-log records (family ``m365``) are prefiltered by operation, so a module that also
wants some of them lists their operations in ``M365_OPERATIONS`` (e.g. ``{"Send", "SendAs"}``, or
a function returning them, so configuration can switch them on); the prefilter then keeps them and
they reach the module's ``analyze`` with its own family's records (a mapping operation → literals,
one of which the raw record must contain, or None, keeps only those: ``{"Set-Mailbox":
["GrantSendOnBehalfTo"]}``). A module that needs records of
other families too (the permission ledger: Windows 5136, Google, snapshots) lists them in
``FAMILIES``: family → a test of the record's dict (or None for every record of the family), so a
large Security log is not kept whole for the few events it wants.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable, Mapping
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


def m365_feed_names() -> set[str]:
    """The same operations as :func:`m365_feeds`, spelt as the modules spell them (the audit log's
    spelling, which the prefilter searches for)."""
    names: set[str] = set()
    for module in _modules():
        ops = getattr(module, "M365_OPERATIONS", ())
        names.update(ops() if callable(ops) else ops)
    return names


def m365_literals() -> dict[str, frozenset[str] | None]:
    """Operation (lower-case) → literals one of which its records must contain for the analytic that
    wants them (``M365_OPERATIONS`` given as a mapping), or None: every record of the operation."""
    out: dict[str, frozenset[str] | None] = {}
    for module in _modules():
        ops = getattr(module, "M365_OPERATIONS", ())
        ops = ops() if callable(ops) else ops
        for op in ops:
            literals = ops[op] if isinstance(ops, Mapping) else None
            out[op.lower()] = None if literals is None else frozenset(x.lower() for x in literals)
    return out


def analytic_for(family: str) -> Callable | None:
    try:
        module = importlib.import_module(f"delegatewatch.analytics.{family}")
    except ModuleNotFoundError:
        return None
    return getattr(module, "analyze", None)


@cache
def _family_feeds(family: str) -> tuple[tuple[str, Callable | None], ...]:
    out: list[tuple[str, Callable | None]] = []
    for module in _modules():
        name = module.__name__.rsplit(".", 1)[-1]
        if name == family and getattr(module, "analyze", None) is not None:
            out.append((name, None))
        elif family in getattr(module, "FAMILIES", {}):
            out.append((name, module.FAMILIES[family]))
    return tuple(out)


def feeds_for(family: str, data: dict) -> list[str]:
    """The analytics modules (by name) that want this record of a non-``m365`` family whole."""
    return [name for name, keep in _family_feeds(family) if keep is None or keep(data)]
