"""The DuckDB backend's Sigma semantics, the rule files, and the prefilter built from them."""

from __future__ import annotations

from pathlib import Path

import pytest
from sigma.collection import SigmaCollection

from delegatewatch.detections.backend import DuckDBBackend
from delegatewatch.detections.engine import RuleEngine
from delegatewatch.detections.rules import RuleError, load_rule, load_rules
from delegatewatch.detections.testing import run_rule_tests
from delegatewatch.engine.hunt import prefilter_for
from delegatewatch.records.prefilter import Prefilter

RULE = """
title: t
id: 11111111-1111-1111-1111-11111111111{n}
logsource: {{product: m365, service: exchange}}
level: medium
detection:
{detection}
"""


def matcher(detection: str, n: int = 1):
    rule_file = RULE.format(n=n, detection=detection)
    path = Path(f"/tmp/dw-rule-{abs(hash(rule_file))}.yml")
    path.write_text(rule_file)
    rule = load_rule(path)
    return lambda *recs: RuleEngine([rule]).matches(rule, recs)


def test_matching_is_case_insensitive_like_sigma():
    m = matcher("  sel:\n    Operation: Add-MailboxPermission\n  condition: sel")
    assert m({"Operation": "add-mailboxpermission"}, {"Operation": "Add-MailboxPermissions"}) == [True, False]


def test_not_on_an_absent_field_is_true():
    m = matcher("  sel:\n    Operation: X\n  f:\n    UserId|startswith: NT AUTHORITY\n  condition: sel and not f")
    assert m({"Operation": "X"}, {"Operation": "X", "UserId": "NT AUTHORITY\\SYSTEM"}) == [True, False]


def test_sql_wildcards_in_values_are_literal():
    m = matcher("  sel:\n    Parameters.Name|contains: 'a_b%'\n  condition: sel")
    assert m({"Parameters": [{"Name": "Name", "Value": "xa_b%y"}]},
             {"Parameters": [{"Name": "Name", "Value": "xaXbZy"}]}) == [True, False]


def test_backslashes_and_quotes():
    m = matcher("  sel:\n    UserId: \"NT AUTHORITY\\\\SELF\"\n  q:\n    Name|contains: \"O'Brien\"\n  condition: sel or q")
    assert m({"UserId": "NT AUTHORITY\\SELF"}, {"Name": "Mr O'Brien"}, {"UserId": "NT AUTHORITYSELF"}) == [True, True, False]


def test_numbers_and_booleans_compare_as_text():
    m = matcher("  sel:\n    UserType: 3\n    ExternalAccess: true\n  condition: sel")
    assert m({"UserType": 3, "ExternalAccess": True}, {"UserType": 3, "ExternalAccess": False},
             {"UserType": 13, "ExternalAccess": True}) == [True, False, False]


def test_regex_modifier():
    m = matcher("  sel:\n    Parameters.AccessRights|re|i: '(^|[\\s,])editor($|[\\s,])'\n  condition: sel")
    rec = lambda v: {"Parameters": [{"Name": "AccessRights", "Value": v}]}  # noqa: E731
    assert m(rec("Editor"), rec("ReadItems, Editor"), rec("PublishingEditor")) == [True, True, False]


def test_nested_and_name_value_fields():
    m = matcher("  sel:\n    Item.ParentFolder.MemberUpn: Everyone\n    OperationProperties.MailAccessType: Bind\n"
                "  condition: sel")
    assert m({"Item": {"ParentFolder": {"MemberUpn": "Everyone"}},
              "OperationProperties": [{"Name": "MailAccessType", "Value": "Bind"}]}) == [True]


def test_every_builtin_rule_passes_its_own_tests():
    outcomes = list(run_rule_tests(load_rules()))
    assert outcomes and all(o.ok for o in outcomes), [(o.rule.name, o.problems) for o in outcomes if not o.ok]


def test_every_builtin_rule_is_complete():
    for r in load_rules():
        assert r.attack, r.name
        assert r.falsepositives, r.name
        assert r.runbook, r.name
        assert r.description, r.name
        if r.family == "m365":
            assert r.operations, f"{r.name} names no Operation: it would switch the prefilter off"


def test_rule_test_runner_reports_a_failing_rule(tmp_path):
    (tmp_path / "bad.yml").write_text(RULE.format(n=2, detection="  sel:\n    Operation: X\n  condition: sel")
                                      + "tests:\n  positive:\n    - {Operation: Y}\n  negative:\n    - {Operation: X}\n")
    [outcome] = run_rule_tests(load_rules(tmp_path))
    assert not outcome.ok and len(outcome.problems) == 2


def test_invalid_rule_is_refused_with_its_path(tmp_path):
    p = tmp_path / "broken.yml"
    p.write_text(RULE.format(n=3, detection="  sel:\n    Operation: X\n  condition: sel and nothere"))
    with pytest.raises(RuleError, match="broken.yml"):
        load_rule(p)


def test_prefilter_covers_every_operation_a_rule_names():
    rules = load_rules()
    pf = prefilter_for(rules)
    for r in rules:
        for op in r.operations:
            assert pf.wants({"Operation": op})
            for spelling in (op, op.lower()):
                line = f'{{"Id":"x","Operation":"{spelling}","UserId":"a"}}'.encode()
                for form in (line, line.replace(b'"', b'""'),  # inside a CSV field
                             line.replace(b'":"', b'": "'), line.replace(b'":"', b'" : "')):  # spaced JSON
                    assert [h[0] for h in pf.hits(form, 0, len(form))] == [op.lower()], form
    assert not pf.wants({"Operation": "FileAccessed"})


def test_prefilter_searches_many_operations_in_several_automata():
    from delegatewatch.records import prefilter as P

    ops = [f"Op-Number{i}" for i in range(3 * P.AUTOMATON_SIZE)]  # two spellings each: six automata
    pf = Prefilter.for_operations(ops)
    assert len(pf._searches) == 6
    block = b"".join(f'{{"Operation":"{o if i % 2 else o.lower()}"}}\n'.encode() for i, o in enumerate(reversed(ops)))
    found = list(pf.hits(block, 0, len(block)))
    assert [h[0] for h in found] == [o.lower() for o in reversed(ops)]  # every one, in block order
    assert [h[1] for h in found] == sorted(h[1] for h in found)
    upper = b'{"Operation":"OP-NUMBER1"}'
    assert list(pf.hits(upper, 0, len(upper))) == []  # documented: other spellings need --full-parse


def test_prefilter_hits_only_operation_values():
    pf = Prefilter.for_operations(["Set-Mailbox", "Add-MailboxPermission"])

    def ops(line: bytes) -> list[str]:
        return [h[0] for h in pf.hits(line, 0, len(line))]

    assert ops(b'{"Operation":"Set-MailboxJunkEmailConfiguration"}') == []  # a longer name
    assert ops(b'{"Operation":"FileAccessed","ObjectId":"Set-Mailbox"}') == []  # not the Operation key
    assert ops(b'{"SubOperation":"Set-Mailbox"}') == []
    assert ops(b'{"Operation":"Set-Mailbox"}') == ["set-mailbox"]
    # hits are positioned in the block, also when the search starts inside it
    block = b'{"Operation":"X"}\n{"Operation":"Add-MailboxPermission"}\n'
    (op, start, end), = pf.hits(block, 18, len(block))
    assert block[start:end] == b"Add-MailboxPermission"


def test_prefilter_stage_two_literals_ignore_case():
    pf = Prefilter.for_operations(["Add-MailboxPermission"], {"Add-MailboxPermission": ["FullAccess"]})
    line = b'{"Operation":"Add-MailboxPermission","Parameters":[{"Name":"AccessRights","Value":"FULLACCESS"}]}'
    assert pf.keep("add-mailboxpermission", line)
    assert not pf.keep("add-mailboxpermission", line.replace(b"FULLACCESS", b"ReadPermission"))
    assert pf.keep("set-mailbox", line)  # an operation without literals has no second stage
    empty = Prefilter.for_operations(["A"], {"A": []})
    assert not empty.keep("a", b'{"Operation":"A"}')  # needs one of no literals: nothing passes


def test_sigma_backend_output_is_stable_sql():
    rule = SigmaCollection.from_yaml(RULE.format(n=4, detection="  sel:\n    Operation: A\n  condition: sel")).rules[0]
    assert DuckDBBackend().convert_rule(rule) == ["\"Operation\" ILIKE 'A' ESCAPE '\\'"]


def _finding_keys(result):
    return sorted((f.rule, f.evidence[0].record_id, f.grantee or "") for f in result.findings)


def test_prefilter_keeps_every_record_a_rule_matches(tmp_path):
    """Both prefilter stages against no prefilter at all, on every rule's own records written in the
    line dialects (compact and spaced NDJSON, CSV with doubled quotes)."""
    import csv
    import json as _json

    from delegatewatch.engine.hunt import hunt

    records = []
    for r in (r for r in load_rules() if r.family == "m365"):
        for i, rec in enumerate(r.tests["positive"] + r.tests["negative"]):
            rec = dict(rec, Id=f"{r.name}-{i}")
            records.append(rec)
    (tmp_path / "a.ndjson").write_text("\n".join(_json.dumps(r, separators=(",", ":")) for r in records))
    (tmp_path / "b.ndjson").write_text("\n".join(_json.dumps(r).replace("\\/", "/") for r in records[::-1]))
    with open(tmp_path / "c.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["CreationDate", "UserIds", "Operations", "AuditData"])
        for r in records:
            w.writerow(["1/1/2024 12:00:00 AM", r.get("UserId", ""), r["Operation"], _json.dumps(r)])
    for name in ("a.ndjson", "b.ndjson", "c.csv"):
        fast = hunt([str(tmp_path / name)])
        full = hunt([str(tmp_path / name)], full_parse=True)
        assert _finding_keys(fast) == _finding_keys(full), name
        assert len(fast.findings) >= sum(len(r.tests["positive"]) for r in load_rules() if r.family == "m365")


def test_prefilter_second_stage_drops_records_without_the_literals():
    pf = prefilter_for(load_rules())
    assert pf.keep("set-mailbox", b'{"Operation":"Set-Mailbox","Parameters":[{"Name":"GrantSendOnBehalfTo"}]}')
    assert not pf.keep("set-mailbox", b'{"Operation":"Set-Mailbox","Parameters":[{"Name":"ProhibitSendQuota"}]}')
    assert pf.keep("add-mailboxpermission", b'{"operation":"add-mailboxpermission","x":"FULLACCESS"}')


def test_demo_and_real_samples_equal_with_and_without_prefilter(tmp_path):
    from delegatewatch.engine.hunt import hunt
    from tests.conftest import CORPUS, DEMO

    paths = [str(DEMO)] + ([str(CORPUS)] if CORPUS.is_dir() else [])
    assert _finding_keys(hunt(paths)) == _finding_keys(hunt(paths, full_parse=True))


def test_builtin_rules_pass_pysigma_validators():
    from delegatewatch.detections.testing import validate_rules

    assert validate_rules(load_rules()) == []


def test_pysigma_validators_report_a_dangling_detection(tmp_path):
    from delegatewatch.detections.testing import validate_rules

    (tmp_path / "d.yml").write_text(RULE.format(n=5, detection="  sel:\n    Operation: X\n  unused:\n    Operation: Y\n"
                                                        "  condition: sel"))
    [problem] = validate_rules(load_rules(tmp_path))
    assert "DanglingDetection" in problem


def test_analytics_needs_combine_literals_and_patterns():
    from delegatewatch.analytics import Need

    both = Need(frozenset({"grantsendonbehalfto"})) | Need(frozenset(), r'"LogonType":[12]')
    assert both == Need(frozenset({"grantsendonbehalfto"}), r'"LogonType":[12]')
    assert (both | Need()).whole and (Need() | both).whole
    assert (Need(frozenset(), "a") | Need(frozenset(), "b")).pattern == "(?:a)|(?:b)"
    pf = Prefilter.for_operations(["Set-Mailbox"], {"Set-Mailbox": both.literals}, {"Set-Mailbox": both.pattern})
    assert pf.keep("set-mailbox", b'{"Operation":"Set-Mailbox","P":"GRANTSENDONBEHALFTO"}')  # a literal, any case
    assert pf.keep("set-mailbox", b'{"Operation":"Set-Mailbox","LogonType":2}')  # the pattern
    assert not pf.keep("set-mailbox", b'{"Operation":"Set-Mailbox","LogonType":0}')
