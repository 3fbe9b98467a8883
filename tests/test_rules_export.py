"""`rules export`: every built-in rule converts for every target; key queries are spot-checked.

Only the Databricks (Spark SQL) output is *executed*: with a local Spark (pyspark) against the
rules' own positive/negative test records, when pyspark and Java are available (skipped
otherwise). Splunk, Kusto and Elasticsearch output is checked as text only: no engine for
those runs here.
"""

from __future__ import annotations

import json
import re
import shutil

import pytest

from delegatewatch.detections.export import TARGETS, ExportError, export_rules
from delegatewatch.detections.rules import load_rules

FULL_ACCESS = "m365_mailbox_full_access_grant"
FOLDER_AUDIT = "m365_folder_default_anonymous_audit"
SEND_ON_BEHALF = "m365_send_on_behalf_grant"

#: What each target cannot express, on purpose (the reason is in the output).
EXPECTED_UNSUPPORTED = {
    "splunk": set(),
    "databricks": set(),
    "kusto": {"m365_app_mail_permission"},  # Entra ID records are not in OfficeActivity
    "elasticsearch": {
        "m365_app_mail_permission",  # ModifiedProperties as JSON text
        "m365_mail_forwarding",  # OperationProperties as JSON text
        "m365_folder_read_grant",  # |re
        "m365_folder_default_calendar_details",  # |re
    },
}


@pytest.fixture(scope="module")
def rules():
    # The field pipelines cover Microsoft 365 rules; other families are exported as NOT EXPORTED
    # (tested below).
    return [r for r in load_rules(use_cache=False) if r.family == "m365"]


def test_rules_of_other_families_are_marked_not_exported():
    others = [r for r in load_rules(use_cache=False) if r.family != "m365"]
    if not others:
        pytest.skip("no non-Microsoft 365 rules installed")
    for target in ("splunk", "kusto", "databricks"):
        assert export_rules(others, target).count("NOT EXPORTED") == len(others)


@pytest.fixture(scope="module")
def by_name(rules):
    return {r.name: r for r in rules}


def _blocks(text: str, target: str) -> list[str]:
    if target == "elasticsearch":
        return text.strip().split("\n")
    return text.strip().split("\n\n")


def _query(by_name, name: str, target: str) -> str:
    out = export_rules([by_name[name]], target)
    if target == "elasticsearch":
        doc = json.loads(out)
        assert doc["query"], doc
        return doc["query"]
    _header, _, query = out.strip().partition("\n")
    assert "NOT EXPORTED" not in query, query
    return query


def test_targets_listed():
    assert set(TARGETS) == {"splunk", "kusto", "elasticsearch", "databricks"}


def test_unknown_target_is_an_error(rules):
    with pytest.raises(ExportError):
        export_rules(rules, "qradar")


@pytest.mark.parametrize("target", TARGETS)
def test_every_builtin_rule_converts(rules, target):
    out = export_rules(rules, target)
    blocks = _blocks(out, target)
    assert len(blocks) == len(rules)
    unsupported = set()
    for rule, block in zip(rules, blocks, strict=True):
        if target == "elasticsearch":
            doc = json.loads(block)
            assert doc["rule"] == rule.name and doc["level"] == rule.severity
            assert doc["attack"] == rule.attack and doc["title"] == rule.title
            if doc["query"] is None:
                assert doc["unsupported"]
                unsupported.add(rule.name)
            else:
                assert doc["query"].startswith("event.dataset:o365.audit AND (")
            continue
        header, _, body = block.partition("\n")
        assert rule.name in header and rule.title in header and f"level: {rule.severity}" in header
        assert all(a in header for a in rule.attack)
        comment = {"splunk": "```", "kusto": "//", "databricks": "--"}[target]
        assert header.startswith(comment)
        if "NOT EXPORTED:" in body:
            assert body.startswith(comment) and len(body) > 30  # a reason, not just the marker
            unsupported.add(rule.name)
    assert unsupported == EXPECTED_UNSUPPORTED[target]


# ---------------------------------------------------------------------------- splunk


def test_splunk_full_access(by_name):
    q = _query(by_name, FULL_ACCESS, "splunk")
    lines = q.split("\n")
    assert lines[0] == 'sourcetype="o365:management:activity" Operation IN ("Add-MailboxPermission")'
    # Name and value stay paired: one JSON object per parameter, the value picked by its name.
    assert '| eval dw_Parameters_items=spath(_raw, "Parameters{}")' in lines
    assert ('| eval dw_Parameters_AccessRights=mvjoin(mvmap(dw_Parameters_items, if(spath(dw_Parameters_items, '
            '"Name")=="AccessRights", spath(dw_Parameters_items, "Value"), null())), ", ")') in lines
    where = lines[-1]
    assert where.startswith("| where ")
    assert 'match(coalesce(dw_Parameters_AccessRights, ""), "(?i)^.*FullAccess.*$")' in where
    # system accounts and self/deny filters, negated, with absent fields as ""
    assert "NOT (" in where
    assert 'coalesce(tostring(\'UserType\'), "")=="3"' in where
    assert 'match(coalesce(tostring(\'UserId\'), ""), "(?i)^NT AUTHORITY\\\\\\\\SYSTEM.*$")' in where
    assert 'match(coalesce(dw_Parameters_User, ""), "(?i)^NT AUTHORITY\\\\\\\\SELF$")' in where
    assert 'match(coalesce(dw_Parameters_Deny, ""), "(?i)^True$")' in where
    # never a search on the raw multivalue field (it would mix parameters)
    assert "Parameters{}.Value" not in q


def test_splunk_folder_audit_and_send_on_behalf(by_name):
    q = _query(by_name, FOLDER_AUDIT, "splunk")
    assert 'Operation IN ("AddFolderPermissions", "ModifyFolderPermissions")' in q
    assert "match(coalesce(tostring('Item.ParentFolder.MemberUpn'), \"\"), \"(?i)^Everyone$\")" in q
    assert "match(coalesce(tostring('Item.ParentFolder.Path'), \"\"), \"(?i)^\\\\\\\\Calendar$\")" in q
    assert "spath(_raw" not in q  # nested objects are auto-extracted fields
    q = _query(by_name, SEND_ON_BEHALF, "splunk")
    assert 'Operation IN ("Set-Mailbox")' in q
    assert 'coalesce(dw_Parameters_GrantSendOnBehalfTo, "")!=""' in q
    assert 'match(coalesce(dw_Parameters_GrantSendOnBehalfTo, ""), "(?i)^.*Remove.*$")' in q
    assert 'coalesce(tostring(\'UserType\'), "")=="4"' in q


# ---------------------------------------------------------------------------- kusto


def test_kusto_full_access(by_name):
    q = _query(by_name, FULL_ACCESS, "kusto")
    lines = q.split("\n")
    assert lines[0] == "OfficeActivity"
    assert lines[1] == '| where Operation in~ ("Add-MailboxPermission")'
    assert any(line.startswith("| mv-apply dw_Parameters_item = ") and "make_bag(bag_pack(" in line for line in lines)
    assert 'dw_Parameters_AccessRights = tostring(dw_Parameters_bag["AccessRights"])' in q
    where = lines[-2]
    assert lines[-1] == "| project-away dw_*"
    # case-insensitive KQL operators only (=~, in~, contains, startswith)
    assert 'dw_Parameters_AccessRights contains "FullAccess"' in where
    assert 'UserType in~ ("DcAdmin", "System")' in where  # 3/4 as OfficeActivity stores them
    assert 'UserId startswith "NT AUTHORITY\\\\SYSTEM"' in where
    assert 'dw_Parameters_User in~ ("NT AUTHORITY\\\\SELF", "S-1-5-10")' in where
    assert 'dw_Parameters_Deny =~ "True"' in where
    assert " == " not in where and "'" not in where  # no case-sensitive ==, no quoted field names


def test_kusto_folder_audit_and_send_on_behalf(by_name):
    q = _query(by_name, FOLDER_AUDIT, "kusto")
    assert "| extend dw_Item_obj = todynamic(Item)" in q
    assert 'dw_Item_ParentFolder_MemberUpn = tostring(dw_Item_obj["ParentFolder"]["MemberUpn"])' in q
    assert 'dw_Item_ParentFolder_MemberUpn in~ ("Default", "Everyone", "Anonymous")' in q
    assert 'dw_Item_ParentFolder_Path in~ ("\\\\Calendar"' in q
    assert "mv-apply" not in q  # no Parameters read
    q = _query(by_name, SEND_ON_BEHALF, "kusto")
    assert "isnotempty(dw_Parameters_GrantSendOnBehalfTo)" in q
    assert 'dw_Parameters_GrantSendOnBehalfTo in~ ("", "$null")' in q
    assert 'UserType in~ ("DcAdmin", "System")' in q


# ---------------------------------------------------------------------------- elasticsearch


def test_elastic_full_access(by_name):
    q = _query(by_name, FULL_ACCESS, "elasticsearch")
    assert 'event.action:"Add-MailboxPermission"' in q
    # keyword fields are case-sensitive: a case-insensitive Lucene regexp
    assert "o365.audit.Parameters.AccessRights:/.*[fF][uU][lL][lL][aA][cC][cC][eE][sS][sS].*/" in q
    assert "o365.audit.UserType:3 OR o365.audit.UserType:4" in q
    assert "o365.audit.UserId:/[nN][tT]\\ [aA][uU][tT][hH][oO][rR][iI][tT][yY]\\\\[sS][yY][sS][tT][eE][mM].*/" in q
    assert "o365.audit.Parameters.Deny:/[tT][rR][uU][eE]/" in q
    assert "AND (NOT (" in q


def test_elastic_folder_audit_and_send_on_behalf(by_name):
    q = _query(by_name, FOLDER_AUDIT, "elasticsearch")
    assert 'event.action:"ModifyFolderPermissions"' in q
    assert "o365.audit.Item.ParentFolder.MemberUpn:/[eE][vV][eE][rR][yY][oO][nN][eE]/" in q
    # '' means absent or empty, as in the engine
    assert ('(NOT _exists_:o365.audit.Item.ParentFolder.MemberRights OR '
            'o365.audit.Item.ParentFolder.MemberRights:"")') in q
    q = _query(by_name, SEND_ON_BEHALF, "elasticsearch")
    assert ('(_exists_:o365.audit.Parameters.GrantSendOnBehalfTo AND NOT '
            'o365.audit.Parameters.GrantSendOnBehalfTo:"")') in q
    assert "o365.audit.Parameters.GrantSendOnBehalfTo:/\\$[nN][uU][lL][lL]/" in q


def test_elastic_unsupported_reason(by_name):
    doc = json.loads(export_rules([by_name["m365_folder_read_grant"]], "elasticsearch"))
    assert doc["query"] is None and "|re" in doc["unsupported"]


# ---------------------------------------------------------------------------- databricks


def test_databricks_text(by_name):
    q = _query(by_name, FULL_ACCESS, "databricks")
    assert ("coalesce(array_join(transform(filter(Parameters, dw_p -> dw_p.Name = 'AccessRights'), "
            "dw_p -> CAST(dw_p.Value AS STRING)), ', '), '') AS dw_Parameters_AccessRights") in q
    assert "dw_Parameters_AccessRights ILIKE '%FullAccess%'" in q
    assert "coalesce(CAST(UserType AS STRING), '') = '3'" in q
    assert "coalesce(CAST(UserId AS STRING), '') ILIKE 'NT AUTHORITY\\\\\\\\SYSTEM%'" in q
    q = _query(by_name, FOLDER_AUDIT, "databricks")
    assert "coalesce(CAST(Item.ParentFolder.MemberUpn AS STRING), '') ILIKE 'Everyone'" in q
    assert export_rules([by_name[FOLDER_AUDIT]], "databricks", table="cat.sch.ual").count("FROM cat.sch.ual") == 1


def _spark():
    pyspark = pytest.importorskip("pyspark")
    if shutil.which("java") is None:
        pytest.skip("no Java runtime for pyspark")
    from pyspark.sql import SparkSession

    del pyspark
    return (SparkSession.builder.master("local[1]").appName("delegatewatch-export-test")
            .config("spark.ui.enabled", "false").config("spark.sql.shuffle.partitions", "1").getOrCreate())


def test_databricks_queries_run_on_spark(rules):
    """Every rule's Spark SQL, run on a local Spark over the union of all rules' test records
    (raw UAL, schema inferred by spark.read.json as on Databricks), matches exactly the rule's
    positive records among its own test records."""
    spark = _spark()
    records, own = [], {}
    for rule in rules:
        ids = set()
        for kind in ("positive", "negative"):
            for rec in rule.tests.get(kind, []):
                records.append(json.dumps(rec, default=str))
                ids.add(str(rec["Id"]))
        own[rule.name] = ids
    df = spark.read.json(spark.sparkContext.parallelize(records))
    df.createOrReplaceTempView("m365_audit")
    for rule in rules:
        block = export_rules([rule], "databricks")
        sql = block.split("\n", 1)[1]
        matched = {row["Id"] for row in spark.sql(sql).select("Id").collect()}
        expected = {str(r["Id"]) for r in rule.tests["positive"]}
        assert matched & own[rule.name] == expected, rule.name


def test_splunk_and_kusto_queries_are_balanced(rules):
    """A cheap syntax guard for the targets we cannot run: parentheses and quotes balance."""
    for target in ("splunk", "kusto", "databricks"):
        for block in _blocks(export_rules(rules, target), target):
            body = block.split("\n", 1)[1]
            text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', body)  # drop string literals
            text = re.sub(r"'(?:[^'\\]|\\.)*'", "''", text)
            assert text.count("(") == text.count(")"), (target, block[:80])
            assert '"' not in text.replace('""', ""), (target, block[:80])
