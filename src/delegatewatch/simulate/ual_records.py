"""Unified-audit-log records as Microsoft writes them (formats.md §2): one builder per record
shape, shared by the background and the scenarios. Field order follows the real records."""

from __future__ import annotations

import random

from delegatewatch.simulate.clock import ual_time
from delegatewatch.simulate.tenant import ORG_NAME, TENANT_ID, Person

APP_EXO_POWERSHELL = "fb78d390-0c51-40cd-8e17-fdbfab77341b"
APP_OWA = "00000002-0000-0ff1-ce00-000000000000"
APP_OFFICE = "d3590ed6-52b3-4102-aeff-aad2292ab01c"
APP_GRAPH = "00000003-0000-0000-c000-000000000000"
RES_SHAREPOINT = "00000003-0000-0ff1-ce00-000000000000"
SYSTEM_SERVICEHOST = "NT AUTHORITY\\SYSTEM (Microsoft.Exchange.ServiceHost)"
RECORD_TYPE_NAMES = {1: "ExchangeAdmin", 2: "ExchangeItem", 3: "ExchangeItemGroup", 6: "SharePointFileOperation",
                     8: "AzureActiveDirectory", 15: "AzureActiveDirectoryStsLogon", 50: "ExchangeItemAggregated"}
SERVERS = ("CH3PR10MB7285", "BN0PR04MB8023", "SA1PR12MB6541", "DM6PR11MB4418", "PH0PR19MB5310", "MW4PR03MB6692")
BUILDS = ("15.20.8207.017", "15.20.8293.012", "15.20.8335.015")
UA_EDGE = ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
           "Chrome/131.0.0.0 Safari/537.36 Edg/131.0.0.0")
UA_MAC = ("Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) "
          "Version/18.1 Safari/605.1.15")
UA_OUTLOOK = "Microsoft Office/16.0 (Windows NT 10.0; Microsoft Outlook 16.0.18227; Pro)"
UA_ATTACKER = "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0"
USER_AGENTS = (UA_EDGE, UA_MAC, UA_OUTLOOK)


def below(rng: random.Random, n: int) -> int:
    """``rng.randrange(n)`` at a fraction of the cost (the simulator draws millions)."""
    return int(rng.random() * n)


def between(rng: random.Random, lo: int, hi: int) -> int:
    """``between(rng, lo, hi)``, cheaply."""
    return lo + int(rng.random() * (hi - lo + 1))


def guid(rng: random.Random) -> str:
    h = f"{rng.getrandbits(128):032x}"
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-a{h[17:20]}-{h[20:]}"


def admin_id(rng: random.Random, t: float) -> str:
    """Exchange admin record Ids end in a time-ordered ``08dd…`` group."""
    h = f"{rng.getrandbits(96):024x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-08dd{int(t) & 0xFFFFFFFF:08x}"


def store_id(rng: random.Random, prefix: str) -> str:
    return prefix + f"{rng.getrandbits(160):040X}"


def message_id(rng: random.Random) -> str:
    return f"<{SERVERS[rng.getrandbits(2)]}{rng.getrandbits(64):016X}@{SERVERS[rng.getrandbits(2)]}.namprd10.prod.outlook.com>"


def server(rng: random.Random) -> str:
    return f"{SERVERS[rng.getrandbits(2)]} ({BUILDS[rng.getrandbits(1)]})\r\n"


def params(**pairs: str) -> list[dict]:
    """Exchange ``Parameters``: a Name/Value list, every value a string."""
    return [{"Name": k, "Value": v} for k, v in pairs.items()]


def _common(t: float, rid: str, op: str, record_type: int, status: str | None, user_key: str, user_type: int,
            workload: str) -> dict:
    rec = {"CreationTime": ual_time(t), "Id": rid, "Operation": op, "OrganizationId": TENANT_ID,
           "RecordType": record_type}
    if status is not None:
        rec["ResultStatus"] = status
    rec["UserKey"] = user_key
    rec["UserType"] = user_type
    rec["Version"] = 1
    rec["Workload"] = workload
    return rec


def exo_admin(rng: random.Random, t: float, actor: Person | None, op: str, parameters: list[dict], *,
              object_id: str, ip: str | None = None, status: str = "True") -> dict:
    """ExchangeAdmin (RecordType 1): one cmdlet run; ``actor=None`` is the ServiceHost system account."""
    if actor is None:
        rec = _common(t, admin_id(rng, t), op, 1, status, SYSTEM_SERVICEHOST, 3, "Exchange")
        rec.update({"AppAccessContext": {"UniqueTokenId": ""}, "ObjectId": object_id, "UserId": SYSTEM_SERVICEHOST,
                    "AppId": "", "ClientAppId": "", "ExternalAccess": True})
    else:
        rec = _common(t, admin_id(rng, t), op, 1, status, actor.puid, 2 if actor.role == "admin" else 0, "Exchange")
        rec.update({"ClientIP": f"[{ip or actor.ip}]:{between(rng, 49152, 65535)}" if ":" in (ip or actor.ip)
                    else f"{ip or actor.ip}:{between(rng, 49152, 65535)}", "ObjectId": object_id,
                    "UserId": actor.upn, "AppId": APP_EXO_POWERSHELL, "ClientAppId": "", "ExternalAccess": False})
    rec.update({"OrganizationName": ORG_NAME, "OriginatingServer": server(rng), "Parameters": parameters})
    if actor is not None:
        rec["RequestId"] = guid(rng)
        rec["SessionId"] = guid(rng)
    return rec


def mailbox_item(rng: random.Random, t: float, actor: Person | str, owner: Person, op: str, *, logon_type: int = 0,
                 client_info: str = "Client=MSExchangeRPC", ip: str | None = None, app_id: str = APP_OFFICE,
                 record_type: int = 2, user_key: str | None = None, user_type: int = 0, logon_sid: str | None = None,
                 session: str | None = None, **extra: object) -> dict:
    """ExchangeItem (RecordType 2) / ExchangeItemAggregated (50): a mailbox audit record."""
    upn = actor if isinstance(actor, str) else actor.upn
    ip = ip or (owner.ip if isinstance(actor, str) else actor.ip)
    rec = _common(t, guid(rng), op, record_type, "Succeeded",
                  user_key or (actor if isinstance(actor, str) else actor.puid), user_type, "Exchange")
    rec.update({"ClientIP": ip, "UserId": upn, "AppId": app_id, "ClientAppId": "", "ClientIPAddress": ip,
                "ClientInfoString": client_info, "ExternalAccess": False, "InternalLogonType": 0,
                "LogonType": logon_type, "LogonUserSid": logon_sid or (actor if isinstance(actor, str) else actor.sid),
                "MailboxGuid": owner.mailbox_guid, "MailboxOwnerSid": owner.sid, "MailboxOwnerUPN": owner.upn,
                "OrganizationName": ORG_NAME, "OriginatingServer": server(rng), "SessionId": session or guid(rng)})
    rec.update(extra)
    return rec


def mail_items_accessed(rng: random.Random, t: float, actor: Person, owner: Person, *, access: str = "Bind",
                        folders: tuple[str, ...] = ("\\Inbox",), logon_type: int = 0, ip: str | None = None,
                        client_info: str = "Client=REST;Client=RESTSystem;;", app_id: str = APP_OFFICE) -> dict:
    entries = []
    count = 0
    for path in folders:
        entry: dict = {"Id": store_id(rng, "LgAAAAA"), "Path": path}
        if access == "Bind":
            items = [{"Id": store_id(rng, "RgAAAAA"), "InternetMessageId": message_id(rng),
                      "SizeInBytes": between(rng, 9_000, 240_000)} for _ in range(1 + rng.getrandbits(2))]
            entry["FolderItems"] = items
            count += len(items)
        else:
            count += 1
        entries.append(entry)
    return mailbox_item(rng, t, actor, owner, "MailItemsAccessed", record_type=50, logon_type=logon_type, ip=ip,
                        client_info=client_info, app_id=app_id,
                        OperationProperties=params(MailAccessType=access, IsThrottled="False"),
                        Folders=entries, OperationCount=count)


def folder_permission(rng: random.Random, t: float, actor: Person | str, owner: Person, op: str, *, path: str,
                      name: str, member_upn: str, member_sid: str, rights: str, logon_type: int = 0,
                      client_info: str = "Client=OWA;Action=ViaProxy", **kw: object) -> dict:
    """Add/ModifyFolderPermissions mailbox-audit record: the folder and grant live in ``Item.ParentFolder``."""
    fid = store_id(rng, "LgAAAAA")
    item = {"Id": fid, "ParentFolder": {"Id": fid, "MemberRights": rights, "MemberSid": member_sid,
                                        "MemberUpn": member_upn, "Name": name, "Path": path}}
    return mailbox_item(rng, t, actor, owner, op, logon_type=logon_type, client_info=client_info, app_id=APP_OWA,
                        Item=item, **kw)


def sent_item(rng: random.Random, subject: str, mid: str, recipients: int, attachments: str | None = None) -> dict:
    item = {"Id": store_id(rng, "RgAAAAA"), "InternetMessageId": mid,
            "ParentFolder": {"Id": store_id(rng, "LgAAAAA"), "Path": "\\Sent Items"},
            "SizeInBytes": between(rng, 8_000, 90_000), "Subject": subject}
    if attachments:
        item["Attachments"] = attachments
    return item


def send(rng: random.Random, t: float, actor: Person, owner: Person, op: str, subject: str, mid: str,
         recipients: int, *, ip: str | None = None, attachments: str | None = None,
         client_info: str = "Client=OWA;Action=ViaProxy") -> dict:
    """Send / SendAs / SendOnBehalf (RecordType 2)."""
    extra: dict = {"Item": sent_item(rng, subject, mid, recipients, attachments), "SaveToSentItems": True}
    if op == "SendAs":
        extra["SendAsUserSmtp"] = owner.upn
        extra["SendAsUserMailboxGuid"] = owner.mailbox_guid
    elif op == "SendOnBehalf":
        extra["SendOnBehalfOfUserSmtp"] = owner.upn
        extra["SendOnBehalfOfUserMailboxGuid"] = owner.mailbox_guid
    return mailbox_item(rng, t, actor, owner, op, logon_type=0 if actor is owner else 1, ip=ip,
                        client_info=client_info, app_id=APP_OWA, **extra)


def user_logged_in(rng: random.Random, t: float, user: Person, *, ip: str | None = None, app: str = APP_OFFICE,
                   resource: str = APP_OWA, user_agent: str = UA_EDGE, os_name: str = "Windows10") -> dict:
    """AzureActiveDirectoryStsLogon (RecordType 15) UserLoggedIn."""
    ip = ip or user.ip
    rec = _common(t, guid(rng), "UserLoggedIn", 15, "Success", user.object_id, 0, "AzureActiveDirectory")
    rec.update({
        "ClientIP": ip, "ObjectId": resource, "UserId": user.upn, "AzureActiveDirectoryEventType": 1,
        "ExtendedProperties": params(ResultStatusDetail="Redirect", UserAgent=user_agent,
                                     RequestType="OAuth2:Authorize"),
        "ModifiedProperties": [], "Actor": [{"ID": user.object_id, "Type": 0}, {"ID": user.upn, "Type": 5}],
        "ActorContextId": TENANT_ID, "ActorIpAddress": ip, "InterSystemsId": guid(rng), "IntraSystemId": guid(rng),
        "SupportTicketId": "", "Target": [{"ID": resource, "Type": 0}], "TargetContextId": TENANT_ID,
        "ApplicationId": app,
        "DeviceProperties": params(OS=os_name, BrowserType="Edge", IsCompliantAndManaged="False",
                                   SessionId=guid(rng)),
        "ErrorNumber": "0"})
    return rec


def site_ids(site: str) -> tuple[str, str, str]:
    """A site's own Site, WebId and document-library ListId: fixed for the site, as in real tenants."""
    rng = random.Random(f"site:{site}")
    return guid(rng), guid(rng), guid(rng)


def file_operation(rng: random.Random, t: float, user: Person, op: str, site: str, folder: str, name: str,
                   user_agent: str, ids: tuple[str, str, str]) -> dict:
    """SharePointFileOperation (RecordType 6): FileAccessed / FileModified / FileDownloaded."""
    site_url = f"https://contoso.sharepoint.com/sites/{site}/"
    ext = name.rsplit(".", 1)[1]
    rec = _common(t, guid(rng), op, 6, None, f"i:0h.f|membership|{user.puid.lower()}@live.com", 0, "SharePoint")
    rec.update({"ClientIP": user.ip, "ObjectId": f"{site_url}{folder}/{name}", "UserId": user.upn,
                "CorrelationId": guid(rng), "EventSource": "SharePoint", "ItemType": "File", "ListId": ids[2],
                "ListItemUniqueId": guid(rng), "Site": ids[0], "UserAgent": user_agent, "WebId": ids[1],
                "SourceFileExtension": ext, "SiteUrl": site_url, "SourceFileName": name,
                "SourceRelativeUrl": folder})
    return rec


def aad_admin(rng: random.Random, t: float, actor: Person, op: str, *, object_id: str, target: list[dict],
              modified: list[dict]) -> dict:
    """AzureActiveDirectory (RecordType 8) directory audit record."""
    rec = _common(t, guid(rng), op, 8, "Success", f"{actor.puid}@contoso.com", 0, "AzureActiveDirectory")
    rec.update({"ObjectId": object_id, "UserId": actor.upn, "AzureActiveDirectoryEventType": 1,
                "ExtendedProperties": params(additionalDetails="{}", extendedAuditEventCategory="User"),
                "ModifiedProperties": modified,
                "Actor": [{"ID": actor.upn, "Type": 5}, {"ID": actor.puid, "Type": 3},
                          {"ID": actor.object_id, "Type": 2}],
                "ActorContextId": TENANT_ID, "InterSystemsId": guid(rng), "IntraSystemId": guid(rng),
                "SupportTicketId": "", "Target": target, "TargetContextId": TENANT_ID})
    return rec
