"""Every UAL export dialect, shaped like the real exports, and malformed input."""

from __future__ import annotations

import codecs
import csv
import gzip
import io
import json

import pytest

from delegatewatch.records import ReadStats
from delegatewatch.records.prefilter import Prefilter
from delegatewatch.sources import read_paths
from tests.conftest import compact, noise, ual

PREFILTER = Prefilter.for_operations(["Add-MailboxPermission"])


def read(path, prefilter=None):
    stats = ReadStats()
    records = list(read_paths([str(path)], stats, prefilter))
    return records, stats


def records_3():
    return [ual(rid="a0000000-0000-0000-0000-000000000001"), noise(2),
            ual("Set-Mailbox", "a0000000-0000-0000-0000-000000000003", Identity="x", GrantSendOnBehalfTo="y@contoso.com")]


# -- dialects -------------------------------------------------------------------------------
def test_ndjson_compact_crlf(tmp_path):
    p = tmp_path / "a.log"
    p.write_bytes(("\r\n".join(compact(r) for r in records_3()) + "\r\n").encode())
    recs, stats = read(p)
    assert [r.dialect for r in recs] == ["ndjson"] * 3
    assert [r.line for r in recs] == [1, 2, 3]
    assert recs[0].data["OriginatingServer"] == "TYZPR02MB4767 (15.20.7249.032)"  # CR/LF trimmed
    assert stats.records_seen == 3 and stats.skipped == 0


def test_ndjson_spaced_with_blank_lines_and_escaped_slashes(tmp_path):
    p = tmp_path / "b.txt"
    lines = [json.dumps(r).replace("/", "\\/") for r in records_3()]
    p.write_text(lines[0] + "\n\n" + lines[1] + "\n" + lines[2])  # no final newline
    recs, stats = read(p)
    assert [r.line for r in recs] == [1, 3, 4]
    assert recs[1].data["ObjectId"] == "https://contoso.sharepoint.com/f2.docx"


def test_prefilter_reads_only_candidates_but_counts_everything(tmp_path):
    p = tmp_path / "c.ndjson"
    p.write_text("\n".join(compact(noise(i)) for i in range(1000)) + "\n" + compact(ual()) + "\n")
    recs, stats = read(p, PREFILTER)
    assert len(recs) == 1 and recs[0].line == 1001
    assert stats.records_seen == 1001 and stats.records_parsed == 1


def test_api_content_blob_array(tmp_path):
    p = tmp_path / "blob"
    p.write_text(json.dumps(records_3(), separators=(",", ":")))
    recs, _ = read(p)
    assert [r.dialect for r in recs] == ["json-array"] * 3
    assert [r.index for r in recs] == [1, 2, 3]


def convertto_json(records) -> str:
    wrapped = [{"RecordType": "ExchangeAdmin", "CreationDate": "\\/Date(1707088786000)\\/",
                "UserIds": r["UserId"], "Operations": r["Operation"], "AuditData": r,
                "ResultIndex": i + 1, "ResultCount": len(records), "Identity": r["Id"],
                "IsValid": True, "ObjectState": "Unchanged"} for i, r in enumerate(records)]
    return json.dumps(wrapped, indent=4).replace('": ', '":  ').replace("\n", "\r\n")


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-le", "utf-8-sig"])
def test_powershell_convertto_json(tmp_path, encoding):
    p = tmp_path / "ps.json"
    text = convertto_json(records_3()).replace('"\\\\/Date', '"\\/Date').replace(')\\\\/"', ')\\/"')
    p.write_bytes(text.encode(encoding))
    recs, stats = read(p)
    assert len(recs) == 3 and stats.skipped == 0
    assert recs[0].data["Operation"] == "Add-MailboxPermission"


def test_convertto_json_wrapper_fills_creation_time_from_ms_date(tmp_path):
    r = ual()
    del r["CreationTime"]
    p = tmp_path / "one.json"
    p.write_text(json.dumps({"RecordType": "ExchangeAdmin", "CreationDate": "/Date(1707088786000)/",
                             "Operations": "Add-MailboxPermission", "AuditData": r}, indent=4))
    [rec], _ = read(p)
    assert rec.data["CreationTime"] == "2024-02-04T23:19:46"


def purview_new_csv(records) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\r\n")
    w.writerow(["RecordId", "CreationDate", "RecordType", "Operation", "UserId", "AuditData",
                "AssociatedAdminUnits", "AssociatedAdminUnitsNames"])
    for r in records:
        w.writerow([r["Id"], "2/4/2024 11:19:46 PM", r["RecordType"], r["Operation"], r["UserId"],
                    json.dumps(r, separators=(",", ":")).replace("/", "\\/"), "", ""])
    return buf.getvalue()


def test_purview_new_csv(tmp_path):
    p = tmp_path / "export.csv"
    p.write_text(purview_new_csv(records_3()), newline="")
    recs, stats = read(p)
    assert [r.dialect for r in recs] == ["purview-csv"] * 3
    assert [r.line for r in recs] == [2, 3, 4]
    assert stats.skipped == 0


def test_purview_classic_csv_fills_missing_fields_from_columns(tmp_path):
    r = ual()
    for k in ("CreationTime", "Id", "Operation"):
        del r[k]
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["CreationDate", "UserIds", "Operations", "AuditData"])
    w.writerow(["2/4/2024 11:19:46 PM", "admin@contoso.com", "Add-MailboxPermission", json.dumps(r)])
    p = tmp_path / "classic.csv"
    p.write_text(buf.getvalue())
    [rec], _ = read(p)
    assert rec.dialect == "purview-classic-csv"
    assert rec.data["Operation"] == "Add-MailboxPermission"
    assert rec.data["CreationTime"] == "2024-02-04T23:19:46"


@pytest.mark.parametrize("type_line", [True, False])
@pytest.mark.parametrize("bom", [True, False])
def test_powershell_export_csv(tmp_path, type_line, bom):
    buf = io.StringIO()
    if type_line:
        buf.write("#TYPE System.Management.Automation.PSCustomObject\r\n")
    w = csv.writer(buf, quoting=csv.QUOTE_ALL, lineterminator="\r\n")
    w.writerow(["RecordType", "CreationDate", "UserIds", "Operations", "AuditData", "ResultIndex", "ResultCount",
                "Identity", "IsValid", "ObjectState"])
    for i, r in enumerate(records_3()):
        w.writerow(["ExchangeAdmin", "2/4/2024 11:19:46 PM", r["UserId"], r["Operation"], json.dumps(r), i + 1, 3,
                    r["Id"], "True", "Unchanged"])
    p = tmp_path / "ps.csv"
    p.write_bytes((codecs.BOM_UTF8 if bom else b"") + buf.getvalue().encode())
    recs, stats = read(p)
    assert [r.dialect for r in recs] == ["powershell-csv"] * 3
    assert [r.line for r in recs] == ([3, 4, 5] if type_line else [2, 3, 4])
    assert stats.skipped == 0


def test_gzip_ndjson(tmp_path):
    p = tmp_path / "x.gz"
    p.write_bytes(gzip.compress("\n".join(compact(r) for r in records_3()).encode()))
    recs, _ = read(p)
    assert len(recs) == 3


def test_folders_are_read_recursively_in_stable_order(tmp_path):
    (tmp_path / "b" / "c").mkdir(parents=True)
    (tmp_path / "b" / "c" / "2.json").write_text(compact(ual(rid="b0000000-0000-0000-0000-000000000002")))
    (tmp_path / "a.json").write_text(compact(ual(rid="b0000000-0000-0000-0000-000000000001")))
    recs, stats = read(tmp_path)
    assert [r.data["Id"][-1] for r in recs] == ["1", "2"]


# -- malformed input --------------------------------------------------------------------------
def test_truncated_ndjson_line_is_reported_and_the_rest_read(tmp_path):
    lines = [compact(r) for r in records_3()]
    lines[1] = lines[1][:40]
    p = tmp_path / "t.ndjson"
    p.write_text("\n".join(lines) + "\n")
    recs, stats = read(p)
    assert [r.line for r in recs] == [1, 3]
    assert stats.skipped == 1
    msg = str(stats.issues[0])
    assert msg.startswith(f"{p}:2:") and "not a JSON record" in msg


def test_truncated_json_array_keeps_records_before_the_break(tmp_path):
    p = tmp_path / "blob.json"
    text = json.dumps(records_3())
    p.write_text(text[: len(text) - 30])
    recs, stats = read(p)
    assert len(recs) == 2
    assert stats.skipped == 1 and "after record 2" in str(stats.issues[0]) and str(p) in str(stats.issues[0])


def test_broken_csv_quote_costs_one_row(tmp_path):
    text = purview_new_csv(records_3()).split("\r\n")
    text[2] = text[2].replace('"{', '{', 1)  # row 2's AuditData loses its opening quote
    p = tmp_path / "bad.csv"
    p.write_text("\r\n".join(text), newline="")
    recs, stats = read(p)
    assert [r.line for r in recs] == [2, 4]
    assert stats.skipped == 1 and f"{p}:3:" in str(stats.issues[0])


def test_latin1_bytes_are_read_and_flagged_not_dropped(tmp_path):
    r = ual(Identity="ceo@contoso.com", User="Zoë Müller", AccessRights="FullAccess")
    p = tmp_path / "latin1.ndjson"
    p.write_bytes(compact(noise(1)).encode() + b"\n" + json.dumps(r, ensure_ascii=False).encode("latin-1") + b"\n")
    recs, stats = read(p)
    assert len(recs) == 2
    assert recs[1].data["Parameters"][1]["Value"] == "Zoë Müller"
    assert stats.skipped == 0 and stats.warnings == 1 and ":2:" in str(stats.issues[0])


def test_latin1_bytes_in_csv(tmp_path):
    r = ual(Identity="ceo@contoso.com", User="José", AccessRights="FullAccess")
    p = tmp_path / "latin1.csv"
    p.write_bytes(purview_new_csv([r]).replace("\\u00e9", "é").encode("latin-1"))
    recs, stats = read(p)
    assert len(recs) == 1 and recs[0].data["Parameters"][1]["Value"] == "José"
    assert stats.warnings == 1


def test_utf16_ndjson_without_bom(tmp_path):
    p = tmp_path / "u16"
    p.write_bytes("\n".join(compact(r) for r in records_3()).encode("utf-16-le"))
    recs, _ = read(p)
    assert len(recs) == 3


@pytest.mark.parametrize("content,reason", [
    (b"", "empty file"),
    (b"   \n\n", "empty file"),
    (bytes(range(256)) * 10, "binary file"),
    (b"PK\x03\x04" + b"\x00" * 100, "zip archive"),
    (b"<Foo><Bar/></Foo>", "XML that no reader recognises"),
    (b"hello world\nthis is a note\n", "unrecognised text format"),
    (b"id,userPrincipalName\n1,a@b.c\n", "CSV that no reader recognises"),
])
def test_unreadable_files_are_skipped_with_a_reason(tmp_path, content, reason):
    p = tmp_path / "f"
    p.write_bytes(content)
    recs, stats = read(p)
    assert recs == []
    assert stats.files_skipped and reason in stats.files_skipped[0][1]


def test_broken_evtx_is_reported_not_fatal(tmp_path):
    p = tmp_path / "broken.evtx"
    p.write_bytes(b"ElfFile\x00" + b"\x00" * 100)
    recs, stats = read(p)
    assert recs == [] and stats.skipped >= 1 and "EVTX" in str(stats.issues[0])


def test_fifty_megabyte_single_line_does_not_stop_the_file(tmp_path):
    p = tmp_path / "huge.ndjson"
    with open(p, "wb") as f:
        f.write(compact(ual(rid="c0000000-0000-0000-0000-000000000001")).encode() + b"\n")
        f.write(b'{"Operation":"Add-MailboxPermission","junk":"' + b"x" * (50 << 20))  # never closed
        f.write(b"\n" + compact(ual(rid="c0000000-0000-0000-0000-000000000003")).encode() + b"\n")
    for prefilter in (None, PREFILTER):
        recs, stats = read(p, prefilter)
        assert [r.line for r in recs] == [1, 3]
        assert stats.skipped == 1 and ":2:" in str(stats.issues[0])


def test_fifty_megabyte_valid_record_is_read(tmp_path):
    r = ual()
    r["Padding"] = "y" * (50 << 20)
    p = tmp_path / "big.ndjson"
    p.write_text(compact(r) + "\n" + compact(noise(1)) + "\n")
    recs, stats = read(p, PREFILTER)
    assert len(recs) == 1 and len(recs[0].data["Padding"]) == 50 << 20
    assert recs[0].dialect == "ndjson" and recs[0].line == 1


def test_json_that_is_not_a_ual_record(tmp_path):
    p = tmp_path / "other.ndjson"
    p.write_text('{"foo": 1}\n[1,2]\n' + compact(ual()) + "\n")
    recs, stats = read(p)
    assert len(recs) == 1 and stats.skipped == 2
