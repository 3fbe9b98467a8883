#!/usr/bin/env python3
"""Generate a large, deterministic Microsoft 365 unified audit log (UAL) benchmark file.

Output is NDJSON: one compact JSON record per line, in the shape the Office 365
Management Activity API returns (see /work/shared/reference/formats.md section 2).
Most records are realistic noise (SharePoint file access, Entra sign-ins, mailbox
access, sends, system maintenance, benign inbox rules and calendar sharing); a few
hundred are attack-shaped delegate-permission grants (MITRE T1098.002) spread over
the file. A truth file lists the injected grants so a hunt can be scored.

Design notes:
* Streaming: records are produced in fixed-size chunks and written as they come;
  nothing ever holds more than a few chunks in memory.
* Deterministic: every chunk has its own RNG seeded from (seed, chunk index), and
  the positions of injected records are drawn up front from a plan RNG. So the
  output is byte-identical for a given (seed, records, grants) whatever --jobs is.
* Fast: orjson for serialisation, per-user attributes precomputed once, and
  chunks generated in worker processes (--jobs, default: all CPUs).

Usage:
    .venv/bin/python bench/generate_ual.py                    # 1M records, ~1 GB
    .venv/bin/python bench/generate_ual.py --records 100000 --grants 30 --out bench/data/ual_100k.ndjson
"""

from __future__ import annotations

import argparse
import base64
import multiprocessing
import os
import random
import sys
import time
from bisect import bisect
from pathlib import Path

import orjson

# Bump whenever the output for a given (seed, records, grants) changes, so an old
# file on disk is regenerated rather than reused.
GENERATOR_VERSION = 1

BENCH_DIR = Path(__file__).resolve().parent
DEFAULT_OUT = BENCH_DIR / "data" / "ual_1m.ndjson"

CHUNK_RECORDS = 20_000

# --------------------------------------------------------------------------- tenant
DOMAIN = "contoso.com"
ORG_NAME = "contoso.onmicrosoft.com"
TENANT_ID = "6f1c2b7e-4a0d-4f3e-9b61-2d8a5c7e9f10"
# Exchange admin ObjectIds / Identity values look like
# "NAMPR10A011.PROD.OUTLOOK.COM/Microsoft Exchange Hosted Organizations/<org>/<name>".
ORG_PATH = f"NAMPR10A011.PROD.OUTLOOK.COM/Microsoft Exchange Hosted Organizations/{ORG_NAME}"
SYSTEM_SERVICEHOST = "NT AUTHORITY\\SYSTEM (Microsoft.Exchange.ServiceHost)"
DISCOVERY_MAILBOX = "DiscoverySearchMailbox{D919BA05-46A6-415f-80AD-7E09334BB852}"
N_USERS = 5000
START_EPOCH = 1_764_547_200  # 2025-12-01T00:00:00Z
SPAN_SECONDS = 30 * 86400
OWA_APP_ID = "00000002-0000-0ff1-ce00-000000000000"  # Office 365 Exchange Online
GRAPH_APP_ID = "00000003-0000-0000-c000-000000000000"

# Admin accounts that run cmdlets (UserType 2). The last one is a "compromised"
# helpdesk user; attack grants pick from all of them.
ADMINS = [
    "admin@contoso.com",
    "it.admin@contoso.onmicrosoft.com",
    "helpdesk.ops@contoso.com",
    "user0137@contoso.com",
]

# --------------------------------------------------------------------------- noise mix
# (kind, weight in percent). Weights are shares of *all* records; the injected
# grants and DiscoverySearchMailbox grants are placed separately on top.
NOISE_MIX = [
    ("sp_file", 40.0),          # RecordType 6  FileAccessed/FileModified/FileDownloaded
    ("aad_login", 20.0),        # RecordType 15 UserLoggedIn
    ("mail_access", 15.0),      # RecordType 50 MailItemsAccessed by owners
    ("send", 8.0),              # RecordType 2  Send
    ("mbx_login", 5.0),         # RecordType 2  MailboxLogin
    ("teams", 5.0),             # RecordType 25 Teams
    ("sys_set_mailbox", 3.0),   # RecordType 1  Set-Mailbox by ServiceHost (UserType 3)
    # Not in the brief's list: the listed shares add up to 98.6 %, so the rest is
    # ordinary RecordType 3 ExchangeItemGroup deletes (SoftDelete/MoveToDeletedItems),
    # which real tenants have in bulk and which a hunt must skip.
    ("item_group", 1.4),        # RecordType 3
    ("inbox_rule", 1.0),        # RecordType 1  New-InboxRule moving newsletters
    ("sys_folder_perm", 1.0),   # RecordType 2  ModifyFolderPermissions on group \Calendar by S-1-5-18
    ("cal_share", 0.5),         # RecordType 1  Add-MailboxFolderPermission :\Calendar Reviewer
    ("remove_perm", 0.1),       # RecordType 1  Remove-MailboxPermission
]

# Injected attack-shaped grants: (kind, weight). Kinds whose name starts with
# "fullaccess" are Add-MailboxPermission with FullAccess in AccessRights.
GRANT_MIX = [
    ("fullaccess", 26),            # AccessRights "FullAccess"
    ("fullaccess_multi", 10),      # e.g. "DeleteItem, ReadPermission, FullAccess"
    ("changepermission", 6),       # Add-MailboxPermission without FullAccess
    ("sendas", 12),                # Add-RecipientPermission SendAs, UPNs
    ("sendas_guid", 6),            # Add-RecipientPermission SendAs, GUID Identity/Trustee
    ("sendonbehalf", 12),          # Set-Mailbox -GrantSendOnBehalfTo
    ("folder_default_reviewer", 10),  # Set-MailboxFolderPermission Default Reviewer :\Inbox
    ("folder_everyone_inbox", 10),    # ModifyFolderPermissions Everyone ReadAny, Visible \Inbox
    ("impersonation", 8),          # New-ManagementRoleAssignment ApplicationImpersonation
]
N_DISCOVERY_GRANTS = 5  # "a handful" of the routine system FullAccess grant

GRANT_OPERATION = {
    "fullaccess": "Add-MailboxPermission",
    "fullaccess_multi": "Add-MailboxPermission",
    "changepermission": "Add-MailboxPermission",
    "sendas": "Add-RecipientPermission",
    "sendas_guid": "Add-RecipientPermission",
    "sendonbehalf": "Set-Mailbox",
    "folder_default_reviewer": "Set-MailboxFolderPermission",
    "folder_everyone_inbox": "ModifyFolderPermissions",
    "impersonation": "New-ManagementRoleAssignment",
}

# --------------------------------------------------------------------------- vocab
SERVER_PREFIXES = ["CH3PR10MB", "BN0PR04MB", "SA1PR12MB", "DM6PR11MB", "PH0PR19MB",
                   "MW4PR03MB", "AM6PR01MB", "DB9PR08MB", "CO1PR15MB", "BY5PR12MB"]
BUILDS = ["15.20.6813.027", "15.20.6813.014", "15.20.7409.041", "15.20.7472.010",
          "15.20.8207.017", "15.20.8293.012"]
SITES = ["Finance", "HR", "Legal", "Marketing", "Sales", "Engineering", "ITOps", "Board",
         "Projects", "Procurement", "Support", "Research", "Facilities", "Executive",
         "Security", "Training", "Partners", "Operations", "Communications", "Data"]
FILE_WORDS = ["Budget", "Report", "Plan", "Minutes", "Forecast", "Contract", "Invoice",
              "Roadmap", "Review", "Summary", "Proposal", "Policy", "Onboarding",
              "Inventory", "Timesheet", "Presentation", "Draft", "Final", "Q1", "Q2",
              "Q3", "Q4", "2025", "2026", "Customer", "Vendor", "Audit", "Notes"]
FILE_EXTS = ["docx", "xlsx", "pptx", "pdf", "txt", "csv", "one", "png", "msg", "vsdx"]
FOLDERS_SP = ["Shared Documents", "Shared Documents/General", "Shared Documents/Archive",
              "Shared Documents/Reports", "Documents", "Documents/Projects"]
USER_AGENTS = [
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36 Edg/131.0.0.0",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Safari/605.1.15",
    "Microsoft Office/16.0 (Windows NT 10.0; Microsoft Excel 16.0.18227; Pro)",
    "Microsoft Office/16.0 (Windows NT 10.0; Microsoft Word 16.0.18227; Pro)",
    "OneDriveMpc-Transform_Thumbnail/1.0",
    "Microsoft SkyDriveSync 25.020.0202.0002 ship; Windows NT 10.0 (26100)",
]
AAD_APPS = [  # (ApplicationId, target resource)
    ("4765445b-32c6-49b0-83e6-1d93765276ca", "00000003-0000-0000-c000-000000000000"),
    ("d3590ed6-52b3-4102-aeff-aad2292ab01c", "00000002-0000-0ff1-ce00-000000000000"),
    ("1fec8e78-bce4-4aaf-ab1b-5451cc387264", "cc15fd57-2c6c-4117-a88c-83b1d56b4bbe"),
    ("89bee1f7-5e6e-4d8a-9f3d-ecd601259da7", "00000003-0000-0ff1-ce00-000000000000"),
]
OS_LIST = ["Windows10", "Windows 11", "MacOs", "Ios", "Android"]
TEAMS_OPS = ["TeamsSessionStarted", "MessageSent", "ChatCreated", "MeetingParticipantDetail",
             "MeetingDetail", "MemberAdded", "ReactedToMessage", "MessageRead"]
SUBJECT_WORDS = ["Re:", "Fwd:", "Meeting", "Update", "Weekly", "status", "invoice", "project",
                 "follow-up", "lunch", "review", "agenda", "Q4", "numbers", "draft", "call"]
NEWSLETTER_SENDERS = ["news@contoso-digest.com", "newsletter@industryweekly.example",
                      "updates@vendor.example", "noreply@events.example", "digest@techbrief.example"]
CLIENT_PROCS = [("OUTLOOK.EXE", "16.0.18227.20162"), ("", ""), ("OUTLOOK.EXE", "16.0.17928.20114")]
MAIL_CLIENT_INFO = [
    "Client=OWA;Action=ViaProxy",
    "Client=MSExchangeRPC",
    "Client=REST;Client=RESTSystem;;",
    "Client=Microsoft.Exchange.ActiveSync;Apple-iPhone15C2/2201.73",
    "Client=OutlookService;Outlook-iOS/2.0;",
]
OWA_BROWSER_INFO = ("Client=OWA;Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 "
                    "(KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36;")
QUOTA_PARAMS = [
    ("ProhibitSendQuota", "99 GB (106,300,440,576 bytes)"),
    ("ProhibitSendReceiveQuota", "100 GB (107,374,182,400 bytes)"),
    ("IssueWarningQuota", "98 GB (105,226,698,752 bytes)"),
    ("RecoverableItemsQuota", "30 GB (32,212,254,720 bytes)"),
    ("RecoverableItemsWarningQuota", "20 GB (21,474,836,480 bytes)"),
    ("RetainDeletedItemsFor", "14.00:00:00"),
    ("UseDatabaseQuotaDefaults", "False"),
    ("SingleItemRecoveryEnabled", "True"),
]
ATTACK_IPS = ["185.73.124.135", "104.28.196.199", "45.155.205.233", "193.32.162.71",
              "91.92.109.18", "2a09:bac5:114:105::1a:9b", "2001:db8::1", "23.94.49.12"]


class World:
    """Per-tenant constants derived once from the seed (users, SIDs, servers, IPs)."""

    def __init__(self, seed: int) -> None:
        rng = random.Random(f"world:{seed}")
        sid_base = "S-1-5-21-%d-%d-%d" % (rng.randrange(10**9, 4 * 10**9),
                                          rng.randrange(10**9, 4 * 10**9),
                                          rng.randrange(10**9, 4 * 10**9))
        self.upn = [f"user{i:04d}@{DOMAIN}" for i in range(N_USERS)]
        self.puid = ["1003%012X" % rng.getrandbits(48) for _ in range(N_USERS)]
        self.sid = [f"{sid_base}-{rng.randrange(10**7, 10**8)}" for _ in range(N_USERS)]
        self.mbx_guid = [guid(rng) for _ in range(N_USERS)]
        self.aad_oid = [guid(rng) for _ in range(N_USERS)]
        # Exchange store ids: a per-mailbox prefix plus a per-item suffix.
        self.store_prefix = [store_id(rng, 36) for _ in range(N_USERS)]
        self.server = [f"{rng.choice(SERVER_PREFIXES)}{rng.randrange(1000, 9999)}"
                       for _ in range(N_USERS)]
        # Each user mostly comes from one home IP (some IPv6), like a real office/home.
        self.home_ip = [random_ip(rng, v6=rng.random() < 0.15) for _ in range(N_USERS)]
        self.admin_puid = {a: "1003%012X" % rng.getrandbits(48) for a in ADMINS}
        self.site_ids = {s: (guid(rng), guid(rng), guid(rng)) for s in SITES}  # site, web, list
        # M365 group mailboxes whose calendars the system configures.
        self.groups = [(f"{rng.choice(SITES)}-{rng.choice(FILE_WORDS)}.{rng.randrange(10**9, 10**10)}"
                        f".{''.join(rng.choice('abcdefghijklmnopqrstuvwxyz') for _ in range(8))}@{ORG_NAME}",
                        guid(rng), f"{sid_base}-{rng.randrange(10**7, 10**8)}",
                        store_id(rng, 48))
                       for _ in range(200)]


def guid(rng: random.Random) -> str:
    h = "%032x" % rng.getrandbits(128)
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def store_id(rng: random.Random, nbytes: int) -> str:
    return base64.b64encode(rng.getrandbits(nbytes * 8).to_bytes(nbytes, "big")).decode()


def random_ip(rng: random.Random, v6: bool = False) -> str:
    if v6:
        return "2603:10b6:%x:%x::%x" % (rng.getrandbits(16), rng.getrandbits(16), rng.getrandbits(16))
    return "%d.%d.%d.%d" % (rng.randrange(20, 220), rng.getrandbits(8), rng.getrandbits(8),
                            rng.randrange(1, 255))


def with_port(ip: str, port: int) -> str:
    """Exchange ClientIP carries the source port: '1.2.3.4:5678' or '[v6]:5678'."""
    return f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"


def iso(epoch: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(epoch))


class ChunkGen:
    """Builds the records of one chunk. Methods return plain dicts for orjson."""

    def __init__(self, world: World, rng: random.Random) -> None:
        self.w = world
        self.rng = rng

    # -- helpers ------------------------------------------------------------
    def user(self) -> int:
        # Mild skew: some users are much busier than others, as in real tenants.
        return int(N_USERS * self.rng.random() ** 1.5)

    def origin_server(self, u: int, mailbox: bool) -> str:
        s = f"{self.w.server[u]} ({self.rng.choice(BUILDS)})"
        # Mailbox records sometimes end with a line break (real data: "\r\n").
        if mailbox and self.rng.random() < 0.2:
            s += "\r\n"
        return s

    def client_ip(self, u: int) -> tuple[str, str]:
        """(ClientIP with port, bare IP) for a user's Exchange activity."""
        ip = self.w.home_ip[u] if self.rng.random() < 0.85 else random_ip(self.rng, self.rng.random() < 0.1)
        return with_port(ip, self.rng.randrange(1024, 65535)), ip

    def base(self, rid: str, t: str, op: str, rtype: int, utype: int, ukey: str,
             uid: str, workload: str, status: str) -> dict:
        # Key order of real Management API records: common schema first.
        return {"CreationTime": t, "Id": rid, "Operation": op, "OrganizationId": TENANT_ID,
                "RecordType": rtype, "ResultStatus": status, "UserKey": ukey, "UserType": utype,
                "Version": 1, "Workload": workload, "UserId": uid}

    def mailbox_fields(self, r: dict, u: int, owner: int, logon_type: int, client_info: str) -> dict:
        cip, ip = self.client_ip(u)
        r["ClientIP"] = cip
        if "OWA" in client_info:  # AppId/ClientAppId only appear for app-based access
            r["AppId"] = OWA_APP_ID
            r["ClientAppId"] = ""
        r.update({"ClientIPAddress": ip, "ClientInfoString": client_info,
                  "ExternalAccess": False, "InternalLogonType": 0, "LogonType": logon_type,
                  "LogonUserSid": self.w.sid[u], "MailboxGuid": self.w.mbx_guid[owner],
                  "MailboxOwnerSid": self.w.sid[owner], "MailboxOwnerUPN": self.w.upn[owner],
                  "OrganizationName": ORG_NAME,
                  "OriginatingServer": self.origin_server(owner, True)})
        if self.rng.random() < 0.5:
            r["SessionId"] = guid(self.rng)
        return r

    def admin_fields(self, r: dict, object_id: str, params: list, ip: str | None,
                     system: bool = False) -> dict:
        if ip is not None:  # system records have no ClientIP at all (formats.md 2.6 (e))
            r["ClientIP"] = with_port(ip, self.rng.randrange(1024, 65535))
        r.update({"ObjectId": object_id, "AppId": "" if system else OWA_APP_ID, "ClientAppId": "",
                  "ExternalAccess": system, "OrganizationName": ORG_NAME,
                  "OriginatingServer": f"{self.rng.choice(SERVER_PREFIXES)}{self.rng.randrange(1000, 9999)}"
                                       f" ({self.rng.choice(BUILDS)})",
                  "Parameters": params})
        if not system:
            r["SessionId"] = guid(self.rng)
        return r

    def subject(self) -> str:
        return " ".join(self.rng.choices(SUBJECT_WORDS, k=self.rng.randrange(2, 6)))

    def msg_id(self, u: int) -> str:
        srv = self.w.server[u]
        return f"<{srv}{self.rng.getrandbits(96):024X}@{srv}.namprd12.prod.outlook.com>"

    # -- noise --------------------------------------------------------------
    def sp_file(self, rid: str, t: str) -> dict:
        rng, w = self.rng, self.w
        u = self.user()
        r = rng.random()
        op = "FileAccessed" if r < 0.70 else "FileModified" if r < 0.88 else "FileDownloaded"
        ext = rng.choice(FILE_EXTS)
        fname = f"{rng.choice(FILE_WORDS)} {rng.choice(FILE_WORDS)} {rng.randrange(1, 99)}.{ext}"
        if rng.random() < 0.3:  # OneDrive
            owner = w.upn[self.user()].replace("@", "_").replace(".", "_")
            site = f"https://contoso-my.sharepoint.com/personal/{owner}/"
            folder = f"Documents/{rng.choice(FILE_WORDS)}"
            workload, site_ids = "OneDrive", w.site_ids[SITES[len(owner) % len(SITES)]]
        else:
            s = rng.choice(SITES)
            site = f"https://contoso.sharepoint.com/sites/{s}/"
            folder = rng.choice(FOLDERS_SP)
            workload, site_ids = "SharePoint", w.site_ids[s]
        ua = rng.choice(USER_AGENTS)
        rec = self.base(rid, t, op, 6, 0, f"i:0h.f|membership|{w.puid[u].lower()}@live.com",
                        w.upn[u], workload, "")
        del rec["ResultStatus"]  # SharePoint file operations carry no ResultStatus
        rec.update({
            "ClientIP": w.home_ip[u], "ObjectId": f"{site}{folder}/{fname}",
            "CorrelationId": guid(rng), "EventSource": "SharePoint", "ItemType": "File",
            "ListId": site_ids[2], "Site": site_ids[0], "UserAgent": ua, "WebId": site_ids[1],
            "SourceFileExtension": ext,
            "SiteUrl": site, "SourceFileName": fname, "SourceRelativeUrl": folder, "GeoLocation": "NAM",
        })
        return rec

    def aad_login(self, rid: str, t: str) -> dict:
        rng, w = self.rng, self.w
        u = self.user()
        app, target = rng.choice(AAD_APPS)
        ip = w.home_ip[u] if rng.random() < 0.9 else random_ip(rng)
        ua = rng.choice(USER_AGENTS[:2])
        rec = self.base(rid, t, "UserLoggedIn", 15, 0, w.aad_oid[u], w.upn[u],
                        "AzureActiveDirectory", "Success")
        rec.update({
            "ClientIP": ip, "ObjectId": target, "AzureActiveDirectoryEventType": 1,
            "ExtendedProperties": [
                {"Name": "ResultStatusDetail", "Value": "Redirect"},
                {"Name": "UserAgent", "Value": ua},
                {"Name": "RequestType", "Value": rng.choice(["OAuth2:Authorize", "OAuth2:Token", "Login:login"])},
            ],
            "ModifiedProperties": [],
            "Actor": [{"ID": w.aad_oid[u], "Type": 0}, {"ID": w.upn[u], "Type": 5}],
            "ActorContextId": TENANT_ID, "ActorIpAddress": ip,
            "Target": [{"ID": target, "Type": 0}],
            "ApplicationId": app,
            "DeviceProperties": [
                {"Name": "OS", "Value": rng.choice(OS_LIST)},
                {"Name": "BrowserType", "Value": rng.choice(["Edge", "Chrome", "Safari", "Firefox"])},
            ],
            "ErrorNumber": "0",
        })
        return rec

    def mail_access(self, rid: str, t: str) -> dict:
        rng, w = self.rng, self.w
        u = self.user()
        ci = rng.choice(MAIL_CLIENT_INFO)
        rec = self.base(rid, t, "MailItemsAccessed", 50, 0, w.puid[u], w.upn[u], "Exchange", "Succeeded")
        self.mailbox_fields(rec, u, u, 0, ci)
        sync = rng.random() < 0.25
        items = [] if sync else [{"Id": w.store_prefix[u] + store_id(rng, 9), "InternetMessageId": self.msg_id(u),
                                  } for _ in range(1 if rng.random() < 0.8 else 2)]
        folder = {"Id": w.store_prefix[u] + "AAAAAAEMAAAB",
                  "Path": rng.choice(["\\Inbox", "\\Inbox", "\\Sent Items", "\\Archive"])}
        if items:
            folder["FolderItems"] = items
        rec.update({
            "OperationProperties": [{"Name": "MailAccessType", "Value": "Sync" if sync else "Bind"},
                                    {"Name": "IsThrottled", "Value": "False"}],
            "OperationCount": len(items) or 1, "Folders": [folder],
        })
        return rec

    def send(self, rid: str, t: str) -> dict:
        rng, w = self.rng, self.w
        u = self.user()
        proc, ver = rng.choice(CLIENT_PROCS)
        ci = "Client=MSExchangeRPC" if proc else MAIL_CLIENT_INFO[0]
        rec = self.base(rid, t, "Send", 2, 0, w.puid[u], w.upn[u], "Exchange", "Succeeded")
        self.mailbox_fields(rec, u, u, 0, ci)
        item = {"Id": w.store_prefix[u] + store_id(rng, 12), "InternetMessageId": self.msg_id(u),
                "ParentFolder": {"Id": w.store_prefix[u] + "AAAAAAEJAAAB", "Path": "\\Sent Items"},
                "SizeInBytes": rng.randrange(3000, 900000), "Subject": self.subject()}
        if rng.random() < 0.3:
            item["Attachments"] = f"{rng.choice(FILE_WORDS)}.{rng.choice(FILE_EXTS)} ({rng.randrange(1000, 900000)}b)"
        rec.update({"ClientProcessName": proc, "ClientVersion": ver, "Item": item, "SaveToSentItems": True})
        return rec

    def mbx_login(self, rid: str, t: str) -> dict:
        rng, w = self.rng, self.w
        u = self.user()
        proc, ver = rng.choice(CLIENT_PROCS)
        rec = self.base(rid, t, "MailboxLogin", 2, 0, w.puid[u], w.upn[u], "Exchange", "Succeeded")
        ci = "Client=Microsoft.Exchange.Mapi; Client=MSExchangeRPC" if proc else rng.choice(MAIL_CLIENT_INFO)
        self.mailbox_fields(rec, u, u, 0, ci)
        rec.update({"ClientProcessName": proc, "ClientVersion": ver,
                    "MailboxSizeBytes": rng.randrange(10**7, 5 * 10**10)})
        return rec

    def teams(self, rid: str, t: str) -> dict:
        rng, w = self.rng, self.w
        u = self.user()
        op = rng.choice(TEAMS_OPS)
        rec = self.base(rid, t, op, 25, 0, w.aad_oid[u], w.upn[u], "MicrosoftTeams", "")
        del rec["ResultStatus"]
        rec.update({
            "ClientIP": w.home_ip[u], "CommunicationType": rng.choice(["OneOnOne", "GroupChat", "Team"]),
            "Members": [{"DisplayName": f"User {self.user():04d}", "Role": 1, "UPN": w.upn[self.user()]}],
            "ItemName": f"{rng.choice(SITES)} {rng.choice(FILE_WORDS)}", "TeamName": rng.choice(SITES),
            "TeamGuid": f"19:{rng.getrandbits(128):032x}@thread.tacv2",
            "ChatThreadId": f"19:{rng.getrandbits(128):032x}@thread.v2",
            "MessageId": str(rng.getrandbits(40)),
            "AppAccessContext": {"AADSessionId": guid(rng), "ClientAppId": "1fec8e78-bce4-4aaf-ab1b-5451cc387264",
                                 "UniqueTokenId": store_id(rng, 16)},
            "ParticipantInfo": {"HasForeignTenantUsers": False, "HasGuestUsers": False, "HasOtherGuestUsers": False,
                                "HasUnauthenticatedUsers": False, "ParticipatingDomains": [DOMAIN],
                                "ParticipatingSIPDomains": [], "ParticipatingTenantIds": [TENANT_ID]},
        })
        return rec

    def sys_set_mailbox(self, rid: str, t: str) -> dict:
        rng = self.rng
        name = self.w.mbx_guid[self.user()] if rng.random() < 0.9 else DISCOVERY_MAILBOX
        ident = f"{ORG_PATH}/{name}"
        params = [{"Name": "DomainController", "Value": ""}, {"Name": "Identity", "Value": ident}]
        params += [{"Name": n, "Value": v} for n, v in rng.sample(QUOTA_PARAMS, rng.randrange(0, 4))]
        rec = self.base(rid, t, "Set-Mailbox", 1, 3, SYSTEM_SERVICEHOST, SYSTEM_SERVICEHOST, "Exchange", "True")
        return self.admin_fields(rec, ident, params, None, system=True)

    def item_group(self, rid: str, t: str) -> dict:
        rng, w = self.rng, self.w
        u = self.user()
        op = rng.choice(["SoftDelete", "MoveToDeletedItems", "MoveToDeletedItems"])
        rec = self.base(rid, t, op, 3, 0, w.puid[u], w.upn[u], "Exchange", "Succeeded")
        self.mailbox_fields(rec, u, u, 0, rng.choice(MAIL_CLIENT_INFO))
        rec.update({"CrossMailboxOperation": False,
                    "AffectedItems": [{"Id": w.store_prefix[u] + store_id(rng, 12), "InternetMessageId": self.msg_id(u),
                                       "ParentFolder": {"Id": w.store_prefix[u] + "AAAAAAEMAAAB", "Path": "\\Inbox"},
                                       "Subject": self.subject()}],
                    "Folder": {"Id": w.store_prefix[u] + "AAAAAAEMAAAB", "Path": "\\Inbox"}})
        return rec

    def inbox_rule(self, rid: str, t: str) -> dict:
        rng, w = self.rng, self.w
        u = self.user()
        name = rng.choice(["Newsletters", "News", "Digest", "Vendor updates"])
        params = [{"Name": "AlwaysDeleteOutlookRulesBlob", "Value": "False"},
                  {"Name": "Force", "Value": "False"},
                  {"Name": "From", "Value": rng.choice(NEWSLETTER_SENDERS)},
                  {"Name": "MoveToFolder", "Value": name},
                  {"Name": "Name", "Value": name},
                  {"Name": "StopProcessingRules", "Value": "False"}]
        rec = self.base(rid, t, "New-InboxRule", 1, 0, w.puid[u], w.upn[u], "Exchange", "True")
        rec["AppAccessContext"] = {"IssuedAtTime": t, "UniqueTokenId": store_id(rng, 16)}
        return self.admin_fields(rec, f"{ORG_PATH}/{w.aad_oid[u]}\\{name}", params,
                                 self.w.home_ip[u])

    def sys_folder_perm(self, rid: str, t: str) -> dict:
        rng = self.rng
        upn, mguid, osid, fid = rng.choice(self.w.groups)
        owner = rng.random() < 0.3  # same real file also has the Owner@local variant
        rec = self.base(rid, t, "ModifyFolderPermissions", 2, 2, "S-1-5-18", "S-1-5-18", "Exchange", "Succeeded")
        rec.update({
            "ClientIP": "::1", "ClientIPAddress": "::1",
            "ClientInfoString": "Client=WebServices;Action=ConfigureGroupMailbox",
            "ExternalAccess": True, "InternalLogonType": 1, "LogonType": 1, "LogonUserSid": "S-1-5-18",
            "MailboxGuid": mguid, "MailboxOwnerMasterAccountSid": "S-1-5-10", "MailboxOwnerSid": osid,
            "MailboxOwnerUPN": upn, "OrganizationName": ORG_NAME,
            "OriginatingServer": f"{rng.choice(SERVER_PREFIXES)}{rng.randrange(1000, 9999)} ({rng.choice(BUILDS)})",
            "Item": {"Id": fid, "ParentFolder": {
                "Id": fid, "Path": "\\Calendar", "Name": "Calendar",
                "MemberRights": ("ReadAny, Create, EditOwned, DeleteOwned, EditAny, DeleteAny, Visible, "
                                 "FreeBusySimple, FreeBusyDetailed" if owner
                                 else "ReadAny, Visible, FreeBusySimple, FreeBusyDetailed"),
                "MemberSid": f"S-1-8-{rng.randrange(10**9, 4 * 10**9)}-{rng.randrange(10**9, 4 * 10**9)}-"
                             f"{rng.randrange(10**9, 4 * 10**9)}-{rng.randrange(10**9, 4 * 10**9)}-{0 if owner else 1}",
                "MemberUpn": "Owner@local" if owner else "Member@local"}},
        })
        return rec

    def cal_share(self, rid: str, t: str) -> dict:
        rng, w = self.rng, self.w
        owner, grantee = self.user(), self.user()
        admin = rng.choice(ADMINS[:3])
        params = [{"Name": "Identity", "Value": f"{w.upn[owner]}:\\Calendar"},
                  {"Name": "User", "Value": w.upn[grantee]},
                  {"Name": "AccessRights", "Value": "Reviewer"}]
        if rng.random() < 0.3:
            params.append({"Name": "SharingPermissionFlags", "Value": "None"})
        rec = self.base(rid, t, "Add-MailboxFolderPermission", 1, 2, w.admin_puid[admin], admin, "Exchange", "True")
        return self.admin_fields(rec, f"{w.upn[owner]}:\\Calendar", params, random_ip(rng))

    def remove_perm(self, rid: str, t: str) -> dict:
        rng, w = self.rng, self.w
        owner, grantee = self.user(), self.user()
        admin = rng.choice(ADMINS[:3])
        params = [{"Name": "Identity", "Value": w.upn[owner]}, {"Name": "User", "Value": w.upn[grantee]},
                  {"Name": "AccessRights", "Value": "FullAccess"}, {"Name": "InheritanceType", "Value": "All"},
                  {"Name": "Confirm", "Value": "False"}]
        rec = self.base(rid, t, "Remove-MailboxPermission", 1, 2, w.admin_puid[admin], admin, "Exchange", "True")
        return self.admin_fields(rec, w.aad_oid[owner], params, random_ip(rng))

    def discovery_grant(self, rid: str, t: str) -> dict:
        """The routine system FullAccess grant on DiscoverySearchMailbox (formats.md 2.6 (c))."""
        ident = f"{ORG_PATH}/{DISCOVERY_MAILBOX}"
        rec = {"AppAccessContext": {"UniqueTokenId": ""}, "CreationTime": t, "Id": rid,
               "Operation": "Add-MailboxPermission", "OrganizationId": TENANT_ID, "RecordType": 1,
               "ResultStatus": "True", "UserKey": SYSTEM_SERVICEHOST, "UserType": 3, "Version": 1,
               "Workload": "Exchange", "ObjectId": ident, "UserId": SYSTEM_SERVICEHOST, "AppId": "",
               "ClientAppId": "", "ExternalAccess": True, "OrganizationName": ORG_NAME,
               "OriginatingServer": f"CH3PR10MB{self.rng.randrange(1000, 9999)} (15.20.6813.014)",
               "Parameters": [{"Name": "DomainController", "Value": ""},
                              {"Name": "Identity", "Value": ident},
                              {"Name": "User", "Value": f"{ORG_PATH}/Discovery Management"},
                              {"Name": "AccessRights", "Value": "FullAccess"}]}
        return rec

    # -- attack-shaped grants -----------------------------------------------
    def grant(self, kind: str, rid: str, t: str) -> tuple[dict, dict]:
        """Return (record, truth entry) for one injected grant."""
        rng, w = self.rng, self.w
        admin = rng.choice(ADMINS)
        target, grantee = self.user(), self.user()
        while grantee == target:
            grantee = self.user()
        ip = rng.choice(ATTACK_IPS)
        op = GRANT_OPERATION[kind]
        rights = None
        target_s, grantee_s = w.upn[target], w.upn[grantee]

        if kind.startswith("fullaccess") or kind == "changepermission":
            if kind == "fullaccess":
                rights = "FullAccess"
            elif kind == "fullaccess_multi":
                rights = rng.choice(["DeleteItem, ReadPermission, FullAccess", "FullAccess, ReadPermission",
                                     "ChangePermission, FullAccess", "FullAccess, DeleteItem"])
            else:
                rights = rng.choice(["ChangePermission", "ChangeOwner", "ChangePermission, ChangeOwner"])
            # Identity is a UPN, an object GUID (real sample) or a display name.
            target_s = rng.choice([w.upn[target], w.upn[target], w.aad_oid[target], f"User {target:04d}"])
            params = [{"Name": "Identity", "Value": target_s},
                      {"Name": "AccessRights", "Value": rights},
                      {"Name": "User", "Value": grantee_s},
                      {"Name": "InheritanceType", "Value": "All"}]
            if rng.random() < 0.4:
                params.append({"Name": "AutoMapping", "Value": "False"})
            rng.shuffle(params)  # parameter order is arbitrary in real records
            object_id = w.aad_oid[target]
        elif kind in ("sendas", "sendas_guid"):
            rights = "SendAs"
            if kind == "sendas_guid":
                target_s, grantee_s = w.aad_oid[target], w.aad_oid[grantee]
            params = [{"Name": "Identity", "Value": target_s}, {"Name": "Trustee", "Value": grantee_s},
                      {"Name": "AccessRights", "Value": "SendAs"}]
            if rng.random() < 0.5:
                params.append({"Name": "Confirm", "Value": "False"})
            object_id = w.aad_oid[target]
        elif kind == "sendonbehalf":
            rights = "SendOnBehalf"
            # The audit rendering of "@{Add=...}" is unconfirmed (formats.md 2.4); mix
            # plain values, lists and the hashtable form to exercise parsers.
            other = w.upn[self.user()]
            grantee_s = rng.choice([grantee_s, grantee_s, f"{grantee_s},{other}", f'@{{Add="{grantee_s}"}}'])
            params = [{"Name": "Identity", "Value": target_s}, {"Name": "GrantSendOnBehalfTo", "Value": grantee_s}]
            object_id = f"{ORG_PATH}/{w.aad_oid[target]}"
        elif kind == "folder_default_reviewer":
            rights = "Reviewer"
            grantee_s = "Default"
            params = [{"Name": "Identity", "Value": f"{w.upn[target]}:\\Inbox"},
                      {"Name": "User", "Value": "Default"}, {"Name": "AccessRights", "Value": "Reviewer"}]
            object_id = f"{w.upn[target]}:\\Inbox"
        elif kind == "folder_everyone_inbox":
            # Mailbox-side record: the (compromised) owner shares the Inbox from OWA.
            rights = "ReadAny, Visible"
            grantee_s = "Everyone"
            rec = self.base(rid, t, op, 2, 0, w.puid[target], w.upn[target], "Exchange", "Succeeded")
            self.mailbox_fields(rec, target, target, 0, OWA_BROWSER_INFO)
            rec["ClientIP"] = with_port(ip, rng.randrange(1024, 65535))
            rec["ClientIPAddress"] = ip
            fid = w.store_prefix[target] + "AAAAAAEMAAAB"
            rec["Item"] = {"Id": fid, "ParentFolder": {"Id": fid, "Path": "\\Inbox", "Name": "Inbox",
                                                       "MemberRights": rights, "MemberSid": "S-1-1-0",
                                                       "MemberUpn": "Everyone"}}
            admin = w.upn[target]
            return rec, self._truth(rec, kind, admin, target_s, grantee_s, rights)
        elif kind == "impersonation":
            rights = "ApplicationImpersonation"
            grantee_s = rng.choice([w.upn[grantee], f"svc-sync{rng.randrange(10, 99)}@{DOMAIN}"])
            name = f"ApplicationImpersonation-{grantee_s.split('@')[0]}"
            params = [{"Name": "Name", "Value": name}, {"Name": "Role", "Value": "ApplicationImpersonation"},
                      {"Name": "User", "Value": grantee_s}]
            target_s = "(organization)"
            object_id = name
        else:  # pragma: no cover - GRANT_MIX and this method must agree
            raise ValueError(kind)

        rec = self.base(rid, t, op, 1, 2, w.admin_puid[admin], admin, "Exchange", "True")
        self.admin_fields(rec, object_id, params, ip)
        return rec, self._truth(rec, kind, admin, target_s, grantee_s, rights)

    @staticmethod
    def _truth(rec: dict, kind: str, actor: str, target: str, grantee: str, rights: str | None) -> dict:
        return {"Id": rec["Id"], "Operation": rec["Operation"], "kind": kind,
                "CreationTime": rec["CreationTime"], "actor": actor, "target": target,
                "grantee": grantee, "rights": rights}


# --------------------------------------------------------------------------- chunks
_WORLD: World | None = None


def _init_worker(seed: int) -> None:
    global _WORLD
    _WORLD = World(seed)


def generate_chunk(task: tuple) -> tuple[bytes, list, dict]:
    """Generate records [start, stop). Returns (ndjson bytes, truth entries, op counts)."""
    seed, chunk_no, start, stop, n_total, specials = task
    assert _WORLD is not None
    rng = random.Random(f"chunk:{seed}:{chunk_no}")
    gen = ChunkGen(_WORLD, rng)
    kinds = [k for k, _ in NOISE_MIX]
    makers = [getattr(gen, k) for k in kinds]
    cum, acc = [], 0.0
    for _, wgt in NOISE_MIX:
        acc += wgt
        cum.append(acc)
    total_w = acc
    dumps, rand, getrandbits = orjson.dumps, rng.random, rng.getrandbits
    step = SPAN_SECONDS / n_total
    lines: list[bytes] = []
    truth: list = []
    counts: dict[str, int] = {}
    for i in range(start, stop):
        # Roughly time-ordered with a few minutes of jitter, like merged content blobs.
        t = iso(max(START_EPOCH, START_EPOCH + int(i * step) + int(rand() * 600) - 300))
        h = "%032x" % getrandbits(128)
        rid = f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"
        special = specials.get(i)
        if special is None:
            rec = makers[bisect(cum, rand() * total_w)](rid, t)
            line = dumps(rec)
        elif special == "discovery":
            rec = gen.discovery_grant(rid, t)
            # This record is verbatim-shaped after a Purview export, which escapes "/"
            # as "\/" (still valid JSON). Keep that quirk: parsers must not care.
            line = dumps(rec).replace(b"/", b"\\/")
            truth.append({"Id": rid, "Operation": rec["Operation"], "kind": "system_discovery_fullaccess",
                          "CreationTime": t, "line": i + 1})
        else:
            rec, entry = gen.grant(special, rid, t)
            entry["line"] = i + 1
            truth.append(entry)
            line = dumps(rec)
        op = rec["Operation"]
        counts[op] = counts.get(op, 0) + 1
        lines.append(line)
    lines.append(b"")
    return b"\n".join(lines), truth, counts


def plan_specials(seed: int, n: int, grants: int) -> dict[int, str]:
    """Choose which record positions get an injected grant (and which kind).

    Drawn once from a plan RNG so that chunks can be generated independently.
    """
    rng = random.Random(f"plan:{seed}")
    n_disc = min(N_DISCOVERY_GRANTS, n)
    n_grants = min(grants, n - n_disc)
    positions = rng.sample(range(n), n_disc + n_grants)  # sample() on a range stays lazy
    kinds = [k for k, _ in GRANT_MIX]
    weights = [wt for _, wt in GRANT_MIX]
    specials = {pos: "discovery" for pos in positions[:n_disc]}
    for pos in positions[n_disc:]:
        specials[pos] = rng.choices(kinds, weights)[0]
    return specials


# --------------------------------------------------------------------------- main
def default_truth_path(out: Path) -> Path:
    return out.with_name(out.name.removesuffix(".ndjson") + ".truth.json")


def reusable(out: Path, truth_path: Path, params: dict) -> bool:
    """True when `out` was written by this generator with the same parameters."""
    if not (out.is_file() and truth_path.is_file()):
        return False
    try:
        meta = orjson.loads(truth_path.read_bytes())
    except orjson.JSONDecodeError:
        return False
    return meta.get("params") == params and meta.get("bytes") == out.stat().st_size


def generate(out: Path, truth_path: Path, records: int, grants: int, seed: int,
             jobs: int, force: bool = False, quiet: bool = False) -> dict:
    params = {"generator_version": GENERATOR_VERSION, "seed": seed, "records": records, "grants": grants}
    log = (lambda *a: None) if quiet else (lambda *a: print(*a, file=sys.stderr))
    if not force and reusable(out, truth_path, params):
        meta = orjson.loads(truth_path.read_bytes())
        log(f"reusing {out} ({meta['bytes']:,} bytes, {records:,} records, seed {seed}); --force to regenerate")
        meta["reused"] = True
        return meta

    out.parent.mkdir(parents=True, exist_ok=True)
    specials = plan_specials(seed, records, grants)
    tasks = []
    for chunk_no, start in enumerate(range(0, records, CHUNK_RECORDS)):
        stop = min(records, start + CHUNK_RECORDS)
        tasks.append((seed, chunk_no, start, stop, records,
                      {i: k for i, k in specials.items() if start <= i < stop}))

    t0 = time.perf_counter()
    truth: list = []
    counts: dict[str, int] = {}
    size = 0
    tmp = out.with_name(out.name + ".part")  # renamed at the end: never a half file under the real name
    with open(tmp, "wb", buffering=1 << 20) as fh:
        if jobs > 1 and len(tasks) > 1:
            ctx = multiprocessing.get_context("fork" if sys.platform == "linux" else "spawn")
            with ctx.Pool(jobs, initializer=_init_worker, initargs=(seed,)) as pool:
                # imap keeps chunk order, so the output does not depend on --jobs.
                results = pool.imap(generate_chunk, tasks, chunksize=1)
                size, truth, counts = _drain(results, fh, log, records)
        else:
            _init_worker(seed)
            size, truth, counts = _drain(map(generate_chunk, tasks), fh, log, records)
    os.replace(tmp, out)
    elapsed = time.perf_counter() - t0

    fa_injected = sum(1 for e in truth if e["kind"] in ("fullaccess", "fullaccess_multi"))
    fa_system = sum(1 for e in truth if e["kind"] == "system_discovery_fullaccess")
    meta = {
        "params": params,
        "file": out.name,
        "bytes": size,
        "records": records,
        "generation_seconds": round(elapsed, 2),
        "injected_grants": sum(1 for e in truth if e["kind"] != "system_discovery_fullaccess"),
        "fullaccess_add_mailboxpermission_injected": fa_injected,
        "fullaccess_add_mailboxpermission_system": fa_system,
        # What `Operation = 'Add-MailboxPermission' AND Parameters LIKE '%FullAccess%'`
        # must return: injected FullAccess grants plus the routine system ones.
        "expected_fullaccess_query_count": fa_injected + fa_system,
        "injected_by_kind": _count_by([e for e in truth if e["kind"] != "system_discovery_fullaccess"], "kind"),
        "operation_counts": dict(sorted(counts.items(), key=lambda kv: -kv[1])),
        "grants": [e for e in truth if e["kind"] != "system_discovery_fullaccess"],
        "system_grants": [e for e in truth if e["kind"] == "system_discovery_fullaccess"],
    }
    truth_path.parent.mkdir(parents=True, exist_ok=True)
    truth_path.write_bytes(orjson.dumps(meta, option=orjson.OPT_INDENT_2))
    log(f"wrote {out} ({size:,} bytes, {records:,} records, {size / max(records, 1):.0f} B/record) "
        f"in {elapsed:.1f} s; truth: {truth_path}")
    meta["reused"] = False
    return meta


def _drain(results, fh, log, records: int) -> tuple[int, list, dict]:
    size, truth, counts, done = 0, [], {}, 0
    last = time.perf_counter()
    for data, chunk_truth, chunk_counts in results:
        fh.write(data)
        size += len(data)
        truth.extend(chunk_truth)
        for k, v in chunk_counts.items():
            counts[k] = counts.get(k, 0) + v
        done += data.count(b"\n")
        if time.perf_counter() - last > 5:
            last = time.perf_counter()
            log(f"  {done:,}/{records:,} records, {size / 1e6:,.0f} MB")
    return size, truth, counts


def _count_by(entries: list, key: str) -> dict[str, int]:
    out: dict[str, int] = {}
    for e in entries:
        out[e[key]] = out.get(e[key], 0) + 1
    return dict(sorted(out.items()))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"output NDJSON (default {DEFAULT_OUT})")
    ap.add_argument("--truth", type=Path, help="truth JSON (default: <out without .ndjson>.truth.json)")
    ap.add_argument("--records", type=int, default=1_000_000, help="number of records (default 1,000,000)")
    ap.add_argument("--grants", type=int, default=300, help="attack-shaped grants to inject (default 300)")
    ap.add_argument("--seed", type=int, default=1, help="RNG seed (default 1)")
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 1,
                    help="worker processes (default: all CPUs); output does not depend on it")
    ap.add_argument("--force", action="store_true", help="regenerate even if a matching file exists")
    ap.add_argument("--quiet", action="store_true")
    args = ap.parse_args(argv)
    if args.records < 1 or args.grants < 0:
        ap.error("--records must be >= 1 and --grants >= 0")
    truth = args.truth or default_truth_path(args.out)
    generate(args.out, truth, args.records, args.grants, args.seed, max(1, args.jobs),
             force=args.force, quiet=args.quiet)
    return 0


if __name__ == "__main__":
    sys.exit(main())
