"""Recognise a file's dialect from its content (never from its name), through the registry."""

from __future__ import annotations

from dataclasses import dataclass

from delegatewatch.sources.opening import Opened
from delegatewatch.sources.registry import readers


@dataclass(frozen=True, slots=True)
class Detected:
    dialect: str | None
    reason: str | None = None  # why the file is skipped, when dialect is None
    family: str | None = None


def detect(opened: Opened) -> Detected:
    if opened.not_text:
        return Detected(None, opened.not_text)
    head = opened.head.lstrip()
    if not head:
        return Detected(None, "empty file (only whitespace)")
    for reader in readers():
        if reader.detect(opened, head):
            return Detected(reader.dialect, family=reader.family)
    if opened.encoding == "binary":
        return Detected(None, "Windows event log (.evtx): no reader for it is installed")
    if head[:1] == b"<":
        return Detected(None, "XML that no reader recognises (expected Windows <Event> elements or an Exchange "
                              "audit <SearchResults> export)")
    text = head.decode("utf-8", "replace")
    lines = [ln for ln in text.splitlines() if ln.strip() and not ln.startswith("#TYPE")]
    first_line = lines[0][:80] if lines else ""
    if "," in first_line:
        return Detected(None, f"CSV that no reader recognises (columns: {first_line[:70]}…)")
    return Detected(None, f"unrecognised text format (first line {first_line!r})")
