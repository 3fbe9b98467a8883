"""``rules test``: each rule against its own positive and negative records."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

from delegatewatch.detections.engine import RuleEngine
from delegatewatch.detections.rules import Rule


@dataclass
class RuleTestOutcome:
    rule: Rule
    total: int = 0
    passed: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems and self.total > 0


def run_rule_tests(rules: Sequence[Rule]) -> Iterator[RuleTestOutcome]:
    for rule in rules:
        out = RuleTestOutcome(rule)
        pos, neg = rule.tests.get("positive", []), rule.tests.get("negative", [])
        if not pos or not neg:
            out.problems.append("a rule needs at least one positive and one negative test record")
        engine = RuleEngine([rule])
        for expected, records in ((True, pos), (False, neg)):
            for i, (rec, got) in enumerate(zip(records, engine.matches(rule, records)), 1):
                out.total += 1
                if got == expected:
                    out.passed += 1
                else:
                    kind = "positive" if expected else "negative"
                    out.problems.append(f"{kind} record {i} (Id {rec.get('Id', '?')}) "
                                        f"{'did not match' if expected else 'matched'}")
        yield out
