"""Export the Sigma rules to other products' query languages (``delegatewatch rules export``).

Every target goes through a pySigma backend (so modifiers, wildcards, escaping and condition
precedence come from pySigma) plus a processing pipeline from ``pipelines.py``:

=============  ==========================================  =====================================
target         backend                                     runs on
=============  ==========================================  =====================================
splunk         ``SplunkO365Backend`` (below)                ``sourcetype=o365:management:activity``
kusto          ``KustoBackend`` (pysigma-backend-kusto)     Microsoft Sentinel ``OfficeActivity``
elasticsearch  ``ElasticO365LuceneBackend`` (below)         Elastic ``o365.audit`` (Lucene)
databricks     ``SparkSQLBackend`` (below)                  raw UAL read with ``spark.read.json``
=============  ==========================================  =====================================

The published pySigma backends for Splunk, Elasticsearch and Databricks all require pySigma < 2
(pip cannot install any of their versions next to pySigma 2.0.1), so those three are small
``TextQueryBackend`` subclasses here, the same framework SigmaHQ's backends use. The Kusto backend
0.4.5 declares ``pysigma>=0.10`` with no upper bound and its ``KustoBackend`` class works with
pySigma 2.0.1 (its bundled ``sigma.pipelines.*`` modules do not import, and are not used).

The semantics every target reproduces are the engine's (``docs/rules.md``): string matching is
case-insensitive, an absent field equals the empty string (so ``not filter`` on a missing field
is true), ``Parameters.<Name>`` is the value of that one parameter (two with the same name are
joined with ``", "``). Rules a target cannot express get a comment with the reason.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

from sigma.conversion.base import TextQueryBackend
from sigma.conversion.state import ConversionState
from sigma.exceptions import SigmaError, SigmaFeatureNotSupportedByBackendError
from sigma.types import SigmaCompareExpression, SigmaString, SpecialChars

from delegatewatch.detections import pipelines
from delegatewatch.detections.backend import DuckDBBackend, InfixBooleanBackend
from delegatewatch.detections.pipelines import (
    JSON_TEXT_FIELDS,
    derived_name,
    split_list_field,
    split_modified_property,
)

if TYPE_CHECKING:
    from delegatewatch.detections.rules import Rule

#: Targets of ``export_rules`` / ``delegatewatch rules export --target``.
TARGETS: tuple[str, ...] = ("splunk", "kusto", "elasticsearch", "databricks")

#: Defaults for what a query reads from; documented in docs/rules-export.md.
SPLUNK_BASE_SEARCH = 'sourcetype="o365:management:activity"'
KUSTO_TABLE = "OfficeActivity"
ELASTIC_DATASET = "o365.audit"
DATABRICKS_TABLE = "m365_audit"


class ExportError(ValueError):
    """An unknown target (rules a target cannot express never raise: they become comments)."""


class UnsupportedRule(Exception):
    """Raised inside the exporter when a rule cannot be expressed; the message is the reason."""


# --------------------------------------------------------------------------------------------
# shared helpers


_REGEX_META = re.compile(r"([\\.^$|?*+()\[\]{}])")


def _sigma_string_regex(s: SigmaString, *, case_insensitive: bool) -> str:
    """A Sigma string (with its wildcards) as an anchored PCRE regular expression."""
    out = []
    for part in s.s:
        if isinstance(part, str):
            out.append(_REGEX_META.sub(r"\\\1", part))
        elif part is SpecialChars.WILDCARD_MULTI:
            out.append(".*")
        elif part is SpecialChars.WILDCARD_SINGLE:
            out.append(".")
        else:
            raise UnsupportedRule(f"placeholder {part!r} in a value")
    return ("(?i)" if case_insensitive else "") + "^" + "".join(out) + "$"


def _sigma_rule(rule: Rule):
    from sigma.collection import SigmaCollection
    from sigma.rule import SigmaRule

    collection = SigmaCollection.from_yaml(Path(rule.path).read_text(encoding="utf-8"))
    found = [r for r in collection.rules if isinstance(r, SigmaRule)]
    if len(found) != 1:
        raise UnsupportedRule(f"expected exactly one Sigma rule in {rule.path}, found {len(found)}")
    return found[0]


def _header(rule: Rule) -> str:
    attack = ", ".join(rule.attack) or "-"
    return f"delegatewatch rule {rule.name} | {rule.title} | level: {rule.severity} | ATT&CK: {attack}"


# --------------------------------------------------------------------------------------------
# Splunk: search for the operations, derive nested fields with eval, decide with `where`


def _splunk_str(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def splunk_field_ref(field: str) -> str:
    """The eval expression for a rule field: text, and "" when absent (as in the engine)."""
    if split_list_field(field) or split_modified_property(field) or field in JSON_TEXT_FIELDS:
        return f'coalesce({derived_name(field)}, "")'
    return "coalesce(tostring('" + field.replace("'", "\\'") + "'), \"\")"


class _DoubleQuotedTextBackend(InfixBooleanBackend):
    """What the Splunk and Elastic export backends share: double-quoted strings with backslash
    escapes, ``*``/``?`` wildcards, the four comparison operators, no ``IN`` lists, and no keyword
    (field-less) values."""

    requires_pipeline: ClassVar[bool] = False
    str_quote: ClassVar[str] = '"'
    escape_char: ClassVar[str] = "\\"
    wildcard_multi: ClassVar[str] = "*"
    wildcard_single: ClassVar[str] = "?"
    add_escaped: ClassVar[str] = "\\"
    compare_operators: ClassVar[dict[SigmaCompareExpression.CompareOperators, str]] = {
        SigmaCompareExpression.CompareOperators.LT: "<",
        SigmaCompareExpression.CompareOperators.LTE: "<=",
        SigmaCompareExpression.CompareOperators.GT: ">",
        SigmaCompareExpression.CompareOperators.GTE: ">=",
    }
    convert_or_as_in: ClassVar[bool] = False
    convert_and_as_in: ClassVar[bool] = False

    def convert_condition_val_str(self, cond, state: ConversionState) -> str:
        raise SigmaFeatureNotSupportedByBackendError("keyword (field-less) values are not exported")

    convert_condition_val_num = convert_condition_val_str
    convert_condition_val_re = convert_condition_val_str


class SplunkO365Backend(_DoubleQuotedTextBackend):
    """Splunk ``where`` (eval) expressions over the add-on's events.

    Eval expressions rather than search terms: ``match(x, "(?i)^…$")`` gives case-insensitive,
    anchored, wildcard-exact matching on any field, including the ones derived with ``spath``
    (search-language terms on the raw ``Parameters{}.Value`` multivalue field would match a
    value of *any* parameter, and ``NOT`` of such a term would drop grants that merely carry
    another parameter with that value, e.g. ``AutoMapping=True`` against ``Deny=True``).
    """

    name: ClassVar[str] = "delegatewatch Splunk (o365:management:activity) backend"
    formats: ClassVar[dict[str, str]] = {"default": "Splunk SPL: base search | eval … | where …"}
    eq_token: ClassVar[str] = "=="
    bool_values: ClassVar[dict[bool, str]] = {True: '"True"', False: '"False"'}

    re_expression: ClassVar[str] = 'match({field}, "{regex}")'
    re_escape_char: ClassVar[str] = "\\"
    re_escape: ClassVar[tuple[str, ...]] = ('"',)
    re_escape_escape_char: bool = True
    re_flag_prefix: bool = True

    compare_op_expression: ClassVar[str] = "tonumber({field}) {operator} {value}"
    field_null_expression: ClassVar[str] = '{field}==""'
    field_exists_expression: ClassVar[str] = '{field}!=""'
    field_not_exists_expression: ClassVar[str] = '{field}==""'

    def escape_and_quote_field(self, field_name: str) -> str:
        return splunk_field_ref(field_name)

    def _match(self, cond, case_insensitive: bool) -> str:
        regex = _sigma_string_regex(cond.value, case_insensitive=case_insensitive)
        return f"match({self.escape_and_quote_field(cond.field)}, {_splunk_str(regex)})"

    def convert_condition_field_eq_val_str(self, cond, state: ConversionState) -> str:
        return self._match(cond, True)

    def convert_condition_field_eq_val_str_case_sensitive(self, cond, state: ConversionState) -> str:
        return self._match(cond, False)

    def convert_condition_field_eq_val_num(self, cond, state: ConversionState) -> str:
        return f'{self.escape_and_quote_field(cond.field)}=="{cond.value}"'


    def finalize_query_default(self, rule, query: str, index: int, state: ConversionState) -> str:
        return query


def splunk_prelude(fields: frozenset[str] | set[str], operations: frozenset[str]) -> list[str]:
    """Base search (indexed, case-insensitive ``Operation IN``) and the ``eval`` lines that
    derive the nested fields the rule reads. ``spath(_raw, "Parameters{}")`` gives one JSON
    object per parameter, so a name and its value stay paired."""
    base = SPLUNK_BASE_SEARCH
    if operations:
        base += " Operation IN (" + ", ".join(_splunk_str(o) for o in sorted(operations)) + ")"
    lines = [base]
    lists: dict[str, list[tuple[str, str]]] = {}
    for f in sorted(fields):
        if f in JSON_TEXT_FIELDS:
            lines.append(f'| eval {derived_name(f)}=mvjoin(spath(_raw, "{f}{{}}"), ",")')
        elif (pair := split_list_field(f)) is not None:
            pick = (f'if(spath(dw_{pair[0]}_items, "Name")=={_splunk_str(pair[1])}, '
                    f'spath(dw_{pair[0]}_items, "Value"), null())')
            lists.setdefault(pair[0], []).append((f, pick))
        elif (mp := split_modified_property(f)) is not None:
            pick = (f'if(spath(dw_ModifiedProperties_items, "Name")=={_splunk_str(mp[0])}, '
                    f'spath(dw_ModifiedProperties_items, {_splunk_str(mp[1])}), null())')
            lists.setdefault("ModifiedProperties", []).append((f, pick))
    for lst, items in lists.items():
        lines.append(f'| eval dw_{lst}_items=spath(_raw, "{lst}{{}}")')
        for f, pick in items:
            lines.append(f"| eval {derived_name(f)}=mvjoin(mvmap(dw_{lst}_items, {pick}), \", \")")
    return lines


# --------------------------------------------------------------------------------------------
# Kusto (Microsoft Sentinel OfficeActivity)


def _kusto_str(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def kusto_prelude(fields: frozenset[str] | set[str], operations: frozenset[str]) -> list[str]:
    """``OfficeActivity``, the Operation filter, and ``extend``s for every derived column."""
    lines = [KUSTO_TABLE]
    if operations:
        lines.append("| where Operation in~ (" + ", ".join(_kusto_str(o) for o in sorted(operations)) + ")")
    lists: dict[str, list[str]] = {}
    objects: dict[str, list[str]] = {}
    texts: list[str] = []
    for f in sorted(fields):
        if f in JSON_TEXT_FIELDS:
            texts.append(f)
        elif (pair := split_list_field(f)) is not None:
            lists.setdefault(pair[0], []).append(f)
        elif "." in f:
            objects.setdefault(f.split(".", 1)[0], []).append(f)
    for f in texts:
        lines.append(f"| extend {derived_name(f)} = tostring({f})")
    for lst, used in lists.items():
        # One bag Name → Value per record. A record whose list is empty or missing gets one dummy
        # pair, so mv-apply always has a row to summarize and the record is kept.
        lines.append(f"| extend dw_{lst}_list = todynamic({lst})")
        lines.append(
            f"| mv-apply dw_{lst}_item = iff(array_length(dw_{lst}_list) > 0, dw_{lst}_list, "
            f'dynamic([{{"Name": "dw_none", "Value": ""}}])) on (summarize dw_{lst}_bag = '
            f"make_bag(bag_pack(tostring(dw_{lst}_item.Name), tostring(dw_{lst}_item.Value))))")
        lines.append("| extend " + ", ".join(
            f"{derived_name(f)} = tostring(dw_{lst}_bag[{_kusto_str(split_list_field(f)[1])}])" for f in used))
    for obj, used in objects.items():
        lines.append(f"| extend dw_{obj}_obj = todynamic({obj})")
        lines.append("| extend " + ", ".join(
            f"{derived_name(f)} = tostring(dw_{obj}_obj" + "".join(f"[{_kusto_str(p)}]" for p in f.split(".")[1:]) + ")"
            for f in used))
    return lines


# --------------------------------------------------------------------------------------------
# Elasticsearch (Elastic o365 integration, Lucene query string)

_LUCENE_REGEX_RESERVED = set('.?+*|{}[]()"\\#@&<>~/^$ ')


def _lucene_ci_regex(s: SigmaString) -> str:
    """A Sigma string as a case-insensitive Lucene regular expression (``/…/``).

    Lucene regexps match the whole term (implicitly anchored) and have no ``(?i)`` flag, so each
    cased letter becomes ``[xX]``; keyword fields store the value as one term."""
    out = []
    for part in s.s:
        if isinstance(part, str):
            for ch in part:
                lo, up = ch.lower(), ch.upper()
                if lo != up and len(lo) == 1 and len(up) == 1:
                    out.append(f"[{lo}{up}]")
                elif ch in _LUCENE_REGEX_RESERVED:
                    out.append("\\" + ch)
                else:
                    out.append(ch)
        elif part is SpecialChars.WILDCARD_MULTI:
            out.append(".*")
        elif part is SpecialChars.WILDCARD_SINGLE:
            out.append(".")
        else:
            raise UnsupportedRule(f"placeholder {part!r} in a value")
    return "/" + "".join(out) + "/"


def _lucene_phrase(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


_LUCENE_FIELD_SPECIAL = re.compile(r'([+\-=&|><!(){}\[\]^"~*?:\\/ ])')

#: Fields whose values the service writes in one canonical spelling: exact term match (fast).
_ELASTIC_EXACT_FIELDS = frozenset({"event.action"})


class ElasticO365LuceneBackend(_DoubleQuotedTextBackend):
    """Lucene query strings over the Elastic o365 integration.

    Keyword fields are case-sensitive in Elasticsearch, and values such as AccessRights or a
    GrantSendOnBehalfTo list are typed by the administrator, so every string match except on
    ``event.action`` is a case-insensitive regular expression; Sigma ``|re`` is not translated
    (Lucene regexps lack ``(?i)``, ``^``/``$`` and ``\\s``) and fails the rule with the reason.
    """

    name: ClassVar[str] = "delegatewatch Elastic o365 Lucene backend"
    formats: ClassVar[dict[str, str]] = {"default": "Lucene query string"}
    eq_token: ClassVar[str] = ":"
    bool_values: ClassVar[dict[bool, str]] = {True: "true", False: "false"}
    compare_op_expression: ClassVar[str] = "{field}:{operator}{value}"
    # Absent or empty, as in the engine.
    field_null_expression: ClassVar[str] = '(NOT _exists_:{field} OR {field}:"")'
    field_exists_expression: ClassVar[str] = '(_exists_:{field} AND NOT {field}:"")'
    field_not_exists_expression: ClassVar[str] = '(NOT _exists_:{field} OR {field}:"")'

    def escape_and_quote_field(self, field_name: str) -> str:
        return _LUCENE_FIELD_SPECIAL.sub(r"\\\1", field_name)

    def convert_condition_field_eq_val_str(self, cond, state: ConversionState) -> str:
        field = self.escape_and_quote_field(cond.field)
        value: SigmaString = cond.value
        if len(value) == 0 or value.s == ("",):
            return self.field_null_expression.format(field=field)
        if cond.field in _ELASTIC_EXACT_FIELDS and not value.contains_special():
            return f"{field}:{_lucene_phrase(str(value))}"
        return f"{field}:{_lucene_ci_regex(value)}"

    def convert_condition_field_eq_val_str_case_sensitive(self, cond, state: ConversionState) -> str:
        field = self.escape_and_quote_field(cond.field)
        if not cond.value.contains_special():
            return f"{field}:{_lucene_phrase(str(cond.value))}"
        raise SigmaFeatureNotSupportedByBackendError("case-sensitive wildcard match (|cased) in Lucene")

    def convert_condition_field_eq_val_num(self, cond, state: ConversionState) -> str:
        return f"{self.escape_and_quote_field(cond.field)}:{cond.value}"

    def convert_condition_field_eq_val_re(self, cond, state: ConversionState) -> str:
        raise SigmaFeatureNotSupportedByBackendError(
            f"the |re match on {cond.field} is not translated to a Lucene regexp (no (?i) flag, "
            "no ^/$ anchors, no \\s class); use EQL or ES|QL for this rule")


    def finalize_query_default(self, rule, query: str, index: int, state: ConversionState) -> str:
        return f"event.dataset:{ELASTIC_DATASET} AND ({query})"


# --------------------------------------------------------------------------------------------
# Databricks / Spark SQL over the raw UAL


def _spark_str(text: str) -> str:
    """A Spark SQL string literal (backslash is the literal's escape character in Spark)."""
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _spark_ident(name: str) -> str:
    return name if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name) else "`" + name.replace("`", "``") + "`"


def spark_derived_expr(field: str) -> str | None:
    """Spark SQL for a field computed from a nested list (``Parameters.X`` …), else None."""
    if (pair := split_list_field(field)) is not None:
        lst, name = pair
        return (f"coalesce(array_join(transform(filter({_spark_ident(lst)}, dw_p -> dw_p.Name = {_spark_str(name)}), "
                f"dw_p -> CAST(dw_p.Value AS STRING)), ', '), '')")
    if (mp := split_modified_property(field)) is not None:
        name, which = mp
        return (f"coalesce(array_join(transform(filter(ModifiedProperties, dw_p -> dw_p.Name = {_spark_str(name)}), "
                f"dw_p -> CAST(dw_p.{which} AS STRING)), ', '), '')")
    if field in JSON_TEXT_FIELDS:
        return f"coalesce(to_json({_spark_ident(field)}), '')"
    return None


def spark_field_expr(field: str) -> str:
    """Spark SQL text of a rule field over the raw UAL schema (``spark.read.json``): never NULL.
    Fields from nested lists are columns ``dw_*`` that ``spark_select`` computes once."""
    if spark_derived_expr(field) is not None:
        return derived_name(field)
    return "coalesce(CAST(" + ".".join(_spark_ident(p) for p in field.split(".")) + " AS STRING), '')"


def spark_select(fields: frozenset[str] | set[str], table: str, where: str) -> str:
    derived = [(derived_name(f), expr) for f in sorted(fields) if (expr := spark_derived_expr(f)) is not None]
    if not derived:
        return f"SELECT * FROM {table} WHERE {where}"
    cols = "".join(f",\n    {expr} AS {name}" for name, expr in derived)
    return f"SELECT * FROM (\n  SELECT *{cols}\n  FROM {table}\n) AS dw\nWHERE {where}"


class SparkSQLBackend(DuckDBBackend):
    """Our DuckDB backend's semantics in Spark SQL (Databricks): ``ILIKE``, text comparison,
    absent = ``''`` via ``coalesce``; nested Name/Value lists with higher-order functions."""

    name: ClassVar[str] = "delegatewatch Spark SQL (Databricks) backend"
    formats: ClassVar[dict[str, str]] = {"default": "Spark SQL SELECT over the raw UAL table"}

    eq_expression: ClassVar[str] = "{field} ILIKE {value}"
    wildcard_match_expression: ClassVar[str] = "{field} ILIKE {value}"
    case_sensitive_match_expression: ClassVar[str] = "{field} LIKE {value}"
    re_expression: ClassVar[str] = "{field} RLIKE '{regex}'"
    re_escape_char: ClassVar[str] = "\\"
    re_escape: ClassVar[tuple[str, ...]] = ("'",)
    re_escape_escape_char: bool = True
    compare_op_expression: ClassVar[str] = "try_cast({field} AS DOUBLE) {operator} {value}"
    unbound_value_str_expression: ClassVar[str] = ""

    def escape_and_quote_field(self, field_name: str) -> str:
        return spark_field_expr(field_name)

    def convert_value_str(self, s, state: ConversionState) -> str:
        # LIKE pattern first (\ escapes % _ \ for LIKE), then the Spark literal doubles each \.
        like = s.convert(self.escape_char, self.wildcard_multi, self.wildcard_single, self.add_escaped,
                         self.filter_chars)
        return _spark_str(like)

    def convert_condition_val_str(self, cond, state: ConversionState) -> str:
        raise SigmaFeatureNotSupportedByBackendError("keyword (field-less) values are not exported")

    convert_condition_val_num = convert_condition_val_str
    convert_condition_val_re = convert_condition_val_str

    def finalize_query_default(self, rule, query: str, index: int, state: ConversionState) -> str:
        return query


# --------------------------------------------------------------------------------------------
# export


def _convert(rule: Rule, target: str, *, table: str | None) -> str:
    """One rule's query for ``target``; raises UnsupportedRule with the reason."""
    if rule.family != "m365":
        raise UnsupportedRule(f"the {target} field mappings cover Microsoft 365 unified audit log rules; this rule "
                              f"reads {rule.family} records (logsource product {rule.family})")
    try:
        sigma = _sigma_rule(rule)
        fields = frozenset(rule.fields)
        if target == "splunk":
            backend: TextQueryBackend = SplunkO365Backend(pipelines.splunk_pipeline())
        elif target == "kusto":
            from sigma.backends.kusto import KustoBackend

            backend = KustoBackend(pipelines.kusto_pipeline(fields))
        elif target == "elasticsearch":
            backend = ElasticO365LuceneBackend(pipelines.elastic_pipeline(fields))
        else:
            backend = SparkSQLBackend(pipelines.databricks_pipeline())
        queries = backend.convert_rule(sigma)
    except (SigmaError, NotImplementedError) as exc:
        raise UnsupportedRule(str(exc).strip() or type(exc).__name__) from exc
    except OSError as exc:
        raise UnsupportedRule(f"cannot read {rule.path}: {exc}") from exc
    if len(queries) != 1:
        raise UnsupportedRule(f"the rule converts to {len(queries)} queries, expected 1")
    query = str(queries[0])
    if target == "splunk":
        return "\n".join([*splunk_prelude(fields, rule.operations), f"| where {query}"])
    if target == "kusto":
        lines = kusto_prelude(fields, rule.operations)
        if table:
            lines[0] = table
        return "\n".join([*lines, f"| where {query}", "| project-away dw_*"])
    if target == "databricks":
        return spark_select(fields, table or DATABRICKS_TABLE, query)
    return query


def _one_line(text: str) -> str:
    return " ".join(text.split())


def export_rules(rules: list[Rule], target: str, *, table: str | None = None) -> str:
    """All ``rules`` as queries for ``target`` (one of ``TARGETS``), each after a comment line
    naming the rule, title, level and ATT&CK ids (Elasticsearch: one JSON object per line).

    ``table`` overrides the table (kusto: ``OfficeActivity``; databricks: ``m365_audit``).
    A rule the target cannot express becomes a comment (or ``"query": null``) with the reason.
    """
    if target not in TARGETS:
        raise ExportError(f"unknown export target {target!r}; choose one of {', '.join(TARGETS)}")
    blocks: list[str] = []
    for rule in rules:
        try:
            query, reason = _convert(rule, target, table=table), None
        except UnsupportedRule as exc:
            query, reason = None, _one_line(str(exc))
        if target == "elasticsearch":
            blocks.append(json.dumps({
                "rule": rule.name, "id": rule.id, "title": rule.title, "level": rule.severity,
                "attack": list(rule.attack), "language": "lucene", "query": query,
                **({"unsupported": reason} if reason else {}),
            }, ensure_ascii=False))
            continue
        header = _header(rule)
        if target == "splunk":
            comment = "```" + header.replace("`", "'") + "```"
            unsupported = "```" + f"NOT EXPORTED: {reason}".replace("`", "'") + "```"
        elif target == "kusto":
            comment, unsupported = f"// {header}", f"// NOT EXPORTED: {reason}"
        else:
            comment, unsupported = f"-- {header}", f"-- NOT EXPORTED: {reason}"
        blocks.append(comment + "\n" + (query if reason is None else unsupported))
    sep = "\n" if target == "elasticsearch" else "\n\n"
    return sep.join(blocks) + ("\n" if blocks else "")
