"""``--format ocsf``: findings as OCSF **Detection Finding** (class 2004) JSON lines.

One finding per line, OCSF :data:`OCSF_VERSION` (the newest version a maintained schema package,
pydantic-ocsf, can validate; the tests validate every line against it). The mapping is in
``docs/ocsf.md``. The helpers here (users, resources, metadata, time) are shared with the event
export (:mod:`delegatewatch.outputs.ocsf_events`), so a finding and the events behind it name
people and mailboxes the same way.

Joining findings to exported events: ``evidences[].uid`` (the UAL ``Id``) equals the event's
``metadata.original_event_uid``.
"""

from __future__ import annotations

import re
import time as _time
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any, TextIO

import orjson

from delegatewatch import __version__
from delegatewatch.findings.model import Finding

#: The OCSF version every object we write claims (``metadata.version``).
OCSF_VERSION = "1.7.0"

PRODUCT = {"name": "delegatewatch", "vendor_name": "delegatewatch", "version": __version__}

SEVERITY_IDS = {"informational": 1, "low": 2, "medium": 3, "high": 4, "critical": 5}
SEVERITY_NAMES = {0: "Unknown", 1: "Informational", 2: "Low", 3: "Medium", 4: "High", 5: "Critical",
                  6: "Fatal", 99: "Other"}

#: ATT&CK ids our rules carry → names (Enterprise matrix).
TECHNIQUES = {
    "T1098": "Account Manipulation",
    "T1098.002": "Additional Email Delegate Permissions",
    "T1098.003": "Additional Cloud Roles",
    "T1534": "Internal Spearphishing",
    "T1114": "Email Collection",
    "T1114.002": "Remote Email Collection",
    "T1114.003": "Email Forwarding Rule",
    "T1562": "Impair Defenses",
    "T1562.008": "Disable or Modify Cloud Logs",
    "T1564": "Hide Artifacts",
    "T1564.008": "Email Hiding Rules",
}
TACTICS = {
    "TA0003": "Persistence",
    "TA0004": "Privilege Escalation",
    "TA0005": "Defense Evasion",
    "TA0008": "Lateral Movement",
    "TA0009": "Collection",
}
#: Technique → the tactics ATT&CK lists it under (one OCSF attack object per tactic).
TECHNIQUE_TACTICS = {
    "T1098": ("TA0003", "TA0004"),
    "T1114": ("TA0009",),
    "T1534": ("TA0008",),
    "T1562": ("TA0005",),
    "T1564": ("TA0005",),
}

EMAIL_ADDRESS = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_GUID = re.compile(r"^\{?[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\}?$")

#: Principal kinds (``events.principals.Kind`` values) → OCSF user ``type_id``/``type``.
_KIND_TYPE: dict[str, tuple[int, str | None]] = {
    "user": (1, None), "guest": (1, None), "external": (1, None),
    "system": (3, None), "self": (3, None),
    "default": (99, "Default"), "anonymous": (99, "Anonymous"), "group": (99, "Group"),
    "unknown": (0, None),
}
_SPECIAL_NAMES = {"default": "Default", "anonymous": "Anonymous"}

#: Operations whose "mailbox" is something else: the OCSF resource type to call it.
_TARGET_TYPES = {
    "new-rolegroup": "Role Group", "add-rolegroupmember": "Role Group", "update-rolegroupmember": "Role Group",
    "new-managementroleassignment": "Management Scope",
    "consent to application.": "Application", "add delegated permission grant.": "Application",
    "add app role assignment to service principal.": "Application", "update application.": "Application",
}


# -- shared helpers ---------------------------------------------------------------------------
def epoch_ms(value: datetime | str | None) -> int | None:
    """A datetime or an ISO 8601 string (``2024-10-14T09:03:40Z``) → epoch milliseconds."""
    if value is None:
        return None
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
        except ValueError:
            return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return int(value.timestamp() * 1000)


def user(name: str | None, *, kind: str | None = None, raw: str | None = None, display_name: str | None = None,
         object_id: str | None = None) -> dict[str, Any] | None:
    """An OCSF ``user`` object. Default/Anonymous become synthetic users (``type_id`` 99 Other,
    ``type`` "Default"/"Anonymous"), so a grant to everyone still has a ``user``."""
    if not name and not raw:
        return None
    kind = (kind or "").lower() or None
    if kind in _SPECIAL_NAMES:
        out: dict[str, Any] = {"name": _SPECIAL_NAMES[kind], "uid": _SPECIAL_NAMES[kind]}
        if raw and raw != out["name"]:
            out["uid_alt"] = raw
        out["type_id"], out["type"] = _KIND_TYPE[kind]
        return out
    name = name or raw or ""
    out = {"name": name}
    uid = object_id or next((v for v in (raw, name) if v and _GUID.match(v)), None)
    out["uid"] = uid.strip("{}").lower() if uid else name
    if raw and raw not in (name, out["uid"]):
        out["uid_alt"] = raw
    if EMAIL_ADDRESS.match(name):
        out["email_addr"] = name
        if "#ext#" not in name.lower():
            out["domain"] = name.rsplit("@", 1)[1].lower()
    if display_name and display_name != name:
        out["display_name"] = display_name
    if kind in _KIND_TYPE:
        type_id, label = _KIND_TYPE[kind]
        out["type_id"] = type_id
        if label:
            out["type"] = label
    return out


def resource(type_: str, name: str, *, uid: str | None = None, role_id: int = 1,
             owner: dict[str, Any] | None = None, data: dict[str, Any] | None = None) -> dict[str, Any]:
    """An OCSF ``resource_details`` object. ``role_id``: 1 Target, 3 Affected, 4 Related."""
    out: dict[str, Any] = {"type": type_, "name": name, "uid": uid or name, "role_id": role_id}
    if owner:
        out["owner"] = owner
    if data:
        out["data"] = data
    return out


def resource_type(operation: str) -> str:
    return _TARGET_TYPES.get(operation.lower(), "Mailbox")


def attacks(ids: Iterable[str]) -> list[dict[str, Any]]:
    """``T1098.002`` → ``{technique: T1098, sub_technique: T1098.002, tactic: …}``, one per tactic."""
    out: list[dict[str, Any]] = []
    for raw in ids:
        tid = raw.strip().upper()
        if not re.match(r"^T\d{4}(\.\d{3})?$", tid):
            continue
        parent = tid.split(".", 1)[0]
        base: dict[str, Any] = {"technique": {"uid": parent, "name": TECHNIQUES.get(parent, parent),
                                              "src_url": f"https://attack.mitre.org/techniques/{parent}/"}}
        if "." in tid:
            sub = tid.split(".", 1)[1]
            base["sub_technique"] = {"uid": tid, "name": TECHNIQUES.get(tid, tid),
                                     "src_url": f"https://attack.mitre.org/techniques/{parent}/{sub}/"}
        tactics = TECHNIQUE_TACTICS.get(parent, ())
        if not tactics:
            out.append(base)
        for ta in tactics:
            out.append({**base, "tactic": {"uid": ta, "name": TACTICS[ta],
                                           "src_url": f"https://attack.mitre.org/tactics/{ta}/"}})
    return out


def tenant_of(record: Mapping[str, Any] | None) -> tuple[str | None, str | None]:
    """(tenant id, tenant name) of a UAL record."""
    if not record:
        return None, None
    tid, name = record.get("OrganizationId"), record.get("OrganizationName")
    return (tid if isinstance(tid, str) and tid else None), (name if isinstance(name, str) and name else None)


def cloud(tenant_id: str | None, tenant_name: str | None = None) -> dict[str, Any]:
    """OCSF ``cloud`` (profile ``cloud``): Microsoft 365; the account is the Entra ID tenant."""
    out: dict[str, Any] = {"provider": "Microsoft"}
    if tenant_id or tenant_name:
        account: dict[str, Any] = {"type_id": 17, "type": "M365 Tenant"}
        if tenant_id:
            account["uid"] = tenant_id
        if tenant_name:
            account["name"] = tenant_name
        out["account"] = account
    return out


def dumps(obj: Mapping[str, Any]) -> str:
    return orjson.dumps(obj).decode()


# -- Detection Finding ------------------------------------------------------------------------
def _anomalies(f: Finding) -> list[dict[str, Any]]:
    """Hook for analytics: a finding with an ``anomaly`` attribute (an OCSF ``anomaly_analysis``
    dict, a list of them, or an object with ``to_ocsf()`` returning either) gets
    ``anomaly_analyses``; others get none."""
    a = getattr(f, "anomaly", None)
    if a is None:
        return []
    if hasattr(a, "to_ocsf"):
        a = a.to_ocsf()
    if isinstance(a, Mapping):
        return [dict(a)]
    if isinstance(a, (list, tuple)):
        return [dict(x.to_ocsf() if hasattr(x, "to_ocsf") else x) for x in a]
    raise TypeError(f"finding {f.id}: anomaly must be an OCSF anomaly_analysis mapping, got {type(a).__name__}")


def finding_to_ocsf(f: Finding, records: Mapping[str, Mapping[str, Any]] | None = None, *,
                    raw_data: bool = False) -> dict[str, Any]:
    """One finding → one OCSF Detection Finding (2004) object (a plain dict, JSON-ready).

    ``records``: the raw records by UAL ``Id`` (``HuntResult.records``); they add the tenant
    (``cloud.account``, ``metadata.tenant_uid``) and, with ``raw_data``, the raw record."""
    records = records or {}
    raw_records = [records[e.record_id] for e in f.evidence if e.record_id in records]
    first = raw_records[0] if raw_records else None
    tenant_id, tenant_name = tenant_of(first)
    times = [t for t in (epoch_ms(e.time) for e in f.evidence) if t is not None]
    when = epoch_ms(f.time) or (min(times) if times else None)
    if when is None:
        when = int(_time.time() * 1000)  # no time anywhere: the finding's own creation time
    severity_id = SEVERITY_IDS.get(f.severity, 0)

    actor_user = user(f.actor, raw=f.raw.get("actor"), display_name=f.names.get("actor"))
    grantee_user = user(f.grantee, kind=f.grantee_kind, raw=f.raw.get("grantee"), display_name=f.names.get("grantee"))

    resources: list[dict[str, Any]] = []
    if f.mailbox:
        rtype = resource_type(f.operation)
        owner = user(f.mailbox, raw=f.raw.get("mailbox"), display_name=f.names.get("mailbox")) \
            if rtype == "Mailbox" else None
        resources.append(resource(rtype, f.mailbox, uid=owner["uid"] if owner else None, owner=owner))
        if f.folder:
            resources.append(resource("Mailbox Folder", f.folder, uid=f"{f.mailbox}:{f.folder}"))
    elif f.folder:
        resources.append(resource("Mailbox Folder", f.folder))
    if grantee_user:
        resources.append(resource("User", grantee_user["name"], uid=grantee_user["uid"], role_id=4,
                                  data={"relationship": "grantee", "kind": f.grantee_kind} if f.grantee_kind
                                  else {"relationship": "grantee"}))

    evidences: list[dict[str, Any]] = []
    for e in f.evidence:
        ev: dict[str, Any] = {"name": _evidence_name(f), "uid": e.record_id,
                              "data": {k: v for k, v in (("source", e.source), ("record_id", e.record_id),
                                                       ("line", e.line), ("time", e.time)) if v is not None}}
        if actor_user:
            ev["actor"] = {"user": actor_user}
            if f.session_id:
                ev["actor"]["session"] = {"uid": f.session_id}
        if f.client_ip:
            ev["src_endpoint"] = {"ip": f.client_ip}
        if grantee_user:
            ev["user"] = grantee_user
        evidences.append(ev)

    finding_info: dict[str, Any] = {
        "uid": f.id, "title": f.title, "desc": f.summary,
        "analytic": {"uid": f.rule_id, "name": f.rule, "type_id": 1, "type": "Rule", "category": "Sigma"},
        "attacks": attacks(f.attack),
        "data_sources": ["Microsoft 365 Unified Audit Log"],
    }
    if times:
        finding_info["first_seen_time"], finding_info["last_seen_time"] = min(times), max(times)

    metadata: dict[str, Any] = {"version": OCSF_VERSION, "product": dict(PRODUCT), "uid": f.id,
                                "profiles": ["cloud"]}
    if f.evidence:
        metadata["original_event_uid"] = f.evidence[0].record_id
    if tenant_id:
        metadata["tenant_uid"] = tenant_id

    out: dict[str, Any] = {
        "activity_id": 1, "activity_name": "Create",
        "category_uid": 2, "category_name": "Findings",
        "class_uid": 2004, "class_name": "Detection Finding",
        "type_uid": 200401, "type_name": "Detection Finding: Create",
        "time": when,
        "severity_id": severity_id, "severity": SEVERITY_NAMES[severity_id],
        "status_id": 1, "status": "New",
        "is_alert": True,
        "message": f.summary,
        "metadata": metadata,
        "cloud": cloud(tenant_id, tenant_name),
        "finding_info": finding_info,
        "resources": resources,
        "evidences": evidences,
    }
    anomalies = _anomalies(f)
    if anomalies:
        out["anomaly_analyses"] = anomalies
    if f.runbook:
        out["remediation"] = {"desc": f.runbook}
    if raw_data and raw_records:
        out["raw_data"] = dumps(raw_records[0]) if len(raw_records) == 1 else orjson.dumps(raw_records).decode()
    out["unmapped"] = {k: v for k, v in {
        "rule": f.rule, "severity": f.severity, "attack": f.attack, "operation": f.operation or None,
        "actor": f.actor, "mailbox": f.mailbox, "grantee": f.grantee, "grantee_kind": f.grantee_kind,
        "rights": f.rights, "folder": f.folder, "session_id": f.session_id, "client_ip": f.client_ip,
        "raw": f.raw or None, "names": f.names or None, "reasons": f.reasons or None,
    }.items() if v is not None}
    return out


def _evidence_name(f: Finding) -> str:
    """What kind of record the evidence is, from the rule that found it."""
    prefix = f.rule.split("_", 1)[0]
    return {"windows": "Windows event", "google": "Google Workspace activity", "snapshot": "Permission snapshot row",
            "send": "Mail-send record", "internal": "Mail-send record"}.get(prefix, "Unified Audit Log record")


def write(findings: Iterable[Finding], out: TextIO, *, records: Mapping[str, Mapping[str, Any]] | None = None,
          raw_data: bool = False) -> int:
    """Write ``findings`` as OCSF Detection Finding JSON lines; returns how many were written.

    ``records``: ``HuntResult.records`` (raw records by UAL Id), optional."""
    n = 0
    for f in findings:
        out.write(dumps(finding_to_ocsf(f, records, raw_data=raw_data)))
        out.write("\n")
        n += 1
    return n
