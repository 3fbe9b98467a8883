"""Google Workspace Reports API records (``sources/formats/google.py``) → typed events.

* domain-wide delegation (``AUTHORIZE_API_CLIENT_ACCESS``): a grant to the API client (the grantee),
  rights = the scopes; ``REMOVE_API_CLIENT_ACCESS`` revokes;
* ``token`` ``authorize``: a user's OAuth grant to an app (grantee = the client, mailbox = the user),
  rights = the scopes; ``revoke`` revokes;
* delegated admin (``ASSIGN_ROLE``, ``GRANT_DELEGATED_ADMIN_PRIVILEGES``, ``GRANT_ADMIN_PRIVILEGE``):
  a role grant to ``USER_EMAIL``; ``UNASSIGN_ROLE`` / ``REVOKE_…`` revoke;
* an event named in ``[google] delegate_added_events`` (configuration; Google documents no such
  event): a Gmail delegate grant. The delegate and the mailbox are read from parameters whose names
  are not documented either: the first parameter whose name contains ``delegate`` is the delegate,
  ``USER_EMAIL`` / ``OWNER_EMAIL`` / ``user_email`` / ``mailbox`` the mailbox (else the actor); an
  event named in ``[google] delegate_removed_events`` is the revocation, read the same way;
* admin ``*_SETTING`` events: a SettingChange of ``SETTING_NAME`` to ``NEW_VALUE`` on the org unit,
  group or domain; ``user_accounts`` ``email_forwarding_*``: a SettingChange of the actor's
  forwarding address;
* Gmail ``delivery`` with ``event_info.mail_event_type`` 1 (message sent): a MailSend. The
  ``message_info`` sub-parameter names (``source.address``, ``subject``, ``rfc2822_message_id``,
  ``destination``) come from public parsers, not from Google's reference: read defensively.
"""

from __future__ import annotations

from typing import Any

from delegatewatch import config
from delegatewatch.events.model import (
    Action,
    Event,
    MailSend,
    PermissionChange,
    Scope,
    SettingChange,
)
from delegatewatch.events.principals import Kind, Principal, Resolver
from delegatewatch.records import Record
from delegatewatch.records.times import parse_time

#: OAuth scopes that open Gmail mailboxes or their sharing settings (delegates, forwarding).
GMAIL_SCOPES = ("https://mail.google.com", "auth/gmail.readonly", "auth/gmail.modify", "auth/gmail.metadata",
                "auth/gmail.settings.sharing", "auth/gmail.settings.basic", "auth/gmail.send",
                "auth/gmail.compose", "auth/gmail.insert")

_DWD_GRANT = {"AUTHORIZE_API_CLIENT_ACCESS": Action.GRANT, "REMOVE_API_CLIENT_ACCESS": Action.REVOKE}
_ROLE = {"ASSIGN_ROLE": Action.GRANT, "GRANT_DELEGATED_ADMIN_PRIVILEGES": Action.GRANT,
         "GRANT_ADMIN_PRIVILEGE": Action.GRANT, "UNASSIGN_ROLE": Action.REVOKE,
         "REVOKE_DELEGATED_ADMIN_PRIVILEGES": Action.REVOKE, "REVOKE_ADMIN_PRIVILEGE": Action.REVOKE}
_TOKEN = {"authorize": Action.GRANT, "revoke": Action.REVOKE}
_MAILBOX_PARAMS = ("USER_EMAIL", "OWNER_EMAIL", "user_email", "owner_email", "mailbox", "MAILBOX")


def split_scopes(value: Any) -> list[str]:
    if isinstance(value, list):
        return [str(v).strip() for v in value if str(v).strip()]
    if not isinstance(value, str):
        return []
    return [s.strip() for s in value.replace(",", " ").split() if s.strip()]


def gmail_scopes(scopes: list[str]) -> list[str]:
    return [s for s in scopes if any(g in s.lower() for g in GMAIL_SCOPES)]


def delegate_added_events() -> frozenset[str]:
    """Event names configured as "a Gmail delegate was added" (upper-cased)."""
    return frozenset(n.strip().upper() for n in config.current().google.delegate_added_events if n.strip())


def delegate_removed_events() -> frozenset[str]:
    """Event names configured as "a Gmail delegate was removed" (upper-cased)."""
    return frozenset(n.strip().upper() for n in config.current().google.delegate_removed_events if n.strip())


def _param(params: dict[str, Any], *names: str) -> str | None:
    for n in names:
        v = params.get(n)
        if isinstance(v, str) and v.strip():
            return v.strip()
    return None


def _nested(params: Any, *path: str) -> Any:
    v = params
    for part in path:
        if not isinstance(v, dict):
            return None
        v = v.get(part)
    return v


class Mapper:
    def __init__(self, resolver: Resolver) -> None:
        self.resolver = resolver

    def observe(self, data: dict[str, Any]) -> None:
        domain = data.get("ownerDomain")
        if isinstance(domain, str) and domain and "." in domain:
            self.resolver.observe_org_domain(domain)

    def _actor(self, data: dict[str, Any]) -> Principal | None:
        actor = data.get("actor") if isinstance(data.get("actor"), dict) else {}
        email = actor.get("email")
        if email:
            return self.resolver.resolve(email)
        key = actor.get("key") or actor.get("profileId")
        if key:
            return Principal(str(key), Kind.SYSTEM if actor.get("callerType") == "KEY" else Kind.UNKNOWN)
        return None

    def events(self, record: Record) -> list[Event]:
        data = record.data
        ev = data.get("events") if isinstance(data.get("events"), dict) else {}
        params = ev.get("parameters") if isinstance(ev.get("parameters"), dict) else {}
        name = str(ev.get("name") or "")
        upper = name.upper()
        ident = data.get("id") if isinstance(data.get("id"), dict) else {}
        app = str(ident.get("applicationName") or "").lower()
        when = parse_time(ident.get("time")) or parse_time(data.get("CreationTime"))
        base: dict[str, Any] = {"time": when, "operation": name, "actor": self._actor(data), "record": record,
                                "client_ip": data.get("ipAddress") or None}
        if upper in delegate_added_events():
            return self._delegate(params, base, Action.GRANT)
        if upper in delegate_removed_events():
            return self._delegate(params, base, Action.REVOKE)
        if upper in _DWD_GRANT:
            client = _param(params, "API_CLIENT_NAME", "CLIENT_ID", "OAUTH2_SERVICE_NAME")
            scopes = split_scopes(params.get("API_SCOPES") or params.get("SCOPES"))
            grantee = Principal(client, Kind.UNKNOWN, display_name="API client (domain-wide delegation)") if client else None
            return [PermissionChange(**base, action=_DWD_GRANT[upper], scope=Scope.APP, grantee=grantee,
                                     rights=frozenset(scopes), target="all users (domain-wide delegation)")]
        if app == "token" and name.lower() in _TOKEN:
            client = _param(params, "client_id")
            app_name = _param(params, "app_name")
            scopes = split_scopes(params.get("scope"))
            grantee = Principal(client or app_name or "?", Kind.UNKNOWN, display_name=app_name)
            return [PermissionChange(**base, action=_TOKEN[name.lower()], scope=Scope.APP, grantee=grantee,
                                     mailbox=base["actor"], rights=frozenset(scopes), target=app_name or client)]
        if upper in _ROLE:
            role = _param(params, "ROLE_NAME") or ("Super Admin" if "ADMIN_PRIVILEGE" in upper else None)
            grantee = self.resolver.resolve(_param(params, "USER_EMAIL", "GROUP_EMAIL"))
            return [PermissionChange(**base, action=_ROLE[upper], scope=Scope.ROLE_GROUP, grantee=grantee,
                                     rights=frozenset([role] if role else []), target=role)]
        if upper.endswith("_SETTING") and "SETTING_NAME" in params:
            target = self._setting_target(params, data)
            value = _param(params, "NEW_VALUE")
            if value is None and upper.startswith("DELETE"):
                value = "(deleted)"
            return [SettingChange(**base, target=target, setting=str(params.get("SETTING_NAME")), value=value)]
        if app in ("user_accounts", "login") and name.lower().startswith("email_forwarding"):
            dest = _param(params, "email_forwarding_destination_address")
            return [SettingChange(**base, target=base["actor"], setting="email_forwarding", value=dest)]
        if app == "gmail" and name.lower() == "delivery":
            return self._delivery(params, base)
        return []

    def _setting_target(self, params: dict[str, Any], data: dict[str, Any]) -> Principal:
        group = _param(params, "GROUP_EMAIL")
        if group:
            return Principal(group, Kind.GROUP)
        ou = _param(params, "ORG_UNIT_NAME")
        if ou:
            return Principal(f"org unit {ou}", Kind.GROUP, display_name=ou)
        domain = _param(params, "DOMAIN_NAME") or data.get("ownerDomain") or "the organisation"
        return Principal(str(domain), Kind.GROUP)

    def _delegate(self, params: dict[str, Any], base: dict[str, Any], action: Action) -> list[Event]:
        delegate = None
        for key, value in params.items():
            if "delegate" in key.lower() and isinstance(value, str) and value.strip():
                delegate = value.strip()
                break
        owner = _param(params, *_MAILBOX_PARAMS)
        mailbox = self.resolver.resolve(owner) if owner else base["actor"]
        return [PermissionChange(**base, action=action, scope=Scope.DELEGATE, mailbox=mailbox,
                                 grantee=self.resolver.resolve(delegate), rights=frozenset({"Delegate"}))]

    def _delivery(self, params: dict[str, Any], base: dict[str, Any]) -> list[Event]:
        kind = _nested(params, "event_info", "mail_event_type")
        if str(kind).strip() != "1":
            return []
        msg = params.get("message_info") if isinstance(params.get("message_info"), dict) else params.get("message")
        msg = msg if isinstance(msg, dict) else {}
        source = msg.get("source") if isinstance(msg.get("source"), dict) else {}
        sender = source.get("from_header_address") or source.get("address") or msg.get("source_address")
        mailbox = self.resolver.resolve(sender) if isinstance(sender, str) and sender else base["actor"]
        dest = msg.get("destination")
        recipients = (len(dest) if isinstance(dest, list) else
                      len([d for d in str(dest).split(",") if d.strip()]) if isinstance(dest, str) and dest else None)
        success = _nested(params, "event_info", "success")
        message_id = msg.get("rfc2822_message_id") or msg.get("message_id")
        return [MailSend(**{**base, "succeeded": str(success).lower() != "false"}, mailbox=mailbox,
                         subject=msg.get("subject") if isinstance(msg.get("subject"), str) else None,
                         message_id=message_id if isinstance(message_id, str) else None,
                         recipients=recipients)]
