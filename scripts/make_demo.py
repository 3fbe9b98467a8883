#!/usr/bin/env python3
"""Write the bundled demo tenant to ``examples/demo/``.

A small, realistic Microsoft 365 tenant (``contoso.com``, about 40 accounts, three days of
unified audit log) with several T1098.002 attack chains and the benign records that look like
them. The records are split across every UAL export dialect a responder meets, so the demo
exercises every reader:

    ual_api_blob.json            Management Activity API content blob (Audit.Exchange, day 1)
    ual_ndjson.jsonl             NDJSON, compact, ``\\/`` escaped (Entra ID and SharePoint, day 1)
    purview_new.csv              new Purview audit search CSV (all but mailbox audit, day 2)
    ual_spaced.ndjson            NDJSON with ``": "`` / ``", "`` spacing (mailbox audit, day 2)
    search_unifiedauditlog.csv   ``Search-UnifiedAuditLog | Export-Csv`` (ExchangeAdmin, day 3)
    purview_classic.csv          classic Purview export (all but ExchangeAdmin, day 3)
    convertto_json.json          ``Search-UnifiedAuditLog -Operations New-InboxRule,Set-InboxRule,
                                 Set-Mailbox | ConvertTo-Json > file`` in Windows PowerShell 5.1
                                 (UTF-16 LE, all three days)
    directory.csv                Entra ID users export
    EXPECTED.md                  every attack record and benign look-alike, by file and Id

A few records are deliberately written to two files (exports overlap in real life).
Deterministic: the same bytes on every run. Standard library plus orjson only.

Usage: python scripts/make_demo.py [OUTPUT_DIR]
"""

from __future__ import annotations

import base64
import csv
import json
import random
import sys
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path

import orjson

SEED = 20241014
OUT_DIR = Path(__file__).resolve().parent.parent / "examples" / "demo"

DOMAIN = "contoso.com"
ORG_NAME = "contoso.onmicrosoft.com"
ORG_PATH = "NAMPR05A003.PROD.OUTLOOK.COM/Microsoft Exchange Hosted Organizations/" + ORG_NAME
TENANT_ID = "3f0d8a5c-9b1e-4c27-8d43-6a2e91f7b0c4"
DAY1 = datetime(2024, 10, 14)  # Monday; all times are UTC
DAYS = 3
SID_PREFIX = "S-1-5-21-2887411935-3302466312-1812360937-"

# Well-known application ids that appear in real records.
APP_EXO_POWERSHELL = "fb78d390-0c51-40cd-8e17-fdbfab77341b"  # Exchange REST PowerShell
APP_EXO_ADMIN_CENTER = "497effe9-df71-4043-a8bb-14cf78c4b63b"  # Exchange admin center
APP_OWA = "00000002-0000-0ff1-ce00-000000000000"  # Office 365 Exchange Online
APP_OFFICE = "d3590ed6-52b3-4102-aeff-aad2292ab01c"  # Microsoft Office (Outlook desktop)
APP_TEAMS = "1fec8e78-bce4-4aaf-ab1b-5451cc387264"
APP_GRAPH = "00000003-0000-0000-c000-000000000000"
RES_SHAREPOINT = "00000003-0000-0ff1-ce00-000000000000"

SYSTEM_SERVICEHOST = "NT AUTHORITY\\SYSTEM (Microsoft.Exchange.ServiceHost)"
DISCOVERY_MAILBOX = "DiscoverySearchMailbox{D919BA05-46A6-415f-80AD-7E09334BB852}"

UA_EDGE = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/129.0.0.0 Safari/537.36 Edg/129.0.0.0"
)
UA_MAC = (
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/17.6 Safari/605.1.15"
)
UA_ATTACKER = "Mozilla/5.0 (X11; Linux x86_64; rv:131.0) Gecko/20100101 Firefox/131.0"
UA_POWERSHELL = "Mozilla/5.0 (Windows NT; Windows NT 10.0; en-US) WindowsPowerShell/5.1.22621.4249"

RECORD_TYPE_NAMES = {
    1: "ExchangeAdmin",
    2: "ExchangeItem",
    3: "ExchangeItemGroup",
    6: "SharePointFileOperation",
    8: "AzureActiveDirectory",
    15: "AzureActiveDirectoryStsLogon",
    50: "ExchangeItemAggregated",
}

# Output files, in the order EXPECTED.md lists them.
BLOB = "ual_api_blob.json"
NDJSON = "ual_ndjson.jsonl"
SPACED = "ual_spaced.ndjson"
PURVIEW_NEW = "purview_new.csv"
PURVIEW_CLASSIC = "purview_classic.csv"
SEARCH_UAL = "search_unifiedauditlog.csv"
CONVERTTO = "convertto_json.json"
AUDIT_FILES = [BLOB, NDJSON, SPACED, PURVIEW_NEW, PURVIEW_CLASSIC, SEARCH_UAL, CONVERTTO]

# Exchange admin operations that only the targeted ConvertTo-Json search returns.
CONVERTTO_OPERATIONS = {"New-InboxRule", "Set-InboxRule", "Set-Mailbox"}

rng = random.Random(SEED)


# --------------------------------------------------------------------------------------------
# Identifiers
# --------------------------------------------------------------------------------------------


def guid() -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def exchange_record_id() -> str:
    """Exchange admin record Ids end in a time-ordered ``08dc…`` group in real data."""
    head = guid()[:23]
    return f"{head}-08dc{rng.getrandbits(32):08x}"


def puid() -> str:
    return f"1003{rng.getrandbits(48):012X}"


def store_id(prefix: str) -> str:
    """An Exchange store id (``LgAAAA…`` folder, ``RgAAAA…`` item)."""
    raw = base64.b64encode(rng.randbytes(45)).decode()
    return prefix + raw[:58] + "AAAB"


def message_id(server: str) -> str:
    return f"<{server}{rng.getrandbits(96):024X}@{server}.namprd05.prod.outlook.com>"


def with_port(ip: str) -> str:
    """Admin records carry ``ip:port`` or ``[ipv6]:port``."""
    port = rng.randint(1024, 65000)
    return f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"


def server(mailbox_side: bool = False) -> str:
    name = rng.choice(["BY5PR05MB7012", "SA1PR05MB8411", "CH3PR05MB7864", "MN2PR05MB6630"])
    value = f"{name} (15.20.{rng.choice(['8048.020', '8069.015', '8093.014'])})"
    # Mailbox-audit records sometimes keep the line break (formats.md 2.4).
    if mailbox_side and rng.random() < 0.4:
        value += "\r\n"
    return value


def fmt_time(when: datetime) -> str:
    return when.strftime("%Y-%m-%dT%H:%M:%S")


def at(day: int, hms: str) -> datetime:
    h, m, s = (int(x) for x in hms.split(":"))
    return DAY1 + timedelta(days=day, hours=h, minutes=m, seconds=s)


def work_time(day: int) -> datetime:
    return DAY1 + timedelta(days=day, seconds=rng.randint(7 * 3600, 18 * 3600 + 1800))


# --------------------------------------------------------------------------------------------
# The tenant
# --------------------------------------------------------------------------------------------


@dataclass
class Account:
    upn: str
    display: str
    title: str
    kind: str = "Member"  # Member | Guest
    enabled: bool = True
    mail: str = ""
    ip: str = ""
    object_id: str = field(default_factory=guid)
    puid: str = field(default_factory=puid)
    sid: str = field(default_factory=lambda: SID_PREFIX + str(rng.randint(10_000_000, 99_999_999)))
    mailbox_guid: str = field(default_factory=guid)
    active: bool = True  # produces background activity

    def __post_init__(self) -> None:
        self.mail = self.mail or self.upn


PEOPLE = [
    # key, local part, display name, title
    ("ceo", "robert.chen", "Robert Chen", "Chief Executive Officer"),
    ("cfo", "dana.whitfield", "Dana Whitfield", "Chief Financial Officer"),
    ("ea", "emily.stone", "Emily Stone", "Executive Assistant"),
    ("helpdesk", "mark.ross", "Mark Ross", "IT Helpdesk Administrator"),
    ("exadmin", "sarah.kim", "Sarah Kim", "Messaging Administrator"),
    ("tadmin", "adm-tvance", "Tom Vance (Admin)", "Cloud Administrator"),
    ("tom", "tom.vance", "Tom Vance", "Infrastructure Engineer"),
    ("payroll", "priya.natarajan", "Priya Natarajan", "Payroll Specialist"),
    ("kevin", "kevin.obrien", "Kevin O'Brien", "Marketing Manager"),
    ("olivia", "olivia.bennett", "Olivia Bennett", "Sales Director"),
    ("nina", "nina.patel", "Nina Patel", "Treasury Analyst"),
    ("liam", "liam.walsh", "Liam Walsh", "Accounts Payable Clerk"),
    ("jose", "jose.alvarez", "José Álvarez", "Controller"),
    ("zoe", "zoe.brandt", "Zoë Brandt", "HR Business Partner"),
]
OTHER_STAFF = [
    ("aaron.mills", "Aaron Mills", "Account Executive"),
    ("beatriz.souza", "Beatriz Souza", "Financial Analyst"),
    ("chloe.martin", "Chloe Martin", "Product Manager"),
    ("daniel.okafor", "Daniel Okafor", "Software Engineer"),
    ("ella.fischer", "Ella Fischer", "Legal Counsel"),
    ("farid.haddad", "Farid Haddad", "Data Analyst"),
    ("grace.liu", "Grace Liu", "Procurement Lead"),
    ("hannah.berg", "Hannah Berg", "Office Manager"),
    ("ivan.petrov", "Ivan Petrov", "Network Engineer"),
    ("julia.romano", "Julia Romano", "Customer Success Manager"),
    ("kenji.sato", "Kenji Sato", "Solutions Architect"),
    ("laura.hughes", "Laura Hughes", "Recruiter"),
    ("mateo.garcia", "Mateo Garcia", "Sales Engineer"),
    ("naomi.clarke", "Naomi Clarke", "Content Strategist"),
    ("oscar.lindqvist", "Oscar Lindqvist", "QA Engineer"),
    ("paula.nowak", "Paula Nowak", "Accountant"),
    ("quentin.moreau", "Quentin Moreau", "Support Engineer"),
    ("rachel.adams", "Rachel Adams", "Operations Manager"),
    ("samuel.reid", "Samuel Reid", "Security Analyst"),
    ("tara.singh", "Tara Singh", "UX Designer"),
]
# Accounts that own no interactive activity: services, shared mailboxes.
SERVICE_ACCOUNTS = [
    ("svcsync", "svc-mailsync", "Mail Sync Service", "Service account", True),
    ("svcbackup", "svc-backup", "Backup Service", "Service account", True),
    ("ap", "accounts.payable", "Accounts Payable", "Shared mailbox", False),
    ("legal", "legal", "Legal Team", "Shared mailbox", False),
    ("treasury", "treasury", "Treasury", "Shared mailbox", False),
]
GUESTS = [
    ("guest_fabrikam", "partner@fabrikam.com", "Pat Ortiz (Fabrikam)"),
    ("guest_northwind", "a.novak@northwindtraders.com", "Ana Novak (Northwind Traders)"),
]

ATTACKER_IP_MARK = "192.0.2.77"  # RFC 5737 documentation ranges stand in for real addresses
ATTACKER_IP_TVANCE = "2001:db8:7a1:4e00::42"
ATTACKER_IP_PRIYA = "192.0.2.140"
OFFICE_IP = "198.51.100.23"
EXTERNAL_SMTP = "j.harper.consulting@gmail.com"
LOOKALIKE_SMTP = "billing@c0ntoso.com"


def build_accounts() -> dict[str, Account]:
    accounts: dict[str, Account] = {}
    for n, (key, local, display, title) in enumerate(PEOPLE):
        accounts[key] = Account(f"{local}@{DOMAIN}", display, title, ip=home_ip(n))
    accounts["ceo"].mail = f"ceo@{DOMAIN}"  # UPN and primary SMTP differ for the CEO
    for n, (local, display, title) in enumerate(OTHER_STAFF, start=len(PEOPLE)):
        accounts[local] = Account(f"{local}@{DOMAIN}", display, title, ip=home_ip(n))
    for key, local, display, title, enabled in SERVICE_ACCOUNTS:
        accounts[key] = Account(f"{local}@{DOMAIN}", display, title, enabled=enabled, active=False)
    for key, mail, display in GUESTS:
        upn = mail.replace("@", "_") + "#EXT#@" + ORG_NAME
        accounts[key] = Account(upn, display, "Guest", kind="Guest", mail=mail, active=False)
    accounts["liam"].enabled = False  # left the company; his access is being cleaned up
    accounts["liam"].active = False
    return accounts


def home_ip(n: int) -> str:
    if n % 5 == 3:
        return f"2001:db8:1f{n:02x}::{rng.randint(1, 0xFFFF):x}"
    return OFFICE_IP if n % 2 == 0 else f"203.0.113.{10 + n}"


# --------------------------------------------------------------------------------------------
# Record builders
# --------------------------------------------------------------------------------------------


def common(when: datetime, record_id: str, op: str, record_type: int, status: str | None,
           user_key: str, user_type: int, workload: str) -> dict:
    rec = {
        "CreationTime": fmt_time(when),
        "Id": record_id,
        "Operation": op,
        "OrganizationId": TENANT_ID,
        "RecordType": record_type,
    }
    if status is not None:
        rec["ResultStatus"] = status
    rec.update({"UserKey": user_key, "UserType": user_type, "Version": 1, "Workload": workload})
    return rec


def params(**pairs: str) -> list[dict]:
    """Exchange ``Parameters``: a Name/Value list, every value a string."""
    return [{"Name": k, "Value": v} for k, v in pairs.items()]


def exo_admin(when: datetime, actor: Account | None, op: str, parameters: list[dict], *,
              object_id: str, ip: str | None = None, session: str | None = None,
              app_id: str = APP_EXO_POWERSHELL, status: str = "True", user_type: int = 2) -> dict:
    """ExchangeAdmin (RecordType 1): one cmdlet run. ``actor=None`` is the ServiceHost system."""
    if actor is None:
        rec = common(when, exchange_record_id(), op, 1, status, SYSTEM_SERVICEHOST, 3, "Exchange")
        rec["AppAccessContext"] = {"UniqueTokenId": ""}
        rec.update({"ObjectId": object_id, "UserId": SYSTEM_SERVICEHOST, "AppId": "",
                    "ClientAppId": "", "ExternalAccess": True})
    else:
        rec = common(when, exchange_record_id(), op, 1, status, actor.puid, user_type, "Exchange")
        rec.update({"ClientIP": with_port(ip or actor.ip), "ObjectId": object_id,
                    "UserId": actor.upn, "AppId": app_id, "ClientAppId": "",
                    "ExternalAccess": False})
    rec.update({"OrganizationName": ORG_NAME, "OriginatingServer": server(),
                "Parameters": parameters})
    if actor is not None:
        rec["RequestId"] = guid()
        rec["SessionId"] = session or guid()
    return rec


def mailbox_fields(actor: Account, owner: Account, *, logon_type: int, client_info: str,
                   ip: str, app_id: str, session: str) -> dict:
    return {
        "ClientIP": ip,
        "UserId": actor.upn,
        "AppId": app_id,
        "ClientAppId": "",
        "ClientIPAddress": ip,
        "ClientInfoString": client_info,
        "ExternalAccess": False,
        "InternalLogonType": 0,
        "LogonType": logon_type,
        "LogonUserSid": actor.sid,
        "MailboxGuid": owner.mailbox_guid,
        "MailboxOwnerSid": owner.sid,
        "MailboxOwnerUPN": owner.upn,
        "OrganizationName": ORG_NAME,
        "OriginatingServer": server(mailbox_side=True),
        "SessionId": session,
    }


def mailbox_item(when: datetime, actor: Account, owner: Account, op: str, *, logon_type: int = 0,
                 client_info: str = "Client=MSExchangeRPC", ip: str | None = None,
                 app_id: str = APP_OFFICE, session: str | None = None, user_type: int = 0,
                 **extra: object) -> dict:
    """ExchangeItem (RecordType 2): Send, SendAs, MailboxLogin, *FolderPermissions."""
    rec = common(when, guid(), op, 2, "Succeeded", actor.puid, user_type, "Exchange")
    rec.update(mailbox_fields(actor, owner, logon_type=logon_type, client_info=client_info,
                              ip=ip or actor.ip, app_id=app_id, session=session or guid()))
    rec.update(extra)
    return rec


def mail_items_accessed(when: datetime, actor: Account, owner: Account, *, access: str,
                        folders: list[str], logon_type: int = 0, ip: str | None = None,
                        client_info: str = "Client=REST;Client=RESTSystem;;",
                        app_id: str = APP_OFFICE, session: str | None = None,
                        user_type: int = 0) -> dict:
    """ExchangeItemAggregated (RecordType 50) MailItemsAccessed, Bind or Sync."""
    rec = common(when, guid(), "MailItemsAccessed", 50, "Succeeded", actor.puid, user_type,
                 "Exchange")
    rec.update(mailbox_fields(actor, owner, logon_type=logon_type, client_info=client_info,
                              ip=ip or actor.ip, app_id=app_id, session=session or guid()))
    rec["OperationProperties"] = params(MailAccessType=access, IsThrottled="False")
    entries = []
    count = 0
    for path in folders:
        entry: dict = {"Id": store_id("LgAAAAA"), "Path": path}
        if access == "Bind":
            items = [
                {"Id": store_id("RgAAAAA"), "InternetMessageId": message_id("SA1PR05MB8411"),
                 "SizeInBytes": rng.randint(9_000, 240_000)}
                for _ in range(rng.randint(1, 6))
            ]
            entry["FolderItems"] = items
            count += len(items)
        else:
            count += 1
        entries.append(entry)
    rec["Folders"] = entries
    rec["OperationCount"] = count
    return rec


def folder_permission(when: datetime, actor: Account, owner: Account, op: str, *,
                      path: str, name: str, member_upn: str, member_sid: str, rights: str,
                      logon_type: int, client_info: str, ip: str, user_type: int = 0,
                      app_id: str = APP_OWA) -> dict:
    """Add/ModifyFolderPermissions mailbox-audit record (RecordType 2)."""
    folder_id = store_id("LgAAAAA")
    item = {"Id": folder_id, "ParentFolder": {
        "Id": folder_id, "MemberRights": rights, "MemberSid": member_sid,
        "MemberUpn": member_upn, "Name": name, "Path": path}}
    return mailbox_item(when, actor, owner, op, logon_type=logon_type, client_info=client_info,
                        ip=ip, app_id=app_id, user_type=user_type, Item=item)


def sent_item(subject: str, folder: str = "\\Sent Items") -> dict:
    return {"Id": store_id("RgAAAAA"), "InternetMessageId": message_id("BY5PR05MB7012"),
            "ParentFolder": {"Id": store_id("LgAAAAA"), "Path": folder},
            "SizeInBytes": rng.randint(8_000, 90_000), "Subject": subject}


def actor_list(actor: Account) -> list[dict]:
    return [{"ID": actor.upn, "Type": 5}, {"ID": actor.puid, "Type": 3},
            {"ID": f"User_{actor.object_id}", "Type": 2}, {"ID": actor.object_id, "Type": 2},
            {"ID": "User", "Type": 2}]


def aad_admin(when: datetime, actor: Account, op: str, *, object_id: str, category: str,
              target: list[dict], modified: list[dict], user_agent: str = "") -> dict:
    """AzureActiveDirectory (RecordType 8) directory audit record, UAL shape."""
    rec = common(when, guid(), op, 8, "Success", f"{actor.puid}@{DOMAIN}", 0,
                 "AzureActiveDirectory")
    details = json.dumps({"User-Agent": user_agent}, separators=(",", ":")) if user_agent else "{}"
    rec.update({
        "ObjectId": object_id,
        "UserId": actor.upn,
        "AzureActiveDirectoryEventType": 1,
        "ExtendedProperties": params(additionalDetails=details,
                                     extendedAuditEventCategory=category),
        "ModifiedProperties": modified,
        "Actor": actor_list(actor),
        "ActorContextId": TENANT_ID,
        "InterSystemsId": guid(),
        "IntraSystemId": guid(),
        "SupportTicketId": "",
        "Target": target,
        "TargetContextId": TENANT_ID,
    })
    return rec


def modified(name: str, new: str, old: str = "") -> dict:
    return {"Name": name, "NewValue": new, "OldValue": old}


def user_logged_in(when: datetime, user: Account, *, ip: str | None = None,
                   app: str = APP_OFFICE, resource: str = APP_OWA, user_agent: str = UA_EDGE,
                   session: str | None = None, os_name: str = "Windows10") -> dict:
    """AzureActiveDirectoryStsLogon (RecordType 15) UserLoggedIn."""
    ip = ip or user.ip
    rec = common(when, guid(), "UserLoggedIn", 15, "Success", user.object_id, 0,
                 "AzureActiveDirectory")
    rec.update({
        "ClientIP": ip,
        "ObjectId": resource,
        "UserId": user.upn,
        "AzureActiveDirectoryEventType": 1,
        "ExtendedProperties": params(ResultStatusDetail="Redirect", UserAgent=user_agent,
                                     RequestType="OAuth2:Authorize"),
        "ModifiedProperties": [],
        "Actor": [{"ID": user.object_id, "Type": 0}, {"ID": user.upn, "Type": 5}],
        "ActorContextId": TENANT_ID,
        "ActorIpAddress": ip,
        "InterSystemsId": guid(),
        "IntraSystemId": guid(),
        "SupportTicketId": "",
        "Target": [{"ID": resource, "Type": 0}],
        "TargetContextId": TENANT_ID,
        "ApplicationId": app,
        "DeviceProperties": params(OS=os_name, BrowserType="Edge", IsCompliantAndManaged="False",
                                   SessionId=session or guid()),
        "ErrorNumber": "0",
    })
    return rec


SITES = {
    "Finance": ["Q3 Forecast.xlsx", "Vendor Master.xlsx", "Board Pack Oct.pptx"],
    "Marketing": ["Campaign Plan FY25.docx", "Brand Guidelines.pdf", "Webinar Leads.csv"],
    "Engineering": ["Architecture Overview.docx", "Release Checklist.xlsx", "Runbook.docx"],
    "HR": ["Holiday Calendar 2025.pdf", "Onboarding Checklist.docx"],
}


def file_accessed(when: datetime, user: Account) -> dict:
    """SharePointFileOperation (RecordType 6) FileAccessed."""
    site = rng.choice(sorted(SITES))
    name = rng.choice(SITES[site])
    site_url = f"https://contoso.sharepoint.com/sites/{site}/"
    rec = common(when, guid(), "FileAccessed", 6, None,
                 f"i:0h.f|membership|{user.puid.lower()}@live.com", 0, "SharePoint")
    rec.update({
        "ClientIP": user.ip,
        "ObjectId": f"{site_url}Shared Documents/{name}",
        "UserId": user.upn,
        "CorrelationId": guid(),
        "EventSource": "SharePoint",
        "ItemType": "File",
        "ListId": guid(),
        "ListItemUniqueId": guid(),
        "Site": guid(),
        "UserAgent": rng.choice([UA_EDGE, UA_MAC]),
        "WebId": guid(),
        "SourceFileExtension": name.rsplit(".", 1)[1],
        "SiteUrl": site_url,
        "SourceFileName": name,
        "SourceRelativeUrl": "Shared Documents",
    })
    return rec


# --------------------------------------------------------------------------------------------
# The scenario
# --------------------------------------------------------------------------------------------


@dataclass
class Note:
    """An attack record or a benign look-alike, for EXPECTED.md."""

    record: dict
    kind: str  # attack | benign
    chain: str
    what: str
    expect: str  # attack: what should fire; benign: why it must stay quiet


class Scenario:
    def __init__(self, accounts: dict[str, Account]) -> None:
        self.a = accounts
        self.records: list[dict] = []
        self.notes: list[Note] = []
        self.extra_files: dict[str, list[str]] = {}  # record Id -> additional files

    def add(self, rec: dict, *, also: str | None = None) -> dict:
        self.records.append(rec)
        if also:
            self.extra_files.setdefault(rec["Id"], []).append(also)
        return rec

    def attack(self, rec: dict, chain: str, what: str, expect: str, **kw: str) -> dict:
        self.notes.append(Note(rec, "attack", chain, what, expect))
        return self.add(rec, **kw)

    def benign(self, rec: dict, what: str, why: str, **kw: str) -> dict:
        self.notes.append(Note(rec, "benign", "-", what, why))
        return self.add(rec, **kw)

    # ---- background -------------------------------------------------------------------

    def background(self) -> None:
        people = [acc for acc in self.a.values() if acc.active]
        subjects = ["Re: Q4 budget review", "Weekly sync notes", "FW: customer escalation",
                    "Re: travel approval", "Draft agenda for Thursday", "Invoice query – PO 4471",
                    "Re: Kevin's launch deck", "Lunch & learn: Copilot tips"]
        for day in range(DAYS):
            for user in people:
                session = guid()
                first = work_time(day)
                self.add(user_logged_in(first, user, session=session,
                                        app=rng.choice([APP_OFFICE, APP_OWA, APP_TEAMS]),
                                        resource=rng.choice([APP_OWA, RES_SHAREPOINT]),
                                        user_agent=rng.choice([UA_EDGE, UA_MAC])))
                if rng.random() < 0.55:
                    self.add(file_accessed(work_time(day), user))
                if rng.random() < 0.5:
                    self.add(mail_items_accessed(
                        work_time(day), user, user, access=rng.choice(["Bind", "Sync"]),
                        folders=rng.choice([["\\Inbox"], ["\\Inbox", "\\Sent Items"]]),
                        session=session))
                if rng.random() < 0.35:
                    self.add(mailbox_item(work_time(day), user, user, "Send", session=session,
                                          ClientProcessName="OUTLOOK.EXE",
                                          ClientVersion="16.0.17928.20114",
                                          Item=sent_item(rng.choice(subjects)),
                                          SaveToSentItems=True))
                if rng.random() < 0.2:
                    self.add(mailbox_item(work_time(day), user, user, "MailboxLogin",
                                          client_info="Client=Microsoft.Exchange.Mapi;"
                                                      "Client=MSExchangeRPC",
                                          session=session))
            # Routine admin and system cmdlets.
            self.add(exo_admin(work_time(day), self.a["exadmin"], "Set-CASMailbox",
                               params(Identity=rng.choice(people).upn, PopEnabled="False",
                                      ImapEnabled="False"),
                               object_id=guid(), app_id=APP_EXO_ADMIN_CENTER))
            user = rng.choice(people)
            self.add(exo_admin(work_time(day), user, "Set-MailboxRegionalConfiguration",
                               params(Identity=user.object_id, Language="en-US",
                                      TimeZone="Eastern Standard Time"),
                               object_id=user.object_id, app_id=APP_OWA, user_type=0))
            self.add(exo_admin(at(day, "03:17:05") + timedelta(minutes=day), None, "Set-Mailbox",
                               params(DomainController="",
                                      Identity=f"{ORG_PATH}/{DISCOVERY_MAILBOX}",
                                      ProhibitSendReceiveQuota="50 GB (53,687,091,200 bytes)"),
                               object_id=f"{ORG_PATH}/{DISCOVERY_MAILBOX}"))

    # ---- day 1: the cloud admin account adm-tvance is compromised --------------------------

    def day1_impersonation(self) -> None:
        t = self.a["tadmin"]
        session = guid()
        self.add(user_logged_in(at(0, "08:52:11"), t, ip=ATTACKER_IP_TVANCE, session=session,
                                app=APP_EXO_POWERSHELL, user_agent=UA_ATTACKER,
                                os_name="Linux"))
        svc = self.a["svcsync"]
        self.attack(
            exo_admin(at(0, "09:03:40"), t, "New-RoleGroup",
                      params(Name="AppImpersonate", Roles="ApplicationImpersonation",
                             Members=svc.object_id),
                      object_id=f"{ORG_PATH}/AppImpersonate", ip=ATTACKER_IP_TVANCE,
                      session=session),
            "6", "New-RoleGroup `AppImpersonate` with Roles=ApplicationImpersonation, "
                 f"Members=`{svc.object_id}` (svc-mailsync)",
            "impersonation role granted via role group (detections.md gap 1; Splunk #17 and "
            "Elastic #18 miss it)")
        self.attack(
            exo_admin(at(0, "09:05:02"), t, "New-ManagementRoleAssignment",
                      params(Name="ApplicationImpersonation-svc-backup",
                             Role="ApplicationImpersonation", User=self.a["svcbackup"].upn),
                      object_id="ApplicationImpersonation-svc-backup", ip=ATTACKER_IP_TVANCE,
                      session=session),
            "6", "New-ManagementRoleAssignment Role=ApplicationImpersonation "
                 "User=svc-backup@contoso.com",
            "ApplicationImpersonation role assignment (Splunk #17, Elastic #18, idea 7)")
        self.attack(
            exo_admin(at(0, "09:07:55"), t, "Set-MailboxAuditBypassAssociation",
                      params(AuditBypassEnabled="True", Identity=svc.upn),
                      object_id=svc.object_id, ip=ATTACKER_IP_TVANCE, session=session),
            "9", "Set-MailboxAuditBypassAssociation AuditBypassEnabled=True on svc-mailsync",
            "mailbox audit bypass (Elastic #51, idea 16); same session as the role group")

        # Chain 8: admin consent to a mail-reading app.
        app_id, app_sp, grant_id = guid(), guid(), guid()
        graph_sp = "6f3b1c2e-5a4d-4e8f-9b7a-2c1d0e9f8a7b"
        scope = "User.Read Mail.ReadWrite offline_access"
        self.attack(
            aad_admin(at(0, "09:21:18"), t, "Add delegated permission grant.",
                      object_id=graph_sp, category="ServicePrincipal",
                      user_agent=UA_ATTACKER,
                      target=[{"ID": f"ServicePrincipal_{graph_sp}", "Type": 2},
                              {"ID": graph_sp, "Type": 2}, {"ID": "ServicePrincipal", "Type": 2},
                              {"ID": "Microsoft Graph", "Type": 1},
                              {"ID": APP_GRAPH, "Type": 2},
                              {"ID": f"{APP_GRAPH}/ags.windows.net", "Type": 4}],
                      modified=[modified("DelegatedPermissionGrant.Scope", scope),
                                modified("DelegatedPermissionGrant.ConsentType", "AllPrincipals"),
                                modified("ServicePrincipal.ObjectID", app_sp),
                                modified("Included Updated Properties",
                                         "DelegatedPermissionGrant.Scope, "
                                         "DelegatedPermissionGrant.ConsentType, "
                                         "ServicePrincipal.ObjectID")]),
            "8", f"Add delegated permission grant. Scope `{scope}` to Microsoft Graph for app "
                 "`Mail Archiver Pro`, ConsentType AllPrincipals",
            "Mail.* delegated permission grant (Sentinel #23, Sigma #26, idea 8)")
        self.attack(
            aad_admin(at(0, "09:21:18"), t, "Consent to application.",
                      object_id=app_sp, category="ServicePrincipal", user_agent=UA_ATTACKER,
                      target=[{"ID": f"ServicePrincipal_{app_sp}", "Type": 2},
                              {"ID": app_sp, "Type": 2}, {"ID": "ServicePrincipal", "Type": 2},
                              {"ID": "Mail Archiver Pro", "Type": 1}, {"ID": app_id, "Type": 2},
                              {"ID": app_id, "Type": 4}],
                      modified=[modified("ConsentContext.IsAdminConsent", "True"),
                                modified("ConsentContext.IsAppOnly", "False"),
                                modified("ConsentContext.OnBehalfOfAll", "True"),
                                modified("ConsentContext.Tags",
                                         "WindowsAzureActiveDirectoryIntegratedApp"),
                                modified("ConsentAction.Permissions",
                                         f"[] => [[Id: {grant_id}, ClientId: {app_sp}, "
                                         f"PrincipalId: , ResourceId: {graph_sp}, ConsentType: "
                                         f"AllPrincipals, Scope: {scope}, CreatedDateTime: , "
                                         "LastModifiedDateTime ]]; "),
                                modified("TargetId.ServicePrincipalNames", app_id)]),
            "8", "Consent to application. (admin consent, OnBehalfOfAll) for `Mail Archiver Pro`",
            "the consent that produced the grant above (Sentinel #21/#23 join on it)")

    def day1_benign(self) -> None:
        a = self.a
        self.benign(
            exo_admin(at(0, "04:26:29"), None, "Add-MailboxPermission",
                      params(DomainController="", Identity=f"{ORG_PATH}/{DISCOVERY_MAILBOX}",
                             User=f"{ORG_PATH}/Discovery Management", AccessRights="FullAccess"),
                      object_id=f"{ORG_PATH}/{DISCOVERY_MAILBOX}"),
            "system FullAccess on DiscoverySearchMailbox for Discovery Management",
            "NT AUTHORITY\\SYSTEM (Microsoft.Exchange.ServiceHost), UserType 3: routine "
            "Microsoft maintenance (formats.md 2.6 c)")
        group = Account(f"ProjectFalcon.4861903275.qhzvkmwa@{ORG_NAME}", "Project Falcon",
                        "M365 group", active=False)
        system = Account("S-1-5-18", "SYSTEM", "system", active=False)
        system.puid, system.sid = "S-1-5-18", "S-1-5-18"
        for when, member, sid_suffix, rights in [
            ("10:12:41", "Member@local", "1",
             "ReadAny, Visible, FreeBusySimple, FreeBusyDetailed"),
            ("10:12:41", "Owner@local", "0",
             "ReadAny, Create, EditOwned, DeleteOwned, EditAny, DeleteAny, Visible, "
             "FreeBusySimple, FreeBusyDetailed"),
        ]:
            rec = folder_permission(
                at(0, when), system, group, "ModifyFolderPermissions", path="\\Calendar",
                name="Calendar", member_upn=member,
                member_sid=f"S-1-8-2005823449-1144108501-1529089953-3087822558-{sid_suffix}",
                rights=rights, logon_type=1, user_type=2, ip="::1", app_id="",
                client_info="Client=WebServices;Action=ConfigureGroupMailbox")
            rec["ExternalAccess"] = True
            rec["InternalLogonType"] = 1
            rec["MailboxOwnerMasterAccountSid"] = "S-1-5-10"
            del rec["SessionId"], rec["AppId"], rec["ClientAppId"]
            self.benign(rec, f"S-1-5-18 ModifyFolderPermissions on a new group mailbox "
                             f"\\Calendar for {member}",
                        "system group-mailbox setup (Client=WebServices;Action="
                        "ConfigureGroupMailbox), Calendar, placeholder members")
        self.benign(
            exo_admin(at(0, "11:30:05"), a["exadmin"], "Add-MailboxFolderPermission",
                      params(Identity=f"{a['ceo'].upn}:\\Calendar", User=a["ea"].upn,
                             AccessRights="Reviewer"),
                      object_id=f"{a['ceo'].upn}:\\Calendar", app_id=APP_EXO_ADMIN_CENTER),
            "executive assistant given Reviewer on the CEO's \\Calendar",
            "calendar sharing with a named internal colleague by the messaging admin")

    # ---- day 2: BEC through the compromised helpdesk admin ---------------------------------

    def day2_bec(self) -> None:
        m, cfo = self.a["helpdesk"], self.a["cfo"]
        session = guid()
        self.add(user_logged_in(at(1, "13:40:02"), m, ip=ATTACKER_IP_MARK, session=session,
                                app=APP_EXO_POWERSHELL, user_agent=UA_ATTACKER, os_name="Linux"))
        self.attack(
            aad_admin(at(1, "13:44:27"), m, "Reset user password.", object_id=cfo.upn,
                      category="User",
                      target=[{"ID": f"User_{cfo.object_id}", "Type": 2},
                              {"ID": cfo.object_id, "Type": 2}, {"ID": "User", "Type": 2},
                              {"ID": cfo.upn, "Type": 5}, {"ID": cfo.puid, "Type": 3}],
                      modified=[]),
            "1", "helpdesk admin resets the CFO's password",
            "account takeover step; with the next record: reset then grant on the same "
            "object id (detections.md gap 6)")
        self.add(aad_admin(at(1, "13:44:27"), m, "Update StsRefreshTokenValidFrom Timestamp.",
                           object_id=cfo.upn, category="User",
                           target=[{"ID": f"User_{cfo.object_id}", "Type": 2},
                                   {"ID": cfo.object_id, "Type": 2}, {"ID": "User", "Type": 2},
                                   {"ID": cfo.upn, "Type": 5}, {"ID": cfo.puid, "Type": 3}],
                           modified=[modified("Included Updated Properties", "")],
                           user_agent="O365AdminPortal"))
        self.attack(
            exo_admin(at(1, "13:44:51"), m, "Add-MailboxPermission",
                      params(Identity=cfo.object_id, User=m.object_id, AccessRights="FullAccess",
                             InheritanceType="All", AutoMapping="False"),
                      object_id=cfo.object_id, ip=ATTACKER_IP_MARK, session=session),
            "1", "FullAccess on the CFO mailbox to the helpdesk admin, AutoMapping False; "
                 "Identity and User are object GUIDs",
            "FullAccess grant (Elastic #1, Splunk #2, idea 1); sequence reset -> grant 24 s "
            "later on the same object id; AutoMapping False hides it from Outlook",
            also=SEARCH_UAL)
        self.attack(
            exo_admin(at(1, "13:47:09"), m, "New-InboxRule",
                      params(AlwaysDeleteOutlookRulesBlob="False", Force="False",
                             Mailbox=cfo.upn, Name=".", SubjectContainsWords="invoice",
                             MoveToFolder="RSS Feeds", MarkAsRead="True",
                             StopProcessingRules="True"),
                      object_id=f"{ORG_PATH}/{cfo.object_id}\\.", ip=ATTACKER_IP_MARK,
                      session=session),
            "1", "hiding inbox rule `.` on the CFO mailbox: invoice mail marked read and moved "
                 "to RSS Feeds",
            "hiding inbox rule (Sigma #33, Splunk #38, Elastic #36, idea 11); same SessionId "
            "as the grant", also=PURVIEW_NEW)
        for when, access, folders in [("13:52:30", "Sync", ["\\Inbox"]),
                                      ("13:55:12", "Bind", ["\\Inbox"]),
                                      ("14:02:47", "Bind", ["\\Sent Items", "\\Inbox"]),
                                      ("14:18:05", "Bind", ["\\Inbox\\Invoices"])]:
            self.attack(
                mail_items_accessed(at(1, when), m, cfo, access=access, folders=folders,
                                    logon_type=2, ip=ATTACKER_IP_MARK, app_id=APP_OWA,
                                    client_info="Client=OWA;Action=ViaProxy", session=session,
                                    user_type=2),
                "1", f"non-owner MailItemsAccessed ({access}) of the CFO mailbox by the "
                     f"helpdesk admin, LogonType 2",
                "use of the delegation (Sentinel #47, idea 15): grant -> access within minutes")

    def day2_folders(self) -> None:
        t, ceo, s = self.a["tadmin"], self.a["ceo"], self.a["exadmin"]
        session = guid()
        self.add(user_logged_in(at(1, "15:02:44"), t, ip=ATTACKER_IP_TVANCE, session=session,
                                app=APP_EXO_POWERSHELL, user_agent=UA_ATTACKER, os_name="Linux"))
        self.attack(
            exo_admin(at(1, "15:10:33"), t, "Set-MailboxFolderPermission",
                      params(Identity=f"{ceo.mail}:\\", User="Default",
                             AccessRights="FolderVisible"),
                      object_id=f"{ceo.mail}:\\", ip=ATTACKER_IP_TVANCE, session=session),
            "4", "Default given FolderVisible on the CEO's root folder (`ceo@contoso.com:\\`)",
            "Default user given anything but None on the root (seed rule, idea 5, gap 3)")
        self.attack(
            exo_admin(at(1, "15:11:02"), t, "Add-MailboxFolderPermission",
                      params(Identity=f"{ceo.mail}:\\Inbox", User="Default",
                             AccessRights="Reviewer"),
                      object_id=f"{ceo.mail}:\\Inbox", ip=ATTACKER_IP_TVANCE, session=session),
            "4", "Default given Reviewer on the CEO's Inbox",
            "Default user can read the Inbox (seed rule, idea 5/6; Splunk #13 fires on Reviewer)")
        targets = [self.a[k] for k in ("olivia", "kevin", "aaron.mills")]
        for when, who, rights in [("10:05:19", targets[0], "AvailabilityOnly"),
                                  ("10:06:48", targets[1], "LimitedDetails")]:
            self.benign(
                exo_admin(at(1, when), s, "Set-MailboxFolderPermission",
                          params(Identity=f"{who.upn}:\\Calendar", User="Default",
                                 AccessRights=rights),
                          object_id=f"{who.upn}:\\Calendar", app_id=APP_EXO_ADMIN_CENTER),
                f"Default set to {rights} on a user's \\Calendar",
                "calendar free/busy for Default is normal and must not alert (brief)",
                also=SEARCH_UAL if rights == "AvailabilityOnly" else None)
        self.benign(
            exo_admin(at(1, "10:09:02"), s, "Set-MailboxFolderPermission",
                      params(Identity=f"{targets[2].upn}:\\Inbox", User="Default",
                             AccessRights="None"),
                      object_id=f"{targets[2].upn}:\\Inbox", app_id=APP_EXO_ADMIN_CENTER),
            "Default set to None on a user's \\Inbox",
            "None removes access: a clean-up, not a grant")

    # ---- day 3: more delegation, external grantees -----------------------------------------

    def day3(self) -> None:
        a = self.a
        m, ceo, ap = a["helpdesk"], a["ceo"], a["ap"]
        session = guid()
        self.add(user_logged_in(at(2, "08:11:40"), m, ip=ATTACKER_IP_MARK, session=session,
                                app=APP_EXO_POWERSHELL, user_agent=UA_ATTACKER, os_name="Linux"))
        self.attack(
            exo_admin(at(2, "08:15:26"), m, "Add-RecipientPermission",
                      params(Identity=ceo.object_id, Trustee=m.object_id, AccessRights="SendAs"),
                      object_id=ceo.object_id, ip=ATTACKER_IP_MARK, session=session,
                      app_id=APP_EXO_ADMIN_CENTER),
            "2", "SendAs on the CEO mailbox to the helpdesk admin; Identity and Trustee are "
                 "object GUIDs",
            "SendAs grant (Elastic #1 only, idea 2)")
        self.attack(
            mailbox_item(at(2, "08:31:02"), m, ceo, "SendAs", logon_type=2, ip=ATTACKER_IP_MARK,
                         client_info="Client=OWA;Action=ViaProxy", app_id=APP_OWA,
                         session=session, user_type=2,
                         Item=sent_item("Urgent - confidential wire transfer today"),
                         SendAsUserSmtp=ceo.mail, SendAsUserMailboxGuid=ceo.mailbox_guid,
                         SaveToSentItems=False),
            "2", "SendAs used: the helpdesk admin sends as the CEO 16 minutes after the grant",
            "use of the SendAs delegation (idea 15; MITRE AN1052 TimeWindow)")
        self.attack(
            exo_admin(at(2, "08:40:57"), m, "Set-Mailbox",
                      params(Identity=ap.upn, GrantSendOnBehalfTo=LOOKALIKE_SMTP),
                      object_id=f"{ORG_PATH}/{ap.object_id}", ip=ATTACKER_IP_MARK,
                      session=session),
            "3", f"Set-Mailbox GrantSendOnBehalfTo `{LOOKALIKE_SMTP}` (look-alike domain) on "
                 "the accounts.payable shared mailbox",
            "SendOnBehalf grant (Elastic #1, idea 3) to an address outside the tenant (gap 9)")

        owner = a["payroll"]
        self.add(user_logged_in(at(2, "09:48:13"), owner, ip=ATTACKER_IP_PRIYA,
                                app=APP_OWA, user_agent=UA_ATTACKER, os_name="Linux"))
        owa = f"Client=OWA;{UA_EDGE};"
        self.attack(
            folder_permission(at(2, "09:55:41"), owner, owner, "ModifyFolderPermissions",
                              path="\\Inbox", name="Inbox", member_upn="Everyone",
                              member_sid="S-1-9-4", rights="ReadAny, Visible", logon_type=0,
                              client_info=owa, ip=ATTACKER_IP_PRIYA),
            "5", "owner (via OWA) gives Default/Everyone `ReadAny, Visible` on \\Inbox",
            "Default/Everyone can read the Inbox (seed rule; Splunk #14 and #12)")
        self.attack(
            folder_permission(at(2, "09:56:20"), owner, owner, "AddFolderPermissions",
                              path="\\", name="Top of Information Store", member_upn="Anonymous",
                              member_sid="S-1-5-7", rights="Visible", logon_type=0,
                              client_info=owa, ip=ATTACKER_IP_PRIYA),
            "5", "owner (via OWA) adds Anonymous with `Visible` on the root folder "
                 "(Top of Information Store)",
            "Anonymous given anything but None on the root (seed rule; no public rule covers "
            "root or Anonymous, gap 3)")

        t = a["tadmin"]
        t_session = guid()
        self.attack(
            exo_admin(at(2, "10:20:14"), t, "Add-MailboxPermission",
                      params(Identity=a["legal"].upn, User=a["guest_fabrikam"].upn,
                             AccessRights="FullAccess", InheritanceType="All"),
                      object_id=a["legal"].object_id, ip=ATTACKER_IP_TVANCE,
                      session=t_session),
            "7", "FullAccess on the legal shared mailbox to a guest (#EXT#) account",
            "FullAccess grant (idea 1) to a guest (gap 9)")
        self.attack(
            exo_admin(at(2, "10:22:37"), t, "Add-MailboxPermission",
                      params(Identity=a["treasury"].object_id, User=EXTERNAL_SMTP,
                             AccessRights="FullAccess", InheritanceType="All",
                             AutoMapping="False"),
                      object_id=a["treasury"].object_id, ip=ATTACKER_IP_TVANCE,
                      session=t_session),
            "7", f"FullAccess on the treasury shared mailbox to external `{EXTERNAL_SMTP}`",
            "FullAccess grant (idea 1) to an external address (gap 9)")

        s = a["exadmin"]
        self.benign(
            exo_admin(at(2, "11:05:48"), s, "Remove-MailboxPermission",
                      params(Identity=ap.object_id, User=a["liam"].upn, AccessRights="FullAccess",
                             InheritanceType="All", Confirm="False"),
                      object_id=ap.object_id, app_id=APP_EXO_ADMIN_CENTER),
            "FullAccess of a leaver removed from accounts.payable",
            "a revoke, not a grant")
        self.benign(
            exo_admin(at(2, "11:30:12"), s, "Add-MailboxPermission",
                      params(Identity=a["treasury"].upn, User=a["nina"].upn,
                             AccessRights="FullAccess", InheritanceType="All"),
                      object_id=a["treasury"].object_id, app_id=APP_EXO_ADMIN_CENTER,
                      status="False"),
            "FullAccess grant that failed (ResultStatus False)",
            "the cmdlet failed: no permission was granted")

    def benign_rules(self) -> None:
        k = self.a["kevin"]
        self.benign(
            exo_admin(at(0, "16:42:10"), k, "New-InboxRule",
                      params(AlwaysDeleteOutlookRulesBlob="False", Force="False",
                             From="digest@marketingweekly.example", Name="Newsletters",
                             MoveToFolder="Newsletters", StopProcessingRules="False"),
                      object_id=f"{ORG_PATH}/{k.object_id}\\Newsletters", app_id=APP_OWA,
                      user_type=0),
            "user moves a newsletter sender to a Newsletters folder (OWA)",
            "ordinary rule: named after its folder, not marked read, no suspicious keywords")

    def build(self) -> list[dict]:
        self.background()
        self.day1_benign()
        self.day1_impersonation()
        self.benign_rules()
        self.day2_bec()
        self.day2_folders()
        self.day3()
        # Overlap between the two NDJSON-style exports of mailbox activity.
        day2_owner_access = next(r for r in self.records
                                 if r["Operation"] == "MailItemsAccessed"
                                 and r["CreationTime"].startswith("2024-10-15")
                                 and r["LogonType"] == 0)
        self.extra_files.setdefault(day2_owner_access["Id"], []).append(PURVIEW_CLASSIC)
        return self.records


# --------------------------------------------------------------------------------------------
# Routing: which export holds which record
# --------------------------------------------------------------------------------------------


def primary_file(rec: dict) -> str:
    day = (datetime.fromisoformat(rec["CreationTime"]) - DAY1).days
    if rec["RecordType"] == 1 and rec["Operation"] in CONVERTTO_OPERATIONS:
        return CONVERTTO
    if rec["RecordType"] == 1:
        family = "admin"
    elif rec["Workload"] == "Exchange":
        family = "mailbox"
    else:
        family = "directory"  # AzureActiveDirectory and SharePoint
    return {
        (0, "admin"): BLOB, (0, "mailbox"): BLOB, (0, "directory"): NDJSON,
        (1, "admin"): PURVIEW_NEW, (1, "directory"): PURVIEW_NEW, (1, "mailbox"): SPACED,
        (2, "admin"): SEARCH_UAL, (2, "mailbox"): PURVIEW_CLASSIC,
        (2, "directory"): PURVIEW_CLASSIC,
    }[(day, family)]


def route(records: list[dict], extra: dict[str, list[str]]) -> dict[str, list[dict]]:
    files: dict[str, list[dict]] = {name: [] for name in AUDIT_FILES}
    for rec in records:
        files[primary_file(rec)].append(rec)
        for name in extra.get(rec["Id"], []):
            files[name].append(rec)
    return files


# --------------------------------------------------------------------------------------------
# Dialect writers
# --------------------------------------------------------------------------------------------


def compact(rec: dict) -> str:
    return orjson.dumps(rec).decode()


def compact_escaped(rec: dict) -> str:
    """AuditData as Microsoft serialises it: compact, forward slashes as ``\\/``.

    ``/`` can only occur inside JSON strings, so a plain replace is safe.
    """
    return compact(rec).replace("/", "\\/")


def when_of(rec: dict) -> datetime:
    return datetime.fromisoformat(rec["CreationTime"])


def newest_first(records: list[dict]) -> list[dict]:
    return sorted(records, key=lambda r: (when_of(r), r["Id"]), reverse=True)


def oldest_first(records: list[dict]) -> list[dict]:
    return sorted(records, key=lambda r: (when_of(r), r["Id"]))


def us_date(when: datetime) -> str:
    """``M/D/YYYY h:mm:ss AM`` (en-US, no zero padding)."""
    hour = when.hour % 12 or 12
    half = "AM" if when.hour < 12 else "PM"
    return f"{when.month}/{when.day}/{when.year} {hour}:{when.minute:02d}:{when.second:02d} {half}"


def write_api_blob(path: Path, records: list[dict]) -> None:
    """Management Activity API content blob: one compact JSON array, not in time order."""
    shuffled = oldest_first(records)
    random.Random(SEED + 1).shuffle(shuffled)
    path.write_bytes(orjson.dumps(shuffled))


def write_ndjson(path: Path, records: list[dict]) -> None:
    """One compact record per line, as the raw AuditData strings are (``\\/`` escaped)."""
    lines = [compact_escaped(r) for r in oldest_first(records)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8", newline="")


def write_ndjson_spaced(path: Path, records: list[dict]) -> None:
    """One record per line re-serialised with ``": "`` and ``", "`` (Python/SIEM style)."""
    lines = [json.dumps(r, ensure_ascii=False) for r in oldest_first(records)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8", newline="")


def write_purview_new(path: Path, records: list[dict]) -> None:
    """Current Purview audit search export (formats.md 3.1)."""
    with path.open("w", encoding="utf-8", newline="") as fh:
        out = csv.writer(fh, lineterminator="\r\n")
        out.writerow(["RecordId", "CreationDate", "RecordType", "Operation", "UserId",
                      "AuditData", "AssociatedAdminUnits", "AssociatedAdminUnitsNames"])
        for r in newest_first(records):
            out.writerow([r["Id"], us_date(when_of(r)), r["RecordType"], r["Operation"],
                          r["UserId"], compact_escaped(r), "", ""])


def write_purview_classic(path: Path, records: list[dict]) -> None:
    """Classic audit log export: CreationDate,UserIds,Operations,AuditData (formats.md 3.2)."""
    with path.open("w", encoding="utf-8", newline="") as fh:
        out = csv.writer(fh, lineterminator="\r\n")
        out.writerow(["CreationDate", "UserIds", "Operations", "AuditData"])
        for r in newest_first(records):
            created = when_of(r).strftime("%Y-%m-%dT%H:%M:%S.0000000Z")
            out.writerow([created, r["UserId"], r["Operation"], compact_escaped(r)])


def write_search_ual_csv(path: Path, records: list[dict]) -> None:
    """``Search-UnifiedAuditLog | Export-Csv -Encoding UTF8`` in Windows PowerShell 5.1."""
    ordered = newest_first(records)
    with path.open("w", encoding="utf-8-sig", newline="") as fh:
        fh.write("#TYPE System.Management.Automation.PSCustomObject\r\n")
        out = csv.writer(fh, lineterminator="\r\n", quoting=csv.QUOTE_ALL)
        out.writerow(["RecordType", "CreationDate", "UserIds", "Operations", "AuditData",
                      "ResultIndex", "ResultCount", "Identity", "IsValid", "ObjectState"])
        for index, r in enumerate(ordered, start=1):
            out.writerow([RECORD_TYPE_NAMES[r["RecordType"]], us_date(when_of(r)), r["UserId"],
                          r["Operation"], compact_escaped(r), index, len(ordered), r["Id"],
                          "True", "Unchanged"])


class PSDate:
    """A DateTime as Windows PowerShell 5.1 ``ConvertTo-Json`` writes it: ``\\/Date(ms)\\/``."""

    def __init__(self, when: datetime) -> None:
        self.ms = int(when.replace(tzinfo=timezone.utc).timestamp() * 1000)


PS_ESCAPES = {'"': '\\"', "\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t", "\b": "\\b",
              "\f": "\\f", "<": "\\u003c", ">": "\\u003e", "&": "\\u0026", "'": "\\u0027"}


def ps_string(text: str) -> str:
    """JavaScriptSerializer escaping: also ``< > & '`` as ``\\u00XX``; ``/`` left alone."""
    out = []
    for ch in text:
        if ch in PS_ESCAPES:
            out.append(PS_ESCAPES[ch])
        elif ord(ch) < 0x20:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def ps_json(value: object, column: int = 0) -> str:
    """Windows PowerShell 5.1 ``ConvertTo-Json`` layout.

    Members sit four columns right of their opening bracket, wherever that bracket is, so
    nested objects drift right; ``"key":  value`` has two spaces; lines end in CRLF.
    """
    if isinstance(value, PSDate):
        return f'"\\/Date({value.ms})\\/"'
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, str):
        return ps_string(value)
    inner = column + 4
    pad = " " * inner
    if isinstance(value, dict):
        if not value:
            return "{\r\n\r\n" + " " * column + "}"
        members = []
        for key, item in value.items():
            head = pad + ps_string(key) + ":  "
            members.append(head + ps_json(item, len(head)))
        return "{\r\n" + ",\r\n".join(members) + "\r\n" + " " * column + "}"
    if isinstance(value, list):
        if not value:
            return "[\r\n\r\n" + " " * column + "]"
        members = [pad + ps_json(item, inner) for item in value]
        return "[\r\n" + ",\r\n".join(members) + "\r\n" + " " * column + "]"
    raise TypeError(f"cannot serialise {type(value).__name__}")


def write_convertto_json(path: Path, records: list[dict]) -> None:
    """``... | ConvertTo-Json -Depth 10 > file`` in Windows PowerShell 5.1: UTF-16 LE + BOM."""
    ordered = newest_first(records)
    wrapped = [{
        "RecordType": RECORD_TYPE_NAMES[r["RecordType"]],
        "CreationDate": PSDate(when_of(r)),
        "UserIds": r["UserId"],
        "Operations": r["Operation"],
        "AuditData": r,
        "ResultIndex": index,
        "ResultCount": len(ordered),
        "Identity": r["Id"],
        "IsValid": True,
        "ObjectState": "Unchanged",
    } for index, r in enumerate(ordered, start=1)]
    text = ps_json(wrapped) + "\r\n"
    path.write_bytes(b"\xff\xfe" + text.encode("utf-16-le"))


WRITERS = {
    BLOB: write_api_blob,
    NDJSON: write_ndjson,
    SPACED: write_ndjson_spaced,
    PURVIEW_NEW: write_purview_new,
    PURVIEW_CLASSIC: write_purview_classic,
    SEARCH_UAL: write_search_ual_csv,
    CONVERTTO: write_convertto_json,
}


def write_directory(path: Path, accounts: dict[str, Account]) -> None:
    """Entra ID users export (Graph ``/users`` selected properties)."""
    with path.open("w", encoding="utf-8", newline="") as fh:
        out = csv.writer(fh, lineterminator="\r\n")
        out.writerow(["id", "userPrincipalName", "displayName", "userType", "accountEnabled",
                      "mail"])
        for acc in sorted(accounts.values(), key=lambda x: x.upn.lower()):
            out.writerow([acc.object_id, acc.upn, acc.display, acc.kind,
                          "True" if acc.enabled else "False", acc.mail])


# --------------------------------------------------------------------------------------------
# EXPECTED.md
# --------------------------------------------------------------------------------------------

FILE_DESCRIPTIONS = {
    BLOB: "Management Activity API content blob (`Audit.Exchange`), 14 Oct: one compact JSON "
          "array on a single line, records not in time order.",
    NDJSON: "NDJSON of `Audit.AzureActiveDirectory` and `Audit.SharePoint`, 14 Oct: raw "
            "AuditData strings, compact, `\\/` escaped, LF.",
    SPACED: "NDJSON re-serialised with `\": \"` / `\", \"` (SIEM/Python style), mailbox audit "
            "(RecordType 2/50), 15 Oct.",
    PURVIEW_NEW: "New Purview audit search CSV, 15 Oct, all record types except mailbox audit: "
                 "RecordType as a number, `M/D/YYYY h:mm:ss AM`, `\\/` in AuditData, CRLF, "
                 "minimal quoting.",
    PURVIEW_CLASSIC: "Classic Purview export `CreationDate,UserIds,Operations,AuditData`, 16 Oct, "
                     "all record types except ExchangeAdmin; CreationDate "
                     "`YYYY-MM-DDThh:mm:ss.0000000Z`.",
    SEARCH_UAL: "`Search-UnifiedAuditLog -RecordType ExchangeAdmin | Export-Csv -Encoding UTF8` "
                "(Windows PowerShell 5.1), 16 Oct: `#TYPE` line, UTF-8 BOM, CRLF, every field "
                "quoted, RecordType as the enum name.",
    CONVERTTO: "`Search-UnifiedAuditLog -Operations New-InboxRule,Set-InboxRule,Set-Mailbox` over "
               "14-16 Oct, AuditData converted to objects, `ConvertTo-Json -Depth 10 > file` "
               "in Windows PowerShell 5.1: UTF-16 LE with BOM, CRLF, `\\/Date(ms)\\/`.",
}


def md_cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\r", "\\r").replace("\n", "\\n")


def write_expected(path: Path, files: dict[str, list[dict]], notes: list[Note],
                   accounts: dict[str, Account]) -> None:
    where: dict[str, list[str]] = {}
    for name in AUDIT_FILES:
        for rec in files[name]:
            where.setdefault(rec["Id"], []).append(name)
    a = accounts
    lines = [
        "# Demo tenant: what should fire and what must stay quiet",
        "",
        "Generated by `scripts/make_demo.py` (deterministic; do not edit by hand). Tenant "
        f"`{DOMAIN}` (`{ORG_NAME}`, tenant id `{TENANT_ID}`), 14-16 October 2024 (UTC). "
        "IP addresses are from the documentation ranges (RFC 5737 / RFC 3849); "
        f"`{ATTACKER_IP_MARK}`, `{ATTACKER_IP_TVANCE}` and `{ATTACKER_IP_PRIYA}` are the "
        "attacker's.",
        "",
        "## Files",
        "",
        "| file | records | dialect |",
        "|---|---|---|",
    ]
    for name in AUDIT_FILES:
        lines.append(f"| `{name}` | {len(files[name])} | {FILE_DESCRIPTIONS[name]} |")
    total = len({r['Id'] for recs in files.values() for r in recs})
    lines += [
        f"| `directory.csv` | {len(accounts)} | Entra ID users export "
        "`id,userPrincipalName,displayName,userType,accountEnabled,mail`. |",
        "",
        f"{total} distinct records. Records written to two files on purpose (same `Id`; a "
        "reader or the engine must count each once):",
        "",
    ]
    for rid, names in where.items():
        if len(names) > 1:
            rec = next(r for r in files[names[0]] if r["Id"] == rid)
            lines.append(f"- `{rid}` {rec['Operation']}: " + ", ".join(f"`{n}`" for n in names))
    lines += [
        "",
        "## Cast",
        "",
        "| account | object id | role in the story |",
        "|---|---|---|",
    ]
    cast = [
        ("helpdesk", "IT helpdesk admin; **compromised**, runs chains 1-3"),
        ("tadmin", "cloud admin account; **compromised**, runs chains 4, 6-9"),
        ("payroll", "payroll specialist; **compromised** session, chain 5 via OWA"),
        ("cfo", "CFO, victim of chain 1"),
        ("ceo", f"CEO, primary SMTP `{a['ceo'].mail}` differs from the UPN; victim of 2 and 4"),
        ("ea", "executive assistant (benign calendar Reviewer)"),
        ("exadmin", "messaging admin doing legitimate work (benign records)"),
        ("svcsync", "service account put into the `AppImpersonate` role group"),
        ("svcbackup", "service account given ApplicationImpersonation directly"),
        ("ap", "shared mailbox (disabled user object)"),
        ("legal", "shared mailbox"),
        ("treasury", "shared mailbox"),
        ("guest_fabrikam", "guest user"),
    ]
    for key, role in cast:
        lines.append(f"| `{a[key].upn}` | `{a[key].object_id}` | {role} |")
    lines += [
        "",
        "Sign-ins that set the scene (not alerts by themselves): the attacker's `UserLoggedIn` "
        "records from the addresses above precede each chain.",
        "",
        "## Attack records (each must be evidence in at least one finding)",
        "",
        "| chain | file(s) | Id | time (UTC) | operation | what it is | should fire |",
        "|---|---|---|---|---|---|---|",
    ]
    for n in sorted((n for n in notes if n.kind == "attack"),
                    key=lambda n: (n.chain, n.record["CreationTime"])):
        rec = n.record
        lines.append(
            f"| {n.chain} | " + "<br>".join(f"`{f}`" for f in where[rec["Id"]])
            + f" | `{rec['Id']}` | {rec['CreationTime']} | {rec['Operation']} | "
            f"{md_cell(n.what)} | {md_cell(n.expect)} |")
    lines += [
        "",
        "Chains: 1 BEC (password reset, FullAccess, hiding rule, delegated reading) - "
        "2 SendAs grant and use - 3 SendOnBehalf to a look-alike domain - "
        "4 Default on root and Inbox by cmdlet - 5 Everyone/Anonymous by mailbox audit - "
        "6 ApplicationImpersonation - 7 guest and external FullAccess - "
        "8 Mail.ReadWrite consent - 9 audit bypass. "
        "Rule numbers (#N), idea numbers and gaps refer to "
        "`../shared/reference/detections.md` sections 1-3.",
        "",
        "## Benign look-alikes (must stay quiet)",
        "",
        "| file(s) | Id | time (UTC) | operation | what it is | why it is quiet |",
        "|---|---|---|---|---|---|",
    ]
    for n in sorted((n for n in notes if n.kind == "benign"),
                    key=lambda n: n.record["CreationTime"]):
        rec = n.record
        lines.append(
            "| " + "<br>".join(f"`{f}`" for f in where[rec["Id"]])
            + f" | `{rec['Id']}` | {rec['CreationTime']} | {rec['Operation']} | "
            f"{md_cell(n.what)} | {md_cell(n.expect)} |")
    lines += [
        "",
        "Everything else is background: `UserLoggedIn`, `FileAccessed`, owner "
        "`MailItemsAccessed`, `Send`, `MailboxLogin`, routine `Set-CASMailbox` / "
        "`Set-MailboxRegionalConfiguration`, and the system's daily `Set-Mailbox` on the "
        "discovery mailbox. None of it should produce a finding.",
        "",
    ]
    path.write_text("\n".join(lines), encoding="utf-8", newline="\n")


# --------------------------------------------------------------------------------------------


def main(argv: list[str]) -> int:
    out_dir = Path(argv[1]) if len(argv) > 1 else OUT_DIR
    out_dir.mkdir(parents=True, exist_ok=True)
    accounts = build_accounts()
    scenario = Scenario(accounts)
    records = scenario.build()
    files = route(records, scenario.extra_files)
    for name, writer in WRITERS.items():
        writer(out_dir / name, files[name])
    write_directory(out_dir / "directory.csv", accounts)
    write_expected(out_dir / "EXPECTED.md", files, scenario.notes, accounts)
    for name in AUDIT_FILES:
        print(f"{name:28} {len(files[name]):4d} records")
    print(f"{'directory.csv':28} {len(accounts):4d} accounts")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
