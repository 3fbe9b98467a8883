"""A pySigma backend that turns Sigma rules into DuckDB SQL over the flat event table.

Built on pySigma's ``TextQueryBackend`` (the framework SigmaHQ's own backends use), so
modifiers, wildcards, escaping and condition precedence come from pySigma; this file only
states DuckDB's syntax. The published pySigma-backend-duckdb targets pySigma 1.x and raw
``read_json`` (its ILIKE on nested Parameters fails, performance.md), so it does not fit here.

Semantics chosen to match Sigma's: string matching is case-insensitive (``ILIKE``); every
column is text and an absent field is the empty string, so ``NOT`` of a filter on a missing
field is true (SQL's NULL would silently drop the row); numbers compare as text.
"""

from __future__ import annotations

import re
from typing import ClassVar

from sigma.conditions import ConditionAND, ConditionItem, ConditionNOT, ConditionOR
from sigma.conversion.base import TextQueryBackend
from sigma.conversion.state import ConversionState
from sigma.types import SigmaCompareExpression


class InfixBooleanBackend(TextQueryBackend):
    """The boolean layer every delegatewatch backend shares (DuckDB here, and the Splunk, Elastic and
    Spark backends of the rule export): NOT binds tighter than AND, AND than OR; groups in parentheses."""

    precedence: ClassVar[tuple[type[ConditionItem], type[ConditionItem], type[ConditionItem]]] = (
        ConditionNOT, ConditionAND, ConditionOR)
    parenthesize: bool = True
    group_expression: ClassVar[str] = "({expr})"
    token_separator: str = " "
    or_token: ClassVar[str] = "OR"
    and_token: ClassVar[str] = "AND"
    not_token: ClassVar[str] = "NOT"


class DuckDBBackend(InfixBooleanBackend):
    name: ClassVar[str] = "delegatewatch DuckDB backend"
    formats: ClassVar[dict[str, str]] = {"default": "DuckDB WHERE expressions over the flat event table"}
    requires_pipeline: ClassVar[bool] = False

    eq_token: ClassVar[str] = " = "

    field_quote: ClassVar[str] = '"'
    field_quote_pattern: ClassVar[re.Pattern[str]] = re.compile("^$")  # always quote: names have dots
    field_quote_pattern_negation: ClassVar[bool] = True
    field_escape: ClassVar[str] = '"'
    field_escape_quote: ClassVar[bool] = True

    str_quote: ClassVar[str] = "'"
    escape_char: ClassVar[str] = "\\"
    wildcard_multi: ClassVar[str] = "%"
    wildcard_single: ClassVar[str] = "_"
    add_escaped: ClassVar[str] = "\\"
    filter_chars: ClassVar[str] = ""
    bool_values: ClassVar[dict[bool, str]] = {True: "'True'", False: "'False'"}

    eq_expression: ClassVar[str] = "{field} ILIKE {value} ESCAPE '\\'"
    wildcard_match_expression: ClassVar[str] = "{field} ILIKE {value} ESCAPE '\\'"
    # startswith/endswith/contains are left to pySigma, which turns them into wildcards.
    re_expression: ClassVar[str] = "regexp_matches({field}, '{regex}')"
    re_escape_char: ClassVar[str] = "'"  # SQL strings: quote doubled, backslash literal
    re_escape: ClassVar[tuple[str, ...]] = ("'",)
    re_flag_prefix: bool = True

    case_sensitive_match_expression: ClassVar[str] = "{field} LIKE {value} ESCAPE '\\'"

    compare_op_expression: ClassVar[str] = "TRY_CAST({field} AS DOUBLE) {operator} {value}"
    compare_operators: ClassVar[dict[SigmaCompareExpression.CompareOperators, str]] = {
        SigmaCompareExpression.CompareOperators.LT: "<",
        SigmaCompareExpression.CompareOperators.LTE: "<=",
        SigmaCompareExpression.CompareOperators.GT: ">",
        SigmaCompareExpression.CompareOperators.GTE: ">=",
    }
    field_null_expression: ClassVar[str] = "{field} = ''"
    field_exists_expression: ClassVar[str] = "{field} <> ''"
    field_not_exists_expression: ClassVar[str] = "{field} = ''"

    convert_or_as_in: ClassVar[bool] = False
    convert_and_as_in: ClassVar[bool] = False

    unbound_value_str_expression: ClassVar[str] = "\"_raw\" ILIKE '%' || {value} || '%' ESCAPE '\\'"

    def convert_value_str(self, s, state: ConversionState) -> str:  # noqa: ANN001
        # LIKE escapes (wildcards, backslash) use ESCAPE '\'; the SQL string itself escapes a quote
        # by doubling it. pySigma's default would write \' and end the SQL literal early.
        converted = s.convert(self.escape_char, self.wildcard_multi, self.wildcard_single, self.add_escaped,
                              self.filter_chars)
        return "'" + converted.replace("'", "''") + "'"

    def convert_condition_field_eq_val_num(self, cond, state: ConversionState) -> str:  # noqa: ANN001
        # Every column is text: compare numbers as their decimal text.
        return f"{self.escape_and_quote_field(cond.field)} = '{cond.value}'"

    def finalize_query_default(self, rule, query: str, index: int, state: ConversionState) -> str:  # noqa: ANN001
        return query
