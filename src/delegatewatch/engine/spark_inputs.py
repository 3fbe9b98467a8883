"""Inputs that live on any filesystem Spark reads: planning units over URIs, and reading a unit
on an executor.

Plain paths are local (or a shared mount every executor sees, such as Databricks' ``/dbfs``)
and are planned exactly as the embedded hunt plans them (:func:`delegatewatch.engine.hunt.plan`).
A URI (``file://``, ``s3://``/``s3a://``, ``abfs://``/``abfss://``, ``gs://``, ``hdfs://``) is
listed, sized and read through :mod:`pyarrow.fs` (:mod:`delegatewatch.sources.uris`), the one
filesystem layer the driver and the executors share (Spark's Hadoop filesystems are JVM-side and cannot hand a Python reader a
seekable stream). The readers open local paths (the EVTX parser needs a real file), so an
executor copies its unit — a whole file, or only its byte range — to a local temporary folder
under the file's own name (snapshot readers take the snapshot time from it), scans it, and puts
the URI back into every piece of provenance.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace

import pyarrow.fs as pafs

from delegatewatch.engine import hunt as hunt_mod
from delegatewatch.engine.hunt import Unit, UnitResult
from delegatewatch.records import ReadStats, Record
from delegatewatch.records.model import RecordIssue
from delegatewatch.sources import line_bounds
from delegatewatch.sources.detect import detect
from delegatewatch.sources.opening import GZIP_MAGIC, SNIFF_BYTES, _sniff_bytes
from delegatewatch.sources.registry import by_dialect
from delegatewatch.sources.uris import is_uri, local_path, resolve

_COPY_BLOCK = 8 << 20


def _join(uri: str, fs_path: str, root_inner: str) -> str:
    """The URI of ``fs_path`` found under the listed ``uri`` (whose inner path is ``root_inner``)."""
    rest = fs_path[len(root_inner):].lstrip("/")
    return uri.rstrip("/") + "/" + rest if rest else uri


def _hidden(rel: str) -> bool:
    return any(part.startswith(".") for part in rel.split("/") if part)


def list_uri(uri: str, stats: ReadStats) -> list[tuple[str, int]]:
    """(URI, size) of the file named, or of every file under the folder named, in a stable order;
    hidden names are skipped as :func:`delegatewatch.sources.iter_files` skips them."""
    try:
        fs, inner = resolve(uri)
        info = fs.get_file_info(inner)
        if info.type == pafs.FileType.NotFound:
            stats.skip_file(uri, "no such file or folder")
            return []
        if info.type == pafs.FileType.File:
            return [(uri, info.size)]
        found = fs.get_file_info(pafs.FileSelector(inner, recursive=True))
    except (OSError, ValueError) as exc:
        stats.skip_file(uri, f"cannot list: {exc}")
        return []
    files = [(f.path, f.size) for f in found if f.type == pafs.FileType.File]
    base = inner.rstrip("/")
    out = []
    for path, size in sorted(files):
        rel = path[len(base):]
        if not _hidden(rel):
            out.append((_join(uri, path, base), size))
    return out


def _head(uri: str, size: int) -> bytes:
    fs, inner = resolve(uri)
    with fs.open_input_file(inner) as f:
        return f.read(min(size, SNIFF_BYTES))


def _split_points(uri: str, size: int, parts: int) -> list[tuple[int, int]]:
    """:func:`delegatewatch.sources.split_points` for a URI: each boundary is found with one seek and
    64 KB reads (a remote file's readline would be one request per few bytes)."""
    fs, inner = resolve(uri)
    with fs.open_input_file(inner) as f:

        def line_start(target: int) -> int:
            if target == 0:
                return 0
            pos = target  # as readline from target: past the first newline at or after it
            while pos < size:
                f.seek(pos)
                chunk = f.read(1 << 16)
                if not chunk:
                    break
                nl = chunk.find(b"\n")
                if nl >= 0:
                    return pos + nl + 1
                pos += len(chunk)
            return size

        return line_bounds(size, parts, line_start)


def plan(paths: Sequence[str], parallelism: int, stats: ReadStats, exclude: Sequence[str] = ()) -> list[Unit]:
    """Units for Spark tasks: plain paths as the embedded hunt plans them, URIs by file and by
    byte ranges of large plain UTF-8 NDJSON files (ranges: ``2 × parallelism`` per file)."""
    units: list[Unit] = []
    skip = set(exclude)
    for path in map(local_path, paths):  # dbfs:/ is the /dbfs mount every node has: a plain path
        if not is_uri(path):
            # 2 × parallelism ranges, as for URIs: tasks on a cluster balance better in more pieces
            units += hunt_mod.plan([path], parallelism * 2 if parallelism > 1 else 1, stats, exclude)
            continue
        for uri, size in list_uri(path, stats):
            if uri in skip:
                continue
            units += _plan_uri(uri, size, parallelism, stats)
    return units


def _plan_uri(uri: str, size: int, parallelism: int, stats: ReadStats) -> list[Unit]:
    if parallelism > 1 and size >= hunt_mod.SPLIT_MIN:
        try:
            head = _head(uri, size)
        except OSError as exc:
            stats.skip_file(uri, f"cannot open: {exc}")
            return []
        opened = None if head.startswith(GZIP_MAGIC) else _sniff_bytes(head)
        found = detect(opened) if opened is not None else None
        if (found is not None and found.dialect and opened is not None and opened.encoding == "utf-8"
                and opened.bom == 0 and by_dialect(found.dialect).splittable):
            stats.files_read.append((uri, found.dialect))
            return [Unit(uri, s, e, found.dialect) for s, e in _split_points(uri, size, parallelism * 2)]
    return [Unit(uri, 0, None)]


@contextmanager
def localised(unit: Unit) -> Iterator[Unit]:
    """``unit`` readable from local disk: as is for a plain path, else a copy of the file (or of
    its byte range) in a temporary folder, removed afterwards."""
    if not is_uri(unit.path):
        yield unit
        return
    fs, inner = resolve(unit.path)
    folder = tempfile.mkdtemp(prefix="delegatewatch-")
    local = os.path.join(folder, os.path.basename(inner.rstrip("/")) or "input")
    try:
        with fs.open_input_file(inner) as src, open(local, "wb") as dst:
            if unit.end is None:
                shutil.copyfileobj(src, dst, _COPY_BLOCK)
            else:
                src.seek(unit.start)
                left = unit.end - unit.start
                while left > 0:
                    chunk = src.read(min(left, _COPY_BLOCK))
                    if not chunk:
                        break
                    dst.write(chunk)
                    left -= len(chunk)
        size = os.path.getsize(local)
        yield replace(unit, path=local, start=0, end=None if unit.end is None else size)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _renamer(local: str, uri: str):  # noqa: ANN202
    def fix(path: str) -> str:
        return uri + path[len(local):] if path.startswith(local) else path
    return fix


def restore_record(record: Record, local: str, uri: str) -> None:
    """Name ``uri`` where reading its local copy ``local`` wrote the copy's path into ``record``."""
    fix = _renamer(local, uri)
    record.source = fix(record.source)
    dedup = record.data.get("_dedup")
    if isinstance(dedup, str):  # snapshot readers key de-duplication on the path
        record.data["_dedup"] = fix(dedup)


def restore_stats(stats: ReadStats, local: str, uri: str) -> None:
    fix = _renamer(local, uri)
    stats.files_read = [(fix(p), d) for p, d in stats.files_read]
    stats.files_skipped = [(fix(p), r) for p, r in stats.files_skipped]
    stats.issues = [RecordIssue(fix(i.source), i.line, i.message, i.skipped) for i in stats.issues]


def restore_provenance(result: UnitResult, local: str, uri: str) -> UnitResult:
    """Name ``uri`` wherever the scan of its local copy ``local`` wrote the copy's path."""
    if local == uri:
        return result
    restore_stats(result.stats, local, uri)
    fix = _renamer(local, uri)
    for item in {id(r): r for r in [*(r for _, r in result.matches), *(r for _, r in result.collected)]}.values():
        if isinstance(item, Record):
            restore_record(item, local, uri)
        elif isinstance(getattr(item, "source", None), str):  # reduced in the task (an AuditSend): its source
            item.source = fix(item.source)
    return result
