"""``--format csv``: one finding per row, safe to open in a spreadsheet.

Attacker-controlled text (rule names, folder names, display names) can start with ``=``, ``+``,
``-``, ``@``, tab or CR, which spreadsheets run as formulas (OWASP "CSV injection"); such cells
are prefixed with a single quote.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable
from typing import TextIO

from delegatewatch.findings.model import Finding

COLUMNS = ("id", "time", "severity", "rule", "title", "actor", "mailbox", "grantee", "rights", "folder",
           "operation", "summary", "attack", "evidence_source", "evidence_record_id", "evidence_line", "reasons")
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def neutralise(value: object) -> str:
    text = "" if value is None else str(value)
    return "'" + text if text.startswith(_FORMULA_START) else text


def write(findings: Iterable[Finding], out: TextIO) -> None:
    w = csv.writer(out, lineterminator="\r\n")
    w.writerow(COLUMNS)
    for f in findings:
        ev = f.evidence[0] if f.evidence else None
        row = (f.id, f.time, f.severity, f.rule, f.title, f.actor, f.mailbox, f.grantee, "; ".join(f.rights), f.folder,
               f.operation, f.summary, "; ".join(f.attack), ev.source if ev else "", ev.record_id if ev else "",
               ev.line if ev and ev.line else "", "; ".join(f.reasons))
        w.writerow([neutralise(v) for v in row])
