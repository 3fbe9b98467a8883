"""Analytics: detections over many records at once (what a single-record Sigma rule cannot see).

A module ``<family>.py`` here that defines ``analyze(records, resolver) -> list[Finding]`` receives
every record of that family read by a hunt (not only rule matches), after all input is read: e.g.
``snapshot`` compares standing-permission snapshots. ``delegatewatch.engine.hunt`` calls it.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable


def analytic_for(family: str) -> Callable | None:
    try:
        module = importlib.import_module(f"delegatewatch.analytics.{family}")
    except ModuleNotFoundError:
        return None
    return getattr(module, "analyze", None)
