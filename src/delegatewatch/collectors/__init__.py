"""Collectors: pull audit records from vendor APIs into files ``delegatewatch hunt`` reads.

Each collector writes compressed NDJSON partitioned by content type and day, a ``manifest.json``
saying what was and was not collected, and its checkpoint under ``DIR/.state`` so that a killed
run restarts without losing or duplicating a record (``checkpoint``). Shared pieces: ``retry``
(throttling and back-off), ``redact`` (secrets never leave the process), ``checkpoint`` (atomic
files, part files, the SQLite checkpoint).
"""

from __future__ import annotations

__all__ = ["CollectResult", "M365Collector", "M365Config"]


def __getattr__(name: str):  # lazy: importing the package must not import httpx/msal
    if name in __all__:
        from delegatewatch.collectors import m365
        return getattr(m365, name)
    raise AttributeError(name)
