"""One key per principal, whatever spelling a record used: UPN, directory object id, ``User_<guid>``,
PUID, SID, mailbox GUID, or a raw value the directory resolves.

Real records mix them: the Entra ``Reset user password.`` names the target by UPN *and* object id
(its ``Target`` list), the Exchange ``Add-MailboxPermission`` that follows names the same mailbox by
object id only. :class:`Identities` is a union-find over normalised spellings; it learns links from
the records themselves (Entra ``Actor``/``Target`` lists, mailbox-audit owner fields) and, when a
directory file was given, from the resolver. Only spellings that a record pairs unambiguously are
linked: a list naming two different users links nothing across them.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from delegatewatch.events.principals import GUID, Resolver

_PUID = re.compile(r"^[0-9a-f]{16}$")
_HOSTED = "/microsoft exchange hosted organizations/"
#: Type values of Entra Actor/Target entries (Management Activity API schema): 2 = object id,
#: 3 = PUID, 5 = UPN.
_ENTRA_ID_TYPES = {2, 3, 5}


def normalise(value: object) -> str | None:
    """The comparable spelling: lower case, no braces, ``User_``/``smtp:`` prefixes and Exchange's
    hosted-organisation path removed. None for empty values."""
    if value is None:
        return None
    text = str(value).strip().lower()
    if not text or text in ("$null", "-", "user", "unknown"):
        return None
    if _HOSTED in text:
        text = text.rsplit("/", 1)[-1]
    text = text.removeprefix("smtp:")
    if text.startswith("user_") and GUID.match(text[5:]):
        text = text[5:]
    return text.strip("{}") or None


class Identities:
    """Union-find over principal spellings; :meth:`key` is the stable representative."""

    def __init__(self, resolver: Resolver | None = None) -> None:
        self.resolver = resolver
        self._parent: dict[str, str] = {}
        self._resolved: set[str] = set()
        self._members: dict[str, list[str]] | None = None  # root → spellings, for display()
        self._addressed: set[str] = set()  # roots (and former roots) of groups holding an address
        self._keys: dict[str, str] = {}  # value as logged → key, until the next union

    # -- union-find ------------------------------------------------------------------------
    def _find(self, x: str) -> str:
        parent = self._parent
        root = x
        while parent.setdefault(root, root) != root:
            root = parent[root]
        while parent[x] != root:  # path compression
            parent[x], x = root, parent[x]
        return root

    def _union(self, a: str, b: str, *, directory: bool = False) -> None:
        """Join two spellings' groups. Links read from records never join two groups that each
        hold an address (one sloppy or shared field must not make two people one); the
        directory may (a user's UPN and mail)."""
        ra, rb = self._find(a), self._find(b)
        if ra != rb:
            if not directory and ra in self._addressed and rb in self._addressed:
                return
            if ra in self._addressed or rb in self._addressed:
                self._addressed |= {ra, rb}
            self._members = None
            self._keys.clear()
            # the smaller string wins: a stable representative whatever the order of learning
            self._parent[max(ra, rb)] = min(ra, rb)

    def link(self, *values: object) -> None:
        """These spellings name one principal."""
        keys = [k for k in (normalise(v) for v in values) if k]
        for k in keys:
            if "@" in k:
                self._addressed.add(self._find(k))
            self._with_directory(k)
        for other in keys[1:]:
            self._union(keys[0], other)

    def _with_directory(self, k: str) -> None:
        """Link a spelling to the directory user it resolves to (UPN and object id)."""
        if self.resolver is None or self.resolver.directory is None or k in self._resolved:
            return
        self._resolved.add(k)
        p = self.resolver.resolve(k)
        if p is not None and p.object_id:
            for other in (normalise(p.upn), normalise(p.object_id)):
                if other:
                    self._resolved.add(other)
                    self._union(k, other, directory=True)

    def key(self, value: object) -> str | None:
        if isinstance(value, str):
            hit = self._keys.get(value)
            if hit is not None:
                return hit
        k = normalise(value)
        if k is None:
            return None
        self._with_directory(k)
        root = self._find(k)
        if isinstance(value, str):
            self._keys[value] = root
        return root

    def display(self, value: str | None) -> str | None:
        """The most readable spelling known for ``value``: an address linked to it (shortest
        first), else ``value`` itself."""
        k = self.key(value)
        if k is None:
            return value
        if self._members is None:
            self._members = {}
            for member in self._parent:
                self._members.setdefault(self._find(member), []).append(member)
        names = [m for m in self._members.get(k, ()) if "@" in m]
        if value and "@" in value:
            return value
        return min(names, key=lambda m: (len(m), m)) if names else value

    def same(self, a: object, b: object) -> bool:
        ka, kb = self.key(a), self.key(b)
        return ka is not None and ka == kb

    # -- learning from records --------------------------------------------------------------
    def learn(self, data: dict[str, Any]) -> None:
        """Links a unified-audit-log record states: Entra Actor/Target lists, mailbox-audit owner
        fields, the logon user's SID."""
        for name in ("Actor", "Target"):
            entries = data.get(name)
            if isinstance(entries, list):
                self._learn_entries(entries)
        owner = data.get("MailboxOwnerUPN")
        if owner and data.get("MailboxOwnerSid"):
            self.link(owner, data.get("MailboxOwnerSid"))
        user = data.get("UserId")
        if user and data.get("LogonUserSid"):
            self.link(user, data.get("LogonUserSid"))
        # Not linked: UserKey and MailboxGuid, which generated and re-serialised logs often repeat.

    def _learn_entries(self, entries: Iterable[Any]) -> None:
        guids: set[str] = set()
        user_guids: set[str] = set()  # written User_<guid>: a user's object id, not an app's
        upns: set[str] = set()
        puids: set[str] = set()
        for e in entries:
            if not isinstance(e, dict) or e.get("Type") not in _ENTRA_ID_TYPES:
                continue
            k = normalise(e.get("ID"))
            if not k:
                continue
            if GUID.match(k):
                guids.add(k)
                if str(e.get("ID")).lower().startswith("user_"):
                    user_guids.add(k)
            elif "@" in k:
                upns.add(k)
            elif _PUID.match(k):
                puids.add(k)
        guids = user_guids or guids
        # One principal per list only: a list naming two users (or a user and a group) links nothing.
        if len(guids) <= 1 and len(upns) <= 1 and len(puids) <= 1 and len(guids | upns | puids) > 1:
            self.link(*guids, *upns, *puids)

    def learn_all(self, records: Iterable[dict[str, Any]]) -> None:
        for data in records:
            self.learn(data)
