"""One key per principal, however the logs name it.

The resolver (``events.principals``) turns a raw value into a principal (UPN, object id, display
name from the optional directory). Logs also pair names themselves: Entra ID user records list the
user's object id next to the UPN (``Target``), folder-permission audit records give the member's
UPN and SID, mailbox records the owner's UPN and SID. Every name of one principal is joined in a
union-find, so a grant naming the user by GUID and a revocation naming them by UPN meet on one key.
"""

from __future__ import annotations

import re
from typing import Any

from delegatewatch.events.principals import DN, EMAIL, GUID, Kind, Principal, normalise_dn

DEFAULT_KEY = "default"
ANONYMOUS_KEY = "anonymous"
#: the key of "every mailbox" (impersonation roles, application permissions, domain-wide delegation)
EVERY_MAILBOX = "*"

_USER_PREFIX = re.compile(r"^(?:user|serviceprincipal|application)_", re.IGNORECASE)


def normal_name(value: object) -> str:
    """A comparable spelling: lower case, GUID braces and ``smtp:`` / ``User_`` prefixes gone, DNs normalised."""
    text = str(value or "").strip()
    if not text:
        return ""
    text = _USER_PREFIX.sub("", text)
    if text.lower().startswith("smtp:"):
        text = text[5:]
    if GUID.match(text):
        return text.strip("{}").lower()
    if DN.match(text):
        return normalise_dn(text)
    return text.lower()


def _rank(name: str) -> tuple[int, str]:
    """Which spelling names the group: an address, then a GUID, then anything else (stable)."""
    if EMAIL.match(name):
        return (0, name)
    if GUID.match(name):
        return (1, name)
    return (2, name)


class Identities:
    def __init__(self) -> None:
        self._parent: dict[str, str] = {}
        self._best: dict[str, str] = {}  # root → best name of its group
        self.labels: dict[str, str] = {}  # key → how to show it

    def _find(self, name: str) -> str:
        parent = self._parent.setdefault(name, name)
        if parent == name:
            self._best.setdefault(name, name)
            return name
        root = self._find(parent)
        self._parent[name] = root
        return root

    def same(self, *names: object) -> None:
        """These names are one principal."""
        normal = [n for n in (normal_name(x) for x in names) if n]
        if not normal:
            return
        root = self._find(normal[0])
        for other in normal[1:]:
            r = self._find(other)
            if r != root:
                self._parent[r] = root
                self._best[root] = min(self._best[root], self._best.pop(r), key=_rank)

    def learn(self, data: dict[str, Any]) -> None:
        """Pairs of names a record gives for one principal."""
        targets = data.get("Target")
        if isinstance(targets, list):
            ids = [t.get("ID") for t in targets if isinstance(t, dict) and isinstance(t.get("ID"), str)]
            addresses = {normal_name(i) for i in ids if EMAIL.match(i)}
            guids = {normal_name(i) for i in ids if GUID.match(_USER_PREFIX.sub("", i))}
            if len(addresses) == 1 and len(guids) <= 2:  # User_<id> and <id> are the same id
                self.same(*addresses, *guids)
        item = data.get("Item")
        parent = item.get("ParentFolder") if isinstance(item, dict) else None
        if isinstance(parent, dict) and parent.get("MemberUpn") and parent.get("MemberSid"):
            self.same(parent["MemberUpn"], parent["MemberSid"])
        if data.get("MailboxOwnerUPN") and data.get("MailboxOwnerSid"):
            self.same(data["MailboxOwnerUPN"], data["MailboxOwnerSid"])

    def observe(self, p: Principal | None) -> None:
        """What the resolver knows (directory object id, UPN) joins the raw name to the user."""
        if p is not None and p.kind not in (Kind.DEFAULT, Kind.ANONYMOUS):
            self.same(p.raw, p.upn, p.object_id)

    def key(self, p: Principal | None) -> str:
        if p is None:
            return ""
        if p.kind is Kind.DEFAULT:
            return DEFAULT_KEY
        if p.kind is Kind.ANONYMOUS:
            return ANONYMOUS_KEY
        name = normal_name(p.raw) or normal_name(p.upn)
        if not name:
            return ""
        key = self._best.get(self._find(name), name)
        if key not in self.labels or (p.upn and "@" not in self.labels[key]):
            # a name learnt from the records (an address for a logged GUID) shows next to the raw one
            self.labels[key] = p.label() if p.upn or key == name else f"{key} [{p.raw}]"
        return key

    def key_of_name(self, raw: str) -> str:
        """The key of a name typed by a user (``--mailbox``) or found in a snapshot row."""
        name = normal_name(raw)
        if name in (DEFAULT_KEY, "everyone"):
            return DEFAULT_KEY
        if name == ANONYMOUS_KEY:
            return ANONYMOUS_KEY
        return self._best.get(self._find(name), name) if name else ""

    def label(self, key: str) -> str:
        if key == EVERY_MAILBOX:
            return "every mailbox"
        return self.labels.get(key) or {DEFAULT_KEY: "Default", ANONYMOUS_KEY: "Anonymous"}.get(key, key)
