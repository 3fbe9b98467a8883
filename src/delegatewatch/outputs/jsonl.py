"""``--format jsonl``: one finding per line (the contract in BRIEF.md); incidents likewise."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TextIO

import orjson

from delegatewatch.findings.incidents import Incident
from delegatewatch.findings.model import Finding


def write(findings: Iterable[Finding], out: TextIO) -> None:
    for f in findings:
        d = f.to_dict()
        d.pop("runbook", None)  # long text; in `rules list` and the rule file
        out.write(orjson.dumps(d).decode())
        out.write("\n")


def write_incidents(incidents: Iterable[Incident], out: TextIO) -> None:
    """``hunt --incidents FILE``: one incident per line (docs/incidents.md)."""
    for inc in incidents:
        out.write(orjson.dumps(inc.to_dict()).decode())
        out.write("\n")
