r"""Standing-permission snapshots: the reader (every PowerShell export shape, Gmail delegate lines),
the analytic (risky standing permissions, changes between snapshots), ``audit`` and ``hunt``.

Fixtures follow formats.md §8 and §5.5: Export-Csv with and without ``#TYPE``, BOM, quoted or not,
``{A, B}`` lists, the default rows every mailbox has (``NT AUTHORITY\SELF``, inherited Deny for the
admin groups, Exchange's own groups), Gmail snapshot lines as ``collect google --gmail-delegates`` writes.
"""

from __future__ import annotations

import codecs
import csv
import gzip
import io
import json
import os
from datetime import UTC, datetime

import pytest
from click.testing import CliRunner

from delegatewatch.analytics.snapshot import analyze, build_snapshots
from delegatewatch.audit_cli import audit_command, run_audit
from delegatewatch.engine.hunt import hunt
from delegatewatch.events.principals import Directory, Resolver
from delegatewatch.records import ReadStats
from delegatewatch.sources import read_paths
from delegatewatch.sources.detect import detect
from delegatewatch.sources.formats import snapshots as S
from delegatewatch.sources.opening import sniff
from tests.conftest import compact, ual

TYPE_MAILBOX = "#TYPE Deserialized.Microsoft.Exchange.Management.RecipientTasks.MailboxAcePresentationObject"
TYPE_FOLDER = "#TYPE Deserialized.Microsoft.Exchange.Management.StoreTasks.MailboxFolderPermission"
MBX_HEADER = ["Identity", "User", "AccessRights", "IsInherited", "Deny", "InheritanceType"]

# The rows every mailbox has (Get-EXOMailboxPermission description, formats.md §5.5): never findings.
DEFAULT_MAILBOX_ROWS = [
    ["ceo@contoso.com", "NT AUTHORITY\\SELF", "FullAccess, ReadPermission", "False", "False", "All"],
    ["ceo@contoso.com", "CONTOSO\\Administrator", "FullAccess", "True", "True", "All"],
    ["ceo@contoso.com", "CONTOSO\\Domain Admins", "FullAccess", "True", "True", "All"],
    ["ceo@contoso.com", "CONTOSO\\Enterprise Admins", "FullAccess", "True", "True", "All"],
    ["ceo@contoso.com", "CONTOSO\\Organization Management", "FullAccess", "True", "True", "All"],
    ["ceo@contoso.com", "NT AUTHORITY\\SYSTEM", "FullAccess", "True", "False", "All"],
    ["ceo@contoso.com", "NT AUTHORITY\\NETWORK", "ReadPermission", "True", "False", "All"],
    ["ceo@contoso.com", "CONTOSO\\Administrator", ("FullAccess, DeleteItem, ReadPermission, ChangePermission, "
     "ChangeOwner"), "True", "False", "All"],
    ["ceo@contoso.com", "CONTOSO\\Domain Admins", ("FullAccess, DeleteItem, ReadPermission, ChangePermission, "
     "ChangeOwner"), "True", "False", "All"],
    ["ceo@contoso.com", "CONTOSO\\Organization Management", ("FullAccess, DeleteItem, ReadPermission, "
     "ChangePermission, ChangeOwner"), "True", "False", "All"],
    ["ceo@contoso.com", "CONTOSO\\Exchange Servers", "FullAccess, ReadPermission", "True", "False", "All"],
    ["ceo@contoso.com", "CONTOSO\\Exchange Trusted Subsystem", ("FullAccess, DeleteItem, ReadPermission, "
     "ChangePermission, ChangeOwner"), "True", "False", "All"],
    ["ceo@contoso.com", "CONTOSO\\Managed Availability Servers", "ReadPermission", "True", "False", "All"],
]


# -- writing exports the way PowerShell does --------------------------------------------------------
def export_csv(path, header, rows, *, type_line=None, bom=False, quoted=True, crlf=True, delimiter=",",
               encoding="utf-8"):
    buf = io.StringIO()
    w = csv.writer(buf, delimiter=delimiter, quoting=csv.QUOTE_ALL if quoted else csv.QUOTE_MINIMAL,
                   lineterminator="\r\n" if crlf else "\n")
    if type_line:
        buf.write(type_line + ("\r\n" if crlf else "\n"))
    w.writerow(header)
    w.writerows(rows)
    data = buf.getvalue().encode(encoding)
    if bom:
        data = (codecs.BOM_UTF16_LE if encoding == "utf-16-le" else codecs.BOM_UTF8) + data
    path.write_bytes(data)
    return path


def gmail_snapshot(path, users, collected_at="2024-05-01T06:00:00Z"):
    lines = []
    for user, delegates in users.items():
        row = {"user": user, "delegates": delegates}
        if delegates is None:
            row["error"] = {"status": 403, "reason": "forbidden", "message": "Delegation denied"}
        row["collected_at"] = collected_at
        lines.append(json.dumps(row, separators=(",", ":")))
    data = ("\n".join(lines) + "\n").encode()
    path.write_bytes(gzip.compress(data) if path.name.endswith(".gz") else data)
    return path


def read(*paths):
    stats = ReadStats()
    records = list(read_paths([str(p) for p in paths], stats))
    return records, stats


def audit(*paths, directory=None):
    return run_audit([str(p) for p in paths], directory=directory)


def rules_of(findings):
    return sorted(f.rule for f in findings)


def by_rule(findings, rule):
    return [f for f in findings if f.rule == rule]


# -- reading: every export shape -------------------------------------------------------------------
def test_mailbox_permission_windows_powershell_export(tmp_path):
    """Windows PowerShell 5.1: BOM, #TYPE line, every value quoted, CRLF."""
    p = export_csv(tmp_path / "perm.csv", MBX_HEADER,
                   [*DEFAULT_MAILBOX_ROWS, ["ceo@contoso.com", "eve@contoso.com", "{FullAccess, ReadPermission}",
                                            "False", "False", "All"]], type_line=TYPE_MAILBOX, bom=True)
    recs, stats = read(p)
    assert stats.skipped == 0 and len(recs) == len(DEFAULT_MAILBOX_ROWS) + 1
    assert {r.dialect for r in recs} == {S.CSV_DIALECT} and {r.family for r in recs} == {"snapshot"}
    last = recs[-1]
    assert last.line == len(DEFAULT_MAILBOX_ROWS) + 3  # #TYPE and header lines come first
    assert last.data["Id"] == str(last.line) and last.record_id == str(last.line)
    assert last.data["_dedup"] == f"{p}|{last.line}"
    assert {k: last.data[k] for k in (
        "SnapshotKind", "Mailbox", "Folder", "Grantee", "AccessRights", "IsInherited", "Deny", "Status")} == {
        "SnapshotKind": "MailboxPermission", "Mailbox": "ceo@contoso.com", "Folder": "", "Grantee": "eve@contoso.com",
        "AccessRights": "{FullAccess, ReadPermission}", "IsInherited": "False", "Deny": "False", "Status": ""}
    assert last.data["SnapshotTimeSource"] == "mtime" and last.data["SnapshotTime"].endswith("Z")


@pytest.mark.parametrize("shape", ["ps7-quoted", "unquoted-lf", "semicolon", "utf16-bom"])
def test_mailbox_permission_other_export_shapes(tmp_path, shape):
    rows = [["CEO", "NT AUTHORITY\\SELF", "FullAccess, ReadPermission", "False", "False", "All"],
            ["CEO", "CONTOSO\\eve", "FullAccess", "False", "False", "All"]]
    kw = {"ps7-quoted": {}, "unquoted-lf": {"quoted": False, "crlf": False},
          "semicolon": {"delimiter": ";"}, "utf16-bom": {"encoding": "utf-16-le", "bom": True,
                                                         "type_line": TYPE_MAILBOX}}[shape]
    p = export_csv(tmp_path / "perm.csv", MBX_HEADER, rows, **kw)
    recs, stats = read(p)
    assert stats.skipped == 0
    assert [(r.data["Mailbox"], r.data["Grantee"], r.data["AccessRights"]) for r in recs] == [
        ("CEO", "NT AUTHORITY\\SELF", "FullAccess, ReadPermission"), ("CEO", "CONTOSO\\eve", "FullAccess")]
    res = audit(p)
    assert rules_of(res.findings) == ["snapshot_full_access_standing"]
    assert res.findings[0].summary == "CONTOSO\\eve has FullAccess to CEO"


def test_folder_permission_export_with_identity_and_foldername(tmp_path):
    p = export_csv(tmp_path / "folders.csv", ["Identity", "FolderName", "User", "AccessRights", "SharingPermissionFlags"], [
        ["ceo@contoso.com:\\", "Top of Information Store", "Default", "{None}", ""],
        ["ceo@contoso.com:\\Inbox", "Inbox", "Default", "{Reviewer}", ""],
        ["ceo@contoso.com:\\Inbox", "Inbox", "Anonymous", "{None}", ""],
        ["ceo@contoso.com:\\Calendar", "Calendar", "Default", "{AvailabilityOnly}", ""],
        ["ceo@contoso.com:\\Calendar", "Calendar", "Megan Bowen", "{Editor}", "Delegate, CanViewPrivateItems"],
    ], type_line=TYPE_FOLDER, bom=True)
    recs, stats = read(p)
    assert stats.skipped == 0
    assert [(r.data["SnapshotKind"], r.data["Mailbox"], r.data["Folder"], r.data["Grantee"]) for r in recs] == [
        ("MailboxFolderPermission", "ceo@contoso.com", "\\", "Default"),
        ("MailboxFolderPermission", "ceo@contoso.com", "\\Inbox", "Default"),
        ("MailboxFolderPermission", "ceo@contoso.com", "\\Inbox", "Anonymous"),
        ("MailboxFolderPermission", "ceo@contoso.com", "\\Calendar", "Default"),
        ("MailboxFolderPermission", "ceo@contoso.com", "\\Calendar", "Megan Bowen")]
    assert recs[-1].data["SharingPermissionFlags"] == "Delegate, CanViewPrivateItems"
    res = audit(p)
    assert rules_of(res.findings) == ["snapshot_default_folder_read"]  # calendar delegate, free/busy, None: quiet
    f = res.findings[0]
    assert f.summary == "Default can read ceo@contoso.com \\Inbox (Reviewer)"
    assert f.severity == "high" and f.attack == ["T1098.002"] and f.folder == "\\Inbox"
    assert f.mailbox == "ceo@contoso.com" and f.grantee == "Default" and f.grantee_kind == "default"
    assert f.rights == ["FolderVisible", "ReadItems"] and f.operation == "Get-MailboxFolderPermission"
    assert [(e.source, e.record_id, e.line) for e in f.evidence] == [(str(p), "4", 4)]


def test_folder_permission_selected_without_foldername_is_told_apart_by_identity(tmp_path):
    """``Select Identity,User,AccessRights``: rows whose Identity is ``mbx:\\Folder`` are folder rows."""
    p = export_csv(tmp_path / "f.csv", ["Identity", "User", "AccessRights"], [
        ["cfo@contoso.com:\\Inbox\\Board", "Default", "ReadItems, FolderVisible"],
        ["cfo@contoso.com:\\Contacts", "Anonymous", "Reviewer"],
    ], quoted=False, crlf=False)
    recs, _ = read(p)
    assert [(r.data["SnapshotKind"], r.data["Folder"]) for r in recs] == [
        ("MailboxFolderPermission", "\\Inbox\\Board"), ("MailboxFolderPermission", "\\Contacts")]
    res = audit(p)
    assert sorted((f.summary, f.severity) for f in res.findings) == [
        ("Anonymous can read cfo@contoso.com \\Contacts (Reviewer)", "critical"),
        ("Default can read cfo@contoso.com \\Inbox\\Board (Reviewer)", "high")]


def test_recipient_permission_export(tmp_path):
    p = export_csv(tmp_path / "sendas.csv", ["Identity", "Trustee", "AccessControlType", "AccessRights", "IsInherited"], [
        ["ceo", "NT AUTHORITY\\SELF", "Allow", "{SendAs}", "False"],
        ["ceo", "eve@contoso.com", "Allow", "{SendAs}", "False"],
        ["ceo", "bob@contoso.com", "Deny", "{SendAs}", "False"],
    ], type_line="#TYPE Deserialized.Microsoft.Exchange.Management.RecipientTasks.RecipientPermission")
    recs, _ = read(p)
    assert [r.data["SnapshotKind"] for r in recs] == ["RecipientPermission"] * 3
    assert recs[2].data["Deny"] == "True"
    res = audit(p)
    assert [(f.rule, f.summary, f.severity) for f in res.findings] == [
        ("snapshot_send_as_standing", "eve@contoso.com can send as ceo", "medium")]


@pytest.mark.parametrize("joined", ["Lidia Holloway;Megan Bowen", "{Lidia Holloway, Megan Bowen}",
                                    "Lidia Holloway,Megan Bowen"])
def test_send_on_behalf_export(tmp_path, joined):
    p = export_csv(tmp_path / "sob.csv", ["Identity", "UserPrincipalName", "PrimarySmtpAddress", "GrantSendOnBehalfTo"], [
        ["CEO", "ceo@contoso.com", "ceo@contoso.com", joined],
        ["Sales", "sales@contoso.com", "sales@contoso.com", ""],
    ])
    recs, stats = read(p)
    assert stats.skipped == 0
    assert [(r.data["SnapshotKind"], r.data["Mailbox"], r.data["Grantee"], r.line) for r in recs] == [
        ("SendOnBehalf", "ceo@contoso.com", "Lidia Holloway", 2), ("SendOnBehalf", "ceo@contoso.com", "Megan Bowen", 2)]
    assert recs[0].data["_dedup"] != recs[1].data["_dedup"] and recs[0].data["Id"] == recs[1].data["Id"] == "2"
    res = audit(p)
    assert sorted(f.summary for f in res.findings) == ["Lidia Holloway can send on behalf of ceo@contoso.com",
                                                       "Megan Bowen can send on behalf of ceo@contoso.com"]
    assert {f.severity for f in res.findings} == {"low"}


def test_ad_permission_send_as_export(tmp_path):
    p = export_csv(tmp_path / "adperm.csv", ["Identity", "User", "ExtendedRights", "IsInherited", "Deny"], [
        ["contoso.com/Users/CEO", "NT AUTHORITY\\SELF", "{Send-As}", "False", "False"],
        ["contoso.com/Users/CEO", "CONTOSO\\Exchange Servers", "{Send-As}", "True", "False"],
        ["contoso.com/Users/CEO", "CONTOSO\\eve", "{Send-As}", "False", "False"],
        ["contoso.com/Users/CEO", "CONTOSO\\helpdesk", "{Receive-As}", "False", "False"],
        ["contoso.com/Users/CEO", "CONTOSO\\bob", "{Send-As}", "False", "True"],
    ], quoted=False)
    res = audit(p)
    assert sorted((f.rule, f.summary) for f in res.findings) == [
        ("snapshot_full_access_standing", "CONTOSO\\helpdesk has Receive-As to contoso.com/Users/CEO"),
        ("snapshot_send_as_standing", "CONTOSO\\eve can send as contoso.com/Users/CEO")]


def test_gmail_delegate_snapshot_lines(tmp_path):
    p = gmail_snapshot(tmp_path / "20240501T060000Z.ndjson.gz", {
        "ceo@example.com": [{"delegateEmail": "assistant@example.com", "verificationStatus": "accepted"},
                            {"delegateEmail": "eve@example.com", "verificationStatus": "pending"}],
        "cfo@example.com": [],
        "old@example.com": [{"delegateEmail": "x@example.com", "verificationStatus": "rejected"}],
        "locked@example.com": None,
    })
    recs, stats = read(p)
    assert {r.dialect for r in recs} == {S.GMAIL_DIALECT}
    assert [(r.data["Mailbox"], r.data["Grantee"], r.data["Status"], r.line) for r in recs] == [
        ("ceo@example.com", "assistant@example.com", "accepted", 1), ("ceo@example.com", "eve@example.com", "pending", 1),
        ("old@example.com", "x@example.com", "rejected", 3), ("locked@example.com", "", "unknown", 4)]
    assert recs[0].data["SnapshotTime"] == "2024-05-01T06:00:00Z" and recs[0].data["SnapshotTimeSource"] == "collected_at"
    assert stats.skipped == 0 and stats.warnings == 1  # the user whose delegates could not be read
    res = audit(p)
    assert sorted((f.rule, f.severity, f.summary) for f in res.findings) == [
        ("snapshot_gmail_delegate_standing", "low", "eve@example.com is a Gmail delegate of ceo@example.com (pending)"),
        ("snapshot_gmail_delegate_standing", "medium",
         "assistant@example.com is a Gmail delegate of ceo@example.com (accepted)")]


def test_snapshot_time_from_name_mtime_and_hint(tmp_path):
    named = export_csv(tmp_path / "perm_20240508T0930.csv", MBX_HEADER, DEFAULT_MAILBOX_ROWS[:1])
    plain = export_csv(tmp_path / "perm.csv", MBX_HEADER, DEFAULT_MAILBOX_ROWS[:1])
    stamp = datetime(2024, 4, 1, 12, 0, tzinfo=UTC).timestamp()
    os.utime(plain, (stamp, stamp))
    recs, _ = read(named, plain)
    assert [(r.data["SnapshotTime"], r.data["SnapshotTimeSource"]) for r in recs] == [
        ("2024-05-08T09:30:00Z", "filename"), ("2024-04-01T12:00:00Z", "mtime")]
    S.set_time_hints({str(plain): "2024-03-01T08:00:00+02:00"})
    try:
        recs, _ = read(plain)
    finally:
        S.set_time_hints({})
    assert (recs[0].data["SnapshotTime"], recs[0].data["SnapshotTimeSource"]) == ("2024-03-01T06:00:00Z", "hint")
    with pytest.raises(ValueError):
        S.set_time_hints({"*": "last tuesday"})


# -- detection: claims snapshots only --------------------------------------------------------------
def test_detection_does_not_claim_ual_csvs_or_other_csvs(tmp_path):
    audit_data = compact(ual()).replace('"', '""')
    purview = tmp_path / "purview.csv"
    purview.write_text("RecordId,CreationDate,RecordType,Operation,UserId,AuditData,AssociatedAdminUnits,"
                       "AssociatedAdminUnitsNames\n"
                       f'1,2024-02-04T23:19:46.0000000Z,ExchangeAdmin,Add-MailboxPermission,admin@contoso.com,"{audit_data}",,\n')
    ps = tmp_path / "ps.csv"
    ps.write_text('#TYPE Deserialized.Microsoft.Exchange.Management.SystemConfigurationTasks.UnifiedAuditLogResult\n'
                  '"RunspaceId","RecordType","CreationDate","UserIds","Operations","AuditData","ResultIndex","ResultCount",'
                  '"Identity","IsValid","ObjectState"\n')
    users = tmp_path / "users.csv"
    users.write_text("id,userPrincipalName,displayName,userType,accountEnabled,mail\n1,a@contoso.com,A,Member,true,a@contoso.com\n")
    trace = tmp_path / "trace.csv"
    trace.write_text("Received,SenderAddress,RecipientAddress,Subject,Status\n")
    for p, family in ((purview, "m365"), (ps, "m365"), (users, None), (trace, None)):
        found = detect(sniff(str(p)))
        assert found.family == family, p.name
    ndjson = tmp_path / "ual.ndjson"
    ndjson.write_text(compact(ual()) + "\n")
    assert detect(sniff(str(ndjson))).family == "m365"
    assert S.kind_of_header(["Identity", "User", "AccessRights", "AuditData"]) is None


# -- risky standing permissions: positives and negatives ---------------------------------------------
def test_mailbox_permission_risks_and_defaults(tmp_path):
    p = export_csv(tmp_path / "perm-2024-05-08.csv", MBX_HEADER, [
        *DEFAULT_MAILBOX_ROWS,
        ["ceo@contoso.com", "eve@contoso.com", "FullAccess", "False", "False", "All"],          # risky
        ["ceo@contoso.com", "CONTOSO\\ceo", "FullAccess", "False", "False", "All"],            # the owner
        ["ceo@contoso.com", "bob@contoso.com", "FullAccess", "False", "True", "All"],          # explicit Deny
        ["ceo@contoso.com", "carol@contoso.com", "ReadPermission", "False", "False", "All"],   # harmless right
        ["ceo@contoso.com", "CONTOSO\\svc-archive", "FullAccess", "True", "False", "All"],     # inherited, not Exchange
        ["ceo@contoso.com", "S-1-5-21-3623811015-3361044348-30300820-1013", "FullAccess", "False", "False", "All"],
        ["ceo@contoso.com", "dave@contoso.com", "ChangePermission", "False", "False", "All"],
        ["ceo@contoso.com", "Everyone", "FullAccess", "False", "False", "All"],
        ["ceo@contoso.com", "CONTOSO\\Organization Management", "FullAccess", "False", "False", "All"],  # explicit
    ])
    res = audit(p)
    got = sorted((f.rule, f.grantee, f.severity) for f in res.findings)
    assert got == [
        ("snapshot_full_access_standing", "CONTOSO\\Organization Management", "medium"),
        ("snapshot_full_access_standing", "CONTOSO\\svc-archive", "medium"),
        ("snapshot_full_access_standing", "Everyone", "critical"),
        ("snapshot_full_access_standing", "eve@contoso.com", "medium"),
        ("snapshot_mailbox_control_standing", "dave@contoso.com", "medium"),
        ("snapshot_orphaned_sid_permission", "S-1-5-21-3623811015-3361044348-30300820-1013", "low"),
    ]
    inherited = next(f for f in res.findings if f.grantee == "CONTOSO\\svc-archive")
    assert any("inherited" in r for r in inherited.reasons)
    assert any("orphaned SID" in r for r in by_rule(res.findings, "snapshot_orphaned_sid_permission")[0].reasons)


def test_only_default_rows_are_quiet(tmp_path):
    p = export_csv(tmp_path / "perm.csv", MBX_HEADER, DEFAULT_MAILBOX_ROWS, type_line=TYPE_MAILBOX, bom=True)
    f = export_csv(tmp_path / "folders.csv", ["FolderName", "User", "AccessRights", "SharingPermissionFlags", "Identity"], [
        ["Top of Information Store", "Default", "{None}", "", "ceo@contoso.com"],
        ["Top of Information Store", "Anonymous", "{None}", "", "ceo@contoso.com"],
        ["Calendar", "Default", "{LimitedDetails}", "", "ceo@contoso.com:\\Calendar"],
        ["Calendrier", "Default", "{AvailabilityOnly}", "", "pdg@contoso.fr:\\Calendrier"],
        ["Calendar", "Anonymous", "{AvailabilityOnly}", "", "ceo@contoso.com:\\Calendar"],
        ["Calendar", "Member@local", "{Owner}", "", "team@contoso.com:\\Calendar"],
    ])
    res = audit(p, f)
    assert res.findings == []
    assert res.stats.skipped == 0


@pytest.mark.parametrize("folder,user,rights,rule,severity", [
    ("Inbox", "Default", "{Reviewer}", "snapshot_default_folder_read", "high"),
    ("Inbox", "Anonymous", "{ReadItems}", "snapshot_default_folder_read", "critical"),
    ("Sent Items", "Default", "{Owner}", "snapshot_default_folder_read", "high"),
    ("Inbox", "Default", "{Contributor}", "snapshot_default_folder_access", "medium"),
    ("Top of Information Store", "Default", "{FolderVisible}", "snapshot_default_folder_visible", "low"),
    ("Calendar", "Default", "{Reviewer}", "snapshot_default_calendar_read", "low"),
    ("Calendar", "Anonymous", "{Reviewer}", "snapshot_default_calendar_read", "medium"),
    ("Inbox", "Lidia Holloway", "{Reviewer}", "snapshot_folder_read_standing", "low"),
    ("Calendar", "Default", "{AvailabilityOnly}", None, None),
    ("Calendar", "Default", "{LimitedDetails}", None, None),
    ("Inbox", "Default", "{None}", None, None),
    ("Calendar", "Lidia Holloway", "{Editor}", None, None),
    ("Top of Information Store", "Lidia Holloway", "{FolderVisible}", None, None),
])
def test_folder_permission_cases(tmp_path, folder, user, rights, rule, severity):
    ident = "ceo@contoso.com" if folder == "Top of Information Store" else f"ceo@contoso.com:\\{folder}"
    p = export_csv(tmp_path / "folders.csv", ["Identity", "FolderName", "User", "AccessRights"],
                   [[ident, folder, user, rights]])
    res = audit(p)
    assert [(f.rule, f.severity) for f in res.findings] == ([(rule, severity)] if rule else [])


def test_guests_and_external_grantees_are_louder(tmp_path):
    p = export_csv(tmp_path / "perm.csv", MBX_HEADER, [
        ["ceo@contoso.com", "eve@contoso.com", "FullAccess", "False", "False", "All"],
        ["ceo@contoso.com", "mallory_gmail.com#EXT#@contoso.onmicrosoft.com", "FullAccess", "False", "False", "All"],
        ["ceo@contoso.com", "partner@fabrikam.com", "FullAccess", "False", "False", "All"],
    ])
    got = {f.grantee: (f.severity, f.grantee_kind) for f in audit(p).findings}
    assert got == {"eve@contoso.com": ("medium", "user"),
                   "mallory_gmail.com#EXT#@contoso.onmicrosoft.com": ("high", "guest"),
                   "partner@fabrikam.com": ("high", "external")}


def test_directory_resolves_names_and_guests(tmp_path):
    d = tmp_path / "users.csv"
    d.write_text("id,userPrincipalName,displayName,userType,accountEnabled,mail\n"
                 "51eb55af-0000-0000-0000-000000000001,lidia@contoso.com,Lidia Holloway,Member,true,lidia@contoso.com\n"
                 "51eb55af-0000-0000-0000-000000000002,pat_fabrikam.com#EXT#@contoso.onmicrosoft.com,Pat Partner,Guest,"
                 "true,pat@fabrikam.com\n")
    p = export_csv(tmp_path / "sob.csv", ["Identity", "PrimarySmtpAddress", "GrantSendOnBehalfTo"],
                   [["CEO", "ceo@contoso.com", "Lidia Holloway;Pat Partner"]])
    res = audit(p, directory=Directory.load(str(d)))
    got = {f.grantee: (f.severity, f.grantee_kind, f.raw.get("grantee")) for f in res.findings}
    assert got == {"lidia@contoso.com": ("low", "user", "Lidia Holloway"),
                   "pat_fabrikam.com#EXT#@contoso.onmicrosoft.com": ("medium", "guest", "Pat Partner")}


# -- changes between snapshots ---------------------------------------------------------------------
def week(tmp_path, name, rows, header=MBX_HEADER, **kw):
    return export_csv(tmp_path / name, header, rows, **kw)


def test_two_weekly_snapshots_added_and_removed(tmp_path):
    base = DEFAULT_MAILBOX_ROWS + [["ceo@contoso.com", "assistant@contoso.com", "FullAccess", "False", "False", "All"],
                                   ["ceo@contoso.com", "eve@contoso.com", "FullAccess", "False", "False", "All"]]
    week(tmp_path, "mailbox-permissions-2024-05-01.csv", base, type_line=TYPE_MAILBOX, bom=True)
    later = [r for r in base if r[1] != "eve@contoso.com"] + [
        ["ceo@contoso.com", "mallory_gmail.com#EXT#@contoso.onmicrosoft.com", "FullAccess", "False", "False", "All"],
        ["cfo@contoso.com", "NT AUTHORITY\\SELF", "FullAccess, ReadPermission", "False", "False", "All"]]  # new mailbox
    p2 = week(tmp_path, "mailbox-permissions-2024-05-08.csv", later, type_line=TYPE_MAILBOX, bom=True)
    res = audit(tmp_path)
    added = by_rule(res.findings, "snapshot_permission_added")
    removed = by_rule(res.findings, "snapshot_permission_removed")
    assert [(f.grantee, f.severity, f.rights) for f in added] == [
        ("mallory_gmail.com#EXT#@contoso.onmicrosoft.com", "critical", ["FullAccess"])]  # medium, +1 new, +1 guest
    assert added[0].summary == ("Added since 2024-05-01 00:00 UTC: mallory_gmail.com#EXT#@contoso.onmicrosoft.com "
                                "has FullAccess to ceo@contoso.com")
    assert added[0].evidence[0].source == str(p2) and added[0].time == "2024-05-08T00:00:00Z"
    assert [(f.grantee, f.severity) for f in removed] == [("eve@contoso.com", "informational")]
    assert removed[0].evidence[0].source.endswith("2024-05-01.csv")
    # standing findings come from the latest snapshot only
    assert sorted(f.grantee for f in by_rule(res.findings, "snapshot_full_access_standing")) == [
        "assistant@contoso.com", "mallory_gmail.com#EXT#@contoso.onmicrosoft.com"]


def test_folder_right_raised_between_snapshots(tmp_path):
    h = ["Identity", "FolderName", "User", "AccessRights"]
    week(tmp_path, "folders-2024-05-01.csv", [["ceo@contoso.com:\\Inbox", "Inbox", "Default", "{None}"],
                                              ["ceo@contoso.com:\\Calendar", "Calendar", "Default", "{AvailabilityOnly}"],
                                              ["ceo@contoso.com:\\Inbox", "Inbox", "Lidia Holloway", "{Reviewer}"]], h)
    week(tmp_path, "folders-2024-05-08.csv", [["ceo@contoso.com:\\Inbox", "Inbox", "Default", "{Reviewer}"],
                                              ["ceo@contoso.com:\\Calendar", "Calendar", "Default", "{LimitedDetails}"],
                                              ["ceo@contoso.com:\\Inbox", "Inbox", "Lidia Holloway", "{Editor}"]], h)
    res = audit(tmp_path)
    changes = sorted((f.rule, f.grantee, f.severity) for f in res.findings if "added" in f.rule or "removed" in f.rule)
    assert changes == [("snapshot_permission_added", "Default", "critical"),        # high, +1: newly risky
                       ("snapshot_permission_added", "Lidia Holloway", "low")]      # more rights, same risk
    default = next(f for f in res.findings if f.rule == "snapshot_permission_added" and f.grantee == "Default")
    assert default.summary == "Added since 2024-05-01 00:00 UTC: Default can read ceo@contoso.com \\Inbox (Reviewer)"
    lidia = next(f for f in res.findings if f.rule == "snapshot_permission_added" and f.grantee == "Lidia Holloway")
    assert "gained" in lidia.summary and "had Reviewer" in lidia.summary


def test_unchanged_snapshots_report_no_changes(tmp_path):
    rows = DEFAULT_MAILBOX_ROWS + [["ceo@contoso.com", "assistant@contoso.com", "FullAccess", "False", "False", "All"]]
    week(tmp_path, "a-2024-05-01.csv", rows)
    week(tmp_path, "b-2024-05-08.csv", list(reversed(rows)), quoted=False)
    res = audit(tmp_path)
    assert rules_of(res.findings) == ["snapshot_full_access_standing"]


def test_order_by_modification_time_when_names_carry_no_date(tmp_path):
    older = week(tmp_path, "b.csv", [["ceo@contoso.com", "eve@contoso.com", "FullAccess", "False", "False", "All"]])
    newer = week(tmp_path, "a.csv", [["ceo@contoso.com", "eve@contoso.com", "FullAccess", "False", "False", "All"],
                                     ["ceo@contoso.com", "bob@contoso.com", "FullAccess", "False", "False", "All"]])
    t = datetime(2024, 5, 1, tzinfo=UTC).timestamp()
    os.utime(older, (t, t))
    os.utime(newer, (t + 7 * 86400, t + 7 * 86400))
    added = by_rule(audit(tmp_path).findings, "snapshot_permission_added")
    assert [f.grantee for f in added] == ["bob@contoso.com"]
    assert any("modification times" in r for r in added[0].reasons)


def test_files_of_one_snapshot_are_merged(tmp_path):
    """An export written as one file per mailbox, minutes apart: one snapshot, no changes."""
    week(tmp_path, "perm-ceo-20240501T0900.csv", [["ceo@contoso.com", "eve@contoso.com", "FullAccess", "False", "False", "All"]])
    week(tmp_path, "perm-cfo-20240501T0905.csv", [["cfo@contoso.com", "bob@contoso.com", "FullAccess", "False", "False", "All"]])
    recs, _ = read(tmp_path)
    snaps = build_snapshots(recs)["MailboxPermission"]
    assert len(snaps) == 1 and len(snaps[0].files) == 2
    res = audit(tmp_path)
    assert rules_of(res.findings) == ["snapshot_full_access_standing"] * 2


def test_gmail_delegate_added_between_snapshots(tmp_path):
    gmail_snapshot(tmp_path / "20240501T060000Z.ndjson.gz", {
        "ceo@example.com": [{"delegateEmail": "assistant@example.com", "verificationStatus": "accepted"}],
        "cfo@example.com": [{"delegateEmail": "old@example.com", "verificationStatus": "accepted"}],
        "hr@example.com": [{"delegateEmail": "temp@example.com", "verificationStatus": "accepted"}],
        "it@example.com": [],
    }, "2024-05-01T06:00:03Z")
    gmail_snapshot(tmp_path / "20240508T060000Z.ndjson.gz", {
        "ceo@example.com": [{"delegateEmail": "assistant@example.com", "verificationStatus": "accepted"},
                            {"delegateEmail": "eve@example.com", "verificationStatus": "accepted"}],
        "cfo@example.com": [],
        "hr@example.com": None,  # not read this time: neither removed nor kept
        "it@example.com": [{"delegateEmail": "attacker@evil.example", "verificationStatus": "accepted"}],
    }, "2024-05-08T06:00:04Z")
    res = audit(tmp_path)
    added = by_rule(res.findings, "snapshot_gmail_delegate_added")
    assert sorted((f.mailbox, f.grantee, f.severity) for f in added) == [
        ("ceo@example.com", "eve@example.com", "high"),
        ("it@example.com", "attacker@evil.example", "critical")]  # external: louder still
    assert all(f.rights == ["Delegate"] and f.attack == ["T1098.002"] for f in added)
    removed = by_rule(res.findings, "snapshot_permission_removed")
    assert [(f.mailbox, f.grantee) for f in removed] == [("cfo@example.com", "old@example.com")]
    assert not [f for f in res.findings if f.mailbox == "hr@example.com" and "removed" in f.rule]


# -- hunt reads snapshots alongside logs -----------------------------------------------------------
def test_hunt_over_logs_and_snapshots_reports_both(tmp_path):
    (tmp_path / "ual.ndjson").write_text(compact(ual()) + "\n")
    export_csv(tmp_path / "mailbox-permissions-2024-05-01.csv", MBX_HEADER, DEFAULT_MAILBOX_ROWS,
               type_line=TYPE_MAILBOX, bom=True)
    export_csv(tmp_path / "mailbox-permissions-2024-05-08.csv", MBX_HEADER, DEFAULT_MAILBOX_ROWS + [
        ["ceo@contoso.com", "eve@contoso.com", "FullAccess", "False", "False", "All"]], type_line=TYPE_MAILBOX, bom=True)
    export_csv(tmp_path / "folders-2024-05-08.csv", ["Identity", "FolderName", "User", "AccessRights"],
               [["ceo@contoso.com:\\Inbox", "Inbox", "Default", "{Reviewer}"]])
    gmail_snapshot(tmp_path / "20240508T060000Z.ndjson.gz",
                   {"ceo@example.com": [{"delegateEmail": "eve@example.com", "verificationStatus": "accepted"}]})
    result = hunt([str(tmp_path)], jobs=1)
    rules = {f.rule for f in result.findings}
    assert "m365_mailbox_full_access_grant" in rules  # the log
    assert {"snapshot_full_access_standing", "snapshot_permission_added", "snapshot_default_folder_read",
            "snapshot_gmail_delegate_standing"} <= rules
    snap_hunt = sorted((f.id, f.rule, f.severity, f.summary) for f in result.findings if f.rule.startswith("snapshot_"))
    audited = audit(tmp_path)
    assert snap_hunt == sorted((f.id, f.rule, f.severity, f.summary) for f in audited.findings)
    assert any(p.endswith("ual.ndjson") and "not a permission snapshot" in why for p, why in audited.stats.files_skipped)


# -- malformed input -------------------------------------------------------------------------------
def test_malformed_rows_are_reported_with_file_and_line(tmp_path):
    p = tmp_path / "perm.csv"
    p.write_text(
        '"Identity","User","AccessRights","IsInherited","Deny"\n'
        '"ceo@contoso.com","eve@contoso.com","FullAccess","False","False"\n'
        '"ceo@contoso.com","broken@contoso.com,"FullAccess","False","False"\n'      # line 3: a quote never closes
        '"ceo@contoso.com","bob@contoso.com","FullAccess"\n'                         # line 4: too few fields
        '"ceo@contoso.com","","FullAccess","False","False"\n'                        # line 5: no User
        '"ceo@contoso.com","Display, ""Quoted""\nName","FullAccess","False","False"\n'  # lines 6-7: one row
        '"cfo@contoso.com","carol@contoso.com","FullAccess","False","False"\n')      # line 8
    recs, stats = read(p)
    assert [(r.data["Grantee"], r.line) for r in recs] == [
        ("eve@contoso.com", 2), ('Display, "Quoted"\nName', 6), ("carol@contoso.com", 8)]
    where = [(i.source, i.line) for i in stats.issues]
    assert where == [(str(p), 3), (str(p), 4), (str(p), 5)]
    assert stats.skipped == 3 and stats.skip_reasons["malformed snapshot row"] == 3
    g = tmp_path / "20240501T000000Z.ndjson"
    g.write_text('{"user":"a@example.com","delegates":[],"collected_at":"2024-05-01T00:00:00Z"}\n'
                 '{"user":"b@example.com","delegates":[{"delegateEmail":"x@exa\n'
                 '{"user":"c@example.com","delegates":"none"}\n'
                 '{"user":"d@example.com","delegates":[{"verificationStatus":"accepted"}]}\n'
                 '{"user":"e@example.com","delegates":[{"delegateEmail":"y@example.com","verificationStatus":"accepted"}]}\n')
    recs, stats = read(g)
    assert [r.data["Grantee"] for r in recs] == ["y@example.com"]
    assert [i.line for i in stats.issues] == [2, 3, 4] and stats.skipped == 3


@pytest.mark.parametrize("header,row", [
    (["Identity", "GrantSendOnBehalfTo"],
     ["CEO", "Microsoft.Exchange.Data.MultiValuedProperty`1[Microsoft.Exchange.Data.Directory.ADObjectId]"]),
    (["Identity", "Trustee", "AccessControlType", "AccessRights", "IsInherited"],
     ["CEO", "eve@contoso.com", "Allow", "System.Collections.Generic.List`1[System.String]", "False"]),
    (MBX_HEADER, ["CEO", "eve@contoso.com", "System.String[]", "False", "False", "All"]),
])
def test_multivalued_column_exported_as_type_name_is_explained(tmp_path, header, row):
    p = export_csv(tmp_path / "x.csv", header, [row])
    recs, stats = read(p)
    assert recs == [] and stats.skipped == 1 and "-join" in stats.issues[0].message and stats.issues[0].line == 2


# -- the command -----------------------------------------------------------------------------------
CONTRACT = {"id", "rule", "title", "severity", "time", "attack", "actor", "mailbox", "grantee", "rights", "summary",
            "evidence"}


def invoke(*args):
    return CliRunner().invoke(audit_command, list(args), catch_exceptions=False)


def test_audit_command_jsonl_contract(tmp_path):
    week(tmp_path, "perm-2024-05-01.csv", [["ceo@contoso.com", "eve@contoso.com", "FullAccess", "False", "False", "All"]])
    week(tmp_path, "perm-2024-05-08.csv", [["ceo@contoso.com", "bob@contoso.com", "FullAccess", "False", "False", "All"]])
    out = tmp_path / "out" / "f.jsonl"
    out.parent.mkdir()
    r = invoke(str(tmp_path), "--format", "jsonl", "-o", str(out))
    assert r.exit_code == 0
    lines = [json.loads(x) for x in out.read_text().splitlines()]
    assert {x["rule"] for x in lines} == {"snapshot_full_access_standing", "snapshot_permission_added",
                                          "snapshot_permission_removed"}
    for f in lines:
        assert CONTRACT <= f.keys() and f["time"].endswith("Z") and f["attack"] == ["T1098.002"]
        for ev in f["evidence"]:
            assert os.path.exists(ev["source"]) and ev["record_id"].isdigit()
    assert "Files: 2 read" in r.output  # the summary (stderr, mixed in by CliRunner)


def test_audit_command_table_csv_and_hints(tmp_path):
    a = week(tmp_path, "a.csv", [["ceo@contoso.com", "eve@contoso.com", "FullAccess", "False", "False", "All"]])
    b = week(tmp_path, "b.csv", [["ceo@contoso.com", "=HYPERLINK(\"http://x\")", "FullAccess", "False", "False", "All"]])
    r = invoke(str(tmp_path), "--snapshot-time", f"{b}=2024-05-01T09:00Z", "--snapshot-time",
               f"{a}=2024-05-08T09:00Z", "--no-color")
    assert r.exit_code == 0
    assert "Risky standing permissions" in r.output and "Changes between snapshots" in r.output
    assert "snapshot_permission_added" in r.output and "eve@contoso.com" in r.output and "hint" in r.output
    r = invoke(str(tmp_path), "--format", "csv", "-q", "--snapshot-time", f"{b}=2024-05-01T09:00Z",
               "--snapshot-time", f"{a}=2024-05-08T09:00Z")
    rows = list(csv.DictReader(io.StringIO(r.output)))
    assert {row["rule"] for row in rows} == {"snapshot_full_access_standing", "snapshot_permission_added",
                                             "snapshot_permission_removed"}
    assert all(not row["grantee"].startswith("=") for row in rows)  # formula neutralised
    assert S._TIME_HINTS == {}  # hints do not outlive the command


def test_audit_command_errors_and_empty_input(tmp_path):
    assert invoke(str(tmp_path), "--snapshot-time", "yesterday").exit_code == 2
    assert invoke(str(tmp_path), "--snapshot-time", f"{tmp_path}/missing.csv=2024-05-01").exit_code == 2
    (tmp_path / "ual.ndjson").write_text(compact(ual()) + "\n")
    r = invoke(str(tmp_path), str(tmp_path / "nope.csv"))
    assert r.exit_code == 0 and "No permission snapshots were found" in r.output and "no such file" in r.output


def test_analyze_directly_on_records(tmp_path):
    p = export_csv(tmp_path / "perm.csv", MBX_HEADER, [["ceo@contoso.com", "eve@contoso.com", "FullAccess", "False",
                                                         "False", "All"]])
    recs, _ = read(p)
    findings = analyze(recs, Resolver())
    assert [f.rule for f in findings] == ["snapshot_full_access_standing"]
    assert findings[0].rule_id == analyze(recs, Resolver())[0].rule_id  # stable
