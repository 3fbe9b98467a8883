"""Exchange admin-audit and mailbox-audit exports (XML and CSV) → UAL-shaped records → cloud rules.

Fixtures are written here as the exports look (formats.md §4.1, §4.3; docs/formats-exchange.md):
the admin XML follows the documented log-structure sample, the CSVs are PowerShell ``Export-Csv``
output (``#TYPE`` line, every field quoted, CRLF, BOM).
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from delegatewatch.engine.hunt import hunt
from delegatewatch.events.model import MailboxAccess, MailSend, PermissionChange
from delegatewatch.events.principals import Kind, Resolver
from delegatewatch.events.ual import UalMapper
from delegatewatch.records import ReadStats
from delegatewatch.sources import read_file
from delegatewatch.sources.detect import detect
from delegatewatch.sources.formats import exchange_audit as X
from delegatewatch.sources.formats import exchange_audit_map as M
from delegatewatch.sources.opening import sniff

# -- fixtures ---------------------------------------------------------------------------------------
ADMIN_XML = """<?xml version="1.0" encoding="utf-8"?>
<SearchResults>
  <Event Caller="corp.contoso.com/Users/Administrator" Cmdlet="Set-Mailbox" ObjectModified="corp.contoso.com/Users/david" RunDate="2024-03-05T08:02:11-08:00" Succeeded="true" Error="None" OriginatingServer="EXMBX01 (15.02.1258.012)">
    <CmdletParameters>
      <Parameter Name="Identity" Value="david" />
      <Parameter Name="ProhibitSendReceiveQuota" Value="10 GB (10,737,418,240 bytes)" />
    </CmdletParameters>
    <ModifiedProperties>
      <Property Name="ProhibitSendReceiveQuota" OldValue="35 GB (37,580,963,840 bytes)" NewValue="10 GB (10,737,418,240 bytes)" />
    </ModifiedProperties>
  </Event>
  <Event Caller="corp.contoso.com/Users/helpdesk07" Cmdlet="Add-MailboxPermission" ObjectModified="corp.contoso.com/Users/Chief Executive" RunDate="2024-03-05T09:14:22-08:00" Succeeded="true" Error="None" OriginatingServer="EXMBX01 (15.02.1258.012)">
    <CmdletParameters>
      <Parameter Name="Identity" Value="ceo@contoso.com" />
      <Parameter Name="User" Value="CONTOSO\\eve" />
      <Parameter Name="AccessRights" Value="FullAccess" />
      <Parameter Name="InheritanceType" Value="All" />
    </CmdletParameters>
    <ModifiedProperties />
  </Event>
  <Event Caller="corp.contoso.com/Users/helpdesk07" Cmdlet="Add-ADPermission" ObjectModified="CN=Chief Executive,OU=Users,DC=corp,DC=contoso,DC=com" RunDate="2024-03-05T09:16:40-08:00" Succeeded="true" Error="None" OriginatingServer="EXMBX01 (15.02.1258.012)">
    <CmdletParameters>
      <Parameter Name="Identity" Value="Chief Executive" />
      <Parameter Name="User" Value="CONTOSO\\eve" />
      <Parameter Name="ExtendedRights" Value="Send-As" />
    </CmdletParameters>
  </Event>
  <Event Caller="corp.contoso.com/Users/helpdesk07" Cmdlet="Set-MailboxFolderPermission" ObjectModified="ceo:\\Inbox" RunDate="2024-03-05T09:20:03-08:00" Succeeded="true" Error="None" OriginatingServer="EXMBX01 (15.02.1258.012)">
    <CmdletParameters>
      <Parameter Name="Identity" Value="ceo@contoso.com:\\Inbox" />
      <Parameter Name="User" Value="Default" />
      <Parameter Name="AccessRights" Value="Reviewer" />
    </CmdletParameters>
  </Event>
</SearchResults>
"""

QUIET_XML = """<?xml version="1.0" encoding="utf-8"?>
<SearchResults>
  <Event Caller="corp.contoso.com/Users/Administrator" Cmdlet="Remove-MailboxPermission" ObjectModified="corp.contoso.com/Users/Chief Executive" RunDate="2024-03-06T10:00:00+01:00" Succeeded="true" Error="None" OriginatingServer="EXMBX01 (15.02.1258.012)">
    <CmdletParameters>
      <Parameter Name="Identity" Value="ceo@contoso.com" />
      <Parameter Name="User" Value="CONTOSO\\eve" />
      <Parameter Name="AccessRights" Value="FullAccess" />
      <Parameter Name="Confirm" Value="False" />
    </CmdletParameters>
  </Event>
  <Event Caller="corp.contoso.com/Users/helpdesk07" Cmdlet="Add-MailboxPermission" ObjectModified="" RunDate="2024-03-06T10:05:00+01:00" Succeeded="false" Error="The operation couldn't be performed because object 'cfo' couldn't be found on 'DC01.corp.contoso.com'." OriginatingServer="EXMBX01 (15.02.1258.012)">
    <CmdletParameters>
      <Parameter Name="Identity" Value="cfo" />
      <Parameter Name="User" Value="CONTOSO\\eve" />
      <Parameter Name="AccessRights" Value="FullAccess" />
    </CmdletParameters>
  </Event>
</SearchResults>
"""

ADMIN_CSV_HEADER = ('"RunspaceId","ObjectModified","CmdletName","CmdletParameters","ModifiedProperties","Caller",'
                    '"ExternalAccess","Succeeded","Error","RunDate","OriginatingServer","Identity","IsValid","ObjectState"')


def admin_row(obj: str, cmdlet: str, params: str, caller: str, succeeded: str, run_date: str, n: int,
              error: str = "") -> str:
    return (f'"6f0c2a1e-3a0b-4c2e-9a57-2b5b9f1e{n:04d}","{obj}","{cmdlet}","{params}","","{caller}",'
            f'"False","{succeeded}","{error}","{run_date}","EXMBX01 (15.02.1258.012)",'
            f'"RgAAAACxWPxWpIWSQbaZWFSy{n:04d}","True","New"')


# The same Add-MailboxPermission as in ADMIN_XML (09:14:22-08:00 = 17:14:22 UTC), parameters expanded
# one per line ("Name=Value", the audit entry's own spelling), on a machine that exports in UTC.
ADMIN_CSV = "\r\n".join([
    "#TYPE Deserialized.Microsoft.Exchange.Management.SystemConfigurationTasks.AdminAuditLogEvent",
    ADMIN_CSV_HEADER,
    admin_row("corp.contoso.com/Users/Chief Executive", "Add-MailboxPermission",
              "Identity=ceo@contoso.com\nUser=CONTOSO\\eve\nAccessRights=FullAccess\nInheritanceType=All",
              "corp.contoso.com/Users/helpdesk07", "True", "3/5/2024 5:14:22 PM", 1),
    # a broken row: the quote around the parameters is never closed
    ('"6f0c2a1e-3a0b-4c2e-9a57-2b5b9f1e0002","corp.contoso.com/Users/x","Set-Mailbox","{Identity=x, '
     'IssueWarningQuota=9 GB,"","corp.contoso.com/Users/Administrator","False","True","","3/5/2024 5:20:00 PM",'
     '"EXMBX01 (15.02.1258.012)","RgAAAACxWPxWpIWSQbaZWFSy0002","True","New"'),
    admin_row("CN=Chief Financial Officer,OU=Users,DC=corp,DC=contoso,DC=com", "Add-ADPermission",
              "{Identity=Chief Financial Officer, User=CONTOSO\\eve, ExtendedRights=Send-As}",
              "corp.contoso.com/Users/helpdesk07", "True", "3/5/2024 5:31:09 PM", 3),
    admin_row("corp.contoso.com/Users/Chief Executive", "Add-MailboxPermission",
              "Identity : cfo@contoso.com; User : CONTOSO\\eve; AccessRights : DeleteItem, ReadPermission, FullAccess",
              "corp.contoso.com/Users/helpdesk07", "True", "3/5/2024 5:40:51 PM", 4),
]) + "\r\n"

MAILBOX_CSV_COLUMNS = [
    "Operation", "OperationResult", "LogonType", "ExternalAccess", "DestFolderId", "DestFolderPathName", "FolderId",
    "FolderPathName", "FolderName", "MemberRights", "MemberSid", "MemberUpn", "ClientInfoString", "ClientIPAddress",
    "ClientIP", "ClientMachineName", "ClientProcessName", "ClientVersion", "InternalLogonType", "MailboxOwnerUPN",
    "MailboxOwnerSid", "DestMailboxOwnerUPN", "DestMailboxOwnerSid", "DestMailboxGuid", "CrossMailboxOperation",
    "LogonUserDisplayName", "LogonUserSid", "SourceItems", "SourceFolders", "SourceItemIdsList",
    "SourceItemSubjectsList", "SourceItemAttachmentsList", "SourceItemFolderPathNamesList",
    "SourceFolderPathNamesList", "SourceItemInternetMessageIdsList", "ItemId", "ItemSubject", "ItemAttachments",
    "ItemInternetMessageId", "DirtyProperties", "OriginatingServer", "SessionId", "OperationProperties",
    "AuditOperationsCountInAggregatedRecord", "AggregatedRecordFoldersData", "AppId", "ClientAppId", "ItemIsRecord",
    "ItemComplianceLabel", "MailboxGuid", "MailboxResolvedOwnerName", "LastAccessed", "Identity", "IsValid",
    "ObjectState",
]
OWNER_SID = "S-1-5-21-3422892061-1135328251-2670905592-1151"
EVE_SID = "S-1-5-21-3422892061-1135328251-2670905592-4242"


def mailbox_row(**values: str) -> str:
    base = {"OperationResult": "Succeeded", "ExternalAccess": "False", "ClientIPAddress": "203.0.113.7",
            "ClientInfoString": "Client=OWA;Action=ViaProxy", "MailboxOwnerUPN": "ceo@contoso.com",
            "MailboxOwnerSid": OWNER_SID, "CrossMailboxOperation": "False",
            "MailboxGuid": "6d4fbdae-e3ae-4530-8d0b-f62a14687939", "MailboxResolvedOwnerName": "CONTOSO\\ceo",
            "OriginatingServer": "EXMBX01 (15.02.1258.012)\n", "IsValid": "True", "ObjectState": "New",
            "SourceItems": "System.Collections.ArrayList"}
    base.update(values)
    return ",".join('"' + base.get(c, "").replace('"', '""') + '"' for c in MAILBOX_CSV_COLUMNS)


MAILBOX_CSV = "\ufeff" + "\r\n".join([
    ",".join(f'"{c}"' for c in MAILBOX_CSV_COLUMNS),
    mailbox_row(Operation="MailboxLogin", LogonType="Delegate", InternalLogonType="Delegated",
                LogonUserDisplayName="eve@contoso.com", LogonUserSid=EVE_SID, LastAccessed="3/5/2024 6:02:10 PM"),
    mailbox_row(Operation="SendAs", LogonType="Delegate", LogonUserDisplayName="eve@contoso.com",
                LogonUserSid=EVE_SID, ItemSubject="Urgent: updated wire instructions",
                ItemId="RgAAAACxWPxWpIWSQbaZWFSyBwCo", FolderPathName="\\Sent Items",
                LastAccessed="3/5/2024 6:10:44 PM"),
    mailbox_row(Operation="SendOnBehalf", LogonType="Delegate", LogonUserDisplayName="Eve Adams",
                LogonUserSid=EVE_SID, ItemSubject="Invoice 4471 overdue", LastAccessed="3/5/2024 6:12:01 PM"),
    mailbox_row(Operation="ModifyFolderPermissions", LogonType="Owner", LogonUserDisplayName="Chief Executive",
                LogonUserSid=OWNER_SID, FolderPathName="\\Inbox", FolderName="Inbox", MemberUpn="Default",
                MemberSid="S-1-1-0", MemberRights="ReadAny, Visible", ClientInfoString="Client=MSExchangeRPC",
                LastAccessed="3/5/2024 6:20:00 PM"),
    mailbox_row(Operation="ModifyFolderPermissions", LogonType="Owner", LogonUserDisplayName="Chief Executive",
                LogonUserSid=OWNER_SID, FolderPathName="\\Calendar", FolderName="Calendar", MemberUpn="Default",
                MemberRights="FreeBusySimple", LastAccessed="3/5/2024 6:21:00 PM"),
    mailbox_row(Operation="FolderBind", LogonType="Delegate", LogonUserDisplayName="eve@contoso.com",
                LogonUserSid=EVE_SID, FolderPathName="\\Inbox", LastAccessed="3/5/2024 6:03:00 PM"),
]) + "\r\n"

MAILBOX_XML = """<?xml version="1.0" encoding="utf-8"?>
<SearchResults>
  <Event MailboxGuid="6d4fbdae-e3ae-4530-8d0b-f62a14687939" Owner="CONTOSO\\ceo" LastAccessed="2024-03-05T10:10:44.140625-08:00" Operation="SendAs" OperationResult="Succeeded" LogonType="Delegate" FolderPathName="\\Sent Items" ClientInfoString="Client=OWA;Action=ViaProxy" ClientIPAddress="203.0.113.7" InternalLogonType="Delegated" MailboxOwnerUPN="ceo@contoso.com" MailboxOwnerSid="S-1-5-21-3422892061-1135328251-2670905592-1151" CrossMailboxOperation="false" LogonUserDN="Eve Adams" LogonUserSid="S-1-5-21-3422892061-1135328251-2670905592-4242">
    <SourceItems>
      <SourceItem ItemId="RgAAAACxWPxWpIWSQbaZWFSyBwCo" Subject="Urgent: updated wire instructions" FolderPathName="\\Sent Items" />
    </SourceItems>
  </Event>
</SearchResults>
"""


def write(tmp_path: Path, name: str, text: str, encoding: str = "utf-8") -> Path:
    p = tmp_path / name
    p.write_bytes(text.encode(encoding))
    return p


def read(path: Path) -> tuple[list, ReadStats]:
    stats = ReadStats()
    return list(read_file(str(path), stats)), stats


def rules_fired(result) -> list[str]:
    return sorted(f.rule for f in result.findings)


# -- detection ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("text,dialect", [
    (ADMIN_XML, X.XML), (MAILBOX_XML, X.XML), (ADMIN_CSV, X.ADMIN_CSV), (MAILBOX_CSV, X.MAILBOX_CSV),
    ("RunDate;Caller;CmdletName;CmdletParameters\n2024-03-05 17:14:22;a;Set-Mailbox;Identity=x\n", X.ADMIN_CSV),
])
def test_detected_by_content_not_name(tmp_path, text, dialect):
    found = detect(sniff(str(write(tmp_path, "evidence.txt", text))))
    assert (found.dialect, found.family) == (dialect, "m365")


def test_ual_csv_and_other_xml_are_not_claimed(tmp_path):
    ual_csv = '"RecordType","CreationDate","UserIds","Operations","AuditData"\n"ExchangeAdmin","x","y","z","{}"\n'
    assert detect(sniff(str(write(tmp_path, "a.csv", ual_csv)))).dialect not in (X.ADMIN_CSV, X.MAILBOX_CSV)
    assert detect(sniff(str(write(tmp_path, "b.xml", "<Events><Event/></Events>")))).dialect != X.XML


# -- admin audit: record shape --------------------------------------------------------------------------
def test_admin_xml_becomes_exchange_admin_records(tmp_path):
    records, stats = read(write(tmp_path, "admin.xml", ADMIN_XML))
    assert [r.data["Operation"] for r in records] == [
        "Set-Mailbox", "Add-MailboxPermission", "Add-ADPermission", "Set-MailboxFolderPermission"]
    grant = records[1]
    d = grant.data
    assert d["CreationTime"] == "2024-03-05T17:14:22"  # -08:00 → UTC, no zone, no fraction
    assert d["UserId"] == "corp.contoso.com/Users/helpdesk07"  # canonical name kept as is
    assert d["ObjectId"] == "corp.contoso.com/Users/Chief Executive"
    assert (d["RecordType"], d["UserType"], d["Workload"], d["ResultStatus"], d["Source"]) == (
        1, 2, "Exchange", "True", "AdminAuditLog")
    assert d["Parameters"] == [{"Name": "Identity", "Value": "ceo@contoso.com"}, {"Name": "User", "Value": "CONTOSO\\eve"},
                               {"Name": "AccessRights", "Value": "FullAccess"}, {"Name": "InheritanceType", "Value": "All"}]
    assert grant.line == 12 and grant.family == "m365" and stats.records_parsed == 4 and not stats.issues
    assert records[0].data["ModifiedProperties"] == [{"Name": "ProhibitSendReceiveQuota",
                                                      "NewValue": "10 GB (10,737,418,240 bytes)",
                                                      "OldValue": "35 GB (37,580,963,840 bytes)"}]
    assert len({r.data["Id"] for r in records}) == 4


def test_repeated_parameter_elements_are_one_multi_valued_parameter():
    params = M.parameter_list([("AccessRights", "ReadPermission"), ("AccessRights", "FullAccess"), ("User", "x")])
    assert params == [{"Name": "AccessRights", "Value": "ReadPermission, FullAccess"}, {"Name": "User", "Value": "x"}]
    assert M.parameter_list([("AccessRights", "{ReadPermission,FullAccess}")])[0]["Value"] == "ReadPermission, FullAccess"


@pytest.mark.parametrize("text,expected", [
    ("{Identity=ceo, User=CONTOSO\\eve, AccessRights=FullAccess}",
     [("Identity", "ceo"), ("User", "CONTOSO\\eve"), ("AccessRights", "FullAccess")]),
    ("Identity=ceo\nAccessRights=DeleteItem, ReadPermission, FullAccess",
     [("Identity", "ceo"), ("AccessRights", "DeleteItem, ReadPermission, FullAccess")]),
    ("Identity : ceo:\\Inbox; User : Default; AccessRights : Reviewer",
     [("Identity", "ceo:\\Inbox"), ("User", "Default"), ("AccessRights", "Reviewer")]),
    ("Identity=CN=CEO, OU=Users, DC=contoso, DC=com; ExtendedRights=Send-As",
     [("Identity", "CN=CEO, OU=Users, DC=contoso, DC=com"), ("ExtendedRights", "Send-As")]),
    ("Identity=Doe, John, User=x", [("Identity", "Doe, John"), ("User", "x")]),
    ('-Identity "ceo@contoso.com" -User eve -AccessRights "FullAccess" -Confirm:$false',
     [("Identity", "ceo@contoso.com"), ("User", "eve"), ("AccessRights", "FullAccess"), ("Confirm", "$false")]),
    ('Identity=ceo; GrantSendOnBehalfTo=@{Add="a","b"; Remove="c"}',
     [("Identity", "ceo"), ("GrantSendOnBehalfTo", '@{Add="a","b"; Remove="c"}')]),
])
def test_parameter_text_spellings(text, expected):
    assert M.parse_parameter_text(text) == expected


@pytest.mark.parametrize("text", ["System.Collections.ArrayList", "{Identity, User, AccessRights}",
                                  ("Microsoft.Exchange.Data.MultiValuedProperty`1[Microsoft.Exchange.Data."
                                   "AdminAuditLogCmdletParameter]"), "'Identity', 'User'"])
def test_unexpanded_parameter_collection_is_recognised_as_lost(text):
    with pytest.raises(M.ValuesLost):
        M.parse_parameter_text(text)


def test_raw_export_csv_keeps_the_record_and_says_values_are_lost(tmp_path):
    text = "\n".join([ADMIN_CSV_HEADER, admin_row("corp.contoso.com/Users/ceo", "Add-MailboxPermission",
                                                  "{Identity, User, AccessRights}", "corp.contoso.com/Users/a",
                                                  "True", "2024-03-05 17:14:22", 9)])
    records, stats = read(write(tmp_path, "raw.csv", text))
    assert len(records) == 1 and "Parameters" not in records[0].data
    assert stats.warnings == 1 and "values" in stats.issues[0].message and stats.skipped == 0


@pytest.mark.parametrize("value,order,expected", [
    ("3/5/2024 5:14:22 PM", "mdy", "2024-03-05T17:14:22"),
    ("5/3/2024 17:14:22", "dmy", "2024-03-05T17:14:22"),
    ("05.03.2024 17:14:22", "mdy", "2024-03-05T17:14:22"),
    ("2024-03-05 17:14:22", "mdy", "2024-03-05T17:14:22"),
    ("2024-03-05T09:14:22.5-08:00", "mdy", "2024-03-05T17:14:22"),
])
def test_run_date_spellings(value, order, expected):
    assert M.ual_time(M.parse_when(value, order)) == expected


def test_day_first_csv_is_recognised_from_its_rows(tmp_path):
    rows = [admin_row("o", "Set-Mailbox", "Identity=a", "c", "True", d, i)
            for i, d in enumerate(["04/03/2024 10:00:00", "25/03/2024 10:00:00"])]
    records, _ = read(write(tmp_path, "gb.csv", "\n".join([ADMIN_CSV_HEADER, *rows])))
    assert [r.data["CreationTime"] for r in records] == ["2024-03-04T10:00:00", "2024-03-25T10:00:00"]


# -- admin audit: through the hunt ---------------------------------------------------------------------
def test_full_access_fires_from_xml_and_csv_and_the_shared_event_counts_once(tmp_path):
    xml = write(tmp_path, "AdminAuditLogSearch.xml", ADMIN_XML)
    csv_path = write(tmp_path, "adminaudit.csv", "\ufeff" + ADMIN_CSV)
    result = hunt([str(xml), str(csv_path)], jobs=1)
    full = [f for f in result.findings if f.rule == "m365_mailbox_full_access_grant"]
    # ceo (in both exports: once) and cfo (CSV only, multi-valued AccessRights in "Name : Value" form)
    assert sorted(f.mailbox or "" for f in full) == ["ceo@contoso.com", "cfo@contoso.com"]
    assert result.stats.duplicates == 1
    ceo = next(f for f in full if f.mailbox == "ceo@contoso.com")
    assert ceo.time == "2024-03-05T17:14:22Z" and ceo.evidence[0].source == str(xml)
    send_as = [f for f in result.findings if f.rule == "m365_send_as_grant"]
    assert len(send_as) == 2  # XML (Chief Executive) and CSV (Chief Financial Officer)
    assert "m365_folder_default_anonymous_cmdlet" in rules_fired(result)
    # the broken CSV row is reported with its line, the rows after it are read
    broken = [i for i in result.stats.issues if i.source == str(csv_path) and i.skipped]
    assert [(i.line, i.skipped) for i in broken] == [(7, True)] and "quot" in broken[0].message


def test_admin_records_give_typed_permission_events(tmp_path):
    records, _ = read(write(tmp_path, "admin.xml", ADMIN_XML))
    mapper = UalMapper(Resolver())
    events = [e for r in records for e in mapper.events(r)]
    grants = {(e.operation, e.scope.value, e.grantee.raw) for e in events if isinstance(e, PermissionChange)}
    assert ("Add-MailboxPermission", "mailbox", "CONTOSO\\eve") in grants
    assert ("Add-ADPermission", "send_as", "CONTOSO\\eve") in grants
    folder = next(e for e in events if e.operation == "Set-MailboxFolderPermission")
    assert folder.folder == "\\Inbox" and folder.grantee.kind is Kind.DEFAULT and "ReadItems" in folder.rights


def test_removal_and_failed_grant_stay_quiet(tmp_path):
    result = hunt([str(write(tmp_path, "quiet.xml", QUIET_XML))], jobs=1)
    assert result.findings == []
    assert result.stats.records_parsed == 2 and not result.stats.issues


def test_failed_flag_comes_from_succeeded_or_error():
    failed = M.admin_record({"Cmdlet": "Add-MailboxPermission", "Error": "Access denied"}, [], None, None)
    ok = M.admin_record({"Cmdlet": "Add-MailboxPermission", "Succeeded": "true", "Error": "None"}, [], None, None)
    assert failed["ResultStatus"] == "False" and "CreationTime" not in failed
    assert ok["ResultStatus"] == "True" and "Error" not in ok
    system = M.admin_record({"Cmdlet": "Add-MailboxPermission", "Caller": "NT AUTHORITY\\SYSTEM (MSExchangeHMHost)"},
                            [], None, None)
    assert system["UserType"] == 4


# -- mailbox audit ----------------------------------------------------------------------------------------
def test_mailbox_csv_records_have_the_ual_mailbox_shape(tmp_path):
    records, stats = read(write(tmp_path, "mbx.csv", MAILBOX_CSV))
    assert len(records) == 6 and stats.skipped == 0
    # every date has day and month <= 12: read as en-US, and the analyst is told
    (note,) = stats.issues
    assert not note.skipped and "month/day" in note.message and note.line == 2
    send_as = next(r.data for r in records if r.data["Operation"] == "SendAs")
    assert send_as["RecordType"] == 2 and send_as["LogonType"] == 2 and send_as["ResultStatus"] == "Succeeded"
    assert send_as["UserId"] == "eve@contoso.com" and send_as["MailboxOwnerUPN"] == "ceo@contoso.com"
    assert send_as["CreationTime"] == "2024-03-05T18:10:44" and send_as["ClientIPAddress"] == "203.0.113.7"
    assert send_as["Item"]["Subject"] == "Urgent: updated wire instructions"
    assert send_as["Item"]["ParentFolder"]["Path"] == "\\Sent Items"
    assert send_as["CrossMailboxOperation"] is False and "InternalLogonType" not in send_as
    assert next(r.data for r in records if r.data["Operation"] == "MailboxLogin")["InternalLogonType"] == 2
    assert "IsValid" not in send_as and "SourceItems" in send_as  # raw export columns are kept, PS metadata not
    folder = next(r.data for r in records if r.data["Operation"] == "ModifyFolderPermissions")
    assert folder["LogonType"] == 0 and folder["UserId"] == "ceo@contoso.com"
    assert folder["Item"]["ParentFolder"] == {"Path": "\\Inbox", "Name": "Inbox", "MemberUpn": "Default",
                                              "MemberSid": "S-1-1-0", "MemberRights": "ReadAny, Visible"}


def test_mailbox_send_as_and_on_behalf_become_delegate_mail_sends(tmp_path):
    records, _ = read(write(tmp_path, "mbx.csv", MAILBOX_CSV))
    mapper = UalMapper(Resolver())
    events = {r.data["Operation"]: mapper.events(r) for r in records}
    for op in ("SendAs", "SendOnBehalf"):
        (send,) = events[op]
        assert isinstance(send, MailSend) and send.as_delegate and send.mailbox.name == "ceo@contoso.com"
    assert events["SendAs"][0].subject == "Urgent: updated wire instructions"
    (login,) = events["MailboxLogin"]
    assert isinstance(login, MailboxAccess) and login.non_owner and login.logon_type == 2


def test_mailbox_folder_permission_to_default_fires_the_audit_rule(tmp_path):
    result = hunt([str(write(tmp_path, "mbx.csv", MAILBOX_CSV))], jobs=1)
    fired = [f for f in result.findings if f.rule == "m365_folder_default_anonymous_audit"]
    assert len(fired) == 1 and fired[0].folder == "\\Inbox"  # the calendar free/busy row stays quiet


def test_mailbox_xml_and_csv_copy_of_one_send_as_count_once(tmp_path):
    (xml_rec,), _ = read(write(tmp_path, "SearchResult.xml", MAILBOX_XML))
    csv_recs, _ = read(write(tmp_path, "mbx.csv", MAILBOX_CSV))
    csv_send_as = next(r for r in csv_recs if r.data["Operation"] == "SendAs")
    assert xml_rec.data["Id"] == csv_send_as.data["Id"]
    assert xml_rec.data["Item"]["Subject"] == "Urgent: updated wire instructions"
    assert xml_rec.data["MailboxResolvedOwnerName"] == "CONTOSO\\ceo" and xml_rec.data["UserId"] == "Eve Adams"


# -- malformed and hostile input --------------------------------------------------------------------------
def test_truncated_xml_keeps_every_complete_event(tmp_path):
    cut = ADMIN_XML.index("Cmdlet=\"Set-MailboxFolderPermission\"")
    path = write(tmp_path, "cut.xml", ADMIN_XML[:cut])
    records, stats = read(path)
    assert [r.data["Operation"] for r in records] == ["Set-Mailbox", "Add-MailboxPermission", "Add-ADPermission"]
    (issue,) = stats.issues
    assert issue.line == 28 and issue.skipped and "truncated" in issue.message and str(path) in str(issue)


def test_truncated_between_events_loses_nothing(tmp_path):
    cut = ADMIN_XML.index("</SearchResults>")
    records, stats = read(write(tmp_path, "cut.xml", ADMIN_XML[:cut]))
    assert len(records) == 4 and stats.skipped == 0 and stats.warnings == 1


def test_broken_event_costs_only_that_event(tmp_path):
    bad = ADMIN_XML.replace('Value="CONTOSO\\eve" />\n      <Parameter Name="ExtendedRights"',
                            'Value="CONTOSO\\eve <oops" />\n      <Parameter Name="ExtendedRights"')
    path = write(tmp_path, "bad.xml", bad)
    records, stats = read(path)
    assert [r.data["Operation"] for r in records] == ["Set-Mailbox", "Add-MailboxPermission",
                                                      "Set-MailboxFolderPermission"]
    assert records[-1].line == 28  # line numbers stay right after re-synchronising
    (issue,) = stats.issues
    assert issue.line == 21 and issue.skipped and "malformed XML" in issue.message
    assert stats.records_seen == 4 and stats.skipped == 1


BOMB = """<?xml version="1.0"?>
<!DOCTYPE SearchResults [
  <!ENTITY a "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa">
  <!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">
  <!ENTITY c "&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;">
  <!ENTITY d "&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;">
  <!ENTITY e "&d;&d;&d;&d;&d;&d;&d;&d;&d;&d;&d;&d;&d;&d;&d;&d;">
  <!ENTITY f "&e;&e;&e;&e;&e;&e;&e;&e;&e;&e;&e;&e;&e;&e;&e;&e;">
  <!ENTITY g "&f;&f;&f;&f;&f;&f;&f;&f;&f;&f;&f;&f;&f;&f;&f;&f;">
]>
<SearchResults>
  <Event Caller="&g;" Cmdlet="Set-Mailbox" ObjectModified="x" RunDate="2024-03-05T08:02:11Z" Succeeded="true" />
</SearchResults>
"""


@pytest.mark.parametrize("doc", [
    BOMB,
    ("""<?xml version="1.0"?>\n<!DOCTYPE SearchResults [ <!ENTITY xxe SYSTEM "http://127.0.0.1:9/x"> ]>\n"""
     """<SearchResults><Event Caller="&xxe;" Cmdlet="Set-Mailbox" RunDate="2024-03-05T08:02:11Z"/></SearchResults>"""),
    ("""<?xml version="1.0"?>\n<!DOCTYPE SearchResults SYSTEM "file:///etc/passwd">\n"""
     """<SearchResults><Event Cmdlet="Set-Mailbox" RunDate="2024-03-05T08:02:11Z"/></SearchResults>"""),
])
def test_dtd_entities_are_refused_never_expanded_or_fetched(tmp_path, doc):
    path = write(tmp_path, "evil.xml", doc)
    assert detect(sniff(str(path))).dialect == X.XML
    started = time.perf_counter()
    records, stats = read(path)
    assert time.perf_counter() - started < 1
    assert records == []
    (issue,) = stats.issues
    assert issue.skipped and "refused" in issue.message and issue.line == 2


def test_undeclared_entity_reference_costs_one_event(tmp_path):
    doc = ADMIN_XML.replace('Caller="corp.contoso.com/Users/Administrator"', 'Caller="&xxe;"')
    records, stats = read(write(tmp_path, "ent.xml", doc))
    assert len(records) == 3 and stats.skipped == 1 and stats.issues[0].line == 3
    assert stats.records_seen == 4 and "undefined entity" in stats.issues[0].message


def test_utf16_xml_with_its_declaration(tmp_path):
    doc = ADMIN_XML.replace('encoding="utf-8"', 'encoding="utf-16"')
    records, stats = read(write(tmp_path, "u16.xml", "\ufeff" + doc, "utf-16-le"))
    assert len(records) == 4 and not stats.issues


def test_csv_rows_after_broken_rows_are_all_read(tmp_path):
    rows = [admin_row("o", "Set-Mailbox", f"Identity=m{i}", "c", "True", "2024-03-05 10:00:00", i) for i in range(6)]
    rows.insert(2, '"unclosed,"Set-Mailbox","Identity=zz"')
    rows.insert(5, '"a","b"')  # wrong number of fields
    path = write(tmp_path, "rows.csv", "\n".join([ADMIN_CSV_HEADER, *rows]))
    records, stats = read(path)
    assert [r.data["Parameters"][0]["Value"] for r in records] == [f"m{i}" for i in range(6)]
    assert [(i.line, i.skipped) for i in stats.issues] == [(4, True), (7, True)]


def test_multi_line_values_keep_their_first_line_number(tmp_path):
    records, _ = read(write(tmp_path, "a.csv", ADMIN_CSV))
    assert [r.line for r in records] == [3, 8, 9]


def test_windows_1252_xml_is_read_as_declared(tmp_path):
    doc = ADMIN_XML.replace('encoding="utf-8"', 'encoding="windows-1252"').replace("Users/david", "Users/Jos\u00e9 Mu\u00f1oz")
    records, stats = read(write(tmp_path, "cp1252.xml", doc, "cp1252"))
    assert len(records) == 4 and not stats.issues
    assert records[0].data["ObjectId"] == "corp.contoso.com/Users/Jos\u00e9 Mu\u00f1oz"


def test_prefilter_does_not_change_the_findings(tmp_path):
    paths = [str(write(tmp_path, n, t)) for n, t in (("a.xml", ADMIN_XML), ("b.csv", ADMIN_CSV), ("c.csv", MAILBOX_CSV),
                                                     ("d.xml", QUIET_XML), ("e.xml", MAILBOX_XML))]
    fast, full = hunt(paths, jobs=1), hunt(paths, jobs=1, full_parse=True)
    assert [(f.rule, f.evidence[0].record_id) for f in fast.findings] == [
        (f.rule, f.evidence[0].record_id) for f in full.findings]
    assert len(fast.findings) >= 6


@pytest.mark.parametrize("chunk", [7, 64, 500])
def test_chunk_boundaries_do_not_change_what_is_read(tmp_path, monkeypatch, chunk):
    bad = ADMIN_XML.replace('Value="CONTOSO\\eve" />\n      <Parameter Name="ExtendedRights"',
                            'Value="CONTOSO\\eve <oops" />\n      <Parameter Name="ExtendedRights"')
    bad = bad.replace('Caller="corp.contoso.com/Users/Administrator"', 'Caller="&xxe;"')
    path = write(tmp_path, "bad.xml", bad * 3)  # three documents back to back: junk after the first root
    expected = read(path)
    monkeypatch.setattr(X, "CHUNK", chunk)
    records, stats = read(path)
    assert [(r.line, r.data["Id"]) for r in records] == [(r.line, r.data["Id"]) for r in expected[0]]
    assert [(i.line, i.skipped) for i in stats.issues] == [(i.line, i.skipped) for i in expected[1].issues]
    assert [r.data["Operation"] for r in records] == ["Add-MailboxPermission", "Set-MailboxFolderPermission"] * 3
