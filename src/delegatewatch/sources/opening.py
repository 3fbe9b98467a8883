"""Opening a file as a stream of UTF-8 bytes, whatever it was written in.

Exports reach responders as UTF-8 (with or without BOM), UTF-16 (Windows PowerShell 5.1's
``>`` and ``Out-File`` default), or gzip (the collector's output). Every reader works on UTF-8
bytes so the byte-level prefilter and orjson can run without a decode step.
"""

from __future__ import annotations

import codecs
import gzip
import io
from dataclasses import dataclass
from typing import BinaryIO

import orjson

SNIFF_BYTES = 64 * 1024

EVTX_MAGIC = b"ElfFile\x00"
ZIP_MAGIC = b"PK\x03\x04"
GZIP_MAGIC = b"\x1f\x8b"
PARQUET_MAGIC = b"PAR1"


@dataclass(frozen=True, slots=True)
class Opened:
    """What sniffing found: the encoding, or why the file cannot be read as text."""

    encoding: str | None  # "utf-8", "utf-16-le", "utf-16-be"; "binary" (EVTX); None when unreadable
    bom: int  # bytes to skip at the start
    gzip: bool
    head: bytes  # first bytes, already transcoded to UTF-8 (for dialect detection)
    not_text: str | None = None  # reason the file is not a text export


class _TranscodingReader(io.RawIOBase):
    """A binary stream that reads UTF-16 and returns the same text as UTF-8 bytes."""

    def __init__(self, raw: BinaryIO, encoding: str) -> None:
        self._raw = raw
        self._decoder = codecs.getincrementaldecoder(encoding)(errors="replace")
        self._pending = b""
        self._eof = False

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:  # type: ignore[override]
        while not self._pending and not self._eof:
            chunk = self._raw.read(1 << 20)
            if not chunk:
                self._eof = True
                self._pending = self._decoder.decode(b"", final=True).encode("utf-8")
            else:
                self._pending = self._decoder.decode(chunk).encode("utf-8")
        n = min(len(buffer), len(self._pending))
        buffer[:n] = self._pending[:n]
        self._pending = self._pending[n:]
        return n

    def close(self) -> None:
        self._raw.close()
        super().close()


def _looks_utf16(head: bytes) -> str | None:
    """UTF-16 without a BOM: ASCII text leaves every other byte NUL."""
    sample = head[:200]
    if len(sample) < 8:
        return None
    even_nul = sample[0::2].count(0)
    odd_nul = sample[1::2].count(0)
    half = len(sample) // 2
    if odd_nul > half * 0.8 and even_nul == 0:
        return "utf-16-le"
    if even_nul > half * 0.8 and odd_nul == 0:
        return "utf-16-be"
    return None


_CONTROL = bytes(range(0, 9)) + bytes(range(14, 32))


def _looks_binary(head: bytes) -> bool:
    """Binary, not text with a stray NUL: a text export keeps one odd byte as a bad record."""
    sample = head[:8192]
    controls = sum(sample.count(bytes([c])) for c in _CONTROL)
    return sample.count(0) > max(8, len(sample) // 100) or controls > max(16, len(sample) // 10)


def sniff(path: str) -> Opened:
    with open(path, "rb") as f:
        raw_head = f.read(SNIFF_BYTES)
    if raw_head.startswith(GZIP_MAGIC):
        try:
            with gzip.open(path, "rb") as g:
                inner = g.read(SNIFF_BYTES)
        except (OSError, EOFError) as exc:
            return Opened(None, 0, True, b"", not_text=f"gzip file that cannot be read: {exc}")
        opened = _sniff_bytes(inner)
        return Opened(opened.encoding, opened.bom, True, opened.head, opened.not_text)
    return _sniff_bytes(raw_head)


def _sniff_bytes(head: bytes) -> Opened:
    if not head:
        return Opened(None, 0, False, b"", not_text="empty file")
    if head.startswith(EVTX_MAGIC) or head.startswith(PARQUET_MAGIC):
        return Opened("binary", 0, False, head)  # a binary format a reader may claim (.evtx, event lake)
    if head.startswith(ZIP_MAGIC):
        return Opened(None, 0, False, b"", not_text="zip archive: extract it and hunt the folder")
    if head.startswith(codecs.BOM_UTF8):
        return Opened("utf-8", 3, False, head[3:])
    for bom, enc in ((codecs.BOM_UTF16_LE, "utf-16-le"), (codecs.BOM_UTF16_BE, "utf-16-be")):
        if head.startswith(bom):
            body = head[2:]
            return Opened(enc, 2, False, body[: len(body) & ~1].decode(enc, "replace").encode())
    enc = _looks_utf16(head)
    if enc:
        return Opened(enc, 0, False, head[: len(head) & ~1].decode(enc, "replace").encode())
    if _looks_binary(head):
        return Opened(None, 0, False, b"", not_text="binary file (NUL and control bytes), not a text export")
    return Opened("utf-8", 0, False, head)


def open_utf8(path: str, opened: Opened) -> BinaryIO:
    """A binary stream of the file's text as UTF-8, BOM removed."""
    raw: BinaryIO = gzip.open(path, "rb") if opened.gzip else open(path, "rb")  # type: ignore[assignment]
    if opened.bom:
        raw.read(opened.bom)
    if opened.encoding in (None, "utf-8", "binary"):
        return raw
    return io.BufferedReader(_TranscodingReader(raw, opened.encoding), buffer_size=1 << 20)  # type: ignore[return-value]


def first_json_object(head: bytes) -> dict | None:
    """The first line of a file's head as a JSON object, if it is one (how the JSON-lines readers
    recognise their files)."""
    line = head.partition(b"\n")[0].strip()
    if not line.startswith(b"{"):
        return None
    try:
        obj = orjson.loads(line)
    except orjson.JSONDecodeError:
        return None
    return obj if isinstance(obj, dict) else None
