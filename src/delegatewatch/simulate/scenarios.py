"""Attack scenarios, each switchable: the records of one T1098.002 chain, labelled.

A scenario picks its day, accounts and times from its own random stream, so switching one off does
not move the others. Every record carries the instance id (``tag``) and whether a detector is
expected to flag it (``expect``, with the rule when one specific rule should); analytics over many
records (send bursts, lure campaigns, snapshot comparison) are expected per instance
(``Instance.expect_rules``). Actors' addresses come from the documentation ranges.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field

from delegatewatch.simulate import ual_records as U
from delegatewatch.simulate.background import (
    _ds_change,
    _member_added,
    cmdlet_data,
    google_activity,
)
from delegatewatch.simulate.model import (
    ADMIN_AUDIT,
    GOOGLE,
    TRACE,
    UAL,
    WINDOWS,
    AdminAuditEntry,
    Item,
    Mail,
    WinEvent,
)
from delegatewatch.simulate.tenant import (
    AD_DOMAIN,
    GOOGLE_DOMAIN,
    ORG_NAME,
    ORG_PATH,
    Person,
    Tenant,
)

ATTACKER_IP = "203.0.113.200"
ATTACKER_IP2 = "192.0.2.77"
DC = f"DC01.{AD_DOMAIN}"
EXCH = f"EXMBX01.{AD_DOMAIN}"


@dataclass
class Grant:
    """A permission an attack leaves standing: it appears in the snapshot taken after it."""

    kind: str  # mailbox | recipient | folder | gmail
    mailbox: str
    grantee: str
    rights: str
    folder: str = ""


@dataclass
class Injected:
    id: str
    scenario: str
    summary: str
    items: list[Item]
    expect_rules: list[str] = field(default_factory=list)
    grants: list[Grant] = field(default_factory=list)


class _Chain:
    """Collects one instance's items with its tag."""

    def __init__(self, tag: str) -> None:
        self.tag = tag
        self.items: list[Item] = []

    def add(self, t: float, stream: str, data: object, expect: bool = False, rule: str | None = None) -> object:
        self.items.append(Item(t, stream, data, self.tag, expect, rule))
        return data


def _day(rng: random.Random, days: int, weekday: bool, start_weekday: int) -> int:
    """A day in the second half of the window, after at least a week (analytics need history), before
    the last day (the closing snapshot comes after it); optionally a weekday."""
    return rng.choice([d for d in range(max(days // 2, 7), days - 1) if not weekday or (start_weekday + d) % 7 < 5])


def _at(start: int, day: int, hour: int, minute: int = 0, second: int = 0) -> float:
    return start + day * 86400 + hour * 3600 + minute * 60 + second


def _staff(rng: random.Random, tenant: Tenant, taken: set[int], *, audited: bool | None = None) -> Person:
    """An ordinary account no other scenario instance uses (while there are any left)."""
    pool = [p for p in tenant.staff if p.role == "staff" and (audited is None or (p.index % 4 == 0) == audited)]
    p = rng.choice([p for p in pool if p.index not in taken] or pool)
    taken.add(p.index)
    return p


# -- the scenarios -------------------------------------------------------------------------------
def bec(rng, tenant, start, days, swd, taken, tag) -> Injected:
    """Account takeover → FullAccess with AutoMapping off → delegate reads → hiding rule → lure burst."""
    c = _Chain(tag)
    d = _day(rng, days, True, swd)
    helpdesk = tenant.admins[2]
    victim = _staff(rng, tenant, taken, audited=True)
    cfo = tenant.execs[0]
    t = _at(start, d, 1, 7, rng.randrange(60))
    c.add(t, UAL, U.user_logged_in(rng, t, helpdesk, ip=ATTACKER_IP, user_agent=U.UA_ATTACKER, os_name="Linux"))
    t += 60  # the helpdesk account resets the victim's password (as in the real reset-then-grant sample)
    c.add(t, UAL, U.aad_admin(rng, t, helpdesk, "Reset user password.", object_id=victim.upn, modified=[], target=[
        {"ID": f"User_{victim.object_id}", "Type": 2}, {"ID": victim.object_id, "Type": 2}, {"ID": "User", "Type": 2},
        {"ID": victim.upn, "Type": 5}, {"ID": victim.puid, "Type": 3}]))
    t += 35
    c.add(t, UAL, U.user_logged_in(rng, t, victim, ip=ATTACKER_IP, user_agent=U.UA_ATTACKER, os_name="Linux"))
    t += 480
    c.add(t, UAL, U.exo_admin(rng, t, helpdesk, "Add-MailboxPermission", U.params(
        Identity=cfo.upn, AccessRights="FullAccess", User=victim.upn, InheritanceType="All", AutoMapping="False"),
        object_id=cfo.object_path, ip=ATTACKER_IP), True, "m365_mailbox_full_access_grant")
    for k in range(6):
        t += 150 + rng.randrange(120)
        c.add(t, UAL, U.mail_items_accessed(rng, t, victim, cfo, access="Bind", logon_type=1, ip=ATTACKER_IP,
                                            folders=("\\Inbox", "\\Sent Items") if k % 2 else ("\\Inbox",)))
    t += 300
    c.add(t, UAL, U.exo_admin(rng, t, victim, "New-InboxRule", U.params(
        Name=".", SubjectContainsWords="invoice;payment;remittance", MoveToFolder="RSS Feeds", MarkAsRead="True",
        StopProcessingRules="True"), object_id=f"{victim.object_path}\\.", ip=ATTACKER_IP), True,
        "m365_inbox_rule_hiding")
    t = _at(start, d, 2, 5)
    for n in range(110 + rng.randrange(30)):
        ts = t + rng.random() * 3000
        to = (tenant.externals[rng.randrange(len(tenant.externals))],)
        subject = f"Updated remittance details - invoice {rng.randint(10000, 99999)}"
        mail = Mail(victim.upn, to, subject, U.message_id(rng), ATTACKER_IP)
        c.add(ts, TRACE, mail)
        c.add(ts, UAL, U.send(rng, ts, victim, victim, "Send", subject, mail.message_id, 1, ip=ATTACKER_IP))
    return Injected(tag, "bec", f"{helpdesk.upn} (taken over) resets {victim.upn}'s password and gives it FullAccess to {cfo.upn} "
                    f"(AutoMapping off); {victim.upn} reads it, hides replies and sends a lure burst",
                    c.items, ["send_volume_burst"], [Grant("mailbox", cfo.upn, victim.upn, "FullAccess")])


def folder_exposure(rng, tenant, start, days, swd, taken, tag) -> Injected:
    c = _Chain(tag)
    d = _day(rng, days, False, swd)
    owner = _staff(rng, tenant, taken)
    reader = _staff(rng, tenant, taken)
    t = _at(start, d, 22, rng.randrange(60))
    c.add(t, UAL, U.exo_admin(rng, t, owner, "Add-MailboxFolderPermission", U.params(
        Identity=f"{owner.upn}:\\Inbox", User="Default", AccessRights="Reviewer"),
        object_id=f"{owner.object_path}:\\Inbox", ip=ATTACKER_IP2), True, "m365_folder_default_anonymous_cmdlet")
    t += 2
    c.add(t, UAL, U.folder_permission(rng, t, owner, owner, "AddFolderPermissions", path="\\Inbox", name="Inbox",
                                      member_upn="Default", member_sid="", rights="ReadAny, Visible",
                                      ip=ATTACKER_IP2), True, "m365_folder_default_anonymous_audit")
    t += 40
    c.add(t, UAL, U.folder_permission(rng, t, owner, owner, "ModifyFolderPermissions", path="\\",
                                      name="Top of Information Store", member_upn="Anonymous", member_sid="",
                                      rights="Visible", ip=ATTACKER_IP2), True, "m365_folder_default_anonymous_audit")
    for _ in range(3):
        t += 600
        c.add(t, UAL, U.mail_items_accessed(rng, t, reader, owner, access="Bind", logon_type=1, ip=ATTACKER_IP2))
    return Injected(tag, "folder_exposure", f"Default gets Reviewer on {owner.upn}:\\Inbox and Anonymous sees its root",
                    c.items, [], [Grant("folder", owner.upn, "Default", "Reviewer", "Inbox")])


def sendas_guid(rng, tenant, start, days, swd, taken, tag) -> Injected:
    c = _Chain(tag)
    d = _day(rng, days, True, swd)
    admin = tenant.admins[1]
    owner = tenant.execs[1 % len(tenant.execs)]
    trustee = _staff(rng, tenant, taken)
    t = _at(start, d, 19, rng.randrange(60))
    c.add(t, UAL, U.exo_admin(rng, t, admin, "Add-RecipientPermission", U.params(
        Identity=owner.object_id, Trustee=trustee.object_id, AccessRights="SendAs", Confirm="False"),
        object_id=owner.object_path, ip=ATTACKER_IP), True, "m365_send_as_grant")
    for _ in range(4):
        t += 900 + rng.randrange(600)
        subject = "Confidential: acquisition timeline"
        to = (rng.choice(tenant.staff).upn,)
        mail = Mail(owner.upn, to, subject, U.message_id(rng), ATTACKER_IP)
        c.add(t, TRACE, mail)
        c.add(t, UAL, U.send(rng, t, trustee, owner, "SendAs", subject, mail.message_id, 1, ip=ATTACKER_IP))
    return Injected(tag, "sendas_guid", f"SendAs on {owner.upn} for {trustee.upn}, both named by object GUID",
                    c.items, [], [Grant("recipient", owner.upn, trustee.upn, "SendAs")])


def impersonation(rng, tenant, start, days, swd, taken, tag) -> Injected:
    c = _Chain(tag)
    d = _day(rng, days, True, swd)
    admin = tenant.admins[0]
    member = _staff(rng, tenant, taken)
    second = _staff(rng, tenant, taken)
    t = _at(start, d, 20, rng.randrange(60))
    group = "Mailbox Sync Operators"
    c.add(t, UAL, U.exo_admin(rng, t, admin, "New-RoleGroup", U.params(
        Name=group, Roles="ApplicationImpersonation", Members=member.object_id),
        object_id=f"{ORG_PATH}/{group}", ip=ATTACKER_IP), True, "m365_application_impersonation")
    t += 3600 * 3
    c.add(t, UAL, U.exo_admin(rng, t, admin, "Add-RoleGroupMember", U.params(Identity=group, Member=second.upn),
                              object_id=f"{ORG_PATH}/{group}", ip=ATTACKER_IP), True, "m365_role_group_member_added")
    return Injected(tag, "impersonation", f"role group '{group}' with ApplicationImpersonation for "
                    f"{member.upn}, then {second.upn} added", c.items, [], [])


def guest_grant(rng, tenant, start, days, swd, taken, tag) -> Injected:
    c = _Chain(tag)
    d = _day(rng, days, True, swd)
    admin = tenant.admins[1]
    owner = tenant.execs[2 % len(tenant.execs)]
    guest = f"j.doe_fabrikam.example#EXT#@{ORG_NAME}"
    t = _at(start, d, 16, rng.randrange(60))
    c.add(t, UAL, U.exo_admin(rng, t, admin, "Add-MailboxPermission", U.params(
        Identity=owner.upn, AccessRights="FullAccess", User=guest, InheritanceType="All"),
        object_id=owner.object_path, ip=ATTACKER_IP), True, "m365_mailbox_full_access_grant")
    return Injected(tag, "guest_grant", f"guest {guest} gets FullAccess to {owner.upn}", c.items, [],
                    [Grant("mailbox", owner.upn, guest, "FullAccess")])


def onprem_delegate(rng, tenant, start, days, swd, taken, tag) -> Injected:
    c = _Chain(tag)
    d = _day(rng, days, True, swd)
    owner = tenant.execs[0]
    eve = _staff(rng, tenant, taken)
    t = _at(start, d, 18, rng.randrange(60))
    caller = f"{AD_DOMAIN}/Users/helpdesk07"
    c.add(t, ADMIN_AUDIT, AdminAuditEntry(caller, "Set-Mailbox", f"{AD_DOMAIN}/Staff/{owner.name}",
                                          [("Identity", owner.alias), ("GrantSendOnBehalfTo", eve.alias)],
                                          [("GrantSendOnBehalfTo", "", eve.dn)]), True, "m365_send_on_behalf_grant")
    c.add(t + 0.4, WINDOWS, WinEvent(1, "MSExchange Management", "MSExchange CmdletLogs", EXCH, cmdlet_data(
        "Set-Mailbox", f'-Identity "{owner.alias}" -GrantSendOnBehalfTo "{eve.alias}"', caller)), True)
    c.add(t + 1.1, WINDOWS, WinEvent(5136, "Security", "Microsoft-Windows-Security-Auditing", DC,
                                     _ds_change(rng, owner, "publicDelegates", eve.dn, "EXMBX01$", syntax="2.5.5.1"),
                                     task=14081), True, "windows_5136_send_on_behalf_delegate")
    t += 1500
    c.add(t, WINDOWS, WinEvent(4756, "Security", "Microsoft-Windows-Security-Auditing", DC,
                               _member_added(rng, eve, "Organization Management", "helpdesk07"), task=13826), True,
          "windows_exchange_privileged_group_member_added")
    return Injected(tag, "onprem_delegate", f"on-premises: {eve.alias} made a send-on-behalf delegate of "
                    f"{owner.alias} (publicDelegates) and added to Organization Management", c.items, [], [])


def google_dwd(rng, tenant, start, days, swd, taken, tag) -> Injected:
    c = _Chain(tag)
    d = _day(rng, days, True, swd)
    admin = f"admin@{GOOGLE_DOMAIN}"
    # not the users whose delegation is standing background (every 15th Google user and the next)
    people = [p for i, p in enumerate(tenant.google_people) if i % 15 > 1]
    victim, delegate = rng.sample([p for p in people if p.index not in taken] or people, 2)
    taken.update((victim.index, delegate.index))
    t = _at(start, d, 21, rng.randrange(60))
    c.add(t, GOOGLE, google_activity(rng, t, "admin", admin, "DOMAIN_SETTINGS", "AUTHORIZE_API_CLIENT_ACCESS", [
        {"name": "API_CLIENT_NAME", "value": "117263549203845610299"},
        {"name": "API_SCOPES", "multiValue": ["https://mail.google.com/",
                                              "https://www.googleapis.com/auth/gmail.settings.sharing"]}],
        ip=ATTACKER_IP), True, "google_dwd_gmail_scopes")
    t += 130
    c.add(t, GOOGLE, google_activity(rng, t, "admin", admin, "EMAIL_SETTINGS", "CHANGE_EMAIL_SETTING", [
        {"name": "SETTING_NAME", "value": "ENABLE_MAIL_DELEGATION_WITHIN_DOMAIN"},
        {"name": "OLD_VALUE", "value": "false"}, {"name": "NEW_VALUE", "value": "true"},
        {"name": "ORG_UNIT_NAME", "value": "Contoso Labs"}], ip=ATTACKER_IP), True, "google_mail_delegation_enabled")
    return Injected(tag, "google_dwd", f"domain-wide delegation with Gmail scopes; mail delegation enabled; "
                    f"{delegate.google_email} becomes a delegate of {victim.google_email}", c.items,
                    ["snapshot_gmail_delegate_added"],
                    [Grant("gmail", victim.google_email, delegate.google_email, "Delegate")])


#: One template per campaign instance (in turn): real campaigns differ, and one template sent on many
#: days of a month is what the lure analytic treats as a recurring (benign) template.
LURE_TEMPLATES = (
    "Action required: updated payroll portal - verify your account #{n}",
    "Shared document: annual bonus review #{n}",
    "Your mailbox is almost full - increase storage now (ref {n})",
    "Invoice {n} overdue - remittance details attached",
    "Updated HR policy {n}: please acknowledge by Friday",
    "IT notice: password expires today for account {n}",
    "DocuSign: Payroll Team sent you a document to review and sign #{n}",
    "Urgent: new direct deposit form required before payday ({n})",
)


def lure_campaign(rng, tenant, start, days, swd, taken, tag) -> Injected:
    c = _Chain(tag)
    number = int(tag.rsplit("-", 1)[1]) if tag.rsplit("-", 1)[-1].isdigit() else 1
    template = LURE_TEMPLATES[(number - 1) % len(LURE_TEMPLATES)]
    d = _day(rng, days, True, swd)
    senders = [_staff(rng, tenant, taken) for _ in range(4)]
    t0 = _at(start, d, 13, rng.randrange(30))
    for i, s in enumerate(senders):
        for j in range(1 + rng.randrange(3)):
            t = t0 + 1200 * i + 420 * j + rng.randrange(300)
            n = rng.randint(1000, 9999)
            subject = template.format(n=n)
            to = tuple(p.upn for p in rng.sample(tenant.staff, 8 + rng.randrange(8)) if p is not s)
            mail = Mail(s.upn, to, subject, U.message_id(rng), ATTACKER_IP2)
            c.add(t, TRACE, mail)
            if s.index % 4 == 0:
                c.add(t, UAL, U.send(rng, t, s, s, "Send", subject, mail.message_id, len(to), ip=ATTACKER_IP2))
    return Injected(tag, "lure_campaign", f"look-alike lures ({template.split(':')[0].split(' {')[0]}) from "
                    + ", ".join(s.upn for s in senders),
                    c.items, ["internal_lure_campaign"], [])


SCENARIOS: dict[str, Callable[..., Injected]] = {
    "bec": bec, "folder_exposure": folder_exposure, "sendas_guid": sendas_guid, "impersonation": impersonation,
    "guest_grant": guest_grant, "onprem_delegate": onprem_delegate, "google_dwd": google_dwd,
    "lure_campaign": lure_campaign,
}


def inject(names: list[str], tenant: Tenant, start: int, days: int, seed: int, instances: int = 1) -> list[Injected]:
    """``instances`` of each chosen scenario, each instance from its own random stream; no two share an
    account while unused ones are left (so a different subset may pick other accounts)."""
    taken: set[int] = set()
    swd = (start // 86400 + 3) % 7
    out = []
    for n in range(1, instances + 1):
        for name, make in SCENARIOS.items():  # fixed order; accounts already taken are skipped
            if name in names:
                rng = random.Random(f"{seed}:scenario:{name}:{n}")
                out.append(make(rng, tenant, start, days, swd, taken, f"{name}-{n}"))
    return out
