"""Mail-flow readers (message trace, historical search, Exchange message tracking logs), the one
send record they and the audit log become (grouping, merging, Gmail hook), and an end-to-end hunt
over a folder of message trace + UAL Send records."""

from __future__ import annotations

import codecs
import io
import json
from functools import cache
from pathlib import Path

import orjson
import pytest

from delegatewatch import config as configuration
from delegatewatch.analytics import mailflow
from delegatewatch.engine.hunt import hunt
from delegatewatch.events.principals import Resolver
from delegatewatch.records import ReadStats, Record
from delegatewatch.sources import read_file
from delegatewatch.sources.formats import mailflow as formats
from tests.test_mailflow_generator import (
    generate,
    ual_send,
    write_message_trace,
    write_ual,
)

TRACE = """\ufeff#TYPE Deserialized.Microsoft.Exchange.Management.FfoReporting.MessageTrace
"PSComputerName","RunspaceId","PSShowComputerName","Organization","MessageId","Received","SenderAddress","RecipientAddress","Subject","Status","ToIP","FromIP","Size","MessageTraceId","StartDate","EndDate","Index"
"outlook.office365.com","5d0b1b4a-7c2e-4b8f-9a3d-2e6f1c0a9b11","False","contoso.onmicrosoft.com","<AM0PR01MB6423A1B2C3D4E5F6@AM0PR01MB6423.eurprd01.prod.outlook.com>","4/15/2024 9:12:33 AM","megan@contoso.com","alex@contoso.com","Q2 planning","Delivered","","40.107.22.51","48211","0b6f2a8e-1d1c-4f0e-a9b2-08dc5d2b7e11","4/14/2024 12:00:00 AM","4/16/2024 12:00:00 AM","0"
"outlook.office365.com","5d0b1b4a-7c2e-4b8f-9a3d-2e6f1c0a9b11","False","contoso.onmicrosoft.com","<AM0PR01MB6423A1B2C3D4E5F6@AM0PR01MB6423.eurprd01.prod.outlook.com>","4/15/2024 9:12:33 AM","megan@contoso.com","lidia@contoso.com","Q2 planning","Delivered","","40.107.22.51","48211","0b6f2a8e-1d1c-4f0e-a9b2-08dc5d2b7e11","4/14/2024 12:00:00 AM","4/16/2024 12:00:00 AM","1"
"outlook.office365.com","5d0b1b4a-7c2e-4b8f-9a3d-2e6f1c0a9b11","False","contoso.onmicrosoft.com","<AM0PR01MB6423A1B2C3D4E5F6@AM0PR01MB6423.eurprd01.prod.outlook.com>","4/15/2024 9:12:34 AM","megan@contoso.com","partner@fabrikam.com","Q2 planning","Delivered","104.47.1.10","40.107.22.51","48211","0b6f2a8e-1d1c-4f0e-a9b2-08dc5d2b7e11","4/14/2024 12:00:00 AM","4/16/2024 12:00:00 AM","2"
"outlook.office365.com","5d0b1b4a-7c2e-4b8f-9a3d-2e6f1c0a9b11","False","contoso.onmicrosoft.com","<broken row, "Received","4/15/2024 9:13:00 AM","x@contoso.com"
"outlook.office365.com","5d0b1b4a-7c2e-4b8f-9a3d-2e6f1c0a9b11","False","contoso.onmicrosoft.com","<CH2PR11MB4410FEDCBA98@CH2PR11MB4410.namprd11.prod.outlook.com>","4/15/2024 9:20:05 AM","newsletter@fabrikam.com","alex@contoso.com","Spring offers","FilteredAsSpam","","52.100.1.2","90210","77d0c1e4-5a2b-4c3d-8e9f-08dc5d2b9f22","4/14/2024 12:00:00 AM","4/16/2024 12:00:00 AM","3"
"outlook.office365.com","5d0b1b4a-7c2e-4b8f-9a3d-2e6f1c0a9b11","False","contoso.onmicrosoft.com","<AM0PR01MB6423AAAA@AM0PR01MB6423.eurprd01.prod.outlook.com>","not a date","megan@contoso.com","alex@contoso.com","Lunch","Delivered","","40.107.22.51","1211","1b6f2a8e-1d1c-4f0e-a9b2-08dc5d2b7e12","4/14/2024 12:00:00 AM","4/16/2024 12:00:00 AM","4"
"""

TRACE_V2 = """RunspaceId,Received,SenderAddress,RecipientAddress,Subject,Status,ToIP,FromIP,Size,MessageId,MessageTraceId
5d0b1b4a-7c2e-4b8f-9a3d-2e6f1c0a9b11,2024-04-15T09:40:12.5133117Z,alex@contoso.com,megan@contoso.com,Re: Q2 planning,Delivered,,40.107.22.51,3121,<DB9PR01MB77AA@DB9PR01MB77AA.eurprd01.prod.outlook.com>,2b6f2a8e-1d1c-4f0e-a9b2-08dc5d2b7e13
"""

HISTORICAL_SUMMARY = """origin_timestamp_utc,sender_address,recipient_status,message_subject,total_bytes,message_id,network_message_id,original_client_ip,directionality,connector_id,delivery_priority
2024-04-15T09:12:33.1230000Z,megan@contoso.com,"alex@contoso.com##Receive, Deliver;partner@fabrikam.com##Receive, Send",Q2 planning,48211,<AM0PR01MB6423A1B2C3D4E5F6@AM0PR01MB6423.eurprd01.prod.outlook.com>,1341ac7b13fb42ab4d4408cf7f55890f,203.0.113.5,Originating,,Normal
2024-04-15T10:02:10.0000000Z,offers@fabrikam.com,"alex@contoso.com##Receive, Deliver",Spring offers,90210,<CH2PR11MB4410FEDCBA98@CH2PR11MB4410.namprd11.prod.outlook.com>,9a41ac7b13fb42ab4d4408cf7f55890f,52.100.1.2,Incoming,,Normal
2024-04-15T10:05:00.0000000Z,megan@contoso.com,"alex@contoso.com##Receive, Deliver
"""

MSGTRK = """#Software: Microsoft Exchange Server
#Version: 15.02.1258.012
#Log-type: Message Tracking Log
#Date: 2024-04-15T09:00:01.412Z
#Fields: date-time,client-ip,client-hostname,server-ip,server-hostname,source-context,connector-id,source,event-id,internal-message-id,message-id,network-message-id,recipient-address,recipient-status,total-bytes,recipient-count,related-recipient-address,reference,message-subject,sender-address,return-path,message-info,directionality,tenant-id,original-client-ip,original-server-ip,custom-data,transport-traffic-type,log-id,schema-version
2024-04-15T09:12:33.128Z,10.0.0.21,EX01.contoso.local,,EX01,MDB:4a3f1c2e-5b6d-4e7f-8a9b-0c1d2e3f4a5b,,STOREDRIVER,RECEIVE,11725260718081,<0f3e2a1b9c8d4e5f@EX01.contoso.local>,6b5c2d1e-0f9a-4b8c-7d6e-08dc5d2b1a01,alex@contoso.com;lidia@contoso.com,,7321,2,,,Q2 planning,megan@contoso.com,megan@contoso.com,04I:,Originating,,10.0.0.55,,,Email,6b5c2d1e-0f9a-4b8c-7d6e-08dc5d2b1a01,15.02.1258.012
2024-04-15T09:12:33.410Z,,,,EX01,,,STOREDRIVER,SUBMIT,11725260718081,<0f3e2a1b9c8d4e5f@EX01.contoso.local>,6b5c2d1e-0f9a-4b8c-7d6e-08dc5d2b1a01,,,7321,,,,Q2 planning,megan@contoso.com,megan@contoso.com,2024-04-15T09:12:33.126Z;LSRV=EX01.contoso.local:TOTAL=0,Originating,,10.0.0.55,,,Email,6b5c2d1e-0f9a-4b8c-7d6e-08dc5d2b1a01,15.02.1258.012
2024-04-15T09:12:34.002Z,10.0.0.21,EX01,10.0.0.22,EX02,,,SMTP,DELIVER,11725260718081,<0f3e2a1b9c8d4e5f@EX01.contoso.local>,6b5c2d1e-0f9a-4b8c-7d6e-08dc5d2b1a01,alex@contoso.com,,7321,1,,,Q2 planning,megan@contoso.com,megan@contoso.com,,Originating,,10.0.0.55,,,Email,6b5c2d1e-0f9a-4b8c-7d6e-08dc5d2b1a01,15.02.1258.012
2024-04-15T09:30:00.000Z,this row,is short
2024-04-15T09:40:00.000Z,,,,EX01,,,STOREDRIVER,SUBMIT,11725260718090,<1a2b3c4d@EX01.contoso.local>,7c5c2d1e-0f9a-4b8c-7d6e-08dc5d2b1a02,,,2210,,,,Budget,lidia@contoso.com,lidia@contoso.com,,Originating,,10.0.0.56,,,Email,7c5c2d1e-0f9a-4b8c-7d6e-08dc5d2b1a02,15.02.1258.012
"""


def _read(tmp_path: Path, name: str, text: str | bytes) -> tuple[list[Record], ReadStats]:
    p = tmp_path / name
    p.write_bytes(text if isinstance(text, bytes) else text.encode("utf-8"))
    stats = ReadStats()
    return list(read_file(str(p), stats)), stats


def test_message_trace_rows_are_read_with_malformed_rows_reported(tmp_path: Path) -> None:
    records, stats = _read(tmp_path, "trace_export.csv", TRACE)
    assert stats.files_read[0][1] == formats.MESSAGE_TRACE
    assert [r.line for r in records] == [3, 4, 5, 7]
    assert all(r.family == "mailflow" for r in records)
    assert records[0].data["SenderAddress"] == "megan@contoso.com" and records[0].data["_time"] == "2024-04-15T09:12:33Z"
    problems = {i.line: i.message for i in stats.issues}
    assert set(problems) == {6, 8}  # the broken quote, the unreadable time
    assert "quot" in problems[6] and "time" in problems[8]
    assert all(str(i).startswith(str(tmp_path / "trace_export.csv") + ":") for i in stats.issues)
    assert stats.skipped == 2 and stats.records_parsed == 4


def test_message_trace_v2_iso_times(tmp_path: Path) -> None:
    records, stats = _read(tmp_path, "v2.csv", TRACE_V2)
    assert stats.files_read[0][1] == formats.MESSAGE_TRACE and records[0].data["_time"] == "2024-04-15T09:40:12Z"


def test_rows_of_one_message_are_one_send_with_its_recipients(tmp_path: Path) -> None:
    records, _ = _read(tmp_path, "t.csv", TRACE)
    sends, domains = mailflow.sends_from_records(records, Resolver())
    assert domains == {"contoso.com"}  # learnt: the domain in most rows
    megan = next(s for s in sends if s.sender == "megan@contoso.com")
    assert megan.recipients == ("alex@contoso.com", "lidia@contoso.com", "partner@fabrikam.com")
    assert (megan.internal_recipients, megan.external_recipients) == (2, 1)
    assert megan.message_id == "am0pr01mb6423a1b2c3d4e5f6@am0pr01mb6423.eurprd01.prod.outlook.com"
    assert [e.line for e in megan.evidence] == [3, 4, 5]
    inbound = next(s for s in sends if s.sender == "newsletter@fabrikam.com")
    assert inbound.direction == "inbound"


def test_historical_search_summary_utf16(tmp_path: Path) -> None:
    data = codecs.BOM_UTF16_LE + HISTORICAL_SUMMARY.replace("\n", "\r\n").encode("utf-16-le")
    records, stats = _read(tmp_path, "MTSummary_Report.csv", data)
    assert stats.files_read[0][1] == formats.HISTORICAL
    assert len(records) == 2 and stats.issues[0].line == 4  # the row cut off after its quote
    sends, _ = mailflow.sends_from_records(records, Resolver())
    out = next(s for s in sends if s.sender == "megan@contoso.com")
    assert out.recipients == ("alex@contoso.com", "partner@fabrikam.com") and out.direction == "outbound"
    assert next(s for s in sends if s.sender == "offers@fabrikam.com").direction == "inbound"


def test_historical_search_extended_report_counts_submissions(tmp_path: Path) -> None:
    text = ("date_time_utc,client_ip,client_hostname,server_ip,server_hostname,source_context,connector_id,source,"
            "event_id,internal_message_id,message_id,network_message_id,recipient_address,recipient_status,"
            "total_bytes,recipient_count,related_recipient_address,reference,message_subject,sender_address,"
            "return_path,message_info,directionality,tenant_id,original_client_ip,original_server_ip,custom_data\n"
            "2024-04-15T09:12:33.1Z,,,,AM0PR01MB6423,,,STOREDRIVER,RECEIVE,1,<m1@x>,n1,a@contoso.com;b@contoso.com,,10,2,,,"
            "Hello,megan@contoso.com,megan@contoso.com,,Originating,t,,,\n"
            "2024-04-15T09:12:34.1Z,,,,AM0PR01MB6423,,,SMTP,SEND,1,<m1@x>,n1,b@contoso.com,,10,1,,,"
            "Hello,megan@contoso.com,megan@contoso.com,,Originating,t,,,\n")
    records, stats = _read(tmp_path, "extended.csv", text)
    assert stats.files_read[0][1] == formats.HISTORICAL and len(records) == 2
    sends, _ = mailflow.sends_from_records(records, Resolver())
    (s,) = sends
    assert s.recipients == ("a@contoso.com", "b@contoso.com") and s.operation == "RECEIVE"


def test_exchange_message_tracking_log(tmp_path: Path) -> None:
    records, stats = _read(tmp_path, "MSGTRKMS2024041509-1.LOG", MSGTRK)
    assert stats.files_read[0][1] == formats.MSGTRK
    assert len(records) == 4 and records[0].line == 6
    (issue,) = stats.issues
    assert issue.line == 9 and "fields" in issue.message
    sends, _ = mailflow.sends_from_records(records, Resolver())
    # RECEIVE/STOREDRIVER and SUBMIT of one message are one send; DELIVER is not a send
    assert [(s.sender, len(s.evidence)) for s in sends] == [("megan@contoso.com", 2), ("lidia@contoso.com", 1)]
    assert sends[0].recipients == ("alex@contoso.com", "lidia@contoso.com") and sends[0].subject == "Q2 planning"


def test_not_claimed_by_other_readers(tmp_path: Path) -> None:
    _, stats = _read(tmp_path, "users.csv", "id,userPrincipalName,displayName\n1,a@contoso.com,A\n")
    assert not stats.files_read
    _, stats = _read(tmp_path, "ual.csv", 'CreationDate,UserIds,Operations,AuditData\n"x","y","Send","{}"\n')
    assert stats.files_read[0][1] != formats.MESSAGE_TRACE


def test_ual_send_and_its_trace_rows_are_one_message(tmp_path: Path) -> None:
    ual = {"CreationTime": "2024-04-15T09:12:31", "Id": "9f1c2b3a-0d4e-4f5a-8b6c-08dc5d2b7e99", "Operation": "SendAs",
           "RecordType": 2, "ResultStatus": "Succeeded", "UserType": 0, "Workload": "Exchange",
           "UserId": "eve@contoso.com", "MailboxOwnerUPN": "megan@contoso.com", "SendAsUserSmtp": "megan@contoso.com",
           "ClientIP": "198.51.100.7:443", "LogonType": 2,
           "Item": {"Id": "RgAAAA", "Subject": "Q2 planning", "Attachments": "plan.xlsx (48000b)",
                    "InternetMessageId": "<AM0PR01MB6423A1B2C3D4E5F6@AM0PR01MB6423.eurprd01.prod.outlook.com>"}}
    (tmp_path / "ual.json").write_text(json.dumps(ual) + "\n")
    (tmp_path / "trace.csv").write_text(TRACE, encoding="utf-8")
    stats = ReadStats()
    records = [r for p in ("ual.json", "trace.csv") for r in read_file(str(tmp_path / p), stats)]
    sends, _ = mailflow.sends_from_records(records, Resolver())
    megan = next(s for s in sends if s.sender == "megan@contoso.com")
    assert megan.actor == "eve@contoso.com" and megan.operation == "SendAs" and megan.as_delegate
    assert megan.attachments == ("plan.xlsx",) and len(megan.recipients) == 3
    assert {e.record_id for e in megan.evidence} >= {"9f1c2b3a-0d4e-4f5a-8b6c-08dc5d2b7e99"}
    assert megan.time.isoformat() == "2024-04-15T09:12:31+00:00"


def test_gmail_delivery_hook() -> None:
    api = {"kind": "admin#reports#activity",
           "id": {"time": "2024-05-01T12:34:56.789Z", "uniqueQualifier": "-58302859401987", "applicationName": "gmail",
                  "customerId": "C01abcd2e"},
           "actor": {"callerType": "USER", "email": "ann@example.com", "profileId": "1043658829"},
           "events": [{"type": "delivery_type", "name": "delivery", "parameters": [
               {"name": "event_info", "messageValue": {"parameter": [{"name": "mail_event_type", "intValue": "1"}]}},
               {"name": "message", "messageValue": {"parameter": [
                   {"name": "subject", "value": "Verify your account"},
                   {"name": "rfc2822_message_id", "value": "<CAF=abc@mail.gmail.com>"},
                   {"name": "destination", "multiMessageValue": [
                       {"parameter": [{"name": "address", "value": "bob@example.com"}]},
                       {"parameter": [{"name": "address", "value": "cy@example.com"}]}]}]}}]}],
           "Id": "-58302859401987"}
    send = mailflow.google_send(Record(api, "gmail.json", 1, 1, "google-activities", "google"))
    assert send is not None and send.sender == "ann@example.com" and send.subject == "Verify your account"
    assert send.recipients == ("bob@example.com", "cy@example.com") and send.message_id == "caf=abc@mail.gmail.com"
    assert send.evidence[0].record_id == "-58302859401987"
    flat = {"id": {"time": "2024-05-01T12:35:00Z"}, "actor": {"email": "ann@example.com"},
            "events": {"name": "delivery", "parameters": {"event_info": {"mail_event_type": 2}}}}
    assert mailflow.google_send(Record(flat, "g.json", 2, 2, "google-activities", "google")) is None  # received


# -- end to end ---------------------------------------------------------------------------------
@cache
def _hunt(folder: str):
    # These cases include the audit log's SendAs/SendOnBehalf records: switch them on for this hunt.
    import dataclasses

    from delegatewatch import config

    before = config.current()
    config.use(dataclasses.replace(before, mailflow=dataclasses.replace(before.mailflow, audit_log_sends=True)))
    try:
        return hunt([folder], jobs=1)
    finally:
        config.use(before)


@pytest.fixture(scope="module")
def evidence(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, object]:
    folder = tmp_path_factory.mktemp("mailflow_evidence")
    mails, truth = generate()
    # message trace for mail sent by the owners; the audit log for delegate sends and the lures
    write_message_trace([m for m in mails if m.operation == "Send"], folder / "MessageTrace_2024-03.csv")
    write_ual([m for m in mails if m.operation != "Send" or m.case == "lure"], folder / "ual_send.json")
    return folder, truth


def test_hunt_over_message_trace_and_ual(evidence) -> None:
    folder, truth = evidence
    result = _hunt(str(folder))
    assert sorted(d for _, d in result.stats.files_read) == ["message-trace-csv", "ndjson"]
    assert result.stats.skipped == 0
    bursts = {f.mailbox for f in result.findings if f.rule == "send_volume_burst"}
    assert bursts == {a for a, _, _ in truth.bursts}
    lures = [f for f in result.findings if f.rule == "internal_lure_campaign"]
    assert sorted(frozenset(f.campaign["senders"]) for f in lures) == sorted(s for s, _, _ in truth.lures)
    # the lure messages came from both sources and were merged: evidence names the UAL record and the rows
    payroll = next(f for f in lures if "payroll" in f.summary)
    sources = {Path(e.source).name for e in payroll.evidence}
    assert sources == {"ual_send.json", "MessageTrace_2024-03.csv"}
    cfo = next(f for f in result.findings if f.mailbox == "cfo@contoso.com")
    assert cfo.grantee == "eve@contoso.com" and all(Path(e.source).name == "ual_send.json" for e in cfo.evidence)


def test_hunt_outputs(evidence) -> None:
    from delegatewatch.outputs import html, jsonl, ocsf
    from tests.test_ocsf import strict_validate

    folder, _ = evidence
    result = _hunt(str(folder))
    buf = io.StringIO()
    jsonl.write(result.findings, buf)
    for line in buf.getvalue().splitlines():
        d = orjson.loads(line)
        assert {"id", "rule", "title", "severity", "time", "attack", "actor", "mailbox", "grantee", "rights",
                "summary", "evidence"} <= set(d)
        assert d["evidence"] and {"source", "record_id", "time"} <= set(d["evidence"][0])
    for f in result.findings:
        strict_validate(ocsf.finding_to_ocsf(f, result.records))
    charts = html.volume_series(result)
    assert {c["account"] for c in charts} == {f.mailbox for f in result.findings if f.rule == "send_volume_burst"}
    page = html.render(result) if hasattr(html, "render") else None
    if page is not None:
        assert "user011@contoso.com" in page


def test_config_sections_load(tmp_path: Path) -> None:
    p = tmp_path / "dw.toml"
    p.write_text('[mailflow]\ninternal_domains = ["contoso.com"]\nservice_accounts = ["alerts@*"]\n'
                 'peer_groups = { sales = ["user00*@contoso.com"] }\ntimezone = "Europe/Berlin"\n'
                 "[send_volume]\nmin_score = 8.0\nwindow_minutes = 30\n[lures]\nmin_senders = 4\n")
    cfg = configuration.load(p)
    assert cfg.mailflow.peer_groups == (("sales", ("user00*@contoso.com",)),)
    assert cfg.send_volume.window_minutes == 30 and cfg.lures.min_senders == 4
    p.write_text("[lures]\nmin_sender = 4\n")
    with pytest.raises(configuration.ConfigError, match="min_sender"):
        configuration.load(p)
    doc = (Path(__file__).resolve().parent.parent / "docs" / "configuration.md").read_text()
    for section in (configuration.MailflowConfig, configuration.SendVolumeConfig, configuration.LuresConfig):
        for name in section.__dataclass_fields__:
            assert f"`{name}`" in doc, name


def test_allow_listed_sender_is_not_analysed() -> None:
    from tests.test_mailflow_generator import to_sends

    mails, _ = generate()
    sends = to_sends(mails)
    cfg = configuration.Config(mailflow=configuration.MailflowConfig(
        service_accounts=("user011@contoso.com",), newsletter_senders=("user02*",)))
    findings = mailflow.analyze_sends(sends, {"contoso.com"}, cfg)
    assert "user011@contoso.com" not in {f.mailbox for f in findings}
    assert all("user020" not in f.summary for f in findings)
    assert {f.mailbox for f in findings if f.rule == "send_volume_burst"} >= {"user012@contoso.com"}


def test_ual_send_fixture_shape() -> None:
    from datetime import UTC, datetime

    from tests.test_mailflow_generator import Mail

    rec = ual_send(Mail(datetime(2024, 3, 4, tzinfo=UTC), "ceo@contoso.com", "Hi", ["a@contoso.com"],
                        actor="assistant@contoso.com", operation="SendOnBehalf"), 1)
    assert rec["SendOnBehalfOfUserSmtp"] == "ceo@contoso.com" and rec["UserId"] == "assistant@contoso.com"
