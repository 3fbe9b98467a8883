"""Analytics: detections over many records at once (what a single-record Sigma rule cannot see).

A module ``<family>.py`` here that defines ``analyze(records, resolver) -> list[Finding]`` receives
every record of that family read by a hunt (not only rule matches), after all input is read: e.g.
``snapshot`` compares standing-permission snapshots. ``delegatewatch.engine.hunt`` calls it.

Unified-audit-log records (family ``m365``) are prefiltered by operation, so a module that also
wants some of them names their operations in ``M365_OPERATIONS`` (or a function returning them, so
configuration can switch them on); the prefilter then keeps them and they reach the module's
``analyze`` with its own family's records. ``M365_OPERATIONS`` is either

* a set of operations: every record of each is wanted, e.g. ``{"Send", "SendAs"}``; or
* a mapping operation → literals one of which the raw record must contain (any case), or None for
  every record: ``{"Set-Mailbox": ["GrantSendOnBehalfTo"]}`` (the permission ledger).

Operations that are a large share of real audit logs and mostly irrelevant (``MailItemsAccessed``
and ``MailboxLogin``: owner access is most of them) can be asked for with a regular expression over
the raw line instead: ``M365_REQUIRES = {"MailItemsAccessed": r'ogon_?[Tt]ype""?:…'}`` (or a function
returning it) feeds a
record of that operation only when the pattern matches (searched in place, one pass, where forty
spellings as literals would cost forty). Both tests may over-match, so the module re-checks the
parsed value; ``--full-parse`` feeds them all. ``M365_KEEP(record) -> bool`` (optional) is that
re-check, made as the records are read so only the wanted ones are held in memory. A module without
``analyze`` is only fed (the hunt hands its records on, e.g. to the incidents).

A module that needs records of other families too (the permission ledger: Windows 5136, Google,
snapshots) lists them in ``FAMILIES``: family → a test of the record's dict (or None for every record
of the family), so a large Security log is not kept whole for the few events it wants.

A module may also define ``reduce(record)``: the hunt calls it where the record is read (in its
worker processes) and collects what it returns instead of the record (None: drop it), so a module
that needs a few fields of many records (mail sends) moves a compact, picklable form between
processes. The form must keep a mutable ``line`` (the hunt renumbers it like a record's).
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import cache


@dataclass(frozen=True)
class Need:
    """What the analytics need of one operation's raw records before they are parsed: a line is
    fed when it contains one of ``literals`` (any case) or matches ``pattern``; both None: every
    line."""

    literals: frozenset[str] | None = None
    pattern: str | None = None

    @property
    def whole(self) -> bool:
        return self.literals is None and self.pattern is None

    def __or__(self, other: Need) -> Need:  # what two modules need together
        if self.whole or other.whole:
            return Need()
        patterns = [p for p in (self.pattern, other.pattern) if p]
        return Need((self.literals or frozenset()) | (other.literals or frozenset()),
                    "|".join(f"(?:{p})" for p in patterns) if len(patterns) > 1 else (patterns or [None])[0])


@cache
def _modules() -> tuple:
    return tuple(importlib.import_module(f"{__name__}.{info.name}") for info in pkgutil.iter_modules(__path__))


def _name(module) -> str:  # noqa: ANN001
    return module.__name__.rsplit(".", 1)[-1]


def _wanted(module) -> dict[str, tuple[str, Need]]:  # noqa: ANN001
    """A module's operations: lower-case → (its spelling, what it needs of the raw line)."""
    ops = getattr(module, "M365_OPERATIONS", ())
    ops = ops() if callable(ops) else ops
    out: dict[str, tuple[str, Need]] = {}
    for op in ops:
        literals = ops[op] if isinstance(ops, Mapping) else None
        out[op.lower()] = (op, Need() if literals is None else Need(frozenset(x.lower() for x in literals)))
    required = getattr(module, "M365_REQUIRES", {})
    for op, pattern in (required() if callable(required) else required).items():
        out.setdefault(op.lower(), (op, Need(frozenset(), pattern)))
    return out


def m365_feeds() -> dict[str, tuple[str, ...]]:
    """Operation (lower-case) of unified-audit-log records → the analytics modules (families) they feed."""
    out: dict[str, tuple[str, ...]] = {}
    for module in _modules():
        for op in _wanted(module):
            out[op] = (*out.get(op, ()), _name(module))
    return out


def m365_feed_filters() -> dict[str, Callable[[dict], bool]]:
    """Module (family) → its ``M365_KEEP`` test of a parsed record, for the modules that have one."""
    return {_name(module): module.M365_KEEP for module in _modules() if callable(getattr(module, "M365_KEEP", None))}


def m365_feed_names() -> set[str]:
    """The operations of :func:`m365_feeds`, spelt as the modules spell them (the audit log's
    spelling, which the prefilter searches for), conditional ones included."""
    return {spelling for module in _modules() for spelling, _ in _wanted(module).values()}


def m365_feed_needs() -> dict[str, Need]:
    """Operation (lower-case) → what the modules it feeds need of its raw lines, together."""
    out: dict[str, Need] = {}
    for module in _modules():
        for op, (_, need) in _wanted(module).items():
            out[op] = out[op] | need if op in out else need
    return out


def _hook(family: str, name: str) -> Callable | None:
    try:
        module = importlib.import_module(f"delegatewatch.analytics.{family}")
    except ModuleNotFoundError:
        return None
    return getattr(module, name, None)


def analytic_for(family: str) -> Callable | None:
    return _hook(family, "analyze")


def reducer_for(family: str) -> Callable | None:
    """The analytics module's per-record ``reduce`` (see above), or None to collect records whole."""
    return _hook(family, "reduce")


@cache
def _family_feeds(family: str) -> tuple[tuple[str, Callable | None], ...]:
    out: list[tuple[str, Callable | None]] = []
    for module in _modules():
        name = _name(module)
        if name == family and getattr(module, "analyze", None) is not None:
            out.append((name, None))
        elif family in getattr(module, "FAMILIES", {}):
            out.append((name, module.FAMILIES[family]))
    return tuple(out)


def feeds_for(family: str, data: dict) -> list[str]:
    """The analytics modules (by name) that want this record of a non-``m365`` family whole."""
    return [name for name, keep in _family_feeds(family) if keep is None or keep(data)]
