"""One vocabulary for permissions, whichever way a log spells them.

Exchange folder permissions come in three spellings (formats.md §2.5 and §8.4):
roles (``Reviewer``), individual rights (``ReadItems, FolderVisible``) in cmdlets and
``Get-MailboxFolderPermission``, and MAPI names in mailbox-audit ``MemberRights``
(``ReadAny, Visible``). Everything is normalised to the individual-right names, so "anything
but None" and "can read items" are single questions. Mailbox (FullAccess …), recipient
(SendAs) and delegate (SendOnBehalf) rights keep their Exchange names.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

# Individual folder rights, as Add-MailboxFolderPermission names them.
READ_ITEMS = "ReadItems"
CREATE_ITEMS = "CreateItems"
EDIT_OWNED = "EditOwnedItems"
DELETE_OWNED = "DeleteOwnedItems"
EDIT_ALL = "EditAllItems"
DELETE_ALL = "DeleteAllItems"
CREATE_SUBFOLDERS = "CreateSubfolders"
FOLDER_OWNER = "FolderOwner"
FOLDER_CONTACT = "FolderContact"
FOLDER_VISIBLE = "FolderVisible"
# Calendar free/busy levels: the roles AvailabilityOnly and LimitedDetails.
FREE_BUSY_SIMPLE = "AvailabilityOnly"
FREE_BUSY_DETAILED = "LimitedDetails"

FOLDER_RIGHTS = frozenset({
    READ_ITEMS, CREATE_ITEMS, EDIT_OWNED, DELETE_OWNED, EDIT_ALL, DELETE_ALL, CREATE_SUBFOLDERS,
    FOLDER_OWNER, FOLDER_CONTACT, FOLDER_VISIBLE, FREE_BUSY_SIMPLE, FREE_BUSY_DETAILED,
})

#: Roles → individual rights (verbatim from the Add-MailboxFolderPermission reference).
ROLES: dict[str, frozenset[str]] = {
    "None": frozenset(),
    "Owner": frozenset({CREATE_ITEMS, CREATE_SUBFOLDERS, DELETE_ALL, DELETE_OWNED, EDIT_ALL, EDIT_OWNED,
                        FOLDER_CONTACT, FOLDER_OWNER, FOLDER_VISIBLE, READ_ITEMS}),
    "PublishingEditor": frozenset({CREATE_ITEMS, CREATE_SUBFOLDERS, DELETE_ALL, DELETE_OWNED, EDIT_ALL,
                                   EDIT_OWNED, FOLDER_VISIBLE, READ_ITEMS}),
    "Editor": frozenset({CREATE_ITEMS, DELETE_ALL, DELETE_OWNED, EDIT_ALL, EDIT_OWNED, FOLDER_VISIBLE,
                         READ_ITEMS}),
    "PublishingAuthor": frozenset({CREATE_ITEMS, CREATE_SUBFOLDERS, DELETE_OWNED, EDIT_OWNED,
                                   FOLDER_VISIBLE, READ_ITEMS}),
    "Author": frozenset({CREATE_ITEMS, DELETE_OWNED, EDIT_OWNED, FOLDER_VISIBLE, READ_ITEMS}),
    "NonEditingAuthor": frozenset({CREATE_ITEMS, DELETE_OWNED, FOLDER_VISIBLE, READ_ITEMS}),
    "Reviewer": frozenset({FOLDER_VISIBLE, READ_ITEMS}),
    "Contributor": frozenset({CREATE_ITEMS, FOLDER_VISIBLE}),
    "AvailabilityOnly": frozenset({FREE_BUSY_SIMPLE}),
    "LimitedDetails": frozenset({FREE_BUSY_SIMPLE, FREE_BUSY_DETAILED}),
}

#: Mailbox-audit ``MemberRights`` (MAPI) names → individual rights. The mapping is inferred from
#: the names and agrees with every role definition (formats.md §2.5 marks it UNCERTAIN).
MEMBER_RIGHTS: dict[str, str] = {
    "ReadAny": READ_ITEMS, "Create": CREATE_ITEMS, "EditOwned": EDIT_OWNED, "DeleteOwned": DELETE_OWNED,
    "EditAny": EDIT_ALL, "DeleteAny": DELETE_ALL, "CreateSubfolder": CREATE_SUBFOLDERS,
    "Owner": FOLDER_OWNER, "Contact": FOLDER_CONTACT, "Visible": FOLDER_VISIBLE,
    "FreeBusySimple": FREE_BUSY_SIMPLE, "FreeBusyDetailed": FREE_BUSY_DETAILED,
}

# Mailbox rights (Add-MailboxPermission -AccessRights) and the other grant kinds.
FULL_ACCESS = "FullAccess"
MAILBOX_RIGHTS = frozenset({"ChangeOwner", "ChangePermission", "DeleteItem", "ExternalAccount", FULL_ACCESS,
                            "ReadPermission"})
SEND_AS = "SendAs"
SEND_ON_BEHALF = "SendOnBehalf"
IMPERSONATION = "ApplicationImpersonation"
#: Mailbox rights that hand over the mailbox: read everything, or rewrite who may.
HIGH_MAILBOX_RIGHTS = frozenset({FULL_ACCESS, "ChangePermission", "ChangeOwner"})

_CANON = {r.lower(): r for r in (*FOLDER_RIGHTS, *MAILBOX_RIGHTS, SEND_AS, SEND_ON_BEHALF, IMPERSONATION)}
_CANON.update({"send as": SEND_AS, "send-as": SEND_AS, "sendonbehalf": SEND_ON_BEHALF})
_ROLES_LOWER = {k.lower(): v for k, v in ROLES.items()}
_MEMBER_LOWER = {k.lower(): v for k, v in MEMBER_RIGHTS.items()}
_SPLIT = re.compile(r"[,;|]+|\s{2,}")


def tokens(text: object) -> list[str]:
    """Split a rights value: ``"DeleteItem, ReadPermission, FullAccess"``, ``"{Editor}"``,
    ``"ReadItems;FolderVisible"``, or a JSON list already split."""
    if text is None:
        return []
    if isinstance(text, (list, tuple)):
        out: list[str] = []
        for t in text:
            out.extend(tokens(t))
        return out
    s = str(text).strip().strip("{}[]").replace('"', "")
    return [t.strip() for t in _SPLIT.split(s) if t.strip()]


def normalise(values: Iterable[str] | str | None, *, audit_names: bool = False) -> frozenset[str]:
    """Rights in the common vocabulary. Roles expand to their rights; unknown words are kept
    as they are (a right we do not know is still a right, never silently "None").

    ``audit_names``: the value is a mailbox-audit ``MemberRights`` list, where ``Owner`` is
    the single right FolderOwner, not the Owner role.
    """
    out: set[str] = set()
    for tok in tokens(values):
        low = tok.lower()
        if low == "none":
            continue
        if audit_names and low in _MEMBER_LOWER:
            out.add(_MEMBER_LOWER[low])
        elif low in _ROLES_LOWER:
            out |= _ROLES_LOWER[low]
        elif low in _CANON:
            out.add(_CANON[low])
        elif low in _MEMBER_LOWER:
            out.add(_MEMBER_LOWER[low])
        else:
            out.add(tok)
    return frozenset(out)


def is_none(rights: frozenset[str]) -> bool:
    return not rights


def can_read_items(rights: frozenset[str]) -> bool:
    """Can the holder read the content of items (mail, events)?"""
    return READ_ITEMS in rights or FULL_ACCESS in rights


def free_busy_only(rights: frozenset[str]) -> bool:
    """Only calendar availability (AvailabilityOnly / LimitedDetails): normal for Default."""
    return bool(rights) and rights <= {FREE_BUSY_SIMPLE, FREE_BUSY_DETAILED}


def role_of(rights: frozenset[str]) -> str | None:
    """The folder role these rights make up exactly, if any (``Reviewer``, ``Owner`` …)."""
    for name, role_rights in ROLES.items():
        if rights == role_rights:
            return name
    return None


def describe(rights: frozenset[str]) -> str:
    """``Reviewer (FolderVisible, ReadItems)`` or the bare list when no role matches."""
    role = role_of(rights)
    listed = ", ".join(sorted(rights)) or "None"
    return f"{role} ({listed})" if role and role != "None" else listed
