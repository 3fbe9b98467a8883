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


#: pySigma's own rule checks that work offline (the ATT&CK/D3FEND tag checks download data sets).
OFFLINE_VALIDATORS = (
    "all_of_them_condition", "dangling_condition", "dangling_detection", "them_condition_with_single_detection",
    "duplicate_references", "duplicate_title", "identifier_existence", "identifier_uniqueness",
    "invalid_modifier_combinations", "duplicate_tag", "tag_format", "control_character", "double_wildcard",
    "escaped_wildcard", "number_as_string", "wildcards_instead_of_modifiers",
)


def validate_rules(rules: Sequence[Rule]) -> list[str]:
    """pySigma validator findings, one line each (``path: validator: description``)."""
    from sigma.collection import SigmaCollection
    from sigma.validation import SigmaValidator
    from sigma.validators.core import validators

    validator = SigmaValidator([validators[name] for name in OFFLINE_VALIDATORS if name in validators])
    collection = SigmaCollection.load_ruleset([r.path for r in rules])
    out = []
    for issue in validator.validate_rules(collection):
        paths = ", ".join(str(getattr(getattr(r, "source", None), "path", "") or r.title) for r in issue.rules)
        out.append(f"{paths}: {type(issue).__name__}: {issue.description}")
    return out
