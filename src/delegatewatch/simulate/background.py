"""Background activity of an ordinary organisation, one hour at a time.

Every hour of every day is generated from its own random stream (``seed``, day, hour), so any hour
can be produced in any process and the output is the same whatever the process count. Counts per
hour are drawn for the whole organisation and then spread over people by their own rates
(``rng.choices`` with cumulative weights): per-user habits without a draw per person per hour.

Rates are per ordinary user per weekday at ``density`` 1.0 (docs/simulate.md lists them).
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from itertools import accumulate

from delegatewatch.simulate import ual_records as U
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
    AD_DN,
    AD_DOMAIN,
    DOMAIN_SID,
    GOOGLE_CUSTOMER,
    GOOGLE_DOMAIN,
    NETBIOS,
    OFFICE_IPS,
    ORG_PATH,
    Person,
    Tenant,
)

#: share of a working day's activity in each UTC hour (working hours 07–18, a trickle at night)
HOURLY = [0.01, 0.01, 0.01, 0.01, 0.01, 0.02, 0.04, 0.07, 0.11, 0.12, 0.11, 0.09, 0.07, 0.1, 0.11, 0.1,
          0.08, 0.05, 0.03, 0.02, 0.02, 0.02, 0.01, 0.01]
_HSUM = sum(HOURLY)
HOURLY = [h / _HSUM for h in HOURLY]
WEEKEND = 0.06  # weekend days carry this share of a weekday's activity

#: per ordinary user per weekday at density 1.0
PER_USER_DAY = {
    "sign_in": 3.0,
    "file": 6.0,
    "mail_access": 3.0,
    "mailbox_login": 0.8,
    "item_group": 0.5,
}
SEND_SCALE = 0.9  # messages per unit of a person's send rate per working hour

SITES = ("Finance", "HR", "Legal", "Marketing", "Sales", "Engineering", "ITOps", "Projects", "Procurement",
         "Support", "Research", "Operations")
FILE_WORDS = ("Budget", "Report", "Plan", "Minutes", "Forecast", "Contract", "Roadmap", "Review", "Summary",
              "Proposal", "Policy", "Onboarding", "Inventory", "Timesheet", "Presentation", "Q1", "Q2", "Q3", "Q4")
FILE_EXTS = ("docx", "xlsx", "pptx", "pdf", "csv")
SP_FOLDERS = ("Shared Documents", "Shared Documents/General", "Shared Documents/Reports", "Documents")
WORDS = ("budget", "forecast", "review", "contract", "draft", "agenda", "slides", "report", "client", "project",
         "design", "meeting", "notes", "hiring", "plan", "roadmap", "launch", "campaign", "policy", "training",
         "offsite", "survey", "feedback", "summary", "proposal", "quote", "order", "shipment", "vendor", "release")
RULE_FOLDERS = ("Newsletters", "Receipts", "Notifications", "Team", "Projects")
ORDINARY_GROUPS = ("Sales-Team", "VPN Users", "Finance-Readers", "Engineering-Build", "Print Operators EU")
DC = f"DC01.{AD_DOMAIN}"
EXCH = f"EXMBX01.{AD_DOMAIN}"


@dataclass
class Background:
    """Precomputed weights for drawing people; immutable, shared by every hour."""

    tenant: Tenant
    start: int  # epoch of day 0, 00:00 UTC
    days: int
    density: float
    staff: tuple[Person, ...] = ()
    staff_cw: list[float] | None = None
    send_cw: list[float] | None = None
    subjects: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        self.staff = self.tenant.staff
        self.staff_cw = list(accumulate(1.0 for _ in self.staff))
        self.send_cw = list(accumulate(p.send_rate for p in self.staff))
        # Conversation subjects: three threads per person, named by two words and a project codename,
        # so a subject is one conversation's (people rarely write the same subject independently).
        pool = random.Random(f"subjects:{len(self.staff)}")
        syllables = [a + b for a in "bdfgklmnprstvz" for b in ("a", "e", "i", "o", "u", "ai")]
        names = sorted({"".join(pool.sample(syllables, 2 + (i % 2))).capitalize() for i in range(3000)})
        self.subjects = tuple(f"{' '.join(pool.sample(WORDS, 2)).capitalize()} {pool.choice(names)}"
                              for _ in range(3 * len(self.staff)))

    def _clock(self, day: int, hour: int) -> tuple[int, int, float]:
        t0 = self.start + day * 86400 + hour * 3600
        weekday = (self.start // 86400 + day + 3) % 7  # 1970-01-01 was a Thursday → 0 = Monday
        return t0, weekday, HOURLY[hour] * (WEEKEND if weekday >= 5 else 1.0)

    def hour(self, day: int, hour: int, seed: int) -> list[Item]:
        """Every background record of the hour. Each part has its own random stream, so a part can be
        generated alone (``mail_hour``) and gives the same records."""
        t0, weekday, level = self._clock(day, hour)
        rng = random.Random(f"{seed}:bg:{day}:{hour}")
        out: list[Item] = []
        n_staff = len(self.staff)
        for kind, per_day in PER_USER_DAY.items():
            n = _count(rng, per_day * n_staff * level * self.density)
            make = _USER_KIND[kind]
            for p in rng.choices(self.staff, cum_weights=self.staff_cw, k=n):
                t = t0 + rng.random() * 3600
                out.append(Item(t, UAL, make(rng, t, p)))
        out += self.mail_hour(day, hour, seed)
        rng = random.Random(f"{seed}:bg-work:{day}:{hour}")
        self._delegation(rng, t0, hour, weekday, out)
        if hour == 2:
            self._daily_system(rng, t0, day, out)
        if 8 <= hour < 18 and weekday < 5:
            self._admin_work(rng, t0, out)
            self._onprem(rng, t0, out)
            self._google(rng, t0, level, out)
        return out

    def mail_hour(self, day: int, hour: int, seed: int, audit: bool = True) -> list[Item]:
        """The hour's ordinary mail: people's sends and the bulk senders (``audit``: with the UAL ``Send``
        records of the mailboxes that audit it)."""
        t0, weekday, level = self._clock(day, hour)
        rng = random.Random(f"{seed}:bg-mail:{day}:{hour}")
        out: list[Item] = []
        self._sends(rng, t0, level, out, audit)
        self._mail_services(rng, t0, day, hour, weekday, out)
        return out

    # -- mail -----------------------------------------------------------------------------------
    def _sends(self, rng: random.Random, t0: int, level: float, out: list[Item], audit: bool = True) -> None:
        total = self.send_cw[-1] * SEND_SCALE * 10 * level * self.density
        tenant = self.tenant
        for p in rng.choices(self.staff, cum_weights=self.send_cw, k=_count(rng, total)):
            t = t0 + rng.random() * 3600
            n_subjects = len(self.subjects)
            if rng.random() < 0.7:
                q = _pick(rng, self.staff)
                to = (q.upn,) if rng.random() < 0.5 else (q.upn, _pick(rng, self.staff).upn)
                to = tuple(dict.fromkeys(a for a in to if a != p.upn)) or (tenant.comms.upn,)
                if rng.random() < 0.3:  # a reply in the colleague's conversation
                    subject = "RE: " + self.subjects[(q.index * 3 + U.below(rng, 3)) % n_subjects]
                else:
                    subject = self.subjects[(p.index * 3 + U.below(rng, 3)) % n_subjects]
            else:
                to = (tenant.externals[U.below(rng, len(tenant.externals))],)
                subject = self.subjects[(p.index * 3 + U.below(rng, 3)) % n_subjects]
            mail = Mail(p.upn, to, subject, U.message_id(rng), OFFICE_IPS[p.index % 4])
            out.append(Item(t, TRACE, mail))
            if audit and p.index % 4 == 0:  # mailboxes whose owner Send is audited (E5)
                out.append(Item(t, UAL, U.send(rng, t, p, p, "Send", subject, mail.message_id, len(to))))

    def _delegation(self, rng: random.Random, t0: int, hour: int, weekday: int, out: list[Item]) -> None:
        """Assistants working in their executive's mailbox; members of shared mailboxes."""
        if weekday >= 5 or not 8 <= hour < 18:
            return
        tenant = self.tenant
        for exec_index, a in tenant.assistants.items():
            e = tenant.people[exec_index]
            if rng.random() < 0.5 * self.density + 0.1:
                t = t0 + rng.random() * 3600
                out.append(Item(t, UAL, U.mail_items_accessed(rng, t, a, e, access="Bind", logon_type=1,
                                                               folders=("\\Inbox", "\\Calendar"))))
            for _ in range(_count(rng, 0.6 * self.density + 0.1)):
                t = t0 + rng.random() * 3600
                subject = "Meeting request: " + " ".join(rng.sample(WORDS, 2))
                to = (_pick(rng, self.staff).upn,)
                mail = Mail(e.upn, to, subject, U.message_id(rng), OFFICE_IPS[0])
                out.append(Item(t, TRACE, mail))
                out.append(Item(t, UAL, U.send(rng, t, a, e, "SendOnBehalf", subject, mail.message_id, 1)))
        for s in tenant.shared:
            for m in tenant.shared_members[s.index]:
                if rng.random() < 0.15 * self.density + 0.05:
                    t = t0 + rng.random() * 3600
                    out.append(Item(t, UAL, U.mail_items_accessed(rng, t, m, s, access="Sync", logon_type=1)))
                if rng.random() < 0.08 * self.density + 0.02:
                    t = t0 + rng.random() * 3600
                    subject = "RE: " + _pick(rng, self.subjects)
                    to = (tenant.externals[U.below(rng, len(tenant.externals))],)
                    mail = Mail(s.upn, to, subject, U.message_id(rng), OFFICE_IPS[1])
                    out.append(Item(t, TRACE, mail))
                    out.append(Item(t, UAL, U.send(rng, t, m, s, "SendAs", subject, mail.message_id, 1)))

    def _mail_services(self, rng: random.Random, t0: int, day: int, hour: int, weekday: int, out: list[Item]) -> None:
        """Newsletters, alert mailboxes, broadcasts and reply storms: loud but normal."""
        tenant = self.tenant
        scale = max(1.0, len(self.staff) / 60) ** 0.5
        if weekday < 5 and hour in (9, 10):
            for _ in range(_count(rng, 150 * scale)):
                out.append(Item(t0 + rng.random() * 3600, TRACE, Mail(
                    tenant.newsletter.upn, (_pick(rng, self.staff).upn,), f"Contoso weekly digest {day // 7 + 1}",
                    U.message_id(rng), OFFICE_IPS[2])))
        n = _count(rng, 12 * scale) + (_count(rng, 40 * scale) if hour == 3 else 0)  # the nightly batch
        for _ in range(n):
            out.append(Item(t0 + rng.random() * 3600, TRACE, Mail(
                tenant.alerts.upn, ("it.admin@contoso.com",),
                f"[Monitor] host{U.between(rng, 1, 200)} cpu {U.between(rng, 80, 99)}%", U.message_id(rng), OFFICE_IPS[3])))
        if weekday == 0 and hour == 10:  # the weekly company update to everyone: one message
            out.append(Item(t0 + 600, TRACE, Mail(tenant.comms.upn, tuple(p.upn for p in self.staff),
                                                   f"Company update week {day // 7 + 1}", U.message_id(rng))))
        if weekday == 2 and hour == 15 and day % 14 == 9:  # a reply storm to one organiser
            organiser = self.staff[(day * 7) % len(self.staff)]
            for i, p in enumerate(rng.sample(self.staff, min(25, len(self.staff)))):
                if p is not organiser:
                    out.append(Item(t0 + 120 * i + rng.random() * 60, TRACE, Mail(
                        p.upn, (organiser.upn,), "RE: Team lunch RSVP", U.message_id(rng))))

    # -- Exchange Online system and admin work ------------------------------------------------------
    def _daily_system(self, rng: random.Random, t0: int, day: int, out: list[Item]) -> None:
        for p in rng.sample(self.staff, max(1, len(self.staff) // 50)):
            t = t0 + rng.random() * 3600
            out.append(Item(t, UAL, U.exo_admin(rng, t, None, "Set-Mailbox", U.params(
                Identity=p.object_path, RetentionPolicy="Default MRM Policy", Force="True"), object_id=p.object_path)))
        for g in range(1 + rng.getrandbits(1)):  # a new Microsoft 365 group mailbox being set up
            t = t0 + rng.random() * 3600
            grp = f"project-{day}-{g}@contoso.com"
            group_sid = f"S-1-8-{U.between(rng, 10**9, 4 * 10**9)}-{U.between(rng, 10**9, 4 * 10**9)}"
            owner = Person(-1, grp, f"Project {day}-{g}", grp.split("@")[0], "Projects", "group", "S-1-5-18",
                           "", U.guid(rng), U.guid(rng), "", 0.0)
            for member, rights in (("Member@local", "ReadAny, Visible, FreeBusySimple, FreeBusyDetailed"),
                                   ("Owner@local", ("ReadAny, Create, EditOwned, DeleteOwned, EditAny, DeleteAny, "
                                                    "Visible, FreeBusySimple, FreeBusyDetailed"))):
                out.append(Item(t, UAL, U.folder_permission(
                    rng, t, "S-1-5-18", owner, "ModifyFolderPermissions", path="\\Calendar", name="Calendar",
                    member_upn=member, member_sid=f"{group_sid}-{1 + (member == 'Owner@local')}", rights=rights,
                    logon_type=1,
                    client_info="Client=WebServices;Action=ConfigureGroupMailbox", user_key="S-1-5-18",
                    logon_sid="S-1-5-18")))
        if day == 0:  # the routine system grant every tenant has
            t = t0 + 1200
            mbx = "DiscoverySearchMailbox{D919BA05-46A6-415f-80AD-7E09334BB852}"
            out.append(Item(t, UAL, U.exo_admin(rng, t, None, "Add-MailboxPermission", U.params(
                Identity=mbx, AccessRights="FullAccess", User="Discovery Management", InheritanceType="All"),
                object_id=f"{ORG_PATH}/{mbx}")))

    def _admin_work(self, rng: random.Random, t0: int, out: list[Item]) -> None:
        tenant = self.tenant
        n = _count(rng, len(self.staff) / 400 * self.density + 0.3)
        for _ in range(n):
            t = t0 + rng.random() * 3600
            admin = _pick(rng, tenant.admins)
            p = _pick(rng, self.staff)
            kind = U.below(rng, 4)
            if kind == 0:
                rec = U.exo_admin(rng, t, admin, "Set-Mailbox", U.params(
                    Identity=p.upn, ProhibitSendQuota="49 GB", IssueWarningQuota="48 GB"), object_id=p.object_path,
                    ip=OFFICE_IPS[0])
            elif kind == 1:
                rec = U.exo_admin(rng, t, admin, "Set-CASMailbox", U.params(Identity=p.upn, ActiveSyncEnabled="True"),
                                  object_id=p.object_path, ip=OFFICE_IPS[0])
            elif kind == 2:
                rec = U.exo_admin(rng, t, admin, "Add-DistributionGroupMember", U.params(
                    Identity=f"{p.department}-all@contoso.com", Member=p.upn), object_id=f"{ORG_PATH}/{p.department}-all",
                    ip=OFFICE_IPS[0])
            else:
                q = _pick(rng, self.staff)  # ordinary calendar sharing with a colleague
                rec = U.exo_admin(rng, t, p, "Add-MailboxFolderPermission", U.params(
                    Identity=f"{p.upn}:\\Calendar", User=q.upn, AccessRights="Reviewer"),
                    object_id=f"{p.object_path}:\\Calendar")
            out.append(Item(t, UAL, rec))
        if rng.random() < 0.3 * self.density + 0.05:  # an ordinary inbox rule filing mail away
            t = t0 + rng.random() * 3600
            p = _pick(rng, self.staff)
            folder = _pick(rng, RULE_FOLDERS)
            out.append(Item(t, UAL, U.exo_admin(rng, t, p, "New-InboxRule", U.params(
                Name=f"{folder} rule", From=self.tenant.newsletter.upn, MoveToFolder=folder,
                StopProcessingRules="False"), object_id=f"{p.object_path}\\{folder} rule")))

    # -- on-premises Exchange and AD ---------------------------------------------------------------
    def _onprem(self, rng: random.Random, t0: int, out: list[Item]) -> None:
        for _ in range(_count(rng, 2 + len(self.staff) / 500)):
            t = t0 + rng.random() * 3600
            p = _pick(rng, self.staff)
            attr, value = rng.choice((("telephoneNumber", f"+1 425 555 {U.between(rng, 1000, 9999)}"),
                                      ("title", rng.choice(("Analyst", "Manager", "Engineer", "Consultant"))),
                                      ("description", "Updated by HR sync")))
            out.append(Item(t, WINDOWS, WinEvent(5136, "Security", "Microsoft-Windows-Security-Auditing", DC,
                                                 _ds_change(rng, p, attr, value, "svc-hrsync"), task=14081)))
        if rng.random() < 0.4:
            t = t0 + rng.random() * 3600
            p = _pick(rng, self.staff)
            group = _pick(rng, ORDINARY_GROUPS)
            out.append(Item(t, WINDOWS, WinEvent(4728, "Security", "Microsoft-Windows-Security-Auditing", DC,
                                                 _member_added(rng, p, group, "dadmin"), task=13826)))
        for _ in range(_count(rng, 1.5)):
            t = t0 + rng.random() * 3600
            p = _pick(rng, self.staff)
            quota = f"{rng.choice((10, 20, 50))} GB"
            entry = AdminAuditEntry(f"{AD_DOMAIN}/Users/Administrator", "Set-Mailbox",
                                    f"{AD_DOMAIN}/Staff/{p.name}", [("Identity", p.alias), ("ProhibitSendReceiveQuota", quota)],
                                    [("ProhibitSendReceiveQuota", "Unlimited", quota)])
            out.append(Item(t, ADMIN_AUDIT, entry))
            out.append(Item(t + 0.5, WINDOWS, WinEvent(1, "MSExchange Management", "MSExchange CmdletLogs", EXCH,
                                                       cmdlet_data("Set-Mailbox", f'-Identity "{p.alias}" '
                                                                   f'-ProhibitSendReceiveQuota "{quota}"'), task=1)))

    # -- Google Workspace subsidiary ---------------------------------------------------------------
    def _google(self, rng: random.Random, t0: int, level: float, out: list[Item]) -> None:
        people = self.tenant.google_people
        for p in rng.choices(people, k=_count(rng, len(people) * 2 * level * self.density * 10)):
            t = t0 + rng.random() * 3600
            out.append(Item(t, GOOGLE, google_activity(rng, t, "login", p.google_email, "login", "login_success",
                                                       [{"name": "login_type", "value": "google_password"},
                                                        {"name": "is_suspicious", "boolValue": False}],
                                                       ip=OFFICE_IPS[p.index % 4] if rng.random() < 0.6 else p.ip)))
        if rng.random() < 0.2:
            t = t0 + rng.random() * 3600
            p = _pick(rng, people)
            out.append(Item(t, GOOGLE, google_activity(rng, t, "token", p.google_email, "auth", "authorize", [
                {"name": "client_id", "value": "1095133494869.apps.googleusercontent.com"},
                {"name": "app_name", "value": "Zoom for Google Calendar"},
                {"name": "scope", "multiValue": ["https://www.googleapis.com/auth/calendar.readonly",
                                                 "https://www.googleapis.com/auth/userinfo.email"]}], ip=p.ip)))
        if rng.random() < 0.1:
            t = t0 + rng.random() * 3600
            p = _pick(rng, people)
            out.append(Item(t, GOOGLE, google_activity(rng, t, "admin", f"admin@{GOOGLE_DOMAIN}", "USER_SETTINGS",
                                                       "CHANGE_PASSWORD", [{"name": "USER_EMAIL", "value": p.google_email}])))


_USER_KIND = {
    "sign_in": lambda rng, t, p: U.user_logged_in(rng, t, p, ip=OFFICE_IPS[p.index % 4] if rng.random() < 0.7 else p.ip,
                                                  user_agent=U.USER_AGENTS[p.index % 3]),
    "file": lambda rng, t, p: _file(rng, t, p, SITES[U.below(rng, len(SITES))]),
    "mail_access": lambda rng, t, p: U.mail_items_accessed(rng, t, p, p, access=("Bind", "Sync")[rng.getrandbits(1)],
                                                           ip=OFFICE_IPS[p.index % 4]),
    "mailbox_login": lambda rng, t, p: U.mailbox_item(rng, t, p, p, "MailboxLogin", ip=OFFICE_IPS[p.index % 4],
                                                      client_info="Client=Microsoft.Exchange.Mapi; Client=MSExchangeRPC"),
    "item_group": lambda rng, t, p: U.mailbox_item(
        rng, t, p, p, ("SoftDelete", "MoveToDeletedItems")[rng.getrandbits(1)], record_type=3,
        ip=OFFICE_IPS[p.index % 4], AffectedItems=[{"Id": U.store_id(rng, "RgAAAAA"), "InternetMessageId": U.message_id(rng),
                                                     "ParentFolder": {"Path": "\\Inbox"}, "Subject": "FW: notes"}],
        Folder={"Id": U.store_id(rng, "LgAAAAA"), "Path": "\\Inbox"}, CrossMailboxOperation=False),
}


SITE_IDS = {site: U.site_ids(site) for site in SITES}


def _file(rng: random.Random, t: float, p: Person, site: str) -> dict:
    return U.file_operation(
        rng, t, p, ("FileAccessed", "FileAccessed", "FileModified", "FileDownloaded")[rng.getrandbits(2)], site,
        SP_FOLDERS[rng.getrandbits(2)],
        f"{FILE_WORDS[U.below(rng, len(FILE_WORDS))]} {FILE_WORDS[U.below(rng, len(FILE_WORDS))]}."
        f"{FILE_EXTS[U.below(rng, 5)]}", U.USER_AGENTS[p.index % 3], SITE_IDS[site])


def _pick(rng: random.Random, seq):  # rng.choice, cheaply
    return seq[int(rng.random() * len(seq))]


def _count(rng: random.Random, lam: float) -> int:
    """A Poisson count (Knuth for small means, a rounded normal for large ones)."""
    if lam <= 0:
        return 0
    if lam > 30:
        return max(0, round(rng.gauss(lam, math.sqrt(lam))))
    limit, k, p = math.exp(-lam), 0, 1.0
    while True:
        p *= rng.random()
        if p <= limit:
            return k
        k += 1


def _ds_change(rng: random.Random, target: Person, attr: str, value: str, subject: str, op: str = "%%14674",
               syntax: str = "2.5.5.12") -> dict[str, str]:
    """Security 5136 EventData (formats.md §5.3)."""
    return {"OpCorrelationID": "{" + U.guid(rng).upper() + "}", "AppCorrelationID": "-",
            "SubjectUserSid": f"{DOMAIN_SID}-{1000 + len(subject)}", "SubjectUserName": subject,
            "SubjectDomainName": NETBIOS, "SubjectLogonId": f"0x{rng.getrandbits(24):x}", "DSName": AD_DOMAIN,
            "DSType": "%%14676", "ObjectDN": target.dn, "ObjectGUID": "{" + target.object_id.upper() + "}",
            "ObjectClass": "user", "AttributeLDAPDisplayName": attr, "AttributeSyntaxOID": syntax,
            "AttributeValue": value, "OperationType": op}


def _member_added(rng: random.Random, member: Person, group: str, subject: str) -> dict[str, str]:
    """Security 4728/4732/4756 EventData (formats.md §5.1)."""
    return {"MemberName": member.dn, "MemberSid": member.sid, "TargetUserName": group, "TargetDomainName": NETBIOS,
            "TargetSid": f"{DOMAIN_SID}-{1200 + sum(map(ord, group)) % 500}", "SubjectUserSid": f"{DOMAIN_SID}-1104",
            "SubjectUserName": subject, "SubjectDomainName": NETBIOS, "SubjectLogonId": f"0x{rng.getrandbits(20):x}",
            "PrivilegeList": "-"}


def cmdlet_data(cmdlet: str, parameters: str, caller: str = f"{AD_DOMAIN}/Users/Administrator") -> list[str]:
    """MSExchange Management event 1 data (formats.md §4.2): positional <Data> values."""
    return [cmdlet, parameters, caller, f"{DOMAIN_SID}-500", f"{DOMAIN_SID}-500", "Remote-ManagementShell-Unknown",
            "5668 w3wp#MSExchangePowerShellAppPool", "", "5", "00:00:00.4210000",
            f"View Entire Forest: 'False', Default Scope: '{AD_DOMAIN}'", "", "", "", "", "", "", "False", "",
            "0 objects execution has been proxied to remote server.", "", "", "0",
            "ActivityId: " + "00000000-0000-0000-0000-000000000000", "ServicePlan:;IsAdmin:True;", "", "en-US"]


def google_activity(rng: random.Random, t: float, app: str, actor: str, etype: str, name: str,
                    parameters: list[dict], ip: str = "198.51.100.40") -> dict:
    """A Reports API activity (formats.md §6.1)."""
    from delegatewatch.simulate.clock import iso_z

    uq = str(-(rng.getrandbits(62) + 1) if rng.getrandbits(1) else rng.getrandbits(62) + 1)
    return {"kind": "admin#reports#activity",
            "id": {"time": iso_z(t), "uniqueQualifier": uq, "applicationName": app, "customerId": GOOGLE_CUSTOMER},
            "etag": f"\"{U.guid(rng)[:20]}\"", "actor": {"callerType": "USER", "email": actor,
                                                          "profileId": str(100000000000000000000 + rng.getrandbits(60))},
            "ownerDomain": GOOGLE_DOMAIN, "ipAddress": ip,
            "events": [{"type": etype, "name": name, "parameters": parameters}]}


__all__ = ["AD_DN", "Background", "cmdlet_data", "google_activity"]
