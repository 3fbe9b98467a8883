"""The sink interface, delivery policies and the retry/back-off helper shared by network sinks."""

from __future__ import annotations

import hashlib
import logging
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, TypeVar

from delegatewatch.findings.model import Evidence, Finding

log = logging.getLogger("delegatewatch.watch.sinks")

AT_LEAST_ONCE = "at-least-once"
AT_MOST_ONCE = "at-most-once"
EXACTLY_ONCE = "exactly-once"  # the sink can tell, after a crash, what it already holds (jsonl)
DELIVERY = (AT_LEAST_ONCE, AT_MOST_ONCE, EXACTLY_ONCE)


class SinkError(Exception):
    """A send that did not complete. ``delivered``: how many of the findings, from the start of the
    list, did reach the sink before the failure. ``retryable``: worth retrying in this round."""

    def __init__(self, message: str, *, delivered: int = 0, retryable: bool = True,
                 retry_after: float | None = None, delivered_ids: set[str] | None = None) -> None:
        super().__init__(message)
        self.delivered = delivered
        #: when not a prefix: exactly which findings were delivered (overrides ``delivered``)
        self.delivered_ids = delivered_ids
        self.retryable = retryable
        self.retry_after = retry_after


def finding_dict(f: Finding) -> dict[str, Any]:
    """The finding as sinks send it: the ``--format jsonl`` object (without the runbook text)."""
    d = f.to_dict()
    d.pop("runbook", None)
    return d


def finding_from_dict(d: dict[str, Any]) -> Finding:
    d = dict(d)
    d["evidence"] = [Evidence(**e) for e in d.get("evidence") or []]
    d.setdefault("runbook", "")
    return Finding(**d)


class Sink:
    """One destination. Subclasses implement :meth:`send`; it either returns (all delivered) or
    raises :class:`SinkError` saying how many leading findings were delivered."""

    kind: ClassVar[str] = "sink"
    #: the delivery policy when a crash leaves a send unconfirmed (see docs/watch.md)
    default_delivery: ClassVar[str] = AT_LEAST_ONCE
    #: findings handed to one send() call
    batch_size: int = 100

    def __init__(self, spec: str, options: dict[str, str]) -> None:
        self.spec = spec
        self.options = options
        self.delivery = options.get("delivery", self.default_delivery)
        if self.delivery not in DELIVERY or (self.delivery == EXACTLY_ONCE and type(self).recover is Sink.recover):
            raise ValueError(f"{self.kind}: delivery must be one of "
                             f"{', '.join(d for d in DELIVERY if d != EXACTLY_ONCE or type(self).recover is not Sink.recover)}")
        # A stable key for the state (the spec may hold secrets: a Slack webhook URL is one; only its hash is kept).
        self.key = options.get("name") or f"{self.kind}-{hashlib.sha256(spec.encode()).hexdigest()[:12]}"

    @property
    def display(self) -> str:
        """How the sink is named in logs: never a secret."""
        return self.key

    def send(self, findings: Sequence[Finding]) -> None:
        raise NotImplementedError

    def recover(self, findings: Sequence[Finding]) -> set[str]:
        """After a crash: which of these (sent, not confirmed) findings does the sink already hold?
        The default follows the delivery policy: at-most-once → all of them, at-least-once → none."""
        if self.delivery == AT_MOST_ONCE:
            return {f.id for f in findings}
        return set()

    def close(self) -> None:
        pass

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.display}>"


@dataclass
class Backoff:
    """Exponential back-off with full jitter, honouring a server's Retry-After up to ``cap``."""

    attempts: int = 4
    base: float = 0.5
    cap: float = 30.0
    sleep: Callable[[float], None] = time.sleep

    def delay(self, attempt: int, retry_after: float | None = None) -> float:
        if retry_after is not None:
            return min(self.cap, max(0.0, retry_after))
        return random.uniform(0, min(self.cap, self.base * (2 ** attempt)))


T = TypeVar("T")


def with_retries(what: str, fn: Callable[[], T], backoff: Backoff) -> T:
    """Call ``fn``; on a retryable :class:`SinkError` wait and call again, ``backoff.attempts`` times in all."""
    for attempt in range(backoff.attempts):
        try:
            return fn()
        except SinkError as exc:
            if not exc.retryable or attempt == backoff.attempts - 1:
                raise
            wait = backoff.delay(attempt, exc.retry_after)
            log.warning("%s: %s; retrying in %.1fs (attempt %d of %d)", what, exc, wait, attempt + 2, backoff.attempts)
            backoff.sleep(wait)
    raise AssertionError("unreachable")


def backoff_from(options: dict[str, str]) -> Backoff:
    return Backoff(attempts=max(1, int(options.get("retries", "3")) + 1), base=float(options.get("backoff", "0.5")),
                   cap=float(options.get("max_backoff", "30")))
