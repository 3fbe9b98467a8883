"""``export-events``: every record of the inputs → typed events → OCSF events.

Unlike the hunt there is no prefilter and no rule: each record is read (``sources.read_paths``),
de-duplicated by UAL ``Id`` across all files, mapped by :class:`~delegatewatch.events.ual.UalMapper`,
and each :class:`PermissionChange` / :class:`MailSend` is written as OCSF User Access Management
(3005) / Email Activity (4009):

* ``fmt="ocsf"``: JSON lines, in input order, to a text stream or a file (a folder gets
  ``events.ocsf.jsonl`` inside);
* ``fmt="parquet"``: Amazon Security Lake custom-source layout under a folder
  (:class:`~delegatewatch.outputs.ocsf_events.SecurityLakeWriter`).

The tenant's domains are learnt as records stream by (``UalMapper.observe`` on each record before
it is mapped), so a grantee is called external the way the hunt would call it.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from typing import TextIO

from delegatewatch.events.model import Event
from delegatewatch.events.principals import Directory, Resolver
from delegatewatch.events.ual import UalMapper
from delegatewatch.outputs.ocsf import dumps
from delegatewatch.outputs.ocsf_events import (
    CLASSES,
    EXPORTED,
    SecurityLakeWriter,
    to_ocsf,
)
from delegatewatch.records import ReadStats
from delegatewatch.sources import iter_files, read_paths

FORMATS = ("ocsf", "parquet")
JSONL_NAME = "events.ocsf.jsonl"


@dataclass
class ExportResult:
    stats: ReadStats
    records: int = 0  # distinct records mapped (after de-duplication)
    events: Counter[int] = field(default_factory=Counter)  # written, by OCSF class_uid
    #: typed events not written: by event kind (no OCSF class here yet), or "no time"
    not_exported: Counter[str] = field(default_factory=Counter)
    outputs: list[str] = field(default_factory=list)  # files written (Parquet parts, or the JSONL file)

    @property
    def written(self) -> int:
        return sum(self.events.values())

    def summary(self) -> str:
        by_class = ", ".join(f"{n} {CLASSES[c]} ({c})" for c, n in sorted(self.events.items())) or "no events"
        text = f"{self.records} records → {by_class}"
        if self.stats.duplicates:
            text += f"; {self.stats.duplicates} duplicate records skipped"
        if self.not_exported:
            text += "; not exported: " + ", ".join(f"{n} {k}" for k, n in sorted(self.not_exported.items()))
        if self.stats.skipped:
            text += f"; {self.stats.skipped} unreadable records"
        return text


def export_events(paths: Sequence[str], fmt: str, out: str | os.PathLike[str] | TextIO, *,
                  directory: Directory | None = None, region: str = "us-east-1",
                  account_id: str = "000000000000", source_prefix: str = "delegatewatch",
                  on_file: Callable[[str, int], None] | None = None) -> ExportResult:
    """Export the events of ``paths`` (files and folders) as OCSF.

    ``fmt``: ``"ocsf"`` (JSON lines; ``out`` a text stream, a file path, or a folder) or
    ``"parquet"`` (``out`` the Security Lake root folder; ``region``/``account_id``/
    ``source_prefix`` name the partitions, sources are ``<source_prefix>-<class_uid>``).
    ``on_file(path, size)`` is called after each input file (progress)."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown export format {fmt!r} (choose from {', '.join(FORMATS)})")
    result = ExportResult(ReadStats())
    mapper = UalMapper(Resolver(directory))
    seen: set[str] = set()

    with ExitStack() as stack:
        writer: SecurityLakeWriter | None = None
        stream: TextIO | None = None
        if fmt == "parquet":
            if not isinstance(out, (str, os.PathLike)):
                raise ValueError("parquet export needs a folder to write to")
            writer = SecurityLakeWriter(os.fspath(out), region=region, account_id=account_id,
                                        source_prefix=source_prefix)
        elif isinstance(out, (str, os.PathLike)):
            path = os.fspath(out)
            if os.path.isdir(path):
                path = os.path.join(path, JSONL_NAME)
            stream = stack.enter_context(open(path, "w", encoding="utf-8", newline="\n"))
            result.outputs.append(path)
        else:
            stream = out

        skip = {os.path.realpath(p) for p in result.outputs}  # never read our own output back
        for path in iter_files(paths):
            if os.path.realpath(path) in skip:
                continue
            for record in read_paths([path], result.stats):
                rid = record.data.get("Id")
                if isinstance(rid, str) and rid:
                    if rid in seen:
                        result.stats.duplicates += 1
                        continue
                    seen.add(rid)
                result.records += 1
                try:
                    mapper.observe(record.data)
                    events = mapper.events(record)
                except (TypeError, ValueError, AttributeError, KeyError) as exc:  # a shape no mapper expected
                    result.stats.issue(record.source, record.line, f"record {record.record_id} not mapped: {exc!r}",
                                       skipped=False, reason="not mapped")
                    continue
                exportable: list[Event] = []
                for ev in events:
                    if isinstance(ev, EXPORTED):
                        exportable.append(ev)
                    else:
                        result.not_exported[ev.kind] += 1
                for n, ev in enumerate(exportable):
                    uid = record.record_id if len(exportable) == 1 else f"{record.record_id}:{n}"
                    obj = to_ocsf(ev, uid)
                    assert obj is not None
                    if obj["time"] is None:
                        result.not_exported["no time"] += 1
                        continue
                    result.events[obj["class_uid"]] += 1
                    if writer is not None:
                        writer.add(obj)
                    else:
                        assert stream is not None
                        stream.write(dumps(obj))
                        stream.write("\n")
            if on_file is not None and os.path.isfile(path):
                on_file(path, os.path.getsize(path))
        if writer is not None:
            result.outputs.extend(writer.close())
    return result
