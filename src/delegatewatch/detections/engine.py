"""Evaluating the rules in DuckDB, in-process.

Candidate records are flattened to the vendor field names the rules use, handed to DuckDB as
an Arrow table (zero-copy), and each rule runs as one SQL ``WHERE``. Work is done in batches
so memory stays flat however large the input.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import duckdb
import pyarrow as pa

from delegatewatch.detections.rules import Rule
from delegatewatch.records.flatten import flatten


class RuleEngine:
    def __init__(self, rules: Sequence[Rule]) -> None:
        self.rules = list(rules)
        self.columns = sorted(set().union(*(r.fields for r in self.rules))) if self.rules else []
        self.con = duckdb.connect(":memory:")
        self.con.execute("SET threads TO 1")  # batches are small; threads only add overhead

    def evaluate(self, records: Sequence[dict[str, Any]]) -> list[tuple[Rule, int]]:
        """(rule, index into ``records``) for every match, in rule then record order."""
        if not records or not self.rules:
            return []
        flat = [flatten(r) for r in records]
        table = pa.table({"_idx": pa.array(range(len(flat)), pa.int64()),
                          **{c: pa.array([f.get(c, "") for f in flat], pa.string()) for c in self.columns}})
        self.con.register("events", table)
        try:
            out: list[tuple[Rule, int]] = []
            for rule in self.rules:
                rows = self.con.execute(f"SELECT _idx FROM events WHERE {rule.sql} ORDER BY _idx").fetchall()
                out.extend((rule, i) for (i,) in rows)
            return out
        finally:
            self.con.unregister("events")

    def matches(self, rule: Rule, records: Iterable[dict[str, Any]]) -> list[bool]:
        """Whether ``rule`` matches each record (used by ``rules test``)."""
        recs = list(records)
        hit = {i for r, i in RuleEngine([rule]).evaluate(recs)}
        return [i in hit for i in range(len(recs))]
