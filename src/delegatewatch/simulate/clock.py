"""Time spellings the exports use, from epoch seconds (UTC). Cached per day: the simulator
formats millions of times."""

from __future__ import annotations

from datetime import UTC, datetime
from functools import lru_cache


@lru_cache(maxsize=4096)
def _day(day_start: int) -> tuple[str, int, int, int]:
    d = datetime.fromtimestamp(day_start, UTC)
    return d.strftime("%Y-%m-%d"), d.year, d.month, d.day


def _split(t: float) -> tuple[str, int, int, int, int, int, int]:
    s = int(t)
    day_start = s - s % 86400
    iso, y, mo, d = _day(day_start)
    r = s - day_start
    return iso, y, mo, d, r // 3600, r // 60 % 60, r % 60


def ual_time(t: float) -> str:
    """``2025-12-01T08:15:03`` (UAL CreationTime: UTC without a zone)."""
    iso, _, _, _, h, m, s = _split(t)
    return f"{iso}T{h:02d}:{m:02d}:{s:02d}"


def iso_z(t: float, ms: bool = True) -> str:
    """``2025-12-01T08:15:03.120Z`` (Google, Windows SystemTime)."""
    iso, _, _, _, h, m, s = _split(t)
    if ms:
        return f"{iso}T{h:02d}:{m:02d}:{s:02d}.{int(t * 1000) % 1000:03d}Z"
    return f"{iso}T{h:02d}:{m:02d}:{s:02d}Z"


def us_time(t: float) -> str:
    """``12/1/2025 8:15:03 AM`` (en-US exports: Purview, PowerShell Export-Csv)."""
    _, y, mo, d, h, m, s = _split(t)
    return f"{mo}/{d}/{y} {h % 12 or 12}:{m:02d}:{s:02d} {'AM' if h < 12 else 'PM'}"


def date_of(t: float) -> str:
    return _split(t)[0]


def day_start(date: str) -> int:
    return int(datetime.strptime(date, "%Y-%m-%d").replace(tzinfo=UTC).timestamp())
