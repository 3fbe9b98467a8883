"""Plumbing every format writer shares: an output file written in blocks (one block an hour) that
counts lines, can put the blocks in reverse order (exports that list newest first) without holding
the day in memory, and names the scenario records it holds (labels).

A writer gets one day, an hour at a time, oldest first; it never holds more than an hour.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from delegatewatch.simulate.clock import iso_z
from delegatewatch.simulate.model import Item, LabelRecord

#: a mark: (item, native record id or None when the line number is the id, line offset in its block)
Mark = tuple[Item, str | None, int]


class BlockFile:
    """``head`` first, then the blocks: in order, or newest block first when ``reverse`` (the blocks
    wait in a temporary spool file and are copied in reverse at ``close``)."""

    def __init__(self, root: Path, rel: str, head: bytes = b"", *, reverse: bool = False) -> None:
        self.rel = rel
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        self.fh = open(path, "wb", buffering=1 << 20)  # noqa: SIM115 - closed by close()
        self.fh.write(head)
        self.head_lines = head.count(b"\n")
        self.reverse = reverse
        self.spool = tempfile.TemporaryFile() if reverse else None  # noqa: SIM115
        self.blocks: list[tuple[int, int, int, list[Mark]]] = []  # (offset, size, lines, marks)
        self.lines = 0  # lines written after the head (in order) or spooled
        self.records = 0
        self.labels: list[tuple[Item, LabelRecord]] = []

    def block(self, data: bytes, lines: int, marks: list[Mark], records: int) -> None:
        self.records += records
        if self.spool is not None:
            self.blocks.append((self.spool.tell(), len(data), lines, marks))
            self.spool.write(data)
            return
        self._label(marks, self.head_lines + self.lines + 1)
        self.fh.write(data)
        self.lines += lines

    def _label(self, marks: list[Mark], first_line: int) -> None:
        for item, rid, offset in marks:
            line = first_line + offset
            self.labels.append((item, LabelRecord(self.rel, rid if rid is not None else str(line), line,
                                                  iso_z(item.t, ms=False), item.expect, item.stream,
                                                  item.rule)))

    def close(self, tail: bytes = b"") -> None:
        if self.spool is not None:
            line = self.head_lines + 1
            for offset, size, lines, marks in reversed(self.blocks):
                self._label(marks, line)
                self.spool.seek(offset)
                shutil.copyfileobj(_Limited(self.spool, size), self.fh, 1 << 20)
                line += lines
            self.spool.close()
        self.fh.write(tail)
        self.fh.close()


class _Limited:
    """The next ``size`` bytes of a file, for copyfileobj."""

    def __init__(self, fh, size: int) -> None:
        self.fh, self.left = fh, size

    def read(self, n: int = -1) -> bytes:
        n = self.left if n < 0 else min(n, self.left)
        data = self.fh.read(n)
        self.left -= len(data)
        return data


class DayWriter:
    """One format's files for one day. Subclasses implement ``hour``; ``finish`` closes the files."""

    #: the format name used by ``--formats``
    name = ""
    stream = ""

    def __init__(self, root: Path, date: str, day: int) -> None:
        self.root = root
        self.date = date
        self.day = day
        self.files: list[BlockFile] = []
        self.extra_labels: list[tuple[Item, LabelRecord]] = []

    def open(self, rel: str, head: bytes = b"", *, reverse: bool = False) -> BlockFile:
        f = BlockFile(self.root, rel, head, reverse=reverse)
        self.files.append(f)
        return f

    def hour(self, items: list[Item]) -> None:
        raise NotImplementedError

    def tail(self, f: BlockFile) -> bytes:
        return b""

    def finish(self) -> tuple[dict[str, int], list[tuple[Item, LabelRecord]]]:
        """Close the day's files: records per file, and the labels of scenario records."""
        counts, labels = {}, list(self.extra_labels)
        for f in self.files:
            f.close(self.tail(f))
            counts[f.rel] = f.records
            labels.extend(f.labels)
        return counts, labels
