"""Timestamps as the exports write them, to timezone-aware UTC datetimes."""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone

_MS_DATE = re.compile(r"^\\?/?Date\((-?\d+)(?:[+-]\d{4})?\)\\?/?$")
_US_DATE = re.compile(r"^(\d{1,2})/(\d{1,2})/(\d{4}) (\d{1,2}):(\d{2}):(\d{2})(?: ?([AaPp][Mm]))?$")
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


def parse_time(value: object) -> datetime | None:
    """Parse UAL ``CreationTime`` (``2023-09-26T01:56:15``, no zone = UTC), ISO 8601 with
    ``Z``/offset/fraction, PowerShell ``\\/Date(ms)\\/`` and Purview's ``9/23/2023 4:26:29 AM``.

    Returns None when the value is not a time we know. The US month/day order is the
    documented Purview export; PowerShell exports in other locales are ambiguous, which is
    why readers prefer the ``CreationTime`` inside ``AuditData``.
    """
    if not isinstance(value, str) or not value:
        return None
    s = value.strip()
    m = _MS_DATE.match(s)
    if m:
        return _EPOCH + timedelta(milliseconds=int(m.group(1)))
    m = _US_DATE.match(s)
    if m:
        month, day, year, hour, minute, sec, ampm = m.groups()
        h = int(hour)
        if ampm:
            h = h % 12 + (12 if ampm.lower() == "pm" else 0)
        try:
            return datetime(int(year), int(month), int(day), h, int(minute), int(sec), tzinfo=timezone.utc)
        except ValueError:
            return None
    if s.endswith("Z") or s.endswith("z"):
        s = s[:-1] + "+00:00"
    # Python 3.11 fromisoformat accepts fractions of any length and offsets.
    try:
        dt = datetime.fromisoformat(s)
    except ValueError:
        return None
    if dt.tzinfo is None:
        return dt.replace(tzinfo=timezone.utc)
    return dt.astimezone(timezone.utc)


def iso_utc(dt: datetime | None) -> str | None:
    if dt is None:
        return None
    # isoformat is several times faster than strftime, and this runs for every evidence record
    return dt.astimezone(timezone.utc).replace(tzinfo=None, microsecond=0).isoformat() + "Z"
