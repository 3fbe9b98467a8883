"""Windows Security events → typed events (family ``windows``).

* 4728 / 4732 / 4756 (member added to a global / local / universal security group) → a
  ``role_group`` grant of the group (``target``) to the member (``MemberName`` DN, or
  ``MemberSid`` when the DN is ``-``); 4729 / 4733 / 4757 → the revocation.
* 5136 (directory object modified) on the mailbox owner's object (``ObjectDN``):
  ``publicDelegates`` → ``send_on_behalf`` (GrantSendOnBehalfTo); ``msExchDelegateListLink`` →
  ``mailbox`` FullAccess (written when FullAccess is granted with AutoMapping);
  ``nTSecurityDescriptor`` → ``send_as`` for each explicit (not inherited) ACE with the Send-As
  extended right ``ab721a54-1e2f-11d0-9819-00aa0040529b``, taken from ``SddlAddedAces`` (the
  ACEs new in this change, when the reader saw the old descriptor) or else from the whole new
  descriptor. ``OperationType`` ``%%14674`` (value added) is a grant, ``%%14675`` (deleted) a
  revocation.

The actor is ``SubjectDomainName\\SubjectUserName``. Changes made through Exchange tools are
written by the Exchange server's computer account (``EXCH01$``), not the admin: the admin is in
the MSExchange Management log of the same minute.
"""

from __future__ import annotations

import re
from typing import Any

from delegatewatch.events import rights as R
from delegatewatch.events.model import Action, Event, PermissionChange, Scope
from delegatewatch.events.principals import Resolver
from delegatewatch.records import Record
from delegatewatch.records.times import parse_time

SEND_AS_GUID = "ab721a54-1e2f-11d0-9819-00aa0040529b"
VALUE_ADDED = "%%14674"
VALUE_DELETED = "%%14675"
GROUP_ADDED = {4728, 4732, 4756}
GROUP_REMOVED = {4729, 4733, 4757}
#: an object ACE: (OA;flags;rights;object-guid;inherited-object-guid;trustee)
_OBJECT_ACE = re.compile(r"\((O[AD]);([^;()]*);([^;()]*);([^;()]*);([^;()]*);([^;()]+)\)")
#: trustees that hold Send-As by default (SELF, SYSTEM)
_DEFAULT_TRUSTEES = {"ps", "sy", "s-1-5-10", "s-1-5-18"}
#: SDDL aliases of principals (the ones that matter when given Send-As)
SDDL_ALIASES = {"wd": "Everyone", "au": "NT AUTHORITY\\Authenticated Users", "an": "Anonymous",
                "du": "Domain Users", "dg": "Domain Guests", "bu": "BUILTIN\\Users", "bg": "BUILTIN\\Guests",
                "da": "Domain Admins", "ea": "Enterprise Admins", "ba": "BUILTIN\\Administrators",
                "ps": "NT AUTHORITY\\SELF", "sy": "NT AUTHORITY\\SYSTEM", "iu": "Interactive", "nu": "Network"}


def send_as_aces(sddl: str) -> list[tuple[str, str]]:
    """(allow/deny, trustee) of each explicit Send-As ACE in an SDDL string, SELF/SYSTEM left out."""
    out = []
    for kind, flags, rights, guid, _inherit, trustee in _OBJECT_ACE.findall(sddl or ""):
        if guid.lower() != SEND_AS_GUID or "ID" in flags.upper() or "CR" not in rights.upper():
            continue
        if trustee.lower() in _DEFAULT_TRUSTEES:
            continue
        out.append(("deny" if kind == "OD" else "allow", trustee))
    return out


class Mapper:
    def __init__(self, resolver: Resolver) -> None:
        self.resolver = resolver

    def observe(self, data: dict[str, Any]) -> None:
        pass

    def _principal(self, value: Any):  # noqa: ANN202
        text = str(value or "").strip()
        if not text or text == "-":
            return None
        alias = SDDL_ALIASES.get(text.lower())
        return self.resolver.resolve(alias or text)

    def events(self, record: Record) -> list[Event]:
        d = record.data
        eid = d.get("EventID")
        try:
            eid = int(eid)
        except (TypeError, ValueError):
            return []
        actor_name = d.get("SubjectUserName") or ""
        if actor_name and d.get("SubjectDomainName") and d.get("SubjectDomainName") != "-":
            actor_name = f"{d['SubjectDomainName']}\\{actor_name}"
        base = {
            "time": parse_time(d.get("TimeCreated") or d.get("CreationTime")),
            "operation": str(eid),
            "actor": self._principal(actor_name or d.get("SubjectUserSid")),
            "record": record,
            # a logon id is unique per computer only
            "session_id": (f"{d.get('Computer', '')}:{d['SubjectLogonId']}"
                           if d.get("SubjectLogonId") not in (None, "", "-") else None),
        }
        if eid in GROUP_ADDED or eid in GROUP_REMOVED:
            member = d.get("MemberName")
            if not member or member == "-":
                member = d.get("MemberSid")
            return [PermissionChange(**base, action=Action.GRANT if eid in GROUP_ADDED else Action.REVOKE,
                                     scope=Scope.ROLE_GROUP, grantee=self._principal(member),
                                     rights=frozenset({"RoleGroupMember"}), target=d.get("TargetUserName") or None)]
        if eid != 5136:
            return []
        attr = str(d.get("AttributeLDAPDisplayName", "")).lower()
        op = d.get("OperationType")
        action = Action.GRANT if op == VALUE_ADDED else Action.REVOKE if op == VALUE_DELETED else Action.MODIFY
        mailbox = self._principal(d.get("ObjectDN"))
        value = d.get("AttributeValue")
        if attr == "publicdelegates":
            return [PermissionChange(**base, action=action, scope=Scope.SEND_ON_BEHALF, mailbox=mailbox,
                                     grantee=self._principal(value), rights=frozenset({R.SEND_ON_BEHALF}))]
        if attr == "msexchdelegatelistlink":
            return [PermissionChange(**base, action=action, scope=Scope.MAILBOX, mailbox=mailbox,
                                     grantee=self._principal(value), rights=frozenset({R.FULL_ACCESS}),
                                     target="AutoMapping")]
        if attr == "ntsecuritydescriptor":
            if action is not Action.GRANT:
                return []  # the old descriptor of a pair: its ACEs are compared when the new one arrives
            added = d.get("SddlAddedAces")
            aces = send_as_aces(value if added in (None, "") else ("" if added == "-" else added))
            if not aces:
                return []  # no new Send-As ACE (the rule's filter says the same, on the vendor fields)
            return [PermissionChange(**base, action=Action.DENY if kind == "deny" else Action.GRANT,
                                     scope=Scope.SEND_AS, mailbox=mailbox, grantee=self._principal(trustee),
                                     rights=frozenset({R.SEND_AS})) for kind, trustee in aces]
        return []
