"""Windows event log files (``.evtx``, magic ``ElfFile\\0``), read with the ``evtx`` package
(pyevtx-rs, the maintained Rust parser) in its JSON rendering.

Damaged files: the parser runs with ``skip_errors=True``, so a broken chunk or record is
reported (as a warning the reader turns into an issue naming the file and the last good record)
and the rest of the file is still read. A file the parser cannot open at all is one issue.
"""

from __future__ import annotations

import io
import os
import struct
import warnings
from collections.abc import Iterator
from typing import Any, BinaryIO

import orjson

from delegatewatch.records import ReadStats, Record
from delegatewatch.records.prefilter import Prefilter
from delegatewatch.sources.formats import windows_events as W
from delegatewatch.sources.opening import EVTX_MAGIC, Opened
from delegatewatch.sources.registry import Reader

DIALECT = "windows-evtx"
#: Worker threads of the Rust parser per file (0 = one per core). The hunt already runs files
#: in parallel processes, so one thread each would do there; for a single large file the
#: parser's own threads are what make it fast (see bench/evtx_bench.py).
THREADS = int(os.environ.get("DELEGATEWATCH_EVTX_THREADS", "0") or 0)


def detect(opened: Opened, head: bytes) -> bool:
    return head.startswith(EVTX_MAGIC)


def normalise(event: dict[str, Any]) -> dict[str, Any]:
    """The evtx JSON rendering of one record → the flat Windows record (windows_events)."""
    ev = event.get("Event") if isinstance(event.get("Event"), dict) else event
    system = ev.get("System") or {}
    provider = system.get("Provider")
    provider_name = provider.get("#attributes", {}).get("Name") if isinstance(provider, dict) else provider
    created = system.get("TimeCreated")
    time = created.get("#attributes", {}).get("SystemTime") if isinstance(created, dict) else created
    security = system.get("Security")
    user = security.get("#attributes", {}).get("UserID") if isinstance(security, dict) else None
    d = W.base(W.event_id(system.get("EventID")), channel=system.get("Channel"), provider=provider_name,
               computer=system.get("Computer"), time=time, record_id=system.get("EventRecordID"), user_id=user)
    W.flat_event_data(d, ev.get("EventData"))
    W.flat_event_data(d, ev.get("UserData"))
    rendering = ev.get("RenderingInfo")
    if isinstance(rendering, dict) and rendering.get("Message") and "Message" not in d:
        d["Message"] = W.text(rendering.get("Message"))
    return d


def _parser_input(path: str, stream: BinaryIO) -> Any:
    name = getattr(stream, "name", None)
    if isinstance(stream, io.BufferedReader) and name == path and stream.tell() == 0:
        return path  # the Rust parser reads the file itself
    return io.BytesIO(stream.read())  # gzip-wrapped: the parser needs to seek


def check_header(path: str, header: bytes, size: int, stats: ReadStats) -> None:
    """A file shorter than its header's chunk count says was cut off (a copy that stopped, a
    carved file): the parser reads what is there without a word, so say it here."""
    if len(header) < 44:
        stats.issue(path, None, "EVTX file header is incomplete", reason="truncated EVTX file")
        return
    chunks = struct.unpack_from("<H", header, 42)[0]
    header_size = struct.unpack_from("<H", header, 40)[0] or 4096
    expected = header_size + chunks * 65536
    if size < expected:
        stats.issue(path, None, f"EVTX file is truncated: {size} of {expected} bytes ({chunks} chunks in the header); "
                    "records in the missing part are lost", reason="truncated EVTX file")


def read(path: str, stream: BinaryIO, stats: ReadStats, prefilter: Prefilter | None) -> Iterator[Record]:
    import evtx

    builder = W.Builder(path, DIALECT, stats)
    source = _parser_input(path, stream)
    if isinstance(source, str):
        with open(source, "rb") as f:
            check_header(path, f.read(4096), os.path.getsize(source), stats)
    else:
        check_header(path, source.getvalue()[:4096], len(source.getvalue()), stats)
    try:
        parser = evtx.PyEvtxParser(source, number_of_threads=THREADS, skip_errors=True)
    except (OSError, RuntimeError, ValueError) as exc:
        stats.issue(path, None, f"not a readable Windows event log: {exc}", reason="malformed EVTX file")
        return
    index = 0
    last_id: str | None = None
    iterator = parser.records_json()
    while True:
        # Warnings are caught around each step only: a suspended generator must not leave the
        # process's warning filters changed.
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                item = next(iterator)
            except StopIteration:
                item = None
            except (RuntimeError, OSError, ValueError) as exc:
                stats.records_seen += 1
                stats.issue(path, None, f"damaged EVTX data after record {last_id or 'start'}: {exc}; "
                            "rest of file not read", reason="malformed EVTX record")
                item = None
        for w in caught:
            _warn(path, stats, w.message, last_id)
        if item is None:
            break
        index += 1
        stats.records_seen += 1
        try:
            d = normalise(orjson.loads(item["data"]))
        except (orjson.JSONDecodeError, KeyError, TypeError, AttributeError) as exc:
            stats.issue(path, None, f"EVTX record {item.get('event_record_id', index)}: cannot read ({exc})",
                        reason="malformed EVTX record")
            continue
        last_id = d.get("EventRecordID") or str(item.get("event_record_id", ""))
        yield from builder.records(d, None, index)


def _warn(path: str, stats: ReadStats, message: Any, last_id: str | None) -> None:
    stats.records_seen += 1
    text = str(message).splitlines()[0][:300]
    stats.issue(path, None, f"damaged EVTX data after record {last_id or 'start'} skipped: {text}",
                reason="malformed EVTX record")


READERS = [Reader(DIALECT, W.FAMILY, detect, read, priority=10)]
