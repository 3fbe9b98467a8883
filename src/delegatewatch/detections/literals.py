"""Literals a record must contain for a rule to match it: the prefilter's second stage.

From a rule's parsed condition (pySigma expands it into AND/OR/NOT of field tests), derive a set
of lower-case strings of which at least one must appear in the raw record for the rule to be
able to match — or None when no such set can be proven (a NOT, a regular expression, a test
that an empty field would pass). The derivation errs towards None: a literal is only used when
JSON and CSV exports write it unchanged (ASCII letters, digits and a few safe signs), and the
test is a substring test on the lower-cased line, so it can keep too much but never too little.
"""

from __future__ import annotations

import re
from typing import Any

_NAME_VALUE = ("Parameters.", "OperationProperties.", "ExtendedProperties.")
_SAFE = re.compile(r"^[A-Za-z0-9 .,:;_@#{}()=+-]{3,}$")  # written as-is in JSON and CSV
_WEAK = {"true", "false", "none", "null"}

Requirement = tuple[frozenset[str], int]  # (any-of literals, selectivity score: higher is better)


def required_literals(node: Any, operations: frozenset[str] = frozenset()) -> frozenset[str] | None:
    req = _required(node, frozenset(o.lower() for o in operations))
    return req[0] if req else None


def _required(node: Any, ops: frozenset[str]) -> Requirement | None:
    from sigma.conditions import ConditionAND, ConditionFieldEqualsValueExpression, ConditionOR

    if isinstance(node, ConditionFieldEqualsValueExpression):
        return _field(node.field, node.value)
    if isinstance(node, ConditionOR):
        parts = [_required(a, ops) for a in node.args]
        if not parts or any(p is None for p in parts):
            return None
        return frozenset().union(*(p[0] for p in parts)), min(p[1] for p in parts)  # type: ignore[index]
    if isinstance(node, ConditionAND):
        parts = [p for p in (_required(a, ops) for a in node.args) if p]
        if not parts:
            return None
        # Any one child's set is a valid requirement: take the most selective, preferring one that
        # is not just the operation name (the first stage has already checked that).
        return max(parts, key=lambda p: (not p[0] <= ops, p[1]))
    return None  # NOT, keywords, anything unknown: no requirement


def _field(field: str | None, value: Any) -> Requirement | None:
    from sigma.types import SigmaExists, SigmaString

    if not field:
        return None
    name_value = field.startswith(_NAME_VALUE)
    name = field.split(".", 1)[1] if name_value else field.rsplit(".", 1)[-1]
    by_name = (frozenset({name.lower()}), 1) if _SAFE.match(name) else None
    if isinstance(value, SigmaExists):
        return by_name if value.exists else None
    if not isinstance(value, SigmaString) or not any(isinstance(p, str) and p for p in value.s):
        return None  # numbers, regexes, null and empty strings: an absent field may pass them
    literal = max((p for p in value.s if isinstance(p, str)), key=len)
    if _SAFE.match(literal) and literal.lower() not in _WEAK:
        return frozenset({literal.lower()}), len(literal)
    # A non-empty value of a Name/Value parameter means the parameter's name is in the record.
    return by_name if name_value else None
