"""Windows event sources (EVTX, XML, JSON lines), the Windows rules and event mapper, Exchange
cmdlet logs converted to the unified-audit-log shape, and identities across sources."""

from __future__ import annotations

import json
import re
import zipfile
from pathlib import Path

import pytest

from delegatewatch.engine.hunt import hunt
from delegatewatch.events.model import Action, PermissionChange, Scope
from delegatewatch.events.principals import Directory, Kind, Resolver
from delegatewatch.events.registry import mapper_for
from delegatewatch.records import ReadStats
from delegatewatch.sources import opening, read_file
from delegatewatch.sources.detect import detect

NS = "http://schemas.microsoft.com/win/2004/08/events/event"
MDE = "mdecrevoisier-evtx-to-mitre-attack"
SBO = "sbousseaden-evtx-attack-samples"
OTRF = "otrf-security-datasets-atomic"
SEND_AS = "ab721a54-1e2f-11d0-9819-00aa0040529b"


@pytest.fixture(autouse=True)
def evtx_sniffing(monkeypatch):
    """Until sources/opening.py hands EVTX files to the readers (the one-line change), do it here."""
    if opening._sniff_bytes(opening.EVTX_MAGIC + b"\0" * 64).not_text:
        original = opening._sniff_bytes

        def sniff(head: bytes) -> opening.Opened:
            if head.startswith(opening.EVTX_MAGIC):
                return opening.Opened(None, 0, False, head[:8])
            return original(head)
        monkeypatch.setattr(opening, "_sniff_bytes", sniff)


# -- fixtures built from the documented layouts (formats.md §4.2, §5.1, §5.3) -------------------
def system(eid: int, rid: int, *, channel="Security", computer="DC01.corp.example",
           provider="Microsoft-Windows-Security-Auditing", time="2026-03-02T10:15:00.1234567Z", user=None) -> str:
    sec = f'<Security UserID="{user}" />' if user else "<Security />"
    return (f'<System><Provider Name="{provider}" /><EventID>{eid}</EventID><Version>0</Version><Level>0</Level>'
            f'<Task>14081</Task><Keywords>0x8020000000000000</Keywords><TimeCreated SystemTime="{time}" />'
            f'<EventRecordID>{rid}</EventRecordID><Correlation /><Execution ProcessID="516" ThreadID="4020" />'
            f'<Channel>{channel}</Channel><Computer>{computer}</Computer>{sec}</System>')


def xml_event(eid: int, rid: int, data: dict[str, str] | list[str], **kw) -> str:
    from xml.sax.saxutils import escape

    if isinstance(data, dict):
        body = "".join(f'<Data Name="{k}">{escape(v)}</Data>' for k, v in data.items())
    else:
        body = "".join(f"<Data>{escape(v)}</Data>" for v in data)
    return f'<Event xmlns="{NS}">\n {system(eid, rid, **kw)}\n <EventData>{body}</EventData>\n</Event>\n'


def ds_change(attr: str, value: str, op: str, *, obj="CN=CEO,OU=Exec,DC=corp,DC=example", corr="{02647639-8626-43CE-AFE6-7AA1AD657739}",
              syntax="2.5.5.1", subject="EXCH01$") -> dict[str, str]:
    return {"OpCorrelationID": corr, "AppCorrelationID": "-", "SubjectUserSid": "S-1-5-21-3457937927-2839227994-823803824-1104",
            "SubjectUserName": subject, "SubjectDomainName": "CORP", "SubjectLogonId": "0x32004", "DSName": "corp.example",
            "DSType": "%%14676", "ObjectDN": obj, "ObjectGUID": "{4FE80A66-5F93-4F73-B215-68678058E613}",
            "ObjectClass": "user", "AttributeLDAPDisplayName": attr, "AttributeSyntaxOID": syntax,
            "AttributeValue": value, "OperationType": op}


def member_added(group: str, member: str = "CN=Eve Adams,OU=Staff,DC=corp,DC=example") -> dict[str, str]:
    return {"MemberName": member, "MemberSid": "S-1-5-21-3457937927-2839227994-823803824-1607", "TargetUserName": group,
            "TargetDomainName": "CORP", "TargetSid": "S-1-5-21-3457937927-2839227994-823803824-1119",
            "SubjectUserSid": "S-1-5-21-3457937927-2839227994-823803824-1104", "SubjectUserName": "dadmin",
            "SubjectDomainName": "CORP", "SubjectLogonId": "0x3031e", "PrivilegeList": "-"}


EVE = "CN=Eve Adams,OU=Staff,DC=corp,DC=example"
OLD_SD = "O:DAG:DUD:AI(OA;;CR;ab721a53-1e2f-11d0-9819-00aa0040529b;;PS)(OA;;CR;%s;;PS)(A;;RC;;;AU)" % SEND_AS
NEW_SD = OLD_SD + "(OA;;CR;%s;;S-1-5-21-3457937927-2839227994-823803824-1607)" % SEND_AS
OWNER_ONLY_SD = NEW_SD.replace("O:DA", "O:S-1-5-21-3457937927-2839227994-823803824-1234")

#: (event id, record id, data, expected rule or None)
SECURITY_CASES = [
    (5136, 410301, ds_change("publicDelegates", EVE, "%%14674"), "windows_5136_send_on_behalf_delegate"),
    (5136, 410302, ds_change("publicDelegates", EVE, "%%14675"), None),
    (5136, 410303, ds_change("msExchDelegateListLink", EVE, "%%14674", obj="CN=CFO,OU=Exec,DC=corp,DC=example"),
     "windows_5136_full_access_automapping"),
    (5136, 410304, ds_change("msExchDelegateListLink", EVE, "%%14675", obj="CN=CFO,OU=Exec,DC=corp,DC=example"), None),
    # a Send-As ACE added: the old descriptor (value deleted) then the new one (value added), one correlation id
    (5136, 410305, ds_change("nTSecurityDescriptor", OLD_SD, "%%14675", corr="{A1}", syntax="2.5.5.15"), None),
    (5136, 410306, ds_change("nTSecurityDescriptor", NEW_SD, "%%14674", corr="{A1}", syntax="2.5.5.15"),
     "windows_5136_send_as_ace"),
    # later, only the owner changes: the Send-As ACE is not new, so quiet
    (5136, 410307, ds_change("nTSecurityDescriptor", NEW_SD, "%%14675", corr="{A2}", syntax="2.5.5.15"), None),
    (5136, 410308, ds_change("nTSecurityDescriptor", OWNER_ONLY_SD, "%%14674", corr="{A2}", syntax="2.5.5.15"), None),
    (5136, 410309, ds_change("msDS-AllowedToDelegateTo", "cifs/FS01.corp.example", "%%14674",
                             obj="CN=SRV01,OU=Servers,DC=corp,DC=example"), None),
    (5136, 410310, ds_change("versionNumber", "12", "%%14674",
                             obj="CN={31B2F340-016D-11D2-945F-00C04FB984F9},CN=Policies,CN=System,DC=corp,DC=example"), None),
    (4756, 410311, member_added("Organization Management"), "windows_exchange_privileged_group_member_added"),
    (4728, 410312, member_added("Exchange Windows Permissions"), "windows_exchange_privileged_group_member_added"),
    (4732, 410313, member_added("Records Management"), "windows_exchange_role_group_member_added"),
    (4757, 410314, member_added("Organization Management"), None),
    (4728, 410315, member_added("Group01"), None),
    (4732, 410316, member_added("DnsAdmins"), None),
    (4732, 410317, member_added("Administrators", member="-"), None),
]

CMDLET_DATA = ["Add-MailboxPermission", '-Identity "CEO" -User "CORP\\eve" -AccessRights "FullAccess" -InheritanceType "All"',
               "corp.example/Users/Administrator", "S-1-5-21-3457937927-2839227994-823803824-500",
               "S-1-5-21-3457937927-2839227994-823803824-500", "Remote-ManagementShell-Unknown",
               "5668 w3wp#MSExchangePowerShellAppPool", "", "5", "00:00:01.0389557",
               "Afficher la forêt entière : 'False', Portée par défaut : « corp.example »", "", "", "", "", "", "",
               "False", "", "0 objects execution has been proxied to remote server.", "", "", "0",
               "ActivityId: a3591746-a27b-447a-b8be-ff54ae3a46f1", "ServicePlan:;IsAdmin:True;", "", "fr-FR"]


def exchange_events() -> list[str]:
    kw = {"channel": "MSExchange Management", "provider": "MSExchange CmdletLogs", "computer": "EXCH01.corp.example"}
    send_on_behalf = ["Set-Mailbox", '-Identity "CFO" -GrantSendOnBehalfTo "eve@corp.example"', "corp.example/Users/Administrator"]
    benign = ["Set-OabVirtualDirectory", '-Identity "OAB (Default Web Site)" -ExternalUrl "https://mail.corp.example/OAB"',
              "corp.example/Users/Administrator"]
    failed = ["Add-RecipientPermission", '-Identity "CEO" -Trustee "eve" -AccessRights "SendAs"', "corp.example/Users/Administrator"]
    return [xml_event(1, 5001, CMDLET_DATA, **kw), xml_event(1, 5002, send_on_behalf, **kw),
            xml_event(1, 5003, benign, **kw), xml_event(6, 5004, failed, **kw)]


SCRIPT = ("$who = 'eve@corp.example'\r\nAdd-MailboxPermission -Identity ceo@corp.example -User $who "
          "-AccessRights FullAccess -AutoMapping:$false\r\nAdd-MailboxFolderPermission -Identity \"ceo@corp.example:\\\" "
          "`\r\n   -User Default -AccessRights Reviewer\r\nGet-Mailbox | Select Name\r\n")


def powershell_events() -> list[str]:
    kw = {"channel": "Microsoft-Windows-PowerShell/Operational", "provider": "Microsoft-Windows-PowerShell",
          "computer": "ADM01.corp.example", "user": "S-1-5-21-3457937927-2839227994-823803824-500"}
    data = {"MessageNumber": "1", "MessageTotal": "1", "ScriptBlockText": SCRIPT,
            "ScriptBlockId": "5f1ce2a1-1c7e-4bd9-9a51-2c2f5c3d2c11", "Path": ""}
    quiet = dict(data, ScriptBlockText="Get-Mailbox -ResultSize 10 | Format-Table Name", ScriptBlockId="x")
    return [xml_event(4104, 7001, data, **kw), xml_event(4104, 7002, quiet, **kw)]


def all_xml_events() -> list[str]:
    return [xml_event(e, r, d) for e, r, d, _ in SECURITY_CASES] + exchange_events() + powershell_events()


EXPECTED = {str(r): rule for _, r, _, rule in SECURITY_CASES if rule}
EXPECTED.update({"5001": "m365_mailbox_full_access_grant", "5002": "m365_send_on_behalf_grant",
                 "7001#1": "m365_mailbox_full_access_grant", "7001#2": "m365_folder_default_anonymous_cmdlet"})


def _fired(result) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for f in result.findings:
        out.setdefault(f.evidence[0].record_id, set()).add(f.rule)
    return out


def _expected_sets() -> dict[str, set[str]]:
    return {k: {v} for k, v in EXPECTED.items()}


# -- XML ---------------------------------------------------------------------------------------
def test_wevtutil_xml_without_root(tmp_path):
    path = tmp_path / "security.xml"
    path.write_text("".join(all_xml_events()), encoding="utf-8")
    result = hunt([str(path)], jobs=1)
    assert result.stats.skipped == 0
    assert _fired(result) == _expected_sets()


def test_event_viewer_saved_xml_with_root_utf16(tmp_path):
    path = tmp_path / "saved.xml"
    text = '<?xml version="1.0" encoding="UTF-16"?>\r\n<Events>' + "".join(all_xml_events()) + "</Events>"
    path.write_bytes(b"\xff\xfe" + re.sub(r"(?<!\r)\n", "\r\n", text).encode("utf-16-le"))
    result = hunt([str(path)], jobs=1)
    assert result.stats.files_read == [(str(path), "windows-xml")]
    assert _fired(result) == _expected_sets()


def test_record_fields_and_ids(tmp_path):
    path = tmp_path / "one.xml"
    path.write_text(xml_event(*SECURITY_CASES[0][:3]), encoding="utf-8")
    [rec] = list(read_file(str(path), ReadStats()))
    d = rec.data
    assert rec.family == "windows" and rec.line == 1
    assert d["EventID"] == 5136 and d["Channel"] == "Security" and d["Computer"] == "DC01.corp.example"
    assert d["TimeCreated"] == "2026-03-02T10:15:00.1234567Z" and d["CreationTime"] == "2026-03-02T10:15:00"
    assert d["Id"] == d["EventRecordID"] == "410301"
    assert d["_dedup"] == "dc01.corp.example|security|410301"
    assert d["AttributeLDAPDisplayName"] == "publicDelegates" and d["OperationType"] == "%%14674"


def test_exchange_cmdlet_event_becomes_ual_record(tmp_path):
    path = tmp_path / "exch.xml"
    path.write_text("".join(exchange_events()), encoding="utf-8")
    recs = list(read_file(str(path), ReadStats()))
    first = recs[0]
    assert first.family == "m365"
    d = first.data
    assert d["Operation"] == "Add-MailboxPermission" and d["UserId"] == "corp.example/Users/Administrator"
    assert d["Parameters"] == [{"Name": "Identity", "Value": "CEO"}, {"Name": "User", "Value": "CORP\\eve"},
                               {"Name": "AccessRights", "Value": "FullAccess"}, {"Name": "InheritanceType", "Value": "All"}]
    assert d["Id"] == "5001" and d["ResultStatus"] == "True" and d["RecordType"] == 1 and d["Workload"] == "Exchange"
    assert d["CreationTime"] == "2026-03-02T10:15:00"
    assert recs[3].data["ResultStatus"] == "False"


def test_script_block_commands_become_ual_records(tmp_path):
    path = tmp_path / "ps.xml"
    path.write_text("".join(powershell_events()), encoding="utf-8")
    recs = list(read_file(str(path), ReadStats()))
    assert [(r.family, r.data.get("Id")) for r in recs] == [("m365", "7001#1"), ("m365", "7001#2"), ("windows", "7002")]
    assert recs[0].data["UserId"] == "S-1-5-21-3457937927-2839227994-823803824-500"
    assert {p["Name"]: p["Value"] for p in recs[1].data["Parameters"]} == {
        "Identity": "ceo@corp.example:\\", "User": "Default", "AccessRights": "Reviewer"}


def test_malformed_xml_event_is_reported_and_rest_read(tmp_path):
    events = all_xml_events()
    broken = events[0].replace("</Data>", "", 1)  # an unclosed element
    path = tmp_path / "broken.xml"
    path.write_text(broken + "".join(events[1:]) + '<Event xmlns="x"><System>', encoding="utf-8")
    result = hunt([str(path)], jobs=1)
    assert result.stats.skipped == 2
    messages = [str(i) for i in result.stats.issues]
    assert any(m.startswith(f"{path}:1: malformed event XML") for m in messages)
    assert any("file ends inside an <Event> element" in m for m in messages)
    expected = _expected_sets()
    expected.pop("410301")
    assert _fired(result) == expected


# -- JSON lines ----------------------------------------------------------------------------------
def _flat(eid: int, rid: int, data: dict) -> dict:
    return {"EventID": eid, "RecordNumber": rid, "Channel": "Security", "Hostname": "DC01.corp.example",
            "SourceName": "Microsoft-Windows-Security-Auditing", "@timestamp": "2026-03-02T10:15:00.123Z",
            "EventTime": "2026-03-02 05:15:00", "ProviderGuid": "{54849625-5478-4994-A5BA-3E3B0328C30D}", **data}


def _ecs(eid: int, rid: int, data: dict | list, channel="Security", provider="Microsoft-Windows-Security-Auditing") -> dict:
    event_data = data if isinstance(data, dict) else {f"param{i}": v for i, v in enumerate(data, 1)}
    return {"@timestamp": "2026-03-02T10:15:00.123Z", "event": {"code": str(eid), "kind": "event"},
            "winlog": {"event_id": str(eid), "channel": channel, "provider_name": provider,
                       "computer_name": "DC01.corp.example", "record_id": rid, "event_data": event_data},
            "host": {"name": "dc01"}}


def test_flat_json_lines(tmp_path):
    path = tmp_path / "mordor.json"
    lines = [json.dumps(_flat(e, r, d)) for e, r, d, _ in SECURITY_CASES]
    path.write_bytes(("\r\n".join(lines) + "\r\n").encode())
    result = hunt([str(path)], jobs=1)
    assert result.stats.files_read == [(str(path), "windows-jsonl")]
    assert _fired(result) == {str(r): {rule} for _, r, _, rule in SECURITY_CASES if rule}
    [rec] = [r for r in read_file(str(path), ReadStats()) if r.data["Id"] == "410301"]
    assert rec.data["TimeCreated"] == "2026-03-02T10:15:00.123Z" and rec.line == 1


def test_winlogbeat_ecs_json_lines(tmp_path):
    path = tmp_path / "winlogbeat.ndjson"
    lines = [json.dumps(_ecs(e, r, d)) for e, r, d, _ in SECURITY_CASES]
    lines.append(json.dumps(_ecs(1, 5001, CMDLET_DATA, channel="MSExchange Management", provider="MSExchange CmdletLogs")))
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    result = hunt([str(path)], jobs=1)
    expected = {str(r): {rule} for _, r, _, rule in SECURITY_CASES if rule}
    expected["5001"] = {"m365_mailbox_full_access_grant"}
    assert _fired(result) == expected


def test_ual_ndjson_is_not_taken_by_windows_readers(tmp_path):
    from tests.conftest import compact, ual

    path = tmp_path / "ual.json"
    path.write_text(compact(ual()) + "\n", encoding="utf-8")
    found = detect(opening.sniff(str(path)))
    assert found.dialect == "ndjson" and found.family == "m365"


def test_malformed_json_lines_reported(tmp_path):
    path = tmp_path / "bad.json"
    good = [json.dumps(_flat(e, r, d)) for e, r, d, _ in SECURITY_CASES[:1]]
    path.write_text("\n".join(good + ['{"EventID": 4756, "Channel": "Security", broken', '{"foo": 1}', '[1, 2]'] + good) + "\n",
                    encoding="utf-8")
    stats = ReadStats()
    recs = list(read_file(str(path), stats))
    assert len(recs) == 2 and stats.skipped == 3
    assert [i.line for i in stats.issues] == [2, 3, 4]
    assert "not a JSON record" in stats.issues[0].message
    result = hunt([str(path)], jobs=1)
    assert result.stats.duplicates == 1 and len(result.findings) == 1  # the same event twice counts once


# -- EVTX ---------------------------------------------------------------------------------------
def test_malformed_evtx(tmp_path, corpus):
    src = (corpus / MDE / "ID4756-Exchange admin group change.evtx").read_bytes()
    truncated = tmp_path / "truncated.evtx"
    truncated.write_bytes(src[: 4096 + 2000])  # header + part of the first chunk
    stats = ReadStats()
    list(read_file(str(truncated), stats))
    assert stats.files_read and stats.skipped >= 1
    assert all(str(truncated) in str(i) for i in stats.issues)
    garbage = tmp_path / "garbage.evtx"
    garbage.write_bytes(opening.EVTX_MAGIC + b"\xff" * 5000)
    stats = ReadStats()
    assert list(read_file(str(garbage), stats)) == []
    assert stats.skipped >= 1 and all("garbage.evtx" in str(i) for i in stats.issues)
    damaged = bytearray(src)
    for i in range(4096 + 600, 4096 + 900):
        damaged[i] = 0x41  # overwrite records inside the first chunk
    bad = tmp_path / "damaged.evtx"
    bad.write_bytes(bytes(damaged))
    stats = ReadStats()
    recs = list(read_file(str(bad), stats))  # never raises; what can be read is read
    assert stats.records_seen >= len(recs) and stats.skipped >= 1
    assert "damaged EVTX data" in str(stats.issues[0])


# -- real public samples -------------------------------------------------------------------------
def _evtx_files(corpus: Path) -> list[Path]:
    return sorted(corpus.rglob("*.evtx"))


def test_every_real_windows_file_parses(corpus):
    files = _evtx_files(corpus) + sorted((corpus / OTRF).glob("*.excerpt-*.json"))
    assert len(files) >= 20
    for path in files:
        stats = ReadStats()
        recs = list(read_file(str(path), stats))
        assert stats.files_skipped == [] and stats.skipped == 0 and stats.warnings == 0, (path, stats.issues[:3])
        assert recs and stats.records_parsed == stats.records_seen, path


def test_real_zip_members_parse(corpus, tmp_path):
    for z in sorted((corpus / OTRF).glob("*.zip")):
        with zipfile.ZipFile(z) as archive:
            archive.extractall(tmp_path)
    stats = ReadStats()
    recs = [r for p in sorted(tmp_path.glob("*.json")) for r in read_file(str(p), stats)]
    assert stats.skipped == 0 and stats.records_seen == 9002 + 12278 + 10487
    ids = {(r.family, r.data.get("EventID")) for r in recs}
    assert ("m365", 1) in ids and ("windows", 5136) in ids and ("windows", 4728) in ids


def test_exchange_admin_group_change_gives_15(corpus):
    result = hunt([str(corpus / MDE / "ID4756-Exchange admin group change.evtx")], jobs=1)
    assert len(result.findings) == 15
    groups = {f.mailbox for f in result.findings}
    assert {"Organization Management", "Help Desk", "Security Reader", "UM Management"} <= groups
    f = next(f for f in result.findings if f.mailbox == "Organization Management")
    assert f.rule == "windows_exchange_privileged_group_member_added"
    assert f.actor == "OFFSEC\\admmig" and f.grantee.startswith("CN=admin-hacker,")
    assert f.evidence[0].record_id and f.time.startswith("2021-02-02T")


def test_dcsync_group_change_gives_3(corpus):
    result = hunt([str(corpus / MDE / "ID4756-Exchange critical group change (DCsync).evtx")], jobs=1)
    assert sorted(f.mailbox for f in result.findings) == ["Exchange Servers", "Exchange Trusted Subsystem",
                                                          "Exchange Windows Permissions"]
    assert {f.rule for f in result.findings} == {"windows_exchange_privileged_group_member_added"}


@pytest.mark.parametrize("name", [
    f"{MDE}/ID4742,5136-Enable Trust this computer for delegation (to specified service, Kerberos only).evtx",
    f"{SBO}/ACL_ForcePwd_SPNAdd_User_Computer_Accounts.evtx",  # GPO versionNumber
    f"{MDE}/ID4728-Massive account group membership change.evtx",
    f"{MDE}/ID4728-4756-Member added to sensitive domain groups.evtx",
    f"{MDE}/ID4732-DNSadmin new member added.evtx",
    f"{MDE}/ID4732-User added to local admin groups.evtx",
    f"{SBO}/Network_Service_Guest_added_to_admins_4732.evtx",
    f"{SBO}/privexchange_dirkjan.evtx",  # DCSync ACEs, not Send-As
    f"{SBO}/DACL_DCSync_Right_Powerview_ Add-DomainObjectAcl.evtx",
    f"{MDE}/ID5136-4662 AD object owner changed.evtx",
    f"{MDE}/ID4738,5136-SPN set on user account.evtx",
    f"{OTRF}/empire_powerview_ldap_ntsecuritydescriptor_2020-09-21130944.excerpt-5136-4662.json",
    f"{OTRF}/empire_wmic_add_user_backdoor_2020-09-14080546.excerpt-account-mgmt.json",
    f"{MDE}/ID6-Failed to install an Exchange transport agent.evtx",
    f"{OTRF}/proxylogon_ssrf_rce_poc_2021-03-14T01401970.excerpt-msexchange-management.json",
])
def test_real_files_without_delegation_stay_quiet(corpus, name):
    result = hunt([str(corpus / name)], jobs=1)
    assert result.stats.records_parsed > 0
    assert result.findings == []


def test_real_exchange_cmdlet_logs(corpus):
    stats = ReadStats()
    [rec] = list(read_file(str(corpus / "omerbenamram-evtx" / "MSExchange_Management_wec.evtx"), stats))
    assert rec.family == "m365" and rec.data["Operation"] == "Set-Mailbox" and rec.data["Id"] == "3229"
    assert rec.data["UserId"] == "ave.local/Users/Administrateur"
    assert {p["Name"]: p["Value"] for p in rec.data["Parameters"]}["ForwardingSmtpAddress"] == "smtp:test2@example.com"
    result = hunt([str(corpus / "omerbenamram-evtx" / "MSExchange_Management_wec.evtx")], jobs=1)
    assert [f.rule for f in result.findings] == ["m365_mail_forwarding"]  # forwarding, not a grant
    recs = list(read_file(str(corpus / MDE / "ID6-Failed to install an Exchange transport agent.evtx"), ReadStats()))
    assert [r.data["Operation"] for r in recs] == ["Install-TransportAgent"] * 2 + ["Enable-TransportAgent"] * 2
    assert {r.data["ResultStatus"] for r in recs} == {"False"}
    assert recs[0].data["UserId"] == "offsec.lan/OFFSEC-COMPANY/Administrators/admmig"
    nx = list(read_file(str(corpus / OTRF / "proxylogon_ssrf_rce_poc_2021-03-14T01401970.excerpt-msexchange-management.json"),
                        ReadStats()))
    assert [r.data["Operation"] for r in nx] == ["Set-OabVirtualDirectory", "Remove-OabVirtualDirectory",
                                                 "New-OabVirtualDirectory"]
    assert {p["Name"]: p["Value"] for p in nx[0].data["Parameters"]}["Identity"] == "OAB (Default Web Site)"


def test_real_5136_pairs_are_compared(corpus):
    recs = list(read_file(str(corpus / SBO / "privexchange_dirkjan.evtx"), ReadStats()))
    [added] = [r.data for r in recs if r.data["EventID"] == 5136 and r.data["OperationType"] == "%%14674"]
    assert added["SddlAddedAces"].count("(OA;;CR;1131f6a") == 2 and SEND_AS not in added["SddlAddedAces"]


def test_evtx_and_xml_renderings_agree(corpus, tmp_path):
    import evtx

    path = corpus / SBO / "privexchange_dirkjan.evtx"
    xml = "".join(r["data"].split("?>", 1)[1] for r in evtx.PyEvtxParser(str(path)).records())
    (tmp_path / "same.xml").write_text(xml, encoding="utf-8")

    def norm(d):
        return {k: v.replace("\r\n", "\n") if isinstance(v, str) else v for k, v in d.items()}
    a = [norm(r.data) for r in read_file(str(path), ReadStats())]
    b = [norm(r.data) for r in read_file(str(tmp_path / "same.xml"), ReadStats())]
    assert a == b and len(a) == 8


# -- events and identities -------------------------------------------------------------------------
DIRECTORY = (
    "id,userPrincipalName,displayName,userType,accountEnabled,mail,onPremisesDistinguishedName,"
    "onPremisesSamAccountName,onPremisesDomainName,onPremisesSecurityIdentifier,mailNickname\n"
    "51eb55af-0000-0000-0000-000000000001,eve@corp.example,Eve Adams,Member,true,eve@corp.example,"
    "\"CN=Eve Adams,OU=Staff,DC=corp,DC=example\",eve,corp.example,S-1-5-21-3457937927-2839227994-823803824-1607,eve.adams\n"
    "51eb55af-0000-0000-0000-000000000002,ceo@corp.example,Chief Exec,Member,true,ceo@corp.example,"
    "\"CN=CEO,OU=Exec,DC=corp,DC=example\",ceo,corp.example,S-1-5-21-3457937927-2839227994-823803824-1500,ceo\n"
    "51eb55af-0000-0000-0000-000000000003,admin@corp.example,Administrator,Member,true,,"
    "\"CN=Administrator,CN=Users,DC=corp,DC=example\",Administrator,corp.example,,\n"
)


def test_identity_across_sources(tmp_path):
    path = tmp_path / "users.csv"
    path.write_text(DIRECTORY, encoding="utf-8")
    resolver = Resolver(Directory.load(str(path)))
    names = ["eve@corp.example", "CN=Eve Adams,OU=Staff,DC=corp,DC=example", "cn=eve adams, ou=staff,dc=corp,dc=example",
             "CORP\\eve", "corp.example\\eve", "corp.example/Staff/Eve Adams", "eve.adams", "Eve Adams",
             "S-1-5-21-3457937927-2839227994-823803824-1607", "51eb55af-0000-0000-0000-000000000001"]
    for raw in names:
        p = resolver.resolve(raw)
        assert p.upn == "eve@corp.example" and p.kind is Kind.USER, raw
    assert resolver.resolve("corp.example/Users/Administrator").upn == "admin@corp.example"
    assert resolver.resolve("CORP\\nobody").upn is None


def test_windows_mapper_events(tmp_path):
    path = tmp_path / "users.csv"
    path.write_text(DIRECTORY, encoding="utf-8")
    resolver = Resolver(Directory.load(str(path)))
    xml = tmp_path / "sec.xml"
    xml.write_text("".join(xml_event(e, r, d) for e, r, d, _ in SECURITY_CASES), encoding="utf-8")
    mapper = mapper_for("windows", resolver)
    by_id = {r.data["Id"]: mapper.events(r) for r in read_file(str(xml), ReadStats())}
    [sob] = by_id["410301"]
    assert isinstance(sob, PermissionChange) and sob.scope is Scope.SEND_ON_BEHALF and sob.action is Action.GRANT
    assert sob.mailbox.upn == "ceo@corp.example" and sob.grantee.upn == "eve@corp.example"
    assert by_id["410302"][0].action is Action.REVOKE
    [fa] = by_id["410303"]
    assert fa.scope is Scope.MAILBOX and fa.rights == frozenset({"FullAccess"})
    [sa] = by_id["410306"]
    assert sa.scope is Scope.SEND_AS and sa.grantee.upn == "eve@corp.example" and sa.mailbox.upn == "ceo@corp.example"
    assert by_id["410308"] == []  # no new Send-As ACE
    [grp] = by_id["410311"]
    assert grp.scope is Scope.ROLE_GROUP and grp.target == "Organization Management" and grp.grantee.upn == "eve@corp.example"
    assert by_id["410314"][0].action is Action.REVOKE
    assert by_id["410309"] == [] and by_id["410310"] == []


def test_hunt_with_directory_names_the_same_person(tmp_path):
    users = tmp_path / "users.csv"
    users.write_text(DIRECTORY, encoding="utf-8")
    xml = tmp_path / "all.xml"
    xml.write_text("".join(all_xml_events()), encoding="utf-8")
    result = hunt([str(xml)], directory=Directory.load(str(users)), jobs=1)
    by_id = {f.evidence[0].record_id: f for f in result.findings}
    assert by_id["410301"].grantee == by_id["5001"].grantee == by_id["410306"].grantee == "eve@corp.example"
    assert by_id["5001"].actor == "admin@corp.example"  # canonical name of the caller
