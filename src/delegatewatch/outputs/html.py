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
from collections import Counter
from datetime import UTC, datetime
from functools import cache
from importlib import resources
from typing import IO, Any

from jinja2 import Environment, PackageLoader, StrictUndefined
from markupsafe import Markup

from delegatewatch import __version__, config
from delegatewatch.engine.hunt import HuntResult
from delegatewatch.events.principals import Resolver
from delegatewatch.findings.identities import Identities
from delegatewatch.findings.incidents import Incident, build_incidents
from delegatewatch.findings.model import SEVERITIES, Finding

#: The chart libraries, in load order (vega-embed needs vega and vega-lite).
LIBRARIES = ("vega", "vega-lite", "vega-embed")
#: Grantee kinds the graph highlights: anyone in the organisation, anyone at all, outsiders.
RISKY_KINDS = ("default", "anonymous", "guest", "external")
_JS_ESCAPES = {ord("<"): "\\u003c", ord(">"): "\\u003e", ord("&"): "\\u0026",
               0x2028: "\\u2028", 0x2029: "\\u2029"}


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
    """Send-volume series for flagged accounts: the volume analytics' hook.

    A finding that carries an ``anomaly`` attribute or ``raw["anomaly"]`` shaped as
    ``{"account": str, "series": [{"time": ISO, "sent": int, "expected": float|None}, ...]}``
    gets a chart (``send_volume_burst`` findings do: :class:`delegatewatch.analytics.mailflow.Anomaly`).
    Without any, the section says so.
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


def _incident_data(inc: Incident) -> dict[str, Any]:
    return {"id": inc.id, "title": inc.title, "score": inc.score, "severity": inc.severity,
            "factors": [{"name": f.name, "points": f.points, "detail": f.detail} for f in inc.factors],
            "start": inc.start, "end": inc.end, "actors": inc.actors, "mailboxes": inc.mailboxes,
            "grantees": inc.grantees, "allowed": inc.allowed, "findings": inc.findings,
            # a finding's step is just its kind and id: the page has the finding (time, summary, evidence)
            "steps": [{"kind": s.kind, "finding": s.finding} if s.finding else
                      {"time": s.time, "kind": s.kind, "what": s.what, "summary": s.summary,
                       "records": [e.record_id for e in s.evidence[:5]], "more": max(0, len(s.evidence) - 5)}
                      for s in inc.steps]}


def incidents_of(result: HuntResult) -> list[Incident]:
    """The hunt's incidents; for a result built otherwise (``audit``, benchmarks), incidents from its
    findings alone, so every finding of a report is in one incident either way."""
    cfg = config.current()
    if result.incidents or not result.findings or not cfg.incidents.enabled:
        return result.incidents
    return build_incidents(result.findings, [], Identities(Resolver()), cfg.incidents, cfg.allow, assign=False).incidents


def report_data(result: HuntResult, incidents: list[Incident] | None = None) -> dict[str, Any]:
    """The JSON the page renders from (kept compact: rule texts once per rule, not per finding)."""
    incidents = incidents_of(result) if incidents is None else incidents
    incident_of = {fid: inc.id for inc in incidents for fid in inc.findings}
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
    wanted |= {rid for inc in incidents for s in inc.steps if s.finding is None for rid in
               [e.record_id for e in s.evidence[:5]]}
    records = {rid: rec for rid, rec in result.records.items() if rid in wanted}
    days: Counter[tuple[str, str]] = Counter((f.time[:10], f.severity) for f in result.findings if f.time)
    return {
        "severities": list(SEVERITIES),
        "rules": rules,
        "findings": findings,
        "incidents": [_incident_data(inc) for inc in incidents],
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
    incidents = incidents_of(result)
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
