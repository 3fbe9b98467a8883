"""The record as it leaves a source, and the counters every source fills in."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

#: How many individual problems are kept with full detail; all are counted.
MAX_ISSUES_KEPT = 200


@dataclass(slots=True)
class Record:
    """One audit record (the UAL ``AuditData`` object) and where it came from."""

    data: dict[str, Any]
    source: str
    #: 1-based line where the record starts, when the format has lines (NDJSON, CSV).
    line: int | None
    #: 1-based position of the record in its file (array element, row or line ordinal).
    index: int
    dialect: str
    #: which rules and event mapper apply: "m365" (UAL-shaped), "windows", "google", "snapshot" …
    family: str = "m365"

    @property
    def record_id(self) -> str:
        """The native record id (UAL ``Id``, Windows ``EventRecordID``, Google
        ``id.uniqueQualifier``, a snapshot's row number: readers put it in ``Id``); falls back
        to the position in the file."""
        rid = self.data.get("Id")
        if isinstance(rid, str) and rid:
            return rid
        return f"{self.source}:{self.line or self.index}"

    @property
    def location(self) -> str:
        return f"{self.source}:{self.line}" if self.line else f"{self.source}#{self.index}"


@dataclass(slots=True)
class RecordIssue:
    """A problem with part of the input: a record skipped, or a record read with a caveat."""

    source: str
    line: int | None
    message: str
    skipped: bool = True  # False: the record was kept (e.g. decoded as Windows-1252)

    def __str__(self) -> str:
        where = f"{self.source}:{self.line}" if self.line else self.source
        return f"{where}: {self.message}"


@dataclass
class ReadStats:
    """Counters for the summary. Filled by sources and the de-duplication step."""

    files_read: list[tuple[str, str]] = field(default_factory=list)  # (path, dialect)
    files_skipped: list[tuple[str, str]] = field(default_factory=list)  # (path, reason)
    records_seen: int = 0  # records (or lines) in the input, parsed or not
    records_parsed: int = 0  # records decoded into dicts
    duplicates: int = 0
    skipped: int = 0
    warnings: int = 0
    issues: list[RecordIssue] = field(default_factory=list)
    skip_reasons: Counter[str] = field(default_factory=Counter)
    #: progress hook: called with the number of bytes just read (line formats only)
    on_bytes: Callable[[int], None] | None = field(default=None, repr=False, compare=False)

    def issue(self, source: str, line: int | None, message: str, *, skipped: bool = True,
              reason: str | None = None) -> None:
        if skipped:
            self.skipped += 1
            self.skip_reasons[reason or message] += 1
        else:
            self.warnings += 1
        if len(self.issues) < MAX_ISSUES_KEPT:
            self.issues.append(RecordIssue(source, line, message, skipped))

    def skip_file(self, path: str, reason: str) -> None:
        self.files_skipped.append((path, reason))


def merge_stats(into: ReadStats, other: ReadStats, line_offset: int = 0) -> None:
    """Add ``other``'s counters to ``into``; issue line numbers move by ``line_offset`` (a byte
    range of a file counts its lines from 1)."""
    into.files_read.extend(other.files_read)
    into.files_skipped.extend(other.files_skipped)
    into.records_seen += other.records_seen
    into.records_parsed += other.records_parsed
    into.duplicates += other.duplicates
    into.skipped += other.skipped
    into.warnings += other.warnings
    into.skip_reasons.update(other.skip_reasons)
    for issue in other.issues:
        if len(into.issues) >= MAX_ISSUES_KEPT:
            break
        line = issue.line + line_offset if issue.line is not None else None
        into.issues.append(RecordIssue(issue.source, line, issue.message, issue.skipped))
