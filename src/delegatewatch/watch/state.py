"""What `delegatewatch watch` keeps between rounds and across restarts, in one SQLite file.

``DIR/state.sqlite3`` (WAL journal, ``synchronous=FULL``): every change is one transaction, so a
``kill -9`` at any moment leaves either the state before or the state after it, never half of it.

Tables (schema version in ``meta``):

- ``files``: collected files, ``pending`` until their hunt is committed (a crash between collecting
  and hunting re-hunts them on restart), then ``hunted``.
- ``records``: UAL ``Id`` (or other native record id) of every record that produced a finding, so the
  same record arriving again in a later blob is not alerted again.
- ``findings``: every finding id ever found (first round and time).
- ``outbox``: per sink, the findings still to deliver (``queued``) or being delivered right now
  (``inflight``: committed *before* the send, so a restart knows which sends may or may not have
  reached the sink and resolves them by the sink's delivery policy).
- ``sent``: per sink, the finding ids delivered.
- ``kv``: namespaced key/value state for analytics (baselines, counters) — written in the same
  transaction as the batch it describes (:meth:`WatchState.commit_batch`).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import sqlite3
import threading
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

SCHEMA_VERSION = 1
DB_NAME = "state.sqlite3"
LOCK_NAME = "watch.lock"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS files (path TEXT PRIMARY KEY, status TEXT NOT NULL, round INTEGER NOT NULL,
                                  at TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS records (id TEXT PRIMARY KEY, round INTEGER NOT NULL, at TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS findings (id TEXT PRIMARY KEY, round INTEGER NOT NULL, at TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS outbox (sink TEXT NOT NULL, finding_id TEXT NOT NULL, seq INTEGER NOT NULL,
                                   finding BLOB NOT NULL, status TEXT NOT NULL DEFAULT 'queued',
                                   attempts INTEGER NOT NULL DEFAULT 0, last_error TEXT,
                                   PRIMARY KEY (sink, finding_id));
CREATE INDEX IF NOT EXISTS outbox_order ON outbox (sink, status, seq);
CREATE TABLE IF NOT EXISTS sent (sink TEXT NOT NULL, finding_id TEXT NOT NULL, at TEXT NOT NULL,
                                 PRIMARY KEY (sink, finding_id));
CREATE TABLE IF NOT EXISTS kv (namespace TEXT NOT NULL, key TEXT NOT NULL, value BLOB NOT NULL,
                               PRIMARY KEY (namespace, key));
"""


class StateError(RuntimeError):
    pass


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass
class OutboxItem:
    finding_id: str
    finding: dict[str, Any]
    attempts: int = 0


class KeyValue:
    """Namespaced key/value store for analytics state, bound to one open transaction."""

    def __init__(self, conn: sqlite3.Connection, namespace: str) -> None:
        self._conn, self._ns = conn, namespace

    def get(self, key: str, default: Any = None) -> Any:
        row = self._conn.execute("SELECT value FROM kv WHERE namespace=? AND key=?", (self._ns, key)).fetchone()
        return orjson.loads(row[0]) if row else default

    def set(self, key: str, value: Any) -> None:
        self._conn.execute("INSERT OR REPLACE INTO kv (namespace, key, value) VALUES (?, ?, ?)",
                           (self._ns, key, orjson.dumps(value)))

    def delete(self, key: str) -> None:
        self._conn.execute("DELETE FROM kv WHERE namespace=? AND key=?", (self._ns, key))

    def items(self) -> Iterator[tuple[str, Any]]:
        for k, v in self._conn.execute("SELECT key, value FROM kv WHERE namespace=? ORDER BY key", (self._ns,)):
            yield k, orjson.loads(v)


class Batch:
    """One hunted batch, committed atomically by :meth:`WatchState.commit_batch`."""

    def __init__(self, conn: sqlite3.Connection, round_no: int, at: str, sinks: Sequence[str]) -> None:
        self._conn, self.round, self._at, self._sinks = conn, round_no, at, list(sinks)
        self.queued: list[str] = []

    def queue(self, findings: Iterable[dict[str, Any]]) -> list[str]:
        """Queue findings never found before for every sink; returns the ids actually new."""
        c = self._conn
        seq = int(c.execute("SELECT COALESCE(MAX(seq), 0) FROM outbox").fetchone()[0])
        new: list[str] = []
        for f in findings:
            if c.execute("INSERT OR IGNORE INTO findings (id, round, at) VALUES (?, ?, ?)",
                         (f["id"], self.round, self._at)).rowcount == 0:
                continue  # found in an earlier round (or twice in this one)
            new.append(f["id"])
            blob = orjson.dumps(f)
            for sink in self._sinks:
                seq += 1
                c.execute("INSERT OR IGNORE INTO outbox (sink, finding_id, seq, finding) SELECT ?, ?, ?, ? "
                          "WHERE NOT EXISTS (SELECT 1 FROM sent WHERE sink=? AND finding_id=?)",
                          (sink, f["id"], seq, blob, sink, f["id"]))
        self.queued += new
        return new

    def kv(self, namespace: str) -> KeyValue:
        return KeyValue(self._conn, namespace)


class WatchState:
    """The state folder. One process at a time (an exclusive lock on ``DIR/watch.lock``)."""

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self._lock_file = open(self.dir / LOCK_NAME, "a+")  # noqa: SIM115 - held for the object's life
        try:
            fcntl.flock(self._lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            self._lock_file.close()
            raise StateError(f"{self.dir} is in use by another delegatewatch watch process") from None
        self._mutex = threading.RLock()  # sinks deliver from worker threads
        self._conn = sqlite3.connect(self.dir / DB_NAME, isolation_level=None, check_same_thread=False)
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=FULL")
        self._conn.execute("PRAGMA busy_timeout=5000")
        self._conn.executescript(_SCHEMA)
        with self._txn() as c:
            row = c.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
            if row is None:
                c.execute("INSERT INTO meta VALUES ('schema_version', ?), ('created', ?)", (str(SCHEMA_VERSION), _now()))
                c.execute("INSERT INTO meta VALUES ('round', '0')")
            elif int(row[0]) > SCHEMA_VERSION:
                raise StateError(f"{self.dir}: state schema {row[0]} is newer than this delegatewatch ({SCHEMA_VERSION})")

    # -- plumbing -------------------------------------------------------------------------------
    @contextlib.contextmanager
    def _txn(self) -> Iterator[sqlite3.Connection]:
        with self._mutex:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield self._conn
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")

    def close(self) -> None:
        with self._mutex:
            self._conn.close()
        self._lock_file.close()

    def __enter__(self) -> WatchState:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- rounds and files -----------------------------------------------------------------------
    @property
    def round(self) -> int:
        with self._mutex:
            return int(self._conn.execute("SELECT value FROM meta WHERE key='round'").fetchone()[0])

    def add_pending_files(self, paths: Iterable[str | os.PathLike[str]]) -> None:
        """Remember collected files before hunting them (re-hunted after a crash)."""
        rnd = self.round + 1
        with self._txn() as c:
            c.executemany("INSERT OR IGNORE INTO files (path, status, round, at) VALUES (?, 'pending', ?, ?)",
                          [(str(p), rnd, _now()) for p in paths])

    def unknown_files(self, paths: Iterable[str]) -> list[str]:
        """Those of ``paths`` this state has never seen (neither pending nor hunted)."""
        paths = list(paths)
        with self._mutex:
            known = {r[0] for r in self._conn.execute("SELECT path FROM files")}
        return [p for p in paths if p not in known]

    def last_hunted_in(self, folder: str) -> str | None:
        """The most recently hunted file directly in ``folder`` (the previous snapshot there)."""
        prefix = folder.rstrip(os.sep) + os.sep
        with self._mutex:
            rows = self._conn.execute("SELECT path FROM files WHERE status='hunted' AND path LIKE ? ESCAPE '\\' "
                                      "ORDER BY round DESC, rowid DESC",
                                      (prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%",)).fetchall()
        for (path,) in rows:
            if os.path.dirname(path) == folder.rstrip(os.sep):
                return path
        return None

    def pending_files(self) -> list[str]:
        with self._mutex:
            return [r[0] for r in self._conn.execute(
                "SELECT path FROM files WHERE status='pending' ORDER BY round, rowid")]

    def is_hunted_file(self, path: str | os.PathLike[str]) -> bool:
        with self._mutex:
            row = self._conn.execute("SELECT status FROM files WHERE path=?", (str(path),)).fetchone()
        return bool(row and row[0] == "hunted")

    def _known(self, table: str, ids: Iterable[str]) -> set[str]:
        ids = list(set(ids))
        known: set[str] = set()
        with self._mutex:
            for i in range(0, len(ids), 500):  # SQLite's bound-parameter limit
                chunk = ids[i:i + 500]
                q = f"SELECT id FROM {table} WHERE id IN ({','.join('?' * len(chunk))})"
                known.update(r[0] for r in self._conn.execute(q, chunk))
        return known

    def known_records(self, ids: Iterable[str]) -> set[str]:
        return self._known("records", ids)

    def known_findings(self, ids: Iterable[str]) -> set[str]:
        return self._known("findings", ids)

    @contextlib.contextmanager
    def commit_batch(self, *, files: Sequence[str], record_ids: Iterable[str],
                     sinks: Sequence[str]) -> Iterator[Batch]:
        """One transaction: the files are hunted, their records known, and whatever the body queues
        (``batch.queue(findings)``) or writes (``batch.kv(namespace)``) commits with them, or nothing does."""
        with self._txn() as c:
            rnd = int(c.execute("SELECT value FROM meta WHERE key='round'").fetchone()[0]) + 1
            c.execute("UPDATE meta SET value=? WHERE key='round'", (str(rnd),))
            at = _now()
            c.executemany("INSERT INTO files (path, status, round, at) VALUES (?, 'hunted', ?, ?) "
                          "ON CONFLICT (path) DO UPDATE SET status='hunted', round=excluded.round, at=excluded.at",
                          [(str(p), rnd, at) for p in files])
            c.executemany("INSERT OR IGNORE INTO records (id, round, at) VALUES (?, ?, ?)",
                          [(r, rnd, at) for r in set(record_ids)])
            yield Batch(c, rnd, at, sinks)

    def kv(self, namespace: str) -> KeyValue:
        """Read analytics state outside a batch (writes belong in :meth:`commit_batch`)."""
        return KeyValue(self._conn, namespace)

    # -- delivery -------------------------------------------------------------------------------
    def backlog(self, sink: str) -> int:
        with self._mutex:
            return int(self._conn.execute("SELECT COUNT(*) FROM outbox WHERE sink=?", (sink,)).fetchone()[0])

    def take(self, sink: str, limit: int) -> list[OutboxItem]:
        """Mark the next ``limit`` queued findings of ``sink`` in flight (committed) and return them."""
        with self._txn() as c:
            rows = c.execute("SELECT finding_id, finding, attempts FROM outbox WHERE sink=? AND status='queued' "
                             "ORDER BY seq LIMIT ?", (sink, limit)).fetchall()
            c.executemany("UPDATE outbox SET status='inflight', attempts=attempts+1 WHERE sink=? AND finding_id=?",
                          [(sink, r[0]) for r in rows])
        return [OutboxItem(r[0], orjson.loads(r[1]), r[2] + 1) for r in rows]

    def inflight(self, sink: str) -> list[OutboxItem]:
        with self._mutex:
            rows = self._conn.execute("SELECT finding_id, finding, attempts FROM outbox WHERE sink=? "
                                      "AND status='inflight' ORDER BY seq", (sink,)).fetchall()
        return [OutboxItem(r[0], orjson.loads(r[1]), r[2]) for r in rows]

    def mark_sent(self, sink: str, finding_ids: Iterable[str]) -> None:
        at = _now()
        ids = list(finding_ids)
        with self._txn() as c:
            c.executemany("INSERT OR IGNORE INTO sent (sink, finding_id, at) VALUES (?, ?, ?)", [(sink, i, at) for i in ids])
            c.executemany("DELETE FROM outbox WHERE sink=? AND finding_id=?", [(sink, i) for i in ids])

    def requeue(self, sink: str, finding_ids: Iterable[str], error: str | None = None) -> None:
        with self._txn() as c:
            c.executemany("UPDATE outbox SET status='queued', last_error=? WHERE sink=? AND finding_id=?",
                          [(error, sink, i) for i in finding_ids])

    def sent_ids(self, sink: str) -> set[str]:
        with self._mutex:
            return {r[0] for r in self._conn.execute("SELECT finding_id FROM sent WHERE sink=?", (sink,))}

    def sinks_with_backlog(self) -> dict[str, int]:
        with self._mutex:
            return dict(self._conn.execute("SELECT sink, COUNT(*) FROM outbox GROUP BY sink").fetchall())
