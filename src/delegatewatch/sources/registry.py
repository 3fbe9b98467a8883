"""The readers delegatewatch knows, and how a file is matched to one.

Built-in readers (the Microsoft 365 unified audit log dialects) are listed here; every module in
``delegatewatch/sources/formats/`` that defines ``READERS = [Reader(...), ...]`` is added
automatically, so a new source family is a new module there and nothing else in this package
changes. Detection asks each reader in ``priority`` order (lower first) whether it recognises the
file's first bytes; the first that says yes reads the file.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import cache
from typing import BinaryIO

from delegatewatch.records import ReadStats, Record
from delegatewatch.records.prefilter import Prefilter
from delegatewatch.sources.opening import Opened

ReadFn = Callable[[str, BinaryIO, ReadStats, "Prefilter | None"], Iterator[Record]]


@dataclass(frozen=True)
class Reader:
    """One input dialect.

    ``family`` says which rules (Sigma ``logsource.product``) and which event mapper apply to its
    records: ``m365`` for anything shaped like a unified-audit-log record (on-premises cmdlet
    logs are converted to that shape so the cloud rules apply unchanged), ``windows``, ``google``,
    ``snapshot`` … ``detect(opened, head)`` gets the sniffed file and its first bytes (UTF-8,
    leading white space removed) and answers whether the file is in this dialect.
    """

    dialect: str
    family: str
    detect: Callable[[Opened, bytes], bool]
    read: ReadFn
    priority: int = 100
    #: plain NDJSON that may be split into byte ranges and read by several processes; its read
    #: function then takes a ``limit`` keyword (bytes to read from the stream's position)
    splittable: bool = False


def _builtin() -> list[Reader]:
    from delegatewatch.sources import ual_readers

    return ual_readers.READERS


@cache
def readers() -> tuple[Reader, ...]:
    found = list(_builtin())
    from delegatewatch.sources import formats

    for info in pkgutil.iter_modules(formats.__path__):
        module = importlib.import_module(f"{formats.__name__}.{info.name}")
        found.extend(getattr(module, "READERS", ()))
    return tuple(sorted(found, key=lambda r: r.priority))


def by_dialect(dialect: str) -> Reader:
    for r in readers():
        if r.dialect == dialect:
            return r
    raise KeyError(dialect)
