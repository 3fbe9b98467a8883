"""Retry and throttling policy shared by the API collectors.

The Management Activity API signals throttling with error code ``AF429`` in the JSON body of an
HTTP **403** (formats.md §1.5), and may also answer 429; whether it sends ``Retry-After`` is not
documented. So: honour ``Retry-After`` when present (seconds or an HTTP date, capped), otherwise
exponential back-off with jitter, for a bounded number of attempts. A throttle seen by one worker
pauses every worker (``Gate``), because the quota is per tenant, not per connection.
"""

from __future__ import annotations

import email.utils
import math
import random
import threading
import time
from dataclasses import dataclass


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 8          # attempts per request, the first one included
    base_delay: float = 1.0        # seconds; doubled per attempt
    max_delay: float = 60.0        # cap of one back-off step
    max_retry_after: float = 300.0  # cap of a server-given Retry-After

    def backoff(self, attempt: int, rng: random.Random | None = None) -> float:
        """Delay before retry number ``attempt`` (0-based): 'equal jitter' exponential back-off."""
        step = min(self.max_delay, self.base_delay * (2 ** attempt))
        return step / 2 + (rng or random).uniform(0, step / 2)

    def delay(self, attempt: int, retry_after: str | None) -> float:
        given = parse_retry_after(retry_after)
        if given is not None:
            return min(given, self.max_retry_after)
        return self.backoff(attempt)


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` value (delta-seconds or HTTP-date); None if absent/invalid."""
    if value is None:
        return None
    value = value.strip()
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when is None:
            return None
        seconds = when.timestamp() - (time.time() if now is None else now)
    if math.isnan(seconds):
        return None
    return max(0.0, seconds)


class Gate:
    """A shared 'not before' time: a throttle answer to one request slows all of them."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._not_before = 0.0

    def hold(self, seconds: float) -> None:
        with self._lock:
            self._not_before = max(self._not_before, time.monotonic() + seconds)

    def wait(self) -> None:
        while True:
            with self._lock:
                remaining = self._not_before - time.monotonic()
            if remaining <= 0:
                return
            time.sleep(min(remaining, 5.0))
