"""The simulated organisation: people, roles, mailboxes and their habits.

Built once from ``(users, seed)`` and never changed afterwards, so every day of the simulation
(in any process) sees the same tenant. Addresses use the documentation ranges only
(192.0.2.0/24, 198.51.100.0/24, 203.0.113.0/24, 2001:db8::/32).
"""

from __future__ import annotations

import random
import uuid
from dataclasses import dataclass, field, replace

DOMAIN = "contoso.com"
ORG_NAME = "contoso.onmicrosoft.com"
ORG_PATH = "NAMPR10A011.PROD.OUTLOOK.COM/Microsoft Exchange Hosted Organizations/" + ORG_NAME
TENANT_ID = "6f1c2b7e-4a0d-4f3e-9b61-2d8a5c7e9f10"
AD_DOMAIN = "corp.contoso.com"
AD_DN = "DC=corp,DC=contoso,DC=com"
NETBIOS = "CONTOSO"
DOMAIN_SID = "S-1-5-21-2887411935-3302466312-1812360937"
#: the Google Workspace subsidiary (a share of the staff work there)
GOOGLE_DOMAIN = "contoso-labs.com"
GOOGLE_CUSTOMER = "C03az79cb"
OFFICE_IPS = ("198.51.100.10", "198.51.100.11", "198.51.100.12", "203.0.113.5")
PARTNERS = ("fabrikam.example", "northwind.example", "tailspin.example", "adatum.example", "litware.example")

FIRST = ("Adele", "Alex", "Allan", "Ben", "Bianca", "Carlos", "Chloe", "Diego", "Dana", "Elena", "Emil",
         "Fatima", "Grace", "Hana", "Henrik", "Irvin", "Isaiah", "Jana", "Johanna", "Joni", "Kenji", "Lara",
         "Lee", "Lidia", "Lynne", "Megan", "Miriam", "Nestor", "Nina", "Omar", "Patti", "Pradeep", "Priya",
         "Raul", "Sara", "Sven", "Tomas", "Uma", "Vic", "Wei", "Yusuf", "Zoe")
LAST = ("Adams", "Bauer", "Chen", "Diaz", "Eriksen", "Fischer", "Garcia", "Hoang", "Ivanova", "Jensen",
        "Kowalski", "Larsen", "Moreau", "Nakamura", "Okafor", "Patel", "Quinn", "Rossi", "Schmidt",
        "Tanaka", "Usman", "Vargas", "Weber", "Xu", "Yilmaz", "Zimmer")
DEPARTMENTS = ("Finance", "Sales", "Marketing", "Engineering", "HR", "Legal", "Support", "Operations",
               "Procurement", "Research")


@dataclass(frozen=True, slots=True)
class Person:
    """A mailbox-owning account."""

    index: int
    upn: str
    name: str
    alias: str
    department: str
    role: str  # staff | exec | assistant | admin | service | shared
    sid: str
    puid: str
    object_id: str
    mailbox_guid: str
    ip: str  # home or remote address
    send_rate: float  # messages an hour in working hours
    google: bool = False  # also has a Google Workspace account (the subsidiary)

    @property
    def dn(self) -> str:
        return f"CN={self.name},OU={self.department},OU=Staff,{AD_DN}"

    @property
    def object_path(self) -> str:
        """Exchange's ObjectId spelling for the mailbox."""
        return f"{ORG_PATH}/{self.alias}"

    @property
    def google_email(self) -> str:
        return f"{self.alias}@{GOOGLE_DOMAIN}"


@dataclass(frozen=True)
class Tenant:
    people: tuple[Person, ...]
    staff: tuple[Person, ...]  # ordinary senders (includes execs and assistants)
    execs: tuple[Person, ...]
    assistants: dict[int, Person]  # exec index -> assistant
    admins: tuple[Person, ...]
    shared: tuple[Person, ...]  # shared mailboxes
    shared_members: dict[int, tuple[Person, ...]]
    newsletter: Person
    alerts: Person
    comms: Person
    google_people: tuple[Person, ...]
    externals: tuple[str, ...] = field(default=())


def _guid(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def build_tenant(users: int, seed: int) -> Tenant:
    """``users`` ordinary accounts plus the organisation's service and shared mailboxes."""
    if users < 60:
        raise ValueError("simulate needs at least 60 users (the scenarios pick distinct accounts)")
    rng = random.Random(f"tenant:{seed}")
    people: list[Person] = []
    used: set[str] = set()

    def add(alias: str, name: str, dept: str, role: str, rate: float, google: bool = False) -> Person:
        i = len(people)
        p = Person(i, f"{alias}@{DOMAIN}", name, alias, dept, role, f"{DOMAIN_SID}-{1100 + i}",
                   f"1003{rng.getrandbits(48):012X}", _guid(rng), _guid(rng),
                   f"2001:db8:{0x100 + i % 3800:x}::{rng.getrandbits(16):x}", rate, google)
        people.append(p)
        return p

    for i in range(users):
        first, last = rng.choice(FIRST), rng.choice(LAST)
        alias = f"{first}.{last}".lower()
        n = 2
        while alias in used:
            alias, n = f"{first}.{last}{n}".lower(), n + 1
        used.add(alias)
        # heavy-tailed send rates: most people send a few messages an hour, some many more
        rate = min(8.0, rng.lognormvariate(-0.4, 0.6))
        add(alias, f"{first} {last}", DEPARTMENTS[i % len(DEPARTMENTS)], "staff", rate, google=i % 10 == 3)
    n_exec = max(3, users // 200)
    execs = people[:n_exec]
    assistants = {}
    for k, e in enumerate(execs):
        a = people[n_exec + k]
        people[a.index] = a = _with_role(a, "assistant")
        people[e.index] = e = _with_role(e, "exec")
        assistants[e.index] = a
    execs = tuple(people[e.index] for e in execs)
    admins = tuple(add(alias, name, "ITOps", "admin", 0.5) for alias, name in (
        ("admin", "Tenant Admin"), ("it.admin", "IT Admin"), ("helpdesk.ops", "Helpdesk Operations")))
    newsletter = add("newsletter", "Contoso Newsletter", "Communications", "service", 0.0)
    alerts = add("alerts", "Monitoring Alerts", "ITOps", "service", 0.0)
    comms = add("comms", "Corporate Communications", "Communications", "service", 0.0)
    shared = tuple(add(alias, name, dept, "shared", 0.0) for alias, name, dept in (
        ("finance.ap", "Accounts Payable", "Finance"), ("support.desk", "Support Desk", "Support"),
        ("hr.inbox", "HR Inbox", "HR"), ("sales.leads", "Sales Leads", "Sales")))
    staff = tuple(p for p in people if p.role in ("staff", "exec", "assistant"))
    members = {}
    for s in shared:
        pool = [p for p in staff if p.department == s.department and p.role == "staff"]
        members[s.index] = tuple(rng.sample(pool, min(4, len(pool))))
    externals = tuple(f"{rng.choice(FIRST).lower()}.{rng.choice(LAST).lower()}{i}@{PARTNERS[i % len(PARTNERS)]}"
                      for i in range(200))
    return Tenant(tuple(people), staff, execs, assistants, admins, shared, members, newsletter, alerts, comms,
                  tuple(p for p in people if p.google), externals)


def _with_role(p: Person, role: str) -> Person:
    return replace(p, role=role)
