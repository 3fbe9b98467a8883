"""Who is who: principals as logs name them (UPN, object GUID, SID, DN path, alias, display
name), resolved against an optional Entra ID users export, with the special principals first-class.

On-premises logs name the same people differently: Windows events by distinguished name
(``CN=Eve Adams,OU=Staff,DC=corp,DC=example``), SID and ``DOMAIN\\sam``, Exchange cmdlet logs by
canonical name (``corp.example/Staff/Eve Adams``). When the directory file carries the optional
columns ``onPremisesDistinguishedName``, ``onPremisesSamAccountName``, ``onPremisesDomainName``,
``onPremisesSecurityIdentifier``, ``canonicalName`` and ``mailNickname`` (Graph's own names), all of
those resolve to the one directory user. The canonical name is derived from the DN when absent;
``DOMAIN\\sam`` matches the domain's DNS name or its first label (the usual NetBIOS name). A
name that matches several users stays unresolved.
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass, field
from enum import Enum

GUID = re.compile(r"^\{?[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\}?$")
SID = re.compile(r"^S-1-\d+(-\d+)+$", re.IGNORECASE)
EMAIL = re.compile(r"^[^@\s]+@([^@\s]+\.[^@\s]+)$")


class Kind(str, Enum):
    USER = "user"
    GUEST = "guest"
    EXTERNAL = "external"
    DEFAULT = "default"  # Default / Everyone: every authenticated user in the organisation
    ANONYMOUS = "anonymous"  # unauthenticated (published calendars, anonymous links)
    SELF = "self"  # NT AUTHORITY\SELF: the mailbox's own account
    SYSTEM = "system"  # Exchange / Windows service accounts
    GROUP = "group"  # role groups, group-mailbox member/owner placeholders
    UNKNOWN = "unknown"


#: Exchange and Windows accounts that change permissions as part of normal operation
#: (detections.md §0 "Known benign actors").
SYSTEM_ACCOUNTS = (
    "nt authority\\system", "s-1-5-18", "s-1-5-10", "devilfish-applicationaccount",
    "nt authority\\network service", "nt authority\\local service", "microsoft.exchange.",
    "exchange trusted subsystem", "exchange servers", "managed availability servers",
    "exchange windows permissions",
)
_DEFAULT = {"default", "everyone", "s-1-1-0", "standard", "par défaut"}
_ANON = {"anonymous", "s-1-5-7", "anonyme"}
_GROUP_PLACEHOLDERS = {"member@local", "owner@local", "discovery management", "organization management"}


@dataclass(frozen=True, slots=True)
class DirectoryUser:
    id: str
    upn: str
    display_name: str
    user_type: str
    enabled: bool
    mail: str
    #: on-premises identifiers (optional directory columns), lower case where they are keys
    dn: str = ""
    sam: str = ""
    domain: str = ""
    sid: str = ""
    canonical: str = ""
    nickname: str = ""

    @property
    def is_guest(self) -> bool:
        return self.user_type.lower() == "guest" or "#ext#" in self.upn.lower()


@dataclass(frozen=True, slots=True)
class Principal:
    raw: str
    kind: Kind
    upn: str | None = None  # resolved user principal name / address
    display_name: str | None = None
    object_id: str | None = None

    @property
    def name(self) -> str:
        """The best name to show: the resolved UPN, else the raw value."""
        return self.upn or self.raw

    @property
    def resolved(self) -> bool:
        return self.upn is not None and self.upn.lower() != self.raw.lower()

    def label(self) -> str:
        """``lidia@contoso.com (Lidia Holloway) [51eb55af-…]``: resolved name next to the raw one."""
        text = self.name
        if self.display_name and self.display_name.lower() != text.lower():
            text += f" ({self.display_name})"
        if self.resolved:
            text += f" [{self.raw}]"
        return text


@dataclass
class Directory:
    """An Entra ID users export: ``id,userPrincipalName,displayName,userType,accountEnabled,mail``."""

    users: list[DirectoryUser] = field(default_factory=list)
    _index: dict[str, DirectoryUser] = field(default_factory=dict, repr=False)
    _by_name: dict[str, list[DirectoryUser]] = field(default_factory=dict, repr=False)

    @classmethod
    def load(cls, path: str) -> Directory:
        d = cls()
        with open(path, newline="", encoding="utf-8-sig") as f:
            reader = csv.DictReader(f)
            missing = {"id", "userPrincipalName"} - set(reader.fieldnames or [])
            if missing:
                raise ValueError(f"{path}: directory file needs the columns id,userPrincipalName "
                                 f"(missing {', '.join(sorted(missing))}); found {reader.fieldnames}")
            for row in reader:
                d.add(DirectoryUser(
                    id=(row.get("id") or "").strip().lower(),
                    upn=(row.get("userPrincipalName") or "").strip(),
                    display_name=(row.get("displayName") or "").strip(),
                    user_type=(row.get("userType") or "Member").strip(),
                    enabled=(row.get("accountEnabled") or "true").strip().lower() != "false",
                    mail=(row.get("mail") or "").strip(),
                    dn=(row.get("onPremisesDistinguishedName") or "").strip(),
                    sam=(row.get("onPremisesSamAccountName") or "").strip(),
                    domain=(row.get("onPremisesDomainName") or "").strip(),
                    sid=(row.get("onPremisesSecurityIdentifier") or "").strip(),
                    canonical=(row.get("canonicalName") or "").strip(),
                    nickname=(row.get("mailNickname") or "").strip(),
                ))
        return d

    def add(self, user: DirectoryUser) -> None:
        self.users.append(user)
        keys = [user.id, user.upn.lower(), user.mail.lower(), user.sid.lower(), normalise_dn(user.dn),
                (user.canonical or canonical_from_dn(user.dn)).lower()]
        if user.sam and user.domain:
            dom = user.domain.lower()
            keys += [f"{dom}\\{user.sam.lower()}", f"{dom.split('.')[0]}\\{user.sam.lower()}"]
        for key in keys:
            if key:
                self._index[key] = user
        for name in (user.display_name.lower(), user.upn.split("@")[0].lower(), user.mail.split("@")[0].lower(),
                     user.sam.lower(), user.nickname.lower(), rdn_value(user.dn).lower()):
            if name and user not in self._by_name.get(name, ()):
                self._by_name.setdefault(name, []).append(user)

    def find(self, value: str) -> DirectoryUser | None:
        key = value.strip().strip("{}").lower()
        hit = self._index.get(key) or (self._index.get(normalise_dn(key)) if DN.match(key) else None)
        if hit:
            return hit
        named = {u.id: u for u in self._by_name.get(key, [])}
        if not named:
            # on-premises spellings, by their last part: DOMAIN\sam, a canonical name, a DN's CN
            short = _short_name(key)
            if short and short != key:
                named = {u.id: u for u in self._by_name.get(short, [])}
        return next(iter(named.values())) if len(named) == 1 else None  # ambiguous names stay unresolved

    @property
    def domains(self) -> set[str]:
        out = set()
        for u in self.users:
            for addr in (u.upn, u.mail):
                m = EMAIL.match(addr)
                if m and "#ext#" not in addr.lower():
                    out.add(m.group(1).lower())
        return out


class Resolver:
    """Resolves raw identity strings to principals; remembers the organisation's domains."""

    def __init__(self, directory: Directory | None = None) -> None:
        self.directory = directory
        self.org_domains: set[str] = set(directory.domains) if directory else set()
        self._cache: dict[str, Principal] = {}

    def observe_org_domain(self, domain: str | None) -> None:
        if domain:
            d = domain.strip().lower()
            if d not in self.org_domains:
                self.org_domains.add(d)
                self._cache.clear()

    def resolve(self, raw: object) -> Principal | None:
        if raw is None:
            return None
        text = str(raw).strip()
        if not text or text in ("$null", "-"):
            return None
        hit = self._cache.get(text)
        if hit is None:
            hit = self._cache[text] = self._resolve(text)
        return hit

    def _resolve(self, raw: str) -> Principal:
        low = raw.lower()
        if low in _DEFAULT:
            return Principal(raw, Kind.DEFAULT, display_name="Default")
        if low in _ANON:
            return Principal(raw, Kind.ANONYMOUS, display_name="Anonymous")
        if low == "nt authority\\self" or low == "s-1-5-10":
            return Principal(raw, Kind.SELF)
        if any(low.startswith(s) or s in low for s in SYSTEM_ACCOUNTS):
            return Principal(raw, Kind.SYSTEM)
        # Exchange Online writes some identities as a DN-like path:
        # NAMPR10A011.PROD.OUTLOOK.COM/Microsoft Exchange Hosted Organizations/<tenant>/<name>
        name = raw.rsplit("/", 1)[-1] if "/microsoft exchange hosted organizations/" in low else raw
        nlow = name.lower()
        if nlow in _GROUP_PLACEHOLDERS:
            return Principal(raw, Kind.GROUP, display_name=name)
        if "discoverysearchmailbox" in nlow:
            return Principal(raw, Kind.SYSTEM, display_name=name)
        user = self.directory.find(name) if self.directory else None
        if user is not None:
            kind = Kind.GUEST if user.is_guest else Kind.USER
            return Principal(raw, kind, upn=user.upn, display_name=user.display_name or None, object_id=user.id)
        if "#ext#" in nlow:
            return Principal(raw, Kind.GUEST, upn=name)
        m = EMAIL.match(name.removeprefix("smtp:").removeprefix("SMTP:"))
        if m:
            addr = name.split(":", 1)[-1] if name.lower().startswith("smtp:") else name
            if self.org_domains and not _in_domains(m.group(1).lower(), self.org_domains):
                return Principal(raw, Kind.EXTERNAL, upn=addr)
            return Principal(raw, Kind.USER, upn=addr)
        if GUID.match(name):
            return Principal(raw, Kind.UNKNOWN, object_id=name.strip("{}").lower())
        if SID.match(name):
            return Principal(raw, Kind.UNKNOWN)
        if DN.match(name):  # an on-premises DN not in the directory: show its CN
            return Principal(raw, Kind.USER, display_name=rdn_value(name) or None)
        return Principal(raw, Kind.USER if name == raw else Kind.UNKNOWN, display_name=name if name != raw else None)


DN = re.compile(r"^(?:CN|OU|UID)=.+?,(?:.*,)?DC=[^,]+$", re.IGNORECASE)
_DN_PART = re.compile(r"((?:[^,\\]|\\.)+)")


def _dn_parts(dn: str) -> list[tuple[str, str]]:
    parts = []
    for raw in _DN_PART.findall(dn):
        attr, _, value = raw.strip().partition("=")
        parts.append((attr.strip().upper(), re.sub(r"\\(.)", r"\1", value.strip())))
    return parts


def normalise_dn(dn: str) -> str:
    """``CN=Eve Adams, OU=Staff,DC=corp,DC=example`` → ``cn=eve adams,ou=staff,dc=corp,dc=example``."""
    if not dn:
        return ""
    return ",".join(f"{a.lower()}={v.lower()}" for a, v in _dn_parts(dn))


def rdn_value(dn: str) -> str:
    """The first component's value: ``CN=Eve Adams,…`` → ``Eve Adams``."""
    parts = _dn_parts(dn) if dn else []
    return parts[0][1] if parts else ""


def canonical_from_dn(dn: str) -> str:
    """``CN=Eve Adams,OU=Staff,DC=corp,DC=example`` → ``corp.example/Staff/Eve Adams`` (the form
    Exchange logs callers in)."""
    if not dn:
        return ""
    parts = _dn_parts(dn)
    domain = ".".join(v for a, v in parts if a == "DC")
    path = [v for a, v in parts if a != "DC"]
    return "/".join([domain, *reversed(path)]) if domain else ""


def _short_name(key: str) -> str:
    if DN.match(key):
        return rdn_value(key).lower()
    if "\\" in key:
        return key.rsplit("\\", 1)[1]
    if "/" in key and "@" not in key and not key.startswith("http"):
        return key.rstrip("/").rsplit("/", 1)[1]
    return key


def _in_domains(domain: str, domains: set[str]) -> bool:
    return domain in domains or any(domain.endswith("." + d) for d in domains)
