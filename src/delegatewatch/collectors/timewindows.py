"""Time intervals: what has been covered, what is left, cut into windows the API accepts."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

Interval = tuple[datetime, datetime]  # [start, end), aware UTC


def utc(dt: datetime) -> datetime:
    return dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt.astimezone(UTC)


def fmt(dt: datetime) -> str:
    """Stored and reported form: ``2026-12-01T13:00:00Z``."""
    return utc(dt).strftime("%Y-%m-%dT%H:%M:%SZ")


def api_fmt(dt: datetime) -> str:
    """Query parameter form the Management Activity API documents: ``YYYY-MM-DDTHH:MM:SS``."""
    return utc(dt).strftime("%Y-%m-%dT%H:%M:%S")


def parse(text: str) -> datetime:
    t = text.strip()
    t = t.removesuffix("Z")
    dt = datetime.fromisoformat(t)
    return utc(dt)


def merge(intervals: list[Interval]) -> list[Interval]:
    out: list[Interval] = []
    for s, e in sorted(i for i in intervals if i[0] < i[1]):
        if out and s <= out[-1][1]:
            if e > out[-1][1]:
                out[-1] = (out[-1][0], e)
        else:
            out.append((s, e))
    return out


def subtract(span: Interval, covered: list[Interval]) -> list[Interval]:
    """Parts of ``span`` not inside any of ``covered``."""
    s, e = span
    gaps: list[Interval] = []
    cursor = s
    for cs, ce in merge(covered):
        if ce <= cursor:
            continue
        if cs >= e:
            break
        if cs > cursor:
            gaps.append((cursor, min(cs, e)))
        cursor = max(cursor, ce)
        if cursor >= e:
            break
    if cursor < e:
        gaps.append((cursor, e))
    return gaps


def trim_tail(covered: list[Interval], overlap: timedelta) -> list[Interval]:
    """Covered intervals with the newest ``overlap`` taken off, so it is listed again."""
    merged = merge(covered)
    if not merged or overlap <= timedelta(0):
        return merged
    s, e = merged[-1]
    cut = e - overlap
    return merged[:-1] + ([(s, cut)] if cut > s else [])


def split(interval: Interval, size: timedelta) -> list[Interval]:
    s, e = interval
    out: list[Interval] = []
    while s < e:
        n = min(e, s + size)
        out.append((s, n))
        s = n
    return out
