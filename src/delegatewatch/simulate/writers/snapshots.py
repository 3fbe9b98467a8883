"""Standing-permission snapshots (formats.md §8): ``Get-MailboxPermission``, ``Get-RecipientPermission``
and ``Get-MailboxFolderPermission`` piped to ``Export-Csv`` in Windows PowerShell 5.1 (``#TYPE`` line,
every value quoted), and the Gmail delegate lines ``collect google --gmail-delegates`` writes. Two sets:
one before the window and one at its end; the second holds the grants the scenarios left standing."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable
from dataclasses import dataclass

import orjson

from delegatewatch.simulate.clock import iso_z
from delegatewatch.simulate.model import LabelRecord
from delegatewatch.simulate.scenarios import Grant, Injected
from delegatewatch.simulate.tenant import NETBIOS, Tenant
from delegatewatch.simulate.writers.base import BlockFile

TYPE_MAILBOX = "#TYPE Deserialized.Microsoft.Exchange.Management.RecipientTasks.MailboxAcePresentationObject"
TYPE_RECIPIENT = "#TYPE Deserialized.Microsoft.Exchange.Management.RecipientTasks.RecipientPermission"
TYPE_FOLDER = "#TYPE Deserialized.Microsoft.Exchange.Management.StoreTasks.MailboxFolderPermission"
MBX_HEADER = ["Identity", "User", "AccessRights", "IsInherited", "Deny", "InheritanceType"]
RCP_HEADER = ["Identity", "Trustee", "AccessControlType", "AccessRights", "IsInherited", "InheritanceType"]
FLD_HEADER = ["Identity", "FolderName", "User", "AccessRights", "SharingPermissionFlags"]


@dataclass
class SnapshotRow:
    kind: str
    row: list[str] | dict
    grant: Grant | None = None  # the scenario grant this row shows
    tag: str | None = None


def baseline_rows(tenant: Tenant) -> list[SnapshotRow]:
    """What every snapshot holds: SELF and inherited system rows, assistants and shared-mailbox members
    (legitimate delegation), calendar sharing, Gmail delegates of the subsidiary."""
    rows: list[SnapshotRow] = []
    for p in tenant.people:
        if p.role in ("service",):
            continue
        rows.append(SnapshotRow("mailbox", [p.upn, "NT AUTHORITY\\SELF", "FullAccess, ReadPermission", "False",
                                            "False", "All"]))
        rows.append(SnapshotRow("mailbox", [p.upn, f"{NETBIOS}\\Organization Management", "FullAccess", "True",
                                            "True", "All"]))
        rows.append(SnapshotRow("recipient", [p.upn, "NT AUTHORITY\\SELF", "Allow", "SendAs", "False", "None"]))
        rows.append(SnapshotRow("folder", [f"{p.upn}:\\Calendar", "Calendar", "Default", "AvailabilityOnly", ""]))
        rows.append(SnapshotRow("folder", [f"{p.upn}:\\Calendar", "Calendar", "Anonymous", "None", ""]))
    for exec_index, a in tenant.assistants.items():
        e = tenant.people[exec_index]
        rows.append(SnapshotRow("mailbox", [e.upn, a.upn, "FullAccess", "False", "False", "All"]))
        rows.append(SnapshotRow("folder", [f"{e.upn}:\\Calendar", "Calendar", a.name, "Editor", "Delegate"]))
    for s in tenant.shared:
        for m in tenant.shared_members[s.index]:
            rows.append(SnapshotRow("mailbox", [s.upn, m.upn, "FullAccess", "False", "False", "All"]))
            rows.append(SnapshotRow("recipient", [s.upn, m.upn, "Allow", "SendAs", "False", "None"]))
    gp = tenant.google_people
    for i, p in enumerate(gp):
        delegates = [{"delegateEmail": gp[i + 1].google_email, "verificationStatus": "accepted"}] \
            if i % 15 == 0 and i + 1 < len(gp) else []  # the same pairs as run.write_config's allow-list
        rows.append(SnapshotRow("gmail", {"user": p.google_email, "delegates": delegates}))
    return rows


def grant_rows(injected: Iterable[Injected]) -> list[SnapshotRow]:
    rows = []
    for inj in injected:
        for g in inj.grants:
            if g.kind == "mailbox":
                row = [g.mailbox, g.grantee, g.rights, "False", "False", "All"]
            elif g.kind == "recipient":
                row = [g.mailbox, g.grantee, "Allow", g.rights, "False", "None"]
            elif g.kind == "folder":
                row = [f"{g.mailbox}:\\{g.folder}", g.folder, g.grantee, g.rights, ""]
            else:
                row = {"user": g.mailbox, "delegates": [{"delegateEmail": g.grantee, "verificationStatus": "accepted"}]}
            rows.append(SnapshotRow(g.kind, row, g, inj.id))
    return rows


def write_snapshot(root, when: float, rows: list[SnapshotRow]) -> tuple[dict[str, int], list[tuple[str, LabelRecord]]]:
    """One snapshot set at ``when``; the file names carry the time (the reader's ``filename`` source).
    Returns records per file and (instance id, label) for the rows that show a scenario's grant."""
    stamp = iso_z(when, ms=False).replace("-", "").replace(":", "")
    taken = iso_z(when, ms=False)
    counts: dict[str, int] = {}
    labels: list[tuple[str, LabelRecord]] = []
    for kind, name, type_line, header in (("mailbox", "mailbox-permissions", TYPE_MAILBOX, MBX_HEADER),
                                          ("recipient", "recipient-permissions", TYPE_RECIPIENT, RCP_HEADER),
                                          ("folder", "folder-permissions", TYPE_FOLDER, FLD_HEADER)):
        buf = io.StringIO()
        buf.write(type_line + "\r\n")
        w = csv.writer(buf, quoting=csv.QUOTE_ALL, lineterminator="\r\n")
        w.writerow(header)
        line = 3
        for r in rows:
            if r.kind == kind:
                w.writerow(r.row)
                if r.tag:
                    labels.append((r.tag, LabelRecord(f"snapshots/{name}-{stamp}.csv", str(line), line, taken, True,
                                                      "snapshot")))
                line += 1
        counts[_write(root, f"snapshots/{name}-{stamp}.csv", buf.getvalue().encode(), line - 3)] = line - 3
    gmail: dict[str, SnapshotRow] = {}
    for r in rows:  # one line per user: a grant row adds to the user's delegates
        if r.kind == "gmail":
            have = gmail.setdefault(r.row["user"], SnapshotRow("gmail", {"user": r.row["user"], "delegates": []}))
            have.row["delegates"].extend(r.row["delegates"])
            have.tag = have.tag or r.tag
    rel = f"snapshots/gmail-delegates-{stamp}.ndjson"
    parts = []
    for n, r in enumerate(gmail.values(), 1):
        if r.tag:
            labels.append((r.tag, LabelRecord(rel, str(n), n, taken, True, "snapshot")))
        parts.append(orjson.dumps({**r.row, "collected_at": taken}) + b"\n")
    counts[_write(root, rel, b"".join(parts), len(parts))] = len(parts)
    return counts, labels


def _write(root, rel: str, data: bytes, records: int) -> str:
    f = BlockFile(root, rel)
    f.block(data, data.count(b"\n"), [], records)
    f.close()
    return rel
