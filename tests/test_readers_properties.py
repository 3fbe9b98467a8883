"""Property-based tests of the record readers: whatever the records and whatever garbage is mixed
in, every valid record is read exactly once, from the right line, and every bad line is reported."""

from __future__ import annotations

import csv
import io
import json
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from delegatewatch.records import ReadStats
from delegatewatch.records.prefilter import Prefilter
from delegatewatch.sources import read_paths

OPS = ["Add-MailboxPermission", "Set-Mailbox", "FileAccessed", "UserLoggedIn", "New-InboxRule", "Send"]
text = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=30)
records = st.builds(
    lambda i, op, user, value, extra: {
        "Id": f"{i:08x}-0000-0000-0000-000000000000", "CreationTime": "2024-01-01T00:00:00", "Operation": op,
        "RecordType": 1, "UserId": user, "Parameters": [{"Name": "Identity", "Value": value}], "Extra": extra},
    st.integers(0, 2**32 - 1), st.sampled_from(OPS), text, text, text)
garbage = st.one_of(st.just("{"), st.just('{"Operation":"Add-MailboxPermission"'), st.just("not json"),
                    st.just("[1, 2"), text.filter(lambda s: s.strip() and "\n" not in s and "\r" not in s and not _is_json(s)))
SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _is_json(s: str) -> bool:
    try:
        json.loads(s)
        return True
    except ValueError:
        return False


def _read(content: bytes, suffix: str, prefilter=None):
    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / f"f{suffix}"
        p.write_bytes(content)
        stats = ReadStats()
        return list(read_paths([str(p)], stats, prefilter)), stats


@SETTINGS
@given(st.lists(st.one_of(records.map(lambda r: ("ok", r)), garbage.map(lambda g: ("bad", g))), min_size=1, max_size=25),
       st.sampled_from(["\n", "\r\n"]), st.booleans())
def test_ndjson_reads_every_valid_line_and_reports_every_bad_one(items, eol, spaced):
    if items[0][0] == "bad":  # a file starting with garbage is not NDJSON at all: covered elsewhere
        items = [("ok", {"Id": "x", "Operation": "Send", "CreationTime": "2024-01-01T00:00:00"})] + items
    lines = [json.dumps(v, ensure_ascii=False, separators=None if spaced else (",", ":")) if k == "ok" else v
             for k, v in items]
    recs, stats = _read(eol.join(lines).encode(), ".log")
    expected = [(i + 1, v) for i, (k, v) in enumerate(items) if k == "ok"]
    assert [(r.line, r.data) for r in recs] == expected
    assert stats.skipped == sum(k == "bad" for k, _ in items)


@SETTINGS
@given(st.lists(records, min_size=1, max_size=25))
def test_prefilter_never_drops_a_record_it_should_keep(rs):
    pf = Prefilter.for_operations(["Add-MailboxPermission", "New-InboxRule"])
    content = "\n".join(json.dumps(r, ensure_ascii=False) for r in rs).encode()
    all_recs, _ = _read(content, ".ndjson")
    kept, stats = _read(content, ".ndjson", pf)
    assert [r.data for r in kept if pf.wants(r.data)] == [r.data for r in all_recs if pf.wants(r.data)]
    assert stats.records_seen == len(rs)


@SETTINGS
@given(st.lists(records, min_size=1, max_size=20), st.booleans())
def test_csv_exports_round_trip(rs, powershell):
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\r\n", quoting=csv.QUOTE_ALL if powershell else csv.QUOTE_MINIMAL)
    w.writerow(["RecordType", "CreationDate", "UserIds", "Operations", "AuditData"] if powershell else
               ["RecordId", "CreationDate", "RecordType", "Operation", "UserId", "AuditData", "AssociatedAdminUnits",
                "AssociatedAdminUnitsNames"])
    for r in rs:
        audit = json.dumps(r, ensure_ascii=False)
        w.writerow(["ExchangeAdmin", "1/1/2024 12:00:00 AM", r["UserId"], r["Operation"], audit] if powershell else
                   [r["Id"], "1/1/2024 12:00:00 AM", 1, r["Operation"], r["UserId"], audit, "", ""])
    recs, stats = _read(buf.getvalue().encode("utf-8"), ".csv")
    # A column value holding a line break makes a multi-line CSV row. UAL exports do not have them
    # (AuditData is JSON, which escapes newlines); the readers report such rows instead of guessing.
    got = [r.data for r in recs]
    single_line = [r for r in rs if "\n" not in r["UserId"]]
    assert [r for r in got if r in single_line] == single_line  # every single-line row is read, in order
    assert all(r in rs for r in got)  # and nothing is invented
    if len(single_line) == len(rs):
        assert stats.skipped == 0
    else:
        assert stats.skipped > 0  # the broken-up rows are reported


@SETTINGS
@given(st.lists(records, min_size=0, max_size=20), st.integers(0, 200))
def test_json_array_truncated_anywhere_keeps_a_prefix(rs, cut):
    content = json.dumps(rs).encode()
    cut = min(cut, len(content))
    recs, stats = _read(content[: len(content) - cut], ".json")
    got = [r.data for r in recs]
    assert got == rs[: len(got)]  # never invents or reorders records
    if cut == 0:
        assert got == rs


json_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-5, 5), text),
    lambda children: st.one_of(st.lists(children, max_size=3), st.dictionaries(text, children, max_size=3)),
    max_leaves=8)


@SETTINGS
@given(st.dictionaries(st.sampled_from(["Operation", "UserId", "UserType", "Item", "ResultStatus", "X"]), json_values),
       st.lists(st.fixed_dictionaries({"Name": st.sampled_from(["User", "AccessRights", "Identity"]),
                                        "Value": json_values}), max_size=4),
       st.lists(st.fixed_dictionaries({"Name": st.sampled_from(["A.B", "Scope"]), "NewValue": json_values,
                                       "OldValue": json_values}), max_size=3))
def test_extractor_gives_the_same_values_as_flatten(record, params, modified):
    from delegatewatch.records.flatten import Extractor, flatten

    record = dict(record, Parameters=params, ModifiedProperties=modified)
    columns = ["Operation", "UserId", "UserType", "Item", "Item.ParentFolder.MemberUpn", "ResultStatus", "X",
               "Parameters", "Parameters.User", "Parameters.AccessRights", "Parameters.Missing",
               "ModifiedProperties.A.B.NewValue", "ModifiedProperties.Scope.OldValue", "Nope.Deeper"]
    flat = flatten(record)
    assert Extractor(columns).row(record) == [flat.get(c, "") for c in columns]
