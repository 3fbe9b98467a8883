"""Shared HTTP plumbing for the webhook and HEC sinks (httpx)."""

from __future__ import annotations

import email.utils
import time
from datetime import UTC, datetime

import httpx

from delegatewatch import __version__
from delegatewatch.watch.sinks.base import SinkError

USER_AGENT = f"delegatewatch/{__version__}"
RETRYABLE_STATUS = {408, 429, 500, 502, 503, 504}


def client(options: dict[str, str]) -> httpx.Client:
    verify: bool | str = True
    if options.get("ca"):
        verify = options["ca"]  # a CA bundle (PEM) for a private PKI
    elif options.get("verify", "true").lower() in ("false", "0", "no"):
        verify = False
    timeout = float(options.get("timeout", "10"))
    return httpx.Client(timeout=httpx.Timeout(timeout, connect=min(timeout, 5.0)), verify=verify,
                        headers={"User-Agent": USER_AGENT}, follow_redirects=False, trust_env=True)


def retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("Retry-After")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def transport_error(what: str, exc: httpx.TransportError, delivered: int = 0) -> SinkError:
    """Connection errors never reached the server: retry. A timeout after the request was written
    may have: it is retried too (at-least-once), or not, for an at-most-once sink (the caller's choice)."""
    name = type(exc).__name__
    sent = not isinstance(exc, (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout))
    err = SinkError(f"{what}: {name}{': ' + str(exc) if str(exc) else ''}", delivered=delivered)
    err.maybe_delivered = sent  # type: ignore[attr-defined]
    return err


def now() -> float:
    return time.time()
