"""Typed events as OCSF events, and the Amazon Security Lake Parquet writer.

* :class:`~delegatewatch.events.model.PermissionChange` → **User Access Management (3005)**,
  activity 1 *Assign Privileges* (grant, modify), 2 *Revoke Privileges*, 99 *Other* ("Deny",
  an explicit deny entry).
* :class:`~delegatewatch.events.model.MailSend` → **Email Activity (4009)**, activity 1 *Send*.

Other event kinds (mailbox access, inbox rules, settings) have no class here yet and are counted,
not written. The mapping tables are in ``docs/ocsf.md``.

:class:`SecurityLakeWriter` writes one directory per class in the Security Lake custom-source
layout, ``<root>/ext/<source>/region=<region>/accountId=<account>/eventDay=YYYYMMDD/part-*.parquet``,
one event class per source, rows sorted by time, ``time`` as epoch milliseconds (OCSF
``timestamp_t``) and ``time_dt`` as a Parquet TIMESTAMP(MILLIS, UTC).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.parquet as pq

from delegatewatch.events.model import Action, Event, MailSend, PermissionChange, Scope
from delegatewatch.events.principals import Principal
from delegatewatch.outputs.ocsf import (
    EMAIL_ADDRESS,
    OCSF_VERSION,
    cloud,
    epoch_ms,
    resource,
    resource_type,
    tenant_of,
    user,
)

USER_ACCESS = 3005
EMAIL_ACTIVITY = 4009
CLASSES = {USER_ACCESS: "User Access Management", EMAIL_ACTIVITY: "Email Activity"}
#: The event kinds written (others are counted, not exported).
EXPORTED = (PermissionChange, MailSend)

_WORKLOAD_PRODUCTS = {"exchange": "Exchange Online", "azureactivedirectory": "Microsoft Entra ID",
                      "sharepoint": "SharePoint Online", "onedrive": "OneDrive for Business",
                      "microsoftteams": "Microsoft Teams"}
#: What was granted when the log does not name rights (privileges is required in 3005).
_SCOPE_PRIVILEGE = {Scope.ROLE_GROUP: "RoleGroupMembership", Scope.APP: "AppPermission",
                    Scope.FOLDER: "FolderPermissions", Scope.MAILBOX: "MailboxPermissions",
                    Scope.IMPERSONATION: "ApplicationImpersonation", Scope.AUDIT_BYPASS: "AuditBypass"}
_ACTIVITY = {Action.GRANT: (1, "Assign Privileges"), Action.MODIFY: (1, "Assign Privileges"),
             Action.REVOKE: (2, "Revoke Privileges"), Action.DENY: (99, "Deny")}


def principal_user(p: Principal | None) -> dict[str, Any] | None:
    if p is None:
        return None
    return user(p.name, kind=p.kind.value, raw=p.raw, display_name=p.display_name, object_id=p.object_id)


def _iso_ms(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def _base(ev: Event, class_uid: int, activity: tuple[int, str], uid: str) -> dict[str, Any]:
    """The attributes every exported event shares (``time`` None when the record has none)."""
    when = epoch_ms(ev.time)
    data = ev.record.data
    tenant_id, tenant_name = tenant_of(data)
    workload = str(data.get("Workload") or "")
    metadata: dict[str, Any] = {
        "version": OCSF_VERSION,
        "product": {"name": _WORKLOAD_PRODUCTS.get(workload.lower(), workload or "Microsoft 365"),
                    "vendor_name": "Microsoft"},
        "uid": uid,
        "original_event_uid": ev.record.record_id,
        "log_name": "Unified Audit Log",
        "log_provider": "delegatewatch",
        "event_code": ev.operation,
        "profiles": ["cloud", "datetime"],
    }
    if tenant_id:
        metadata["tenant_uid"] = tenant_id
    activity_id, activity_name = activity
    out: dict[str, Any] = {
        "activity_id": activity_id, "activity_name": activity_name,
        "category_uid": class_uid // 1000,
        "category_name": "Identity & Access Management" if class_uid // 1000 == 3 else "Network Activity",
        "class_uid": class_uid, "class_name": CLASSES[class_uid],
        "type_uid": class_uid * 100 + activity_id, "type_name": f"{CLASSES[class_uid]}: {activity_name}",
        "time": when, "time_dt": _iso_ms(when) if when is not None else None,
        "severity_id": 1, "severity": "Informational",
        "status_id": 1 if ev.succeeded else 2, "status": "Success" if ev.succeeded else "Failure",
        "metadata": metadata,
        "cloud": cloud(tenant_id, tenant_name),
    }
    status = data.get("ResultStatus")
    if isinstance(status, str) and status:
        out["status_detail"] = status
    actor: dict[str, Any] = {}
    actor_user = principal_user(ev.actor)
    if actor_user:
        actor["user"] = actor_user
    if ev.session_id:
        actor["session"] = {"uid": str(ev.session_id)}
    app = data.get("AppId") or data.get("ClientAppId")
    if isinstance(app, str) and app:
        actor["app_uid"] = app
    if actor:
        out["actor"] = actor
        if class_uid == EMAIL_ACTIVITY:  # actor is not an Email Activity attribute: it comes with `host`
            metadata["profiles"].append("host")
    if ev.client_ip:
        out["src_endpoint"] = {"ip": ev.client_ip}
    return out


def _provenance(ev: Event) -> dict[str, Any]:
    r = ev.record
    return {k: v for k, v in (("source", r.source), ("line", r.line), ("index", r.index),
                              ("dialect", r.dialect)) if v is not None}


def permission_change(ev: PermissionChange, uid: str) -> dict[str, Any]:
    """PermissionChange → User Access Management (3005)."""
    out = _base(ev, USER_ACCESS, _ACTIVITY[ev.action], uid)
    privileges = sorted(ev.rights) or [_SCOPE_PRIVILEGE.get(ev.scope, ev.scope.value)]
    grantee = principal_user(ev.grantee) or {"name": "Unspecified", "type_id": 0, "type": "Unknown"}
    resources: list[dict[str, Any]] = []
    if ev.mailbox is not None:
        owner = principal_user(ev.mailbox)
        resources.append(resource("Mailbox", ev.mailbox.name, uid=(owner or {}).get("uid"), owner=owner))
        if ev.folder:
            resources.append(resource("Mailbox Folder", ev.folder, uid=f"{ev.mailbox.name}:{ev.folder}"))
    elif ev.folder:
        resources.append(resource("Mailbox Folder", ev.folder))
    if ev.target:
        rtype = {Scope.ROLE_GROUP: "Role Group", Scope.APP: "Application"}.get(ev.scope) or resource_type(ev.operation)
        if rtype == "Mailbox":
            rtype = "Management Scope"
        resources.append(resource(rtype, ev.target))
    out["privileges"] = privileges
    out["user"] = grantee
    if resources:
        out["resources"] = resources
    out["message"] = (f"{(ev.actor.name if ev.actor else 'unknown actor')} "
                      f"{'revoked' if ev.action is Action.REVOKE else 'denied' if ev.action is Action.DENY else 'granted'} "
                      f"{', '.join(privileges)} {'from' if ev.action is Action.REVOKE else 'to'} {grantee['name']}"
                      + (f" on {ev.mailbox.name}" if ev.mailbox else (f" on {ev.target}" if ev.target else ""))
                      + (f" folder {ev.folder}" if ev.folder else "") + f" ({ev.operation})")
    out["unmapped"] = {k: v for k, v in {
        "action": ev.action.value, "scope": ev.scope.value, "operation": ev.operation,
        "grantee_kind": ev.grantee.kind.value if ev.grantee else None,
        "mailbox": ev.mailbox.name if ev.mailbox else None, "folder": ev.folder, "target": ev.target,
        **_provenance(ev),
    }.items() if v is not None}
    return out


def mail_send(ev: MailSend, uid: str) -> dict[str, Any]:
    """MailSend → Email Activity (4009). ``email.from`` is the mailbox the mail went out as (the
    owner for SendAs/SendOnBehalf); ``actor.user`` is who sent it (the delegate); for
    SendOnBehalf the delegate is also the ``Sender`` header (``email.sender``)."""
    out = _base(ev, EMAIL_ACTIVITY, (1, "Send"), uid)
    out["direction_id"], out["direction"] = 0, "Unknown"  # the audit record does not name recipients
    email: dict[str, Any] = {}
    if ev.mailbox is not None:
        # the address as logged (SendAsUserSmtp …) is the From address; the resolved UPN may differ
        logged = ev.mailbox.raw.split(":", 1)[1] if ev.mailbox.raw.lower().startswith("smtp:") else ev.mailbox.raw
        address = logged if EMAIL_ADDRESS.match(logged) else (principal_user(ev.mailbox) or {}).get("email_addr")
        if address:
            email["from"] = address
    actor_user = principal_user(ev.actor)
    if ev.operation.lower() == "sendonbehalf" and actor_user and actor_user.get("email_addr"):
        email["sender"] = actor_user["email_addr"]
    if ev.subject:
        email["subject"] = ev.subject
    if ev.message_id:
        email["message_uid"] = ev.message_id
    out["email"] = email
    who = ev.actor.name if ev.actor else "unknown sender"
    out["message"] = f"{who} sent mail" + (f" as {ev.mailbox.name}" if ev.as_delegate and ev.mailbox else "") \
        + f" ({ev.operation})"
    out["unmapped"] = {k: v for k, v in {
        "operation": ev.operation, "as_delegate": ev.as_delegate,
        "mailbox": ev.mailbox.name if ev.mailbox else None, "recipients": ev.recipients,
        **_provenance(ev),
    }.items() if v is not None}
    return out


def to_ocsf(ev: Event, uid: str) -> dict[str, Any] | None:
    """The OCSF object for an event, or None for kinds without a class here."""
    if isinstance(ev, PermissionChange):
        return permission_change(ev, uid)
    if isinstance(ev, MailSend):
        return mail_send(ev, uid)
    return None


# -- Parquet (Amazon Security Lake) -----------------------------------------------------------
_S = pa.string()
_I = pa.int32()
USER_T = pa.struct([("name", _S), ("uid", _S), ("uid_alt", _S), ("email_addr", _S), ("domain", _S),
                    ("display_name", _S), ("type", _S), ("type_id", _I)])
_METADATA_T = pa.struct([
    ("version", _S), ("product", pa.struct([("name", _S), ("vendor_name", _S), ("version", _S)])),
    ("uid", _S), ("original_event_uid", _S), ("log_name", _S), ("log_provider", _S), ("event_code", _S),
    ("tenant_uid", _S), ("profiles", pa.list_(_S)),
])
_CLOUD_T = pa.struct([("provider", _S),
                      ("account", pa.struct([("uid", _S), ("name", _S), ("type", _S), ("type_id", _I)]))])
_ACTOR_T = pa.struct([("user", USER_T), ("session", pa.struct([("uid", _S)])), ("app_uid", _S)])
_RESOURCE_T = pa.struct([("type", _S), ("name", _S), ("uid", _S), ("role_id", _I), ("owner", USER_T)])
_COMMON = [
    ("activity_id", _I), ("activity_name", _S), ("category_uid", _I), ("category_name", _S),
    ("class_uid", _I), ("class_name", _S), ("type_uid", pa.int64()), ("type_name", _S),
    ("time", pa.int64()), ("time_dt", pa.timestamp("ms", tz="UTC")),
    ("severity_id", _I), ("severity", _S), ("status_id", _I), ("status", _S), ("status_detail", _S),
    ("message", _S), ("metadata", _METADATA_T), ("cloud", _CLOUD_T), ("actor", _ACTOR_T),
    ("src_endpoint", pa.struct([("ip", _S)])),
]
_TAIL = [("unmapped", pa.map_(_S, _S)), ("raw_data", _S)]
SCHEMAS: dict[int, pa.Schema] = {
    USER_ACCESS: pa.schema(_COMMON + [("privileges", pa.list_(_S)), ("user", USER_T),
                                      ("resources", pa.list_(_RESOURCE_T))] + _TAIL),
    EMAIL_ACTIVITY: pa.schema(_COMMON + [("direction_id", _I), ("direction", _S),
                                         ("email", pa.struct([("from", _S), ("sender", _S), ("subject", _S),
                                                              ("message_uid", _S)]))] + _TAIL),
}


def _check_keys(obj: Mapping[str, Any], typ: pa.DataType, path: str) -> None:
    """Fail loudly when a mapping carries a field the Parquet schema would drop silently."""
    if pa.types.is_struct(typ):
        names = {typ.field(i).name: typ.field(i).type for i in range(typ.num_fields)}
        for k, v in obj.items():
            if k not in names:
                raise ValueError(f"OCSF field {path}{k} has no column in the Parquet schema")
            if isinstance(v, Mapping):
                _check_keys(v, names[k], f"{path}{k}.")
            elif isinstance(v, list) and pa.types.is_list(names[k]):
                for item in v:
                    if isinstance(item, Mapping):
                        _check_keys(item, names[k].value_type, f"{path}{k}[].")


def to_row(obj: Mapping[str, Any], schema: pa.Schema) -> dict[str, Any]:
    """An OCSF dict → a row for ``schema``: ``time_dt`` as a datetime, ``unmapped`` as a
    string map (non-strings JSON-encoded)."""
    _check_keys(obj, pa.struct(list(schema)), "")
    row = dict(obj)
    if row.get("time") is not None:
        row["time_dt"] = datetime.fromtimestamp(row["time"] / 1000, UTC)
    unmapped = row.get("unmapped")
    if unmapped:
        row["unmapped"] = [(k, v if isinstance(v, str) else orjson.dumps(v).decode()) for k, v in unmapped.items()]
    return row


class SecurityLakeWriter:
    """Rows per (class, event day) are buffered and written as one Parquet file per
    ``max_rows`` (and at :meth:`close`), sorted by time."""

    def __init__(self, root: str, *, region: str = "us-east-1", account_id: str = "000000000000",
                 source_prefix: str = "delegatewatch", max_rows: int = 200_000, run_id: str | None = None) -> None:
        self.root, self.region, self.account_id = root, region, account_id
        self.source_prefix, self.max_rows = source_prefix, max_rows
        self.run_id = run_id or uuid.uuid4().hex[:12]
        self._buffers: dict[tuple[int, str], list[dict[str, Any]]] = {}
        self._seq: dict[tuple[int, str], int] = {}
        self.files: list[str] = []

    def source_name(self, class_uid: int) -> str:
        return f"{self.source_prefix}-{class_uid}"

    def partition(self, class_uid: int, day: str) -> str:
        return os.path.join(self.root, "ext", self.source_name(class_uid), f"region={self.region}",
                            f"accountId={self.account_id}", f"eventDay={day}")

    def add(self, obj: Mapping[str, Any]) -> None:
        class_uid = int(obj["class_uid"])
        if class_uid not in SCHEMAS:
            raise ValueError(f"no Parquet schema for OCSF class {class_uid}")
        day = datetime.fromtimestamp(obj["time"] / 1000, UTC).strftime("%Y%m%d")
        key = (class_uid, day)
        buf = self._buffers.setdefault(key, [])
        buf.append(to_row(obj, SCHEMAS[class_uid]))
        if len(buf) >= self.max_rows:
            self._flush(key)

    def _flush(self, key: tuple[int, str]) -> None:
        rows = self._buffers.pop(key, [])
        if not rows:
            return
        rows.sort(key=lambda r: r["time"])
        class_uid, day = key
        folder = self.partition(class_uid, day)
        os.makedirs(folder, exist_ok=True)
        seq = self._seq[key] = self._seq.get(key, -1) + 1
        path = os.path.join(folder, f"part-{self.run_id}-{seq:05d}.parquet")
        table = pa.Table.from_pylist(rows, schema=SCHEMAS[class_uid])
        pq.write_table(table, path, compression="zstd", coerce_timestamps="ms", allow_truncated_timestamps=False)
        self.files.append(path)

    def close(self) -> list[str]:
        for key in sorted(self._buffers):
            self._flush(key)
        return self.files
