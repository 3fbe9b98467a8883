"""Skip records no rule can match, before paying for JSON parsing.

Stage one: every Microsoft 365 rule names the ``Operation`` values it looks at, so a line whose
``Operation`` is none of them cannot match. The operation names are searched for all at once with
an Aho-Corasick automaton (``ahocorasick_rs``, Rust's SIMD multi-literal search: ~10 GB/s here,
against ~2 GB/s for Python's regex engine anchored on the ``Operation`` key that every line has);
a hit counts only where it is the value of an ``Operation`` key and ends at its closing quote:
plain JSON (``"Operation":"X"``), spaced JSON and the doubled quotes of JSON inside a CSV field
(``""Operation"":""X""``).

Operation names are searched as the rules spell them (Microsoft's spelling) and all lower-case. The
audit log writes the names Microsoft gives them; a file with another spelling (upper-case, mixed) is
read completely with ``hunt --full-parse``. The SIMD search handles a few dozen patterns at full
speed and falls to ~0.6 GB/s beyond 64, so the names are split into automata of at most
``AUTOMATON_SIZE`` patterns, each one pass over the block.

Stage two: for the operation found, the rules that look at it each need one of a few literals
in the record (``detections/literals.py``: a parameter name, a right, a principal); a line with
none of them (case-insensitively) is dropped too; an analytic may instead give a regular expression
over the raw line (searched in place: no lower-cased copy, one pass, where the forty spellings of
``"LogonType": 2`` as literals would cost forty). Both stages may keep too much (the parsed record is
re-checked and the rules decide), never too little: tests compare against a hunt without the
prefilter.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import ahocorasick_rs

#: What must stand right before an operation name for it to be the ``Operation`` value.
_KEY = re.compile(rb'"Operation""?\s*:\s*""?\Z')
_KEY_WINDOW = 40
_COMPACT = b'"Operation":"'  # the common case, tested without the regex
_COMPACT_LEN = len(_COMPACT)
_QUOTE = 0x22


#: Patterns per automaton: measured here, 27 patterns search at ~10 GB/s, 64 at ~5, 81 at ~0.6.
AUTOMATON_SIZE = 32


def _automaton(patterns: Iterable[bytes]) -> ahocorasick_rs.BytesAhoCorasick:
    return ahocorasick_rs.BytesAhoCorasick(list(patterns), matchkind=ahocorasick_rs.MATCHKIND_LEFTMOST_LONGEST)


@dataclass(frozen=True)
class Prefilter:
    operations: frozenset[str]  # lower-case Operation values
    #: operation (lower-case) → lower-case literals one of which the line must contain; an
    #: operation that is absent has no second-stage test
    literals: Mapping[str, tuple[bytes, ...]] = field(default_factory=dict)
    #: (spellings, automaton over them) per pass of stage one
    _searches: tuple[tuple[tuple[bytes, ...], Any], ...] = ()
    _stage_two: Mapping[str, Any] = field(default_factory=dict)  # operation → automaton of its literals
    #: operation (lower-case) → a pattern over the raw line (as written) that also keeps it
    patterns: Mapping[str, re.Pattern[bytes]] = field(default_factory=dict)

    @classmethod
    def for_operations(cls, operations: Iterable[str],
                       literals: Mapping[str, Iterable[str] | None] | None = None,
                       patterns: Mapping[str, str] | None = None) -> Prefilter:
        ops = {o for o in operations if o}
        names = sorted({s.encode() for o in ops for s in (o, o.lower())})
        chunks = [tuple(names[i : i + AUTOMATON_SIZE]) for i in range(0, len(names), AUTOMATON_SIZE)]
        lits = {op.lower(): tuple(sorted(x.lower().encode("ascii") for x in req))
                for op, req in (literals or {}).items() if req is not None}
        pats = {op.lower(): re.compile(p.encode("ascii")) for op, p in (patterns or {}).items()}
        for op in pats:
            lits.setdefault(op, ())  # a pattern alone is a second-stage test too
        return cls(frozenset(o.lower() for o in ops), lits, tuple((c, _automaton(c)) for c in chunks),
                   {op: _automaton(req) for op, req in lits.items() if req}, pats)

    def wants(self, record: dict[str, Any]) -> bool:
        op = record.get("Operation")
        return isinstance(op, str) and op.lower() in self.operations

    def hits(self, block: bytes, begin: int, end: int) -> Iterator[tuple[str, int, int]]:
        """(lower-case operation, start, end) of every ``Operation`` value in ``block[begin:end]``
        that stage one wants."""
        if not self._searches:
            return
        key = _KEY
        found: list[tuple[int, int, bytes]] = []
        with memoryview(block) as view, view[begin:end] as part:  # released at once: blocks may be mmaps
            for names, search in self._searches:
                found += [(s, e, names[i]) for i, s, e in search.find_matches_as_indexes(part)]
        if len(self._searches) > 1:
            found.sort()
        for s, e, name in found:
            s += begin
            e += begin
            if e < end and block[e] == _QUOTE and (block[s - _COMPACT_LEN : s] == _COMPACT
                                                   or key.search(block, max(begin, s - _KEY_WINDOW), s)):
                yield name.decode("ascii", "replace").lower(), s, e

    def wants_line(self, line: bytes) -> bool:
        """Both stages on one raw record (a line, or a row's JSON text)."""
        return any(self.keep(op, line) for op, _, _ in self.hits(line, 0, len(line)))

    def keep(self, operation: str, line: bytes, start: int = 0, end: int | None = None) -> bool:
        """Stage two on ``line[start:end]``, a raw line whose operation stage one found."""
        if operation not in self.literals:
            return True  # no second-stage test
        pattern = self.patterns.get(operation)
        if pattern is not None and pattern.search(line, start, len(line) if end is None else end) is not None:
            return True
        search = self._stage_two.get(operation)
        return search is not None and bool(search.find_matches_as_indexes(line[start:end].lower()))
