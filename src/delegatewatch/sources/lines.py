"""Line plumbing shared by the line-based dialects (NDJSON and the CSV exports).

A UAL record never spans lines in these exports (AuditData is compact JSON: its newlines are
escaped), so a line is a record. Files are read in large blocks; with a prefilter, only lines its
byte regex finds are handed on, and the rest is only counted.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import BinaryIO

from delegatewatch.records import ReadStats
from delegatewatch.records.prefilter import Prefilter

BLOCK = 8 << 20


def _blocks(stream: BinaryIO) -> Iterator[bytes]:
    """Blocks of whole lines (each ends with a newline, except possibly the last)."""
    rest = b""
    while True:
        chunk = stream.read(BLOCK)
        if not chunk:
            if rest:
                yield rest
            return
        data = rest + chunk if rest else chunk
        cut = data.rfind(b"\n")
        if cut < 0:
            rest = data  # a line longer than a block: keep reading
            continue
        rest = data[cut + 1 :]
        yield data[: cut + 1]


def iter_lines(stream: BinaryIO, stats: ReadStats, prefilter: Prefilter | None,
               first_line: int = 1) -> Iterator[tuple[int, bytes]]:
    """(line number, stripped line) for every non-blank line, or only prefilter candidates."""
    line_base = first_line - 1  # lines before the current block
    for block in _blocks(stream):
        n_lines = block.count(b"\n") + (0 if block.endswith(b"\n") else 1)
        blank = block.count(b"\n\n") + block.count(b"\n\r\n") + (block[:1] in (b"\n", b"\r"))
        stats.records_seen += n_lines - blank
        spans = _all_lines(block) if prefilter is None else _candidate_lines(block, prefilter)
        counted_to = 0
        line_no = line_base
        for start, end in spans:
            line_no += block.count(b"\n", counted_to, start)
            counted_to = start
            raw = block[start:end].strip()
            if raw:
                yield line_no + 1, raw
        line_base += n_lines


def _all_lines(block: bytes) -> Iterator[tuple[int, int]]:
    start, size = 0, len(block)
    while start < size:
        end = block.find(b"\n", start)
        if end < 0:
            end = size
        yield start, end
        start = end + 1


def _candidate_lines(block: bytes, prefilter: Prefilter) -> Iterator[tuple[int, int]]:
    last_start = -1
    for m in prefilter.raw.finditer(block):
        start = block.rfind(b"\n", 0, m.start()) + 1
        if start == last_start:
            continue  # a second match in the same line
        last_start = start
        end = block.find(b"\n", m.end())
        yield start, (end if end >= 0 else len(block))


def decode_text(raw: bytes, source: str, line_no: int, stats: ReadStats) -> str:
    """A line as text. Bytes that are not UTF-8 (a Latin-1 display name) are read as
    Windows-1252, which maps every byte, and the line is flagged rather than dropped."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        stats.issue(source, line_no, "line is not valid UTF-8; read as Windows-1252/Latin-1", skipped=False)
        try:
            return raw.decode("cp1252")
        except UnicodeDecodeError:
            return raw.decode("latin-1")


def preview(raw: bytes | str, size: int = 60) -> str:
    text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw
    text = text.strip()
    return repr(text[:size] + ("…" if len(text) > size else ""))
