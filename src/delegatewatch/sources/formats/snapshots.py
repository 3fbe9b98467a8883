"""Standing-permission snapshots (family ``snapshot``): who holds which right *now*.

Exchange (PowerShell ``Export-Csv``; with or without the ``#TYPE`` line, BOM, quoted or not,
``,`` or ``;`` as delimiter), told apart by their header columns (formats.md §8):

* ``Get-MailboxPermission`` / ``Get-EXOMailboxPermission``: ``Identity,User,AccessRights,IsInherited,Deny
  [,InheritanceType]`` → ``MailboxPermission``;
* ``Get-MailboxFolderPermission``: ``Identity`` (``mbx:\\Folder``) and/or ``FolderName``, ``User``,
  ``AccessRights``, ``SharingPermissionFlags`` → ``MailboxFolderPermission``;
* ``Get-RecipientPermission``: ``Identity,Trustee,AccessControlType,AccessRights,IsInherited`` →
  ``RecipientPermission``;
* ``Get-Mailbox`` with ``GrantSendOnBehalfTo`` (joined with ``,`` or ``;``) → ``SendOnBehalf``,
  one record per delegate;
* ``Get-ADPermission`` (Send-As, on-premises): ``Identity,User,ExtendedRights,IsInherited,Deny`` →
  ``ADPermission``.

Google: the Gmail delegate snapshot lines ``delegatewatch collect google --gmail-delegates`` writes
(``{"user", "delegates": [{"delegateEmail", "verificationStatus"}] | null, "collected_at"}``, NDJSON,
usually gzip) → ``GmailDelegate``, one record per delegate; a user whose delegates could not be read
(``"delegates": null``) gives one record with ``Status`` ``unknown`` and no ``Grantee``, so a later
comparison never reads "unknown" as "no delegates".

Every record: ``Id`` (the file's line number, the snapshot contract), ``_dedup`` (file and line),
``SnapshotKind``, ``Mailbox``, ``Folder``, ``Grantee``, ``AccessRights`` (as exported), ``IsInherited``,
``Deny``, ``Status``, ``SnapshotTime`` (ISO 8601 UTC) and ``SnapshotTimeSource``: ``hint`` (given by
the user, :func:`set_time_hints`), ``collected_at`` (Gmail lines), ``filename`` (a date in the file's
name, e.g. ``mailbox-permissions-2024-05-01.csv`` or the collector's ``20240501T120000Z``) or ``mtime``
(the file's modification time: weakest, a copy resets it).

Rows are read one line at a time (a quoted value may span a few lines), so a broken quote costs one
row with its file and line, never the rest of the file.
"""

from __future__ import annotations

import csv
import io
import os
import re
from collections import deque
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from typing import Any, BinaryIO

import orjson

from delegatewatch.records import ReadStats, Record
from delegatewatch.records.prefilter import Prefilter
from delegatewatch.records.times import iso_utc, parse_time
from delegatewatch.sources.lines import decode_text, header_line, iter_lines, preview
from delegatewatch.sources.opening import Opened, first_json_object
from delegatewatch.sources.registry import Reader

FAMILY = "snapshot"
CSV_DIALECT = "exchange-permission-snapshot-csv"
GMAIL_DIALECT = "gmail-delegate-snapshot"

MAILBOX = "MailboxPermission"
FOLDER = "MailboxFolderPermission"
RECIPIENT = "RecipientPermission"
SEND_ON_BEHALF = "SendOnBehalf"
AD = "ADPermission"
GMAIL = "GmailDelegate"
KINDS = (MAILBOX, FOLDER, RECIPIENT, SEND_ON_BEHALF, AD, GMAIL)

#: The cmdlet (or API) that writes each kind: the ``operation`` of findings.
SOURCE_OF = {
    MAILBOX: "Get-MailboxPermission", FOLDER: "Get-MailboxFolderPermission",
    RECIPIENT: "Get-RecipientPermission", SEND_ON_BEHALF: "Get-Mailbox GrantSendOnBehalfTo",
    AD: "Get-ADPermission", GMAIL: "Gmail users.settings.delegates.list",
}

#: Lines a quoted value may span before the row counts as broken.
MAX_ROW_LINES = 20

#: Columns that name the mailbox, best first (``Identity`` is also parsed for ``mbx:\\Folder``).
_MAILBOX_COLUMNS = ("primarysmtpaddress", "userprincipalname", "mailbox", "windowsemailaddress", "identity",
                    "alias", "name", "displayname")
_FOLDER_MARKERS = ("foldername", "folderpath", "sharingpermissionflags")


# -- snapshot time -------------------------------------------------------------------------------
_TIME_HINTS: dict[str, str] = {}
_NAME_TIME = re.compile(
    r"(?<!\d)(20\d\d)-?(0[1-9]|1[0-2])-?(0[1-9]|[12]\d|3[01])"
    r"(?:[T_ .-]?([01]\d|2[0-3])[:.-]?([0-5]\d)(?:[:.-]?([0-5]\d))?)?(?!\d)")


def set_time_hints(hints: Mapping[str, str]) -> None:
    """When snapshots were taken, as the user says: ``{path: ISO time}``; a folder applies to every
    file under it, ``"*"`` to every snapshot CSV. Overrides file names and modification times."""
    _TIME_HINTS.clear()
    for path, when in hints.items():
        if parse_time(when) is None:
            raise ValueError(f"snapshot time {when!r} for {path} is not an ISO 8601 time (e.g. 2024-05-01T09:00Z)")
        _TIME_HINTS["*" if path == "*" else os.path.realpath(path)] = when


def time_hint(path: str) -> str | None:
    if not _TIME_HINTS:
        return None
    real = os.path.realpath(path)
    while True:
        if real in _TIME_HINTS:
            return _TIME_HINTS[real]
        parent = os.path.dirname(real)
        if parent == real:
            return _TIME_HINTS.get("*")
        real = parent


def time_from_name(path: str) -> datetime | None:
    """A date (and time) in the file name: ``…-2024-05-01.csv``, ``20240501T120000Z.ndjson.gz``."""
    name = os.path.basename(path)
    for m in _NAME_TIME.finditer(name):
        y, mo, d, h, mi, s = m.groups()
        try:
            return datetime(int(y), int(mo), int(d), int(h or 0), int(mi or 0), int(s or 0), tzinfo=UTC)
        except ValueError:
            continue
    return None


def file_time(path: str) -> tuple[str, str]:
    """(ISO time, source) for a snapshot file: the user's hint, a time in the name, or the mtime."""
    hint = time_hint(path)
    if hint:
        return iso_utc(parse_time(hint)) or hint, "hint"
    named = time_from_name(path)
    if named is not None:
        return iso_utc(named) or "", "filename"
    try:
        return iso_utc(datetime.fromtimestamp(os.path.getmtime(path), UTC)) or "", "mtime"
    except OSError:
        return "", "unknown"


# -- detection -----------------------------------------------------------------------------------
def _split_header(line: str) -> tuple[list[str], str] | None:
    for delimiter in (",", ";", "\t"):
        try:
            cols = next(csv.reader([line], delimiter=delimiter))
        except (csv.Error, StopIteration):
            continue
        if len(cols) > 1:
            return [c.strip().strip('"').strip() for c in cols], delimiter
    return None


def kind_of_header(columns: list[str]) -> str | None:
    """The snapshot kind a CSV header announces, or None (UAL CSVs have ``AuditData``: never ours)."""
    cols = {c.lower() for c in columns}
    if "auditdata" in cols:
        return None
    has_mailbox = any(c in cols for c in _MAILBOX_COLUMNS)
    if "grantsendonbehalfto" in cols and has_mailbox:
        return SEND_ON_BEHALF
    if "extendedrights" in cols and "user" in cols and has_mailbox:
        return AD
    if "trustee" in cols and "accessrights" in cols and has_mailbox:
        return RECIPIENT
    if "user" in cols and "accessrights" in cols:
        if any(c in cols for c in _FOLDER_MARKERS):
            return FOLDER
        if has_mailbox:
            return MAILBOX  # rows whose Identity is ``mbx:\Folder`` are folder rows (see _row_kind)
    return None


def _header_of(text: str) -> tuple[list[str], str] | None:
    for line in text.splitlines():
        s = line.strip()
        if not s or s.startswith("#"):
            continue  # ``#TYPE Deserialized.Microsoft.Exchange…`` (Windows PowerShell 5.1)
        return _split_header(s)
    return None


def _is_csv(opened: Opened, head: bytes) -> bool:
    if head[:1] in (b"{", b"[", b"<"):
        return False
    found = _header_of(head[:8192].decode("utf-8", "replace"))
    return found is not None and kind_of_header(found[0]) is not None


def _is_gmail(opened: Opened, head: bytes) -> bool:
    obj = first_json_object(head)
    return obj is not None and "user" in obj and "delegates" in obj


# -- CSV reading ---------------------------------------------------------------------------------
def _parse_row(text: str, delimiter: str) -> list[str] | None:
    try:
        rows = list(csv.reader(io.StringIO(text), delimiter=delimiter, strict=True))
    except csv.Error:
        return None
    return rows[0] if len(rows) == 1 else None


def _fits(row: list[str] | None, width: int) -> bool:
    return row is not None and (len(row) == width or (len(row) > width and not any(v.strip() for v in row[width:])))


def _logical_rows(stream: BinaryIO, path: str, stats: ReadStats, first_line: int, delimiter: str,
                  width: int) -> Iterator[tuple[int, str]]:
    """(first line number, text) per CSV row; a quoted value may span up to MAX_ROW_LINES lines.
    Lines are joined only when the quotes then close *and* the result is a well-formed row of the
    header's width; otherwise the first line is reported as broken and the lines after it are read
    again as rows of their own."""
    lines = ((n, decode_text(raw, path, n, stats)) for n, raw in iter_lines(stream, stats, None, first_line))
    pending: deque[tuple[int, str]] = deque()

    def take() -> tuple[int, str] | None:
        return pending.popleft() if pending else next(lines, None)

    while (item := take()) is not None:
        line_no, text = item
        if text.count('"') % 2 == 0:
            yield line_no, text
            continue
        parts, taken, quotes, joined = [text], [], text.count('"'), None
        while len(taken) < MAX_ROW_LINES - 1 and (more := take()) is not None:
            taken.append(more)
            parts.append(more[1])
            quotes += more[1].count('"')
            if quotes % 2 == 0:
                candidate = "\n".join(parts)
                if _fits(_parse_row(candidate, delimiter), width):
                    joined = candidate
                break
        if joined is not None:
            stats.records_seen -= len(taken)  # one row over several lines
            yield line_no, joined
        else:
            stats.issue(path, line_no, f"broken CSV quoting (a quote never closes); row starts {preview(text)}",
                        reason="malformed snapshot row")
            pending.extendleft(reversed(taken))


def _split_identity(identity: str) -> tuple[str, str | None]:
    r"""``ceo@contoso.com:\Inbox`` → (``ceo@contoso.com``, ``\Inbox``); no folder part → (identity, None)."""
    mbx, sep, folder = identity.partition(":\\")
    if not sep:
        return identity, None
    return mbx.strip(), "\\" + folder.strip()


def _folder_from_name(name: str) -> str:
    name = name.strip()
    if not name or name.lower() in ("top of information store", "\\"):
        return "\\"
    return name if name.startswith("\\") else "\\" + name


_TYPE_NAME = re.compile(r"^(?:System|Microsoft)\.[\w.`+]+\[[\w.`+, \[\]]*\]$")


def _type_name(value: str) -> bool:
    """A multi-valued column exported as its .NET type name (Export-Csv without ``-join``):
    ``System.String[]``, ``System.Collections.Generic.List`1[System.String]``,
    ``Microsoft.Exchange.Data.MultiValuedProperty`1[…]``."""
    return bool(_TYPE_NAME.match(value.strip()))


def _delegates(value: str) -> list[str]:
    """GrantSendOnBehalfTo as exported: ``{a, b}``, ``a;b`` or ``a,b`` (``;`` wins: names may hold commas)."""
    text = value.strip().strip("{}").strip()
    if not text:
        return []
    parts = text.split(";") if ";" in text else text.split(",")
    return [p.strip().strip('"').strip() for p in parts if p.strip().strip('"').strip()]


class _Columns:
    def __init__(self, header: list[str]) -> None:
        self.index = {}
        for i, name in enumerate(header):
            self.index.setdefault(name.lower(), i)

    def get(self, row: list[str], *names: str) -> str:
        for name in names:
            i = self.index.get(name)
            if i is not None and i < len(row) and row[i].strip():
                return row[i].strip()
        return ""


def read_csv(path: str, stream: BinaryIO, stats: ReadStats, prefilter: Prefilter | None) -> Iterator[Record]:
    first = header_line(stream, comment="#")
    if first is None:
        return
    text, header_lines = first
    found = _split_header(text)
    if found is None:
        stats.issue(path, header_lines, f"no CSV header; line starts {preview(text)}", reason="no snapshot header")
        return
    header, delimiter = found
    kind = kind_of_header(header)
    if kind is None:
        stats.issue(path, header_lines, "not a permission snapshot header", reason="no snapshot header")
        return
    cols = _Columns(header)
    when, when_source = file_time(path)
    width = len(header)
    index = 0
    for line_no, text in _logical_rows(stream, path, stats, header_lines + 1, delimiter, width):
        row = _parse_row(text, delimiter)
        if row is None:
            stats.issue(path, line_no, f"malformed CSV row; row starts {preview(text)}", reason="malformed snapshot row")
            continue
        if not _fits(row, width):
            stats.issue(path, line_no, f"row has {len(row)} fields, expected {width}; row starts {preview(text)}",
                        reason="malformed snapshot row")
            continue
        problem, records = _row_records(kind, cols, row, path, line_no)
        if problem:
            stats.issue(path, line_no, problem, reason="malformed snapshot row")
            continue
        if records and not records[0]["Mailbox"]:
            stats.issue(path, line_no, "folder permission row names no mailbox (export Identity, or add a "
                        "Mailbox column); read with the mailbox unknown", skipped=False)
        stats.records_parsed += 1
        for n, data in enumerate(records):
            data["SnapshotTime"], data["SnapshotTimeSource"] = when, when_source
            if n:
                data["_dedup"] += f"#{n + 1}"
            index += 1
            yield Record(data, path, line_no, index, CSV_DIALECT, FAMILY)


def _base(kind: str, path: str, line_no: int, **fields: Any) -> dict[str, Any]:
    data: dict[str, Any] = {"Id": str(line_no), "_dedup": f"{path}|{line_no}", "SnapshotKind": kind,
                            "Mailbox": "", "Folder": "", "Grantee": "", "AccessRights": "", "IsInherited": "False",
                            "Deny": "False", "Status": ""}
    data.update(fields)
    return data


def _row_records(kind: str, cols: _Columns, row: list[str], path: str, line_no: int
                 ) -> tuple[str | None, list[dict[str, Any]]]:
    identity = cols.get(row, "identity")
    mailbox = cols.get(row, *(c for c in _MAILBOX_COLUMNS if c != "identity"))
    inherited = cols.get(row, "isinherited") or "False"
    if kind == SEND_ON_BEHALF:
        mailbox = mailbox or identity
        if not mailbox:
            return "row names no mailbox (Identity/PrimarySmtpAddress/UserPrincipalName empty)", []
        value = cols.get(row, "grantsendonbehalfto")
        if _type_name(value):
            return ("GrantSendOnBehalfTo was exported as a .NET type name, not the delegates: export it with "
                    "@{n='GrantSendOnBehalfTo';e={$_.GrantSendOnBehalfTo -join ';'}}"), []
        return None, [_base(kind, path, line_no, Mailbox=mailbox, Identity=identity, Grantee=d,
                            AccessRights="SendOnBehalf") for d in _delegates(value)]
    grantee = cols.get(row, "trustee" if kind == RECIPIENT else "user")
    rights = cols.get(row, "extendedrights" if kind == AD else "accessrights")
    if not grantee:
        return f"row names no {'Trustee' if kind == RECIPIENT else 'User'}", []
    if _type_name(rights):
        return "AccessRights was exported as a .NET type name, not the rights: export it with -join ', '", []
    folder_name = cols.get(row, "foldername", "folderpath")
    id_mailbox, id_folder = _split_identity(identity) if identity else ("", None)
    if kind == MAILBOX and id_folder is not None:
        kind = FOLDER  # Get-MailboxFolderPermission selected without FolderName
    fields: dict[str, Any] = {"Identity": identity, "Grantee": grantee, "AccessRights": rights,
                              "IsInherited": inherited, "Deny": cols.get(row, "deny") or "False"}
    if kind == FOLDER:
        fields["Mailbox"] = mailbox or id_mailbox
        fields["Folder"] = id_folder if id_folder is not None else (_folder_from_name(folder_name) if folder_name
                                                                   else "\\")
        flags = cols.get(row, "sharingpermissionflags")
        if flags:
            fields["SharingPermissionFlags"] = flags
    else:
        fields["Mailbox"] = mailbox or id_mailbox
        inheritance = cols.get(row, "inheritancetype")
        if inheritance:
            fields["InheritanceType"] = inheritance
    if kind == RECIPIENT:
        control = cols.get(row, "accesscontroltype")
        fields["AccessControlType"] = control
        if control.lower() == "deny":
            fields["Deny"] = "True"
    if not fields["Mailbox"] and kind != FOLDER:
        return "row names no mailbox (Identity empty)", []
    return None, [_base(kind, path, line_no, **fields)]


# -- Gmail delegate snapshot lines ----------------------------------------------------------------
def read_gmail(path: str, stream: BinaryIO, stats: ReadStats, prefilter: Prefilter | None) -> Iterator[Record]:
    when, when_source = file_time(path)
    hinted = when_source == "hint"
    index = 0
    for line_no, raw in iter_lines(stream, stats, None):
        try:
            obj = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            stats.issue(path, line_no, f"not JSON ({exc}); line starts {preview(raw)}", reason="malformed snapshot line")
            continue
        if not isinstance(obj, dict) or not isinstance(obj.get("user"), str) or not obj["user"].strip():
            stats.issue(path, line_no, "not a Gmail delegate snapshot line (no \"user\")",
                        reason="malformed snapshot line")
            continue
        delegates = obj.get("delegates")
        if delegates is not None and not isinstance(delegates, list):
            stats.issue(path, line_no, "\"delegates\" is neither a list nor null", reason="malformed snapshot line")
            continue
        user = obj["user"].strip()
        collected = iso_utc(parse_time(obj.get("collected_at")))
        t, t_source = (when, when_source) if hinted or not collected else (collected, "collected_at")
        out: list[dict[str, Any]] = []
        if delegates is None:
            error = obj.get("error") if isinstance(obj.get("error"), dict) else {}
            reason = str(error.get("reason") or error.get("message") or "not read")
            stats.issue(path, line_no, f"delegates of {user} were not read ({reason}): unknown, not compared",
                        skipped=False)
            out.append(_base(GMAIL, path, line_no, Mailbox=user, Status="unknown", Error=reason))
        else:
            bad = [d for d in delegates if not (isinstance(d, dict) and isinstance(d.get("delegateEmail"), str)
                                                 and d["delegateEmail"].strip())]
            if bad:
                stats.issue(path, line_no, f"{len(bad)} delegate(s) of {user} without delegateEmail",
                            reason="malformed snapshot line")
                continue
            for d in delegates:
                out.append(_base(GMAIL, path, line_no, Mailbox=user, Grantee=d["delegateEmail"].strip(),
                                 AccessRights="Delegate", Status=str(d.get("verificationStatus") or "")))
        if obj.get("suspended"):
            for data in out:
                data["Suspended"] = "True"
        stats.records_parsed += 1
        for n, data in enumerate(out):
            data["SnapshotTime"], data["SnapshotTimeSource"] = t, t_source
            if n:
                data["_dedup"] += f"#{n + 1}"
            index += 1
            yield Record(data, path, line_no, index, GMAIL_DIALECT, FAMILY)


# Asked before the UAL CSV readers (150) and the generic JSON readers (200+).
READERS = [
    Reader(GMAIL_DIALECT, FAMILY, _is_gmail, read_gmail, priority=30),
    Reader(CSV_DIALECT, FAMILY, _is_csv, read_csv, priority=60),
]
