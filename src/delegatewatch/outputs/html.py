"""The HTML investigation report: one self-contained, offline file (docs/report.md).

``write(result, out)`` renders a :class:`~delegatewatch.engine.hunt.HuntResult` to a file path or a
text/binary stream. The page is a Jinja2 template (autoescaped) for the static parts (the summary),
and a data block that the report's own script renders from (incidents, findings, graph, charts):

* every string that came from a log (folder, rule, subject, display names…) reaches the page either
  through Jinja's autoescaping or, inside the JSON data block, with ``<``, ``>``, ``&``, U+2028 and
  U+2029 escaped; the script reads the block with ``JSON.parse`` and writes text with
  ``textContent`` only — nothing from the data is ever parsed as HTML or evaluated;
* a Content-Security-Policy allows exactly the inline scripts of the report (by SHA-256 hash), no
  ``eval`` (Vega's expressions run in vega-embed's interpreter, ``ast: true``) and no network
  access at all;
* the chart libraries (Vega, Vega-Lite, vega-embed; versions in ``static/VERSIONS.json``, licences
  beside them) are inlined, so the report opens offline and loads nothing.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cache
from importlib import resources
from typing import IO, Any

from jinja2 import Environment, PackageLoader, StrictUndefined
from markupsafe import Markup

from delegatewatch import __version__
from delegatewatch.engine.hunt import HuntResult
from delegatewatch.findings.model import SEVERITIES, Finding

#: The chart libraries, in load order (vega-embed needs vega and vega-lite).
LIBRARIES = ("vega", "vega-lite", "vega-embed")
#: Grantee kinds the graph highlights: anyone in the organisation, anyone at all, outsiders.
RISKY_KINDS = ("default", "anonymous", "guest", "external")
#: How far apart two findings sharing an actor or a mailbox may be and still be one incident.
INCIDENT_WINDOW = timedelta(hours=24)

_JS_ESCAPES = {ord("<"): "\\u003c", ord(">"): "\\u003e", ord("&"): "\\u0026",
               0x2028: "\\u2028", 0x2029: "\\u2029"}


# -- incidents ---------------------------------------------------------------------------------
@dataclass
class Incident:
    """Findings that belong together (for now: a shared actor or mailbox within a time window)."""

    id: str
    findings: list[Finding]

    @property
    def start(self) -> str | None:
        return min((f.time for f in self.findings if f.time), default=None)

    @property
    def end(self) -> str | None:
        return max((f.time for f in self.findings if f.time), default=None)

    @property
    def severity(self) -> str:
        return max((f.severity for f in self.findings), key=_sev_rank, default="informational")

    @property
    def actors(self) -> list[str]:
        return _distinct(f.actor for f in self.findings)

    @property
    def mailboxes(self) -> list[str]:
        return _distinct(f.mailbox for f in self.findings)


def _distinct(values: Iterable[str | None]) -> list[str]:
    return list(dict.fromkeys(v for v in values if v))


def _sev_rank(severity: str) -> int:
    return SEVERITIES.index(severity) if severity in SEVERITIES else 2


def _parse_time(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        t = datetime.fromisoformat(value)
    except ValueError:
        return None
    return t if t.tzinfo else t.replace(tzinfo=UTC)


def group_incidents_by_shared_actor_or_mailbox(findings: Sequence[Finding],
                                               window: timedelta = INCIDENT_WINDOW) -> list[Incident]:
    """A first, deliberately simple incident grouping (a later issue replaces it).

    Two findings are in the same incident when they share the actor or the mailbox (compared
    case-insensitively) and are at most ``window`` apart; the relation is chained, so a series of
    grants by one actor, each within a day of the previous, is one incident. A finding without a
    time is an incident of its own. Pure: the findings are not changed.

    Incidents come most severe first, then earliest first; ids are ``INC-1``, ``INC-2``, … in that
    order, and the findings of an incident are in time order.
    """
    parent = list(range(len(findings)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    timed = sorted(((t, i) for i, f in enumerate(findings) if (t := _parse_time(f.time)) is not None),
                   key=lambda p: p[0])
    last: dict[tuple[str, str], tuple[datetime, int]] = {}
    for t, i in timed:
        f = findings[i]
        for key in (("actor", (f.actor or "").lower()), ("mailbox", (f.mailbox or "").lower())):
            if not key[1]:
                continue
            seen = last.get(key)
            if seen is not None and t - seen[0] <= window:
                a, b = find(seen[1]), find(i)
                if a != b:
                    parent[max(a, b)] = min(a, b)
            last[key] = (t, i)
    groups: dict[int, list[int]] = defaultdict(list)
    for i in range(len(findings)):
        groups[find(i)].append(i)
    incidents = []
    for members in groups.values():
        members.sort(key=lambda i: (findings[i].time or "\uffff", i))
        incidents.append(Incident("", [findings[i] for i in members]))
    incidents.sort(key=lambda inc: (-_sev_rank(inc.severity), inc.start or "\uffff", inc.findings[0].id))
    for n, inc in enumerate(incidents, 1):
        inc.id = f"INC-{n}"
    return incidents


# -- what the page's script reads ----------------------------------------------------------------
def right_category(f: Finding) -> str:
    """One colour-able class of what a grant lets the grantee do (graph edges)."""
    rights = {r.lower() for r in f.rights}
    if rights & {"fullaccess", "changepermission", "changeowner"}:
        return "full access"
    if "applicationimpersonation" in rights or "impersonation" in f.rule:
        return "impersonation"
    if any(r.startswith("mail.") or r == "full_access_as_app" for r in rights) or "app_mail" in f.rule:
        return "app mail access"
    if "sendas" in rights:
        return "send as"
    if "sendonbehalf" in rights:
        return "send on behalf"
    if "auditbypass" in rights:
        return "audit bypass"
    if "readitems" in rights:
        return "folder: read items"
    if f.folder is not None or rights:
        return "folder: other rights"
    return "other"


def volume_series(result: HuntResult) -> list[dict[str, Any]]:
    """Send-volume series for flagged accounts — the hook for the volume analytics (a later issue).

    A finding that carries an ``anomaly`` attribute or ``raw["anomaly"]`` shaped as
    ``{"account": str, "series": [{"time": ISO, "sent": int, "expected": float|None}, ...]}``
    gets a chart. No finding does yet, and the section then says so.
    """
    charts = []
    for f in result.findings:
        anomaly = getattr(f, "anomaly", None) or (f.raw.get("anomaly") if isinstance(f.raw, dict) else None)
        if not isinstance(anomaly, dict) or not isinstance(anomaly.get("series"), list):
            continue
        series = [{"time": str(p.get("time")), "sent": p.get("sent"), "expected": p.get("expected")}
                  for p in anomaly["series"] if isinstance(p, dict)]
        charts.append({"finding": f.id, "account": str(anomaly.get("account") or f.actor or f.mailbox or ""),
                       "series": series})
    return charts


def report_data(result: HuntResult, incidents: Sequence[Incident] | None = None) -> dict[str, Any]:
    """The JSON the page renders from (kept compact: rule texts once per rule, not per finding)."""
    if incidents is None:
        incidents = group_incidents_by_shared_actor_or_mailbox(result.findings)
    incident_of = {f.id: inc.id for inc in incidents for f in inc.findings}
    rules: dict[str, dict[str, Any]] = {}
    by_rule = {getattr(r, "name", ""): r for r in result.rules}
    findings = []
    for f in result.findings:
        if f.rule not in rules:
            rule = by_rule.get(f.rule)
            rules[f.rule] = {"title": f.title, "rule_id": f.rule_id, "runbook": f.runbook,
                             "description": str(getattr(rule, "description", "") or ""),
                             "falsepositives": [str(x) for x in getattr(rule, "falsepositives", None) or []]}
        findings.append({
            "id": f.id, "rule": f.rule, "severity": f.severity, "time": f.time, "attack": f.attack,
            "actor": f.actor, "mailbox": f.mailbox, "grantee": f.grantee, "grantee_kind": f.grantee_kind,
            "rights": f.rights, "summary": f.summary, "operation": f.operation, "folder": f.folder,
            "session_id": f.session_id, "client_ip": f.client_ip, "raw": f.raw, "names": f.names,
            "reasons": f.reasons, "category": right_category(f), "incident": incident_of.get(f.id),
            "evidence": [{"source": e.source, "line": e.line, "record_id": e.record_id, "time": e.time}
                         for e in f.evidence],
        })
    wanted = {e.record_id for f in result.findings for e in f.evidence}
    records = {rid: rec for rid, rec in result.records.items() if rid in wanted}
    days: Counter[tuple[str, str]] = Counter((f.time[:10], f.severity) for f in result.findings if f.time)
    return {
        "severities": list(SEVERITIES),
        "rules": rules,
        "findings": findings,
        "incidents": [{"id": inc.id, "severity": inc.severity, "start": inc.start, "end": inc.end,
                       "actors": inc.actors, "mailboxes": inc.mailboxes,
                       "findings": [f.id for f in inc.findings]} for inc in incidents],
        "records": records,
        "timeline": [{"day": d, "severity": s, "count": n} for (d, s), n in sorted(days.items())],
        "volume": volume_series(result),
        "risky_kinds": list(RISKY_KINDS),
    }


def script_json(value: Any) -> str:
    """JSON that is safe inside ``<script type="application/json">``: it cannot close the element
    or open a comment (``<``, ``>``, ``&`` escaped), and U+2028/2029 are escaped too."""
    text = json.dumps(value, ensure_ascii=True, separators=(",", ":"), allow_nan=False, default=str)
    return text.translate(_JS_ESCAPES)


# -- rendering ---------------------------------------------------------------------------------
@cache
def _environment() -> Environment:
    return Environment(loader=PackageLoader("delegatewatch.outputs", "templates"), autoescape=True,
                       undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True)


@cache
def _static(name: str) -> str:
    return (resources.files("delegatewatch.outputs") / "static" / name).read_text(encoding="utf-8")


@cache
def library_versions() -> dict[str, str]:
    versions = json.loads(_static("VERSIONS.json"))
    return {name: versions[name]["version"] for name in LIBRARIES}


def _csp_hash(script: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(script.encode("utf-8")).digest()).decode() + "'"


def _inline_script(text: str) -> str:
    if "</script" in text.lower() or "<!--" in text:
        raise ValueError("a script to inline contains '</script' or '<!--'")
    return text


def render(result: HuntResult, *, title: str | None = None, generated_at: datetime | None = None) -> str:
    """The report as one HTML document (a string)."""
    incidents = group_incidents_by_shared_actor_or_mailbox(result.findings)
    data = script_json(report_data(result, incidents))
    scripts = [_inline_script(_static(f"{name}.min.js")) for name in LIBRARIES]
    scripts.append(_inline_script(_static("report.js")))
    csp = ("default-src 'none'; script-src " + " ".join(_csp_hash(s) for s in scripts)
           + "; style-src 'unsafe-inline'; img-src data:; font-src 'none'; connect-src 'none'; "
           "object-src 'none'; base-uri 'none'; form-action 'none'")
    stats = result.stats
    generated = (generated_at or datetime.now(UTC)).astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return _environment().get_template("report.html.j2").render(
        title=title or "delegatewatch investigation report",
        generated=generated,
        version=__version__,
        libraries=library_versions(),
        csp=csp,
        css=Markup(_static("report.css")),
        scripts=[Markup(s) for s in scripts],
        data_json=Markup(data),
        stats=stats,
        candidates=result.candidates,
        rule_count=len(result.rules),
        findings_total=len(result.findings),
        by_severity=[(s, sum(1 for f in result.findings if f.severity == s)) for s in reversed(SEVERITIES)],
        incident_count=len(incidents),
        skip_reasons=stats.skip_reasons.most_common(),
    )


def write(result: HuntResult, out: str | os.PathLike[str] | IO[str] | IO[bytes], *,
          title: str | None = None, generated_at: datetime | None = None) -> None:
    """Write the report to ``out``: a path (parent folders are created) or an open text or binary
    stream (left open)."""
    html = render(result, title=title, generated_at=generated_at)
    if isinstance(out, (str, os.PathLike)):
        path = os.fspath(out)
        parent = os.path.dirname(path)
        if parent:
            os.makedirs(parent, exist_ok=True)
        with open(path, "w", encoding="utf-8", newline="\n") as f:
            f.write(html)
        return
    if isinstance(out, (io.RawIOBase, io.BufferedIOBase)) or "b" in str(getattr(out, "mode", "")):
        out.write(html.encode("utf-8"))  # type: ignore[arg-type]
    else:
        out.write(html)  # type: ignore[arg-type]
