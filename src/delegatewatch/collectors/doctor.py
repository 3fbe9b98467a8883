"""Pre-flight checks (``delegatewatch doctor``): can the collectors run, and is the logging there?

Each check answers ``ok``, ``missing`` (something the collectors need is absent), ``warning``
(something useful is absent) or ``note`` (a setting this API cannot see: how to check it by hand).
A check is *required* when collection cannot work without it; ``doctor`` exits 1 when a required
check is not ``ok``. Every message passes through the collectors' redactor: no secret, key or
token is ever shown.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from datetime import timedelta
from pathlib import Path

from delegatewatch.collectors.redact import Redactor

OK, MISSING, WARNING, NOTE = "ok", "missing", "warning", "note"


@dataclass
class Check:
    area: str          # m365 | google
    name: str
    status: str        # ok | missing | warning | note
    required: bool
    detail: str = ""
    fix: str = ""

    def as_dict(self) -> dict:
        return asdict(self)


def passed(checks: Iterable[Check]) -> bool:
    return all(c.status == OK for c in checks if c.required)


def jwt_claims(token: str) -> dict | None:
    """The payload of a JWT, decoded without verifying the signature (we only read our own token)."""
    parts = token.split(".")
    if len(parts) != 3:
        return None
    try:
        payload = base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4))
        claims = json.loads(payload)
    except (ValueError, UnicodeDecodeError):
        return None
    return claims if isinstance(claims, dict) else None


# ------------------------------------------------------------------------------------------ M365

#: Entra ID error codes seen at the token endpoint, and what to do about them.
AADSTS_FIXES = {
    "AADSTS7000215": "the client secret is wrong or expired: create a new one under the app registration → "
                     "Certificates & secrets, and pass it through --secret-env",
    "AADSTS7000222": "the client secret has expired: create a new one under the app registration → Certificates & secrets",
    "AADSTS700016": "no application with this client id in the tenant: check --client-id and --tenant",
    "AADSTS90002": "tenant not found: check --tenant (a tenant GUID or a verified domain)",
    "AADSTS700027": "the certificate is not registered for this app: upload its public part under the app "
                    "registration → Certificates & secrets",
    "AADSTS700024": "the client assertion is outside its validity: check the machine's clock",
}
FEED_PERMISSION_FIX = ("add the API permission Office 365 Management APIs → Application permissions → "
                       "ActivityFeed.Read to the app registration, then Grant admin consent")
REQUIRED_CONTENT = {"Audit.Exchange": True, "Audit.AzureActiveDirectory": False}
CONTENT_WHY = {
    "Audit.Exchange": "mailbox and folder permission changes, mailbox audit records (grants and their use)",
    "Audit.AzureActiveDirectory": "app permission grants (Mail.* / full_access_as_app consent), role changes",
}


def m365_notes() -> list[Check]:
    """What the detections depend on that the Management API cannot show (checked in Exchange PowerShell)."""
    area = "m365"
    return [
        Check(area, "mailbox auditing on by default", NOTE, False,
              "Mailbox auditing is on by default in Exchange Online, but an organisation-wide AuditDisabled=True "
              "switches it off for every mailbox, and that setting is not visible through the Management API.",
              "Exchange Online PowerShell: Get-OrganizationConfig | Format-List AuditDisabled  → must be False; "
              "if True: Set-OrganizationConfig -AuditDisabled $false. Also list bypassed accounts: "
              "Get-MailboxAuditBypassAssociation -ResultSize Unlimited | Where-Object AuditBypassEnabled"),
        Check(area, "MailItemsAccessed (reading a mailbox after a grant)", NOTE, False,
              "MailItemsAccessed is a Microsoft Purview Audit (Premium) action (E5/A5/G5, or the E5 Compliance / "
              "Audit Premium add-on); without it the 'delegate read the mailbox' detections have no input.",
              "Check a mailbox: (Get-Mailbox USER).AuditOwner -contains 'MailItemsAccessed' (and AuditDelegate, "
              "AuditAdmin). If licensed but absent: Set-Mailbox USER -AuditOwner @{Add='MailItemsAccessed'} "
              "-AuditDelegate @{Add='MailItemsAccessed'} -AuditAdmin @{Add='MailItemsAccessed'}. If not licensed: "
              "rely on MailboxLogin and Entra sign-in logs for the delegate, and on the grant detections alone."),
        Check(area, "Send auditing (sending as / on behalf after a grant)", NOTE, False,
              "The Send mailbox action (and the send-volume analytics built on it) is audited by default only with "
              "Audit (Premium)/E5; SendAs and SendOnBehalf are in the default sets.",
              "Check: (Get-Mailbox USER).AuditOwner, .AuditDelegate, .AuditAdmin include Send, SendAs, SendOnBehalf; "
              "add with Set-Mailbox USER -AuditOwner @{Add='Send'} -AuditDelegate @{Add='SendAs','SendOnBehalf'}. "
              "Without Send auditing use message trace exports for send volumes."),
        Check(area, "UpdateFolderPermissions in the mailbox audit sets", NOTE, False,
              "Folder permission grants by the owner or a delegate (AddFolderPermissions / ModifyFolderPermissions, "
              "incl. Default/Anonymous on Inbox) are only logged when UpdateFolderPermissions is audited; a "
              "customised audit set (DefaultAuditSet not listing Owner/Delegate/Admin) can drop it.",
              "Check: Get-Mailbox USER | Format-List DefaultAuditSet, AuditOwner, AuditDelegate, AuditAdmin. Fix: "
              "Set-Mailbox USER -DefaultAuditSet Admin,Delegate,Owner (back to Microsoft's defaults) or "
              "Set-Mailbox USER -AuditOwner @{Add='UpdateFolderPermissions'} -AuditDelegate "
              "@{Add='UpdateFolderPermissions'} -AuditAdmin @{Add='UpdateFolderPermissions'}"),
    ]


def m365_checks(config, redactor: Redactor | None = None) -> list[Check]:
    """Token, ActivityFeed.Read, subscriptions, then the logging notes. ``config`` is an ``M365Config``."""
    from delegatewatch.collectors.m365 import ApiError, CollectorError, ManagementApi, TokenProvider

    area = "m365"
    red = redactor or Redactor()
    red.add(config.secret)
    red.add(config.certificate_passphrase)
    checks: list[Check] = []
    tokens = TokenProvider(config, red)
    try:
        token = tokens.token()
    except CollectorError as exc:
        text = red(str(exc))
        fix = next((f for code, f in AADSTS_FIXES.items() if code in text),
                   "check --tenant, --client-id and the secret or certificate; the app registration must "
                   "exist in the tenant and have a valid credential")
        checks.append(Check(area, "token (client credentials)", MISSING, True, text, fix))
        checks.append(Check(area, "permission ActivityFeed.Read", MISSING, True, "not checked: no token", FEED_PERMISSION_FIX))
        checks.append(Check(area, "subscriptions", MISSING, True, "not checked: no token", ""))
        return checks + m365_notes()
    checks.append(Check(area, "token (client credentials)", OK, True,
                        f"token for {config.scope} from {config.authority}"))
    claims = jwt_claims(token)
    if claims is None:
        checks.append(Check(area, "permission ActivityFeed.Read", WARNING, True,
                            "the token is not a JWT; its roles cannot be read", FEED_PERMISSION_FIX))
    else:
        roles = claims.get("roles") or []
        roles = roles if isinstance(roles, list) else [roles]
        if "ActivityFeed.Read" in roles:
            checks.append(Check(area, "permission ActivityFeed.Read", OK, True,
                                f"roles in the token: {', '.join(map(str, roles))}"))
        else:
            checks.append(Check(area, "permission ActivityFeed.Read", MISSING, True,
                                f"the token's roles claim is {roles or 'empty'}: the app has no admin-consented "
                                "ActivityFeed.Read", FEED_PERMISSION_FIX))
    api = ManagementApi(config, tokens, red)
    try:
        subs = api.list_subscriptions()
    except ApiError as exc:
        fix = FEED_PERMISSION_FIX if exc.code == "AF10001" or exc.status in (401, 403) else (
            "see the message; AF200xx codes are tenant problems (Microsoft's Management API error table)")
        checks.append(Check(area, "subscriptions", MISSING, True, red(f"{exc.code}: {exc.message}"), fix))
        api.close()
        return checks + m365_notes()
    api.close()
    by_type = {str(s.get("contentType")): s for s in subs}
    feed = f"{config.api_root}/api/v1.0/{config.tenant}/activity/feed"
    for ct, required in REQUIRED_CONTENT.items():
        name = f"subscription {ct}"
        sub = by_type.get(ct)
        start = (f"`delegatewatch collect m365` starts it, or POST {feed}/subscriptions/start?contentType={ct}; "
                 "the first content can take up to 12 hours to appear")
        status_if_bad = MISSING if required else WARNING
        if sub is None:
            checks.append(Check(area, name, status_if_bad, required,
                                f"no subscription: nothing is collected for {CONTENT_WHY[ct]}", start))
        elif str(sub.get("status", "")).lower() != "enabled":
            checks.append(Check(area, name, status_if_bad, required,
                                f"subscription status is {sub.get('status')!r}, not enabled", start))
        else:
            checks.append(Check(area, name, OK, required, f"enabled ({CONTENT_WHY[ct]})"))
    return checks + m365_notes()


# ---------------------------------------------------------------------------------------- Google

def google_checks(credentials: str | Path, subject: str, *, applications: Iterable[str] = ("admin", "user_accounts",
                  "token", "gmail"), gmail_delegates: bool = True, test_user: str | None = None,
                  reports_url: str | None = None, directory_url: str | None = None, gmail_url: str | None = None,
                  token_uri: str | None = None, timeout: float = 20.0) -> list[Check]:
    """Key file, one token per scope, each Reports application, Directory and Gmail delegates."""
    from delegatewatch.collectors import google as g

    area = "google"
    checks: list[Check] = []
    try:
        account = g.ServiceAccount.load(credentials, token_uri)
        account.credentials(subject, g.SCOPE_REPORTS)  # parses the key
    except g.ConfigError as exc:
        return [Check(area, "service-account key file", MISSING, True, str(exc),
                      "download a JSON key of the service account (IAM & Admin → Service accounts → Keys)")]
    checks.append(Check(area, "service-account key file", OK, True,
                        f"{account.client_email}, client id {account.client_id}"))
    http = g.GoogleHTTP(account, timeout=timeout, max_retries=1, backoff_base=0.5, backoff_cap=2.0)
    api = g.GoogleAPI(http, reports_url=reports_url or g.REPORTS_URL, directory_url=directory_url or g.DIRECTORY_URL,
                      gmail_url=gmail_url or g.GMAIL_URL)
    red = http.redact
    user = test_user or subject
    scope_subjects = [(g.SCOPE_REPORTS, subject, True, "Reports API (audit activities)"),
                      (g.SCOPE_DIRECTORY, subject, gmail_delegates, "Directory API (list users, for delegate snapshots)"),
                      (g.SCOPE_GMAIL_SETTINGS, user, gmail_delegates, "Gmail API (delegates of each user)")]
    have: dict[str, bool] = {}
    for scope, who, required, what in scope_subjects:
        name = f"scope {scope.rsplit('/', 1)[-1]}"
        try:
            http.token(who, scope, cache=True)
            have[scope] = True
            checks.append(Check(area, name, OK, required, f"token for {who} ({what})"))
        except g.GoogleAPIError as exc:
            have[scope] = False
            checks.append(Check(area, name, MISSING if required else WARNING, required,
                                red(f"token for {who} refused: {exc.reason}: {exc.message}"),
                                g.advice_for(exc, account.client_id, scope)))

    def probe(name: str, scope: str, required: bool, call) -> None:
        if not have.get(scope):
            checks.append(Check(area, name, MISSING if required else WARNING, required,
                                "not checked: no token for its scope", g.dwd_advice(scope, account.client_id)))
            return
        try:
            detail = call()
            checks.append(Check(area, name, OK, required, detail))
        except g.GoogleAPIError as exc:
            checks.append(Check(area, name, MISSING if required else WARNING, required,
                                red(f"HTTP {exc.status} {exc.reason}: {exc.message}"),
                                g.advice_for(exc, account.client_id, scope)))

    end = g.utc_now()
    for app in applications:
        def call(app=app) -> str:
            start = end - timedelta(days=1)
            page = next(api.activities_pages(subject, app, start, end, max_results=1))
            return f"activities.list answered ({len(page.get('items') or [])} item(s) in the last day, page of 1)"
        probe(f"Reports API: {app}", g.SCOPE_REPORTS, True, call)

    def users() -> str:
        first = next(iter(api.users(subject, page_size=1)), None)
        return "users.list answered" + (f" (first user {first.get('primaryEmail')})" if first else " (no users)")
    probe("Directory API: users.list", g.SCOPE_DIRECTORY, gmail_delegates, users)

    def delegates() -> str:
        found = api.delegates(user)
        return f"delegates.list for {user} answered ({len(found)} delegate(s))"
    probe("Gmail API: delegates.list", g.SCOPE_GMAIL_SETTINGS, gmail_delegates, delegates)
    http.close()
    return checks
