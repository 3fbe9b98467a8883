"""Crash-safe output: atomic files, part files, and the checkpoint that commits them.

Commit protocol (one *batch* = the records of one or more blobs):

1. Each (content type, day) of the batch is streamed into a hidden temporary part file
   ``DIR/<type>/<day>/.part-<seq>.ndjson.gz.tmp``.
2. On commit every temporary file is closed, ``fsync``-ed, renamed (``os.replace``) to
   ``part-<seq>.ndjson.gz``, and its directory is ``fsync``-ed.
3. One SQLite transaction (WAL, ``synchronous=FULL``) then records, all at once: the part files,
   the blobs they came from (done / failed with the reason), the de-duplication keys (record
   ``Id``) of every record written, and the time windows completed. This transaction is the
   commit point.
4. On start, every part file (and temporary file) under the content-type folders that the
   checkpoint does not name is deleted: it belongs to a batch whose commit never happened, and
   its blobs are fetched again because the checkpoint does not list them as done.

A ``kill -9`` before step 3 completes leaves only unreferenced files (removed on restart) and no
trace in the checkpoint; after it, everything is durable. So no record is lost (a blob is "done"
only together with its records' files) and none is stored twice (a key is "seen" only together
with the file holding its record). Small JSON files (``manifest.json``) are written with
``atomic_write``: temporary file, ``fsync``, ``os.replace``, ``fsync`` of the directory.
"""

from __future__ import annotations

import gzip
import os
import re
import sqlite3
import time
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

PART_RE = re.compile(r"^part-(\d{8,})\.ndjson\.gz$")
TMP_RE = re.compile(r"^\.part-(\d{8,})\.ndjson\.gz\.tmp$")
DAY_RE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
SCHEMA_VERSION = 1


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def makedirs_durable(path: Path, stop: Path) -> None:
    """``mkdir -p`` that fsyncs each parent whose entries changed, up to ``stop``."""
    missing: list[Path] = []
    p = path
    while not p.exists() and p != stop and p != p.parent:
        missing.append(p)
        p = p.parent
    for d in reversed(missing):
        try:
            d.mkdir()
        except FileExistsError:
            pass
        fsync_dir(d.parent)


def atomic_write(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so a reader (or a crash) sees the old or the new file, never half."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    fsync_dir(path.parent)


class PartWriter:
    """One part file being written: NDJSON lines into a hidden gzip temporary file.

    Lines are buffered and compressed in chunks of about 1 MB, each a complete gzip member (a
    file of several members is ordinary gzip: ``gzip``, ``zcat``, DuckDB and Spark read it). With
    ``pool`` the chunks are compressed on other threads, where zlib runs without the GIL.
    """

    CHUNK = 1 << 20
    MAX_PENDING = 4

    def __init__(self, root: Path, content_type: str, day: str, seq: int, compresslevel: int = 6,
                 pool: Executor | None = None) -> None:
        self.content_type, self.day, self.seq = content_type, day, seq
        self.folder = root / content_type / day
        makedirs_durable(self.folder, root)
        self.final = self.folder / f"part-{seq:08d}.ndjson.gz"
        self.tmp = self.folder / f".part-{seq:08d}.ndjson.gz.tmp"
        self._raw = open(self.tmp, "wb")  # noqa: SIM115 - closed in finish/abandon
        self.level, self.pool = compresslevel, pool
        self._buf: list[bytes] = []
        self._size = 0
        self._pending: deque = deque()
        self.records = 0

    def add(self, line: bytes) -> None:
        self._buf.append(line)
        self._size += len(line)
        self.records += 1
        if self._size >= self.CHUNK:
            self._submit()

    def _submit(self) -> None:
        if not self._buf:
            return
        data = b"".join(self._buf)
        self._buf, self._size = [], 0
        if self.pool is None:
            self._raw.write(gzip.compress(data, self.level, mtime=0))
            return
        self._pending.append(self.pool.submit(gzip.compress, data, self.level, mtime=0))
        while len(self._pending) > self.MAX_PENDING:
            self._raw.write(self._pending.popleft().result())

    def finish(self) -> int:
        """Write out, fsync, move into place; returns the size in bytes. The caller fsyncs the folder."""
        self._submit()
        while self._pending:
            self._raw.write(self._pending.popleft().result())
        self._raw.flush()
        os.fsync(self._raw.fileno())
        size = self._raw.tell()
        self._raw.close()
        os.replace(self.tmp, self.final)
        return size

    def abandon(self) -> None:
        for fut in self._pending:
            fut.cancel()
        self._pending.clear()
        self._raw.close()
        self.tmp.unlink(missing_ok=True)


@dataclass
class BlobOutcome:
    content_id: str
    content_type: str
    content_uri: str
    content_created: str
    content_expiration: str
    status: str            # done | failed | retry
    records: int = 0       # records stored from this blob
    duplicates: int = 0    # records dropped as already stored
    code: str = ""
    reason: str = ""


@dataclass
class CommittedPart:
    seq: int
    path: str              # relative to DIR, POSIX separators
    content_type: str
    day: str
    records: int
    size: int


SCHEMA = """
CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT);
CREATE TABLE IF NOT EXISTS blobs(
    content_id TEXT PRIMARY KEY, content_type TEXT, content_uri TEXT, content_created TEXT,
    content_expiration TEXT, status TEXT, records INTEGER, duplicates INTEGER, code TEXT, reason TEXT,
    attempts INTEGER DEFAULT 1, updated TEXT);
CREATE TABLE IF NOT EXISTS parts(
    seq INTEGER PRIMARY KEY, path TEXT UNIQUE, content_type TEXT, day TEXT, records INTEGER,
    size INTEGER, committed TEXT, run INTEGER);
CREATE TABLE IF NOT EXISTS seen(key BLOB PRIMARY KEY, day TEXT, seen_day INTEGER) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS windows(content_type TEXT, start TEXT, end TEXT);
CREATE TABLE IF NOT EXISTS errors(
    n INTEGER PRIMARY KEY, time TEXT, run INTEGER, content_type TEXT, operation TEXT, code TEXT,
    message TEXT, window_start TEXT, window_end TEXT, content_id TEXT);
CREATE TABLE IF NOT EXISTS runs(
    run INTEGER PRIMARY KEY, started TEXT, finished TEXT, records INTEGER, duplicates INTEGER,
    files INTEGER, errors INTEGER, complete INTEGER);
CREATE TABLE IF NOT EXISTS subscriptions(content_type TEXT PRIMARY KEY, status TEXT, last_start TEXT);
"""


def _utcnow() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


class StateStore:
    """The checkpoint: a SQLite database in ``DIR/.state/m365-checkpoint.sqlite`` (see module doc)."""

    def __init__(self, root: Path, name: str = "m365") -> None:
        self.root = Path(root)
        self.state_dir = self.root / ".state"
        self.root.mkdir(parents=True, exist_ok=True)
        self.state_dir.mkdir(exist_ok=True)
        self.db = sqlite3.connect(self.state_dir / f"{name}-checkpoint.sqlite", isolation_level=None,
                                  check_same_thread=False)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=FULL")
        self.db.execute("PRAGMA cache_size=-32768")  # 32 MB: de-duplication lookups over millions of keys
        self.db.executescript(SCHEMA)
        row = self.db.execute("SELECT value FROM meta WHERE key='schema'").fetchone()
        if row is None:
            self.db.execute("INSERT INTO meta VALUES('schema', ?)", (str(SCHEMA_VERSION),))
        elif int(row[0]) != SCHEMA_VERSION:
            raise RuntimeError(f"{self.state_dir}: checkpoint schema {row[0]} is not {SCHEMA_VERSION}")

    def close(self) -> None:
        self.db.close()

    # ------------------------------------------------------------------ recovery
    def recover(self, content_types: Iterable[str]) -> list[Path]:
        """Delete part and temporary files the checkpoint does not reference; returns them."""
        known = {r[0] for r in self.db.execute("SELECT path FROM parts")}
        removed: list[Path] = []
        for ct in content_types:
            base = self.root / ct
            if not base.is_dir():
                continue
            for day_dir in base.iterdir():
                if not day_dir.is_dir():
                    continue
                changed = False
                for f in day_dir.iterdir():
                    rel = f"{ct}/{day_dir.name}/{f.name}"
                    if TMP_RE.match(f.name) or (PART_RE.match(f.name) and rel not in known):
                        f.unlink(missing_ok=True)
                        removed.append(f)
                        changed = True
                if changed:
                    fsync_dir(day_dir)
        for f in self.root.glob(".manifest.json.*.tmp"):
            f.unlink(missing_ok=True)
        return removed

    def next_seq(self) -> int:
        row = self.db.execute("SELECT max(seq) FROM parts").fetchone()
        return (row[0] or 0) + 1

    # ------------------------------------------------------------------ queries
    def seen_among(self, keys: list[bytes]) -> set[bytes]:
        found: set[bytes] = set()
        for i in range(0, len(keys), 900):
            chunk = keys[i:i + 900]
            q = "SELECT key FROM seen WHERE key IN (%s)" % ",".join("?" * len(chunk))
            found.update(r[0] for r in self.db.execute(q, chunk))
        return found

    def blob_status(self, content_ids: list[str]) -> dict[str, str]:
        out: dict[str, str] = {}
        for i in range(0, len(content_ids), 900):
            chunk = content_ids[i:i + 900]
            q = "SELECT content_id, status FROM blobs WHERE content_id IN (%s)" % ",".join("?" * len(chunk))
            out.update(self.db.execute(q, chunk).fetchall())
        return out

    def blobs_to_retry(self, content_type: str) -> list[tuple[str, str, str, str]]:
        return self.db.execute(
            "SELECT content_id, content_uri, content_created, content_expiration FROM blobs "
            "WHERE status='retry' AND content_type=? ORDER BY content_created, content_id",
            (content_type,)).fetchall()

    def windows(self, content_type: str) -> list[tuple[str, str]]:
        return self.db.execute("SELECT start, end FROM windows WHERE content_type=? ORDER BY start",
                               (content_type,)).fetchall()

    # ------------------------------------------------------------------ writes
    def commit(self, run: int, parts: list[CommittedPart], blobs: list[BlobOutcome],
               seen: Iterable[tuple[bytes, str]], windows: dict[str, list[tuple[str, str]]]) -> None:
        """The commit point of a batch: all of it, or (after a crash) none of it."""
        now = _utcnow()
        today = int(time.time() // 86400)
        db = self.db
        db.execute("BEGIN IMMEDIATE")
        try:
            db.executemany("INSERT INTO parts VALUES(?,?,?,?,?,?,?,?)",
                           [(p.seq, p.path, p.content_type, p.day, p.records, p.size, now, run) for p in parts])
            db.executemany(
                "INSERT INTO blobs(content_id, content_type, content_uri, content_created, content_expiration,"
                " status, records, duplicates, code, reason, attempts, updated) VALUES(?,?,?,?,?,?,?,?,?,?,1,?)"
                " ON CONFLICT(content_id) DO UPDATE SET status=excluded.status,"
                " records=blobs.records+excluded.records, duplicates=blobs.duplicates+excluded.duplicates,"
                " code=excluded.code, reason=excluded.reason, attempts=blobs.attempts+1, updated=excluded.updated",
                [(b.content_id, b.content_type, b.content_uri, b.content_created, b.content_expiration, b.status,
                  b.records, b.duplicates, b.code, b.reason, now) for b in blobs])
            db.executemany("INSERT INTO seen VALUES(?,?,?)", ((k, d, today) for k, d in seen))
            for ct, covered in windows.items():
                db.execute("DELETE FROM windows WHERE content_type=?", (ct,))
                db.executemany("INSERT INTO windows VALUES(?,?,?)", [(ct, s, e) for s, e in covered])
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise

    def record_error(self, run: int, operation: str, code: str, message: str, content_type: str = "",
                     window: tuple[str, str] | None = None, content_id: str = "") -> None:
        self.db.execute(
            "INSERT INTO errors(time, run, content_type, operation, code, message, window_start, window_end,"
            " content_id) VALUES(?,?,?,?,?,?,?,?,?)",
            (_utcnow(), run, content_type, operation, code, message, window[0] if window else None,
             window[1] if window else None, content_id))

    def start_run(self) -> int:
        cur = self.db.execute("INSERT INTO runs(started, complete) VALUES(?, 0)", (_utcnow(),))
        return int(cur.lastrowid)

    def finish_run(self, run: int, records: int, duplicates: int, files: int, errors: int, complete: bool) -> None:
        self.db.execute("UPDATE runs SET finished=?, records=?, duplicates=?, files=?, errors=?, complete=?"
                        " WHERE run=?", (_utcnow(), records, duplicates, files, errors, int(complete), run))

    def subscription_started(self, content_type: str) -> str | None:
        row = self.db.execute("SELECT last_start FROM subscriptions WHERE content_type=?", (content_type,)).fetchone()
        return row[0] if row else None

    def note_subscription(self, content_type: str, status: str, started: bool) -> None:
        if started:
            self.db.execute("INSERT INTO subscriptions VALUES(?,?,?) ON CONFLICT(content_type) DO UPDATE SET"
                            " status=excluded.status, last_start=excluded.last_start",
                            (content_type, status, _utcnow()))
        else:
            self.db.execute("INSERT INTO subscriptions(content_type, status) VALUES(?,?) ON CONFLICT(content_type)"
                            " DO UPDATE SET status=excluded.status", (content_type, status))

    def prune_seen(self, keep_days: int) -> int:
        cutoff = int(time.time() // 86400) - keep_days
        cur = self.db.execute("DELETE FROM seen WHERE seen_day < ?", (cutoff,))
        return cur.rowcount

    def iter_parts(self, since_run: int | None = None) -> Iterator[tuple[str, str, str, int]]:
        q = "SELECT path, content_type, day, records FROM parts"
        args: tuple = ()
        if since_run is not None:
            q += " WHERE run >= ?"
            args = (since_run,)
        yield from self.db.execute(q + " ORDER BY seq", args)


class BatchCommitter:
    """Collects blobs' records into part files and commits them in batches (see module doc).

    Only one thread calls it. De-duplication: a key already in the checkpoint, or already in
    this batch, is dropped and counted; otherwise the record is written and its key is committed
    with its file.
    """

    def __init__(self, store: StateStore, run: int, compresslevel: int = 6,
                 max_records: int = 50_000, max_blobs: int = 200, compress_threads: int | None = None) -> None:
        self.store, self.run = store, run
        self.root = store.root
        self.compresslevel = compresslevel
        self.max_records, self.max_blobs = max_records, max_blobs
        self.seq = store.next_seq()
        if compress_threads is None:  # compress beside the committing thread only where cores are spare
            compress_threads = min(4, (os.cpu_count() or 1) - 2)
        self.pool = (ThreadPoolExecutor(max_workers=compress_threads, thread_name_prefix="gzip")
                     if compress_threads > 0 else None)
        self.files: list[Path] = []       # committed by this committer, in commit order
        self.records = 0                  # committed records
        self.duplicates = 0               # committed duplicates dropped
        self._reset()

    def _reset(self) -> None:
        self.writers: dict[tuple[str, str], PartWriter] = {}
        self.pending_keys: dict[bytes, str] = {}
        self.pending_blobs: list[BlobOutcome] = []
        self.pending_windows: dict[str, list[tuple[str, str]]] = {}
        self.pending_records = 0

    def _writer(self, content_type: str, day: str) -> PartWriter:
        w = self.writers.get((content_type, day))
        if w is None:
            w = PartWriter(self.root, content_type, day, self.seq, self.compresslevel, self.pool)
            self.seq += 1
            self.writers[(content_type, day)] = w
        return w

    def add(self, outcome: BlobOutcome, items: list[tuple[bytes, str, bytes]] | None = None) -> None:
        """``items``: (dedup key, day, NDJSON line with its newline) of one blob."""
        if items:
            fresh = list({k for k, _, _ in items if k not in self.pending_keys})
            already = self.store.seen_among(fresh) if fresh else set()
            pending = self.pending_keys
            ct = outcome.content_type
            for key, day, line in items:
                if key in pending or key in already:
                    outcome.duplicates += 1
                    continue
                self._writer(ct, day).add(line)
                pending[key] = day
                outcome.records += 1
        self.pending_blobs.append(outcome)
        self.pending_records += outcome.records
        if self.pending_records >= self.max_records or len(self.pending_blobs) >= self.max_blobs:
            self.flush()

    def set_windows(self, content_type: str, covered: list[tuple[str, str]]) -> None:
        """The covered windows of a content type, committed with the next batch."""
        self.pending_windows[content_type] = covered

    def flush(self) -> list[Path]:
        if not (self.writers or self.pending_blobs or self.pending_windows):
            return []
        parts: list[CommittedPart] = []
        folders: set[Path] = set()
        try:
            for (ct, day), w in self.writers.items():
                size = w.finish()
                folders.add(w.folder)
                parts.append(CommittedPart(w.seq, f"{ct}/{day}/{w.final.name}", ct, day, w.records, size))
            for folder in folders:
                fsync_dir(folder)
            self.store.commit(self.run, parts, self.pending_blobs, self.pending_keys.items(), self.pending_windows)
        except BaseException:
            self.abort()
            raise
        new = [self.root / p.path for p in parts]
        self.files.extend(new)
        self.records += sum(p.records for p in parts)
        self.duplicates += sum(b.duplicates for b in self.pending_blobs)
        self._reset()
        return new

    def abort(self) -> None:
        """Drop the uncommitted batch (its files are removed; their blobs stay not done)."""
        for w in self.writers.values():
            w.abandon()
            w.final.unlink(missing_ok=True)
        self._reset()

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=True)
