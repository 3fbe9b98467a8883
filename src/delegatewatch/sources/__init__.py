"""Sources: find files, recognise each one's dialect from its content, stream its records.

One module per dialect family (``ndjson``, ``json_document``, ``csv_exports``); what they share
lives in ``opening`` (encodings, gzip), ``lines`` (block reading, prefilter) and ``ual`` (turning
a decoded item into the UAL record).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator, Mapping

from delegatewatch.records import ReadStats, Record
from delegatewatch.records.prefilter import Prefilter
from delegatewatch.sources import csv_exports, json_document, ndjson
from delegatewatch.sources.detect import detect
from delegatewatch.sources.registry import by_dialect
from delegatewatch.sources.opening import open_utf8, sniff

DIALECTS = (ndjson.DIALECT, json_document.ARRAY, json_document.OBJECTS,
            csv_exports.NEW, csv_exports.CLASSIC, csv_exports.POWERSHELL)


def iter_files(paths: Iterable[str]) -> Iterator[str]:
    """Files named, and every file under folders named, in a stable order."""
    for p in paths:
        if os.path.isdir(p):
            for root, dirs, files in os.walk(p):
                dirs.sort()
                dirs[:] = [d for d in dirs if not d.startswith(".")]
                for name in sorted(files):
                    if not name.startswith("."):
                        yield os.path.join(root, name)
        else:
            yield p


def read_file(path: str, stats: ReadStats, prefilter: Prefilter | None = None,
              families: Mapping[str, str] | None = None) -> Iterator[Record]:
    """Records of one file, through the reader its content selects (``registry``). ``families``:
    read only files of these families (family → what to call it in the skip reason)."""
    try:
        opened = sniff(path)
    except OSError as exc:
        stats.skip_file(path, f"cannot open: {exc.strerror or exc}")
        return
    found = detect(opened)
    if found.dialect is None:
        stats.skip_file(path, found.reason or "unrecognised")
        return
    if families is not None and found.family not in families:
        wanted = " or ".join(families.values())
        stats.skip_file(path, f"not {wanted} ({found.dialect}); `delegatewatch hunt` reads it")
        return
    reader = by_dialect(found.dialect)
    stats.files_read.append((path, found.dialect))
    try:
        with open_utf8(path, opened) as stream:
            # Readers set each record's family (a Windows log can hold Exchange cmdlet events that
            # are converted to unified-audit-log shape, family "m365", so the cloud rules apply).
            yield from reader.read(path, stream, stats, prefilter if reader.family == "m365" else None)
    except (OSError, EOFError) as exc:
        stats.issue(path, None, f"read error, rest of file not read: {exc}", reason="read error")


def split_points(path: str, parts: int) -> list[tuple[int, int]]:
    """Byte ranges of about equal size that start and end on line boundaries."""
    with open(path, "rb") as f:

        def line_start(target: int) -> int:
            f.seek(target)
            if target > 0:
                f.readline()  # finish the line that straddles the target
            return f.tell()

        return line_bounds(os.path.getsize(path), parts, line_start)


def line_bounds(size: int, parts: int, line_start: Callable[[int], int]) -> list[tuple[int, int]]:
    """``parts`` byte ranges of about ``size / parts``; ``line_start(offset)`` is where the first line
    starting at or after ``offset`` begins (a local file's readline, or chunked reads of a remote one)."""
    bounds = [0]
    for i in range(1, parts):
        pos = line_start(max(size * i // parts, bounds[-1]))
        if pos >= size:
            break
        if pos > bounds[-1]:
            bounds.append(pos)
    bounds.append(size)
    return list(zip(bounds, bounds[1:]))


def read_range(path: str, start: int, end: int, stats: ReadStats, prefilter: Prefilter | None = None,
               dialect: str = ndjson.DIALECT) -> Iterator[Record]:
    """Records of one byte range of a plain UTF-8 line file (see :func:`split_points`); the
    dialect's reader must be ``splittable`` (its read function takes ``limit``)."""
    reader = by_dialect(dialect)
    with open(path, "rb") as stream:
        stream.seek(start)
        yield from reader.read(path, stream, stats, prefilter if reader.family == "m365" else None,
                               limit=end - start)


def read_paths(paths: Iterable[str], stats: ReadStats, prefilter: Prefilter | None = None) -> Iterator[Record]:
    """Records of every file under ``paths``, one file after another, in one process."""
    for path in iter_files(paths):
        if not os.path.exists(path):
            stats.skip_file(path, "no such file or folder")
            continue
        yield from read_file(path, stats, prefilter)
