"""``--sink jsonl:PATH``: findings appended to a JSON-lines file, flushed and fsync'ed per send.

Exactly-once across crashes: before a send the findings are marked in flight in the state; after a
crash the file itself is read back and only the in-flight findings it does not hold are appended
again. A line cut short by the crash is left on a line of its own (the next append starts on a new
line) and its finding is appended again whole.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import orjson

from delegatewatch.findings.model import Finding
from delegatewatch.watch.sinks.base import EXACTLY_ONCE, Sink, SinkError, finding_dict


class JsonlSink(Sink):
    kind = "jsonl"
    default_delivery = EXACTLY_ONCE
    batch_size = 1000

    def __init__(self, spec: str, options: dict[str, str]) -> None:
        target = spec.partition(":")[2]
        if not target:
            raise ValueError("jsonl: a file path is required (jsonl:PATH)")
        self.path = Path(target).expanduser()
        # The key follows the absolute path, so a relative path from another working folder is the same file.
        super().__init__(f"jsonl:{self.path.resolve()}", options)

    @property
    def display(self) -> str:
        return f"jsonl:{self.path}"

    def send(self, findings: Sequence[Finding]) -> None:
        data = b"".join(orjson.dumps(finding_dict(f)) + b"\n" for f in findings)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            # Opened per send: a file moved away by log rotation is simply started anew.
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
            try:
                size = os.fstat(fd).st_size
                if size:
                    with open(self.path, "rb") as f:
                        f.seek(size - 1)
                        if f.read(1) != b"\n":
                            data = b"\n" + data  # a line cut short by a crash stays on its own line
                view = memoryview(data)
                while view:
                    n = os.write(fd, view)
                    view = view[n:]
                os.fsync(fd)
            finally:
                os.close(fd)
        except OSError as exc:
            # Whatever part reached the file is found by recover() after a crash; within a run, a
            # failed append is retried whole next round and recover() keeps duplicates out.
            raise SinkError(f"cannot append to {self.path}: {exc.strerror or exc}", retryable=False) from exc

    def held_ids(self, wanted: set[str]) -> set[str]:
        found: set[str] = set()
        if not wanted or not self.path.exists():
            return found
        with open(self.path, "rb") as f:
            for line in f:
                if b'"id"' not in line:
                    continue
                try:
                    fid = orjson.loads(line).get("id")
                except (orjson.JSONDecodeError, AttributeError):
                    continue  # a line cut short
                if fid in wanted:
                    found.add(fid)
        return found

    def recover(self, findings: Sequence[Finding]) -> set[str]:
        return self.held_ids({f.id for f in findings})
