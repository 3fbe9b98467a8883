"""Microsoft 365 unified audit records → typed events.

One small function per family of operations; :func:`events_from` picks by ``Operation``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from typing import Any

from delegatewatch.events import rights as R
from delegatewatch.events.model import (
    Action, Event, MailboxAccess, MailSend, PermissionChange, RuleChange, Scope, SettingChange,
)
from delegatewatch.events.principals import Resolver
from delegatewatch.records import Record
from delegatewatch.records.flatten import parameters
from delegatewatch.records.times import parse_time

_IP_PORT = re.compile(r"^\[?([0-9a-fA-F:.]+?)\]?(?::(\d+))?$")

#: Roles that let an account or app open any mailbox (Exchange RBAC; RBAC for Applications).
IMPERSONATION_ROLES = ("applicationimpersonation", "application mail.", "application exchangewebservices",
                       "application ews.accessasapp", "application mailboxsettings", "application calendars.",
                       "application contacts.")
#: OAuth scopes and app roles that open mailboxes.
MAIL_SCOPES = re.compile(r"\b(Mail\.(?:Read|ReadWrite|Send|ReadBasic)(?:\.All|\.Shared)?|full_access_as_app|"
                         r"EWS\.AccessAsUser\.All|EWS\.AccessAsApp|MailboxSettings\.ReadWrite|IMAP\.AccessAsApp|"
                         r"IMAP\.AccessAsUser\.All|POP\.AccessAsApp)\b")
#: App-role ids (EntitlementId) of mailbox permissions, as Update application. records carry them.
MAIL_APP_ROLE_IDS = {
    "dc890d15-9560-4a4c-9b7f-a736ec74ec40": "full_access_as_app",
    "810c84a8-4a9e-49e6-bf7d-12d183f40d01": "Mail.Read",
    "e2a3a72e-5f79-4c64-b1b1-878b674786c9": "Mail.ReadWrite",
    "b633e1c5-b582-4048-a93e-9f11b44c7e96": "Mail.Send",
    "024d486e-b451-40bb-833d-3e66d98c5c73": "Mail.ReadWrite",  # delegated scope id seen in the OTRF sample
}


def client_ip(record: dict[str, Any]) -> str | None:
    """``185.73.124.135:19823``, ``[2001:db8::1]:443``, ``::ffff:10.1.2.3`` → the bare address."""
    raw = record.get("ClientIP") or record.get("ClientIPAddress") or record.get("ActorIpAddress")
    if not isinstance(raw, str) or not raw.strip():
        return None
    s = raw.strip()
    if s.startswith("["):
        return s[1:].split("]", 1)[0]
    if s.count(":") == 1:  # IPv4 with port
        return s.split(":", 1)[0]
    if s.lower().startswith("::ffff:") and "." in s:
        return s[7:]
    return s


def org_domains(data: dict[str, Any]) -> Iterator[str]:
    """The organisation's domains a record shows: the tenant name, its own users' domains (regular
    and admin actors) and the mailbox owner's."""
    org = data.get("OrganizationName")
    if isinstance(org, str):
        yield org
    user = data.get("UserId")
    if data.get("UserType") in (0, 2) and isinstance(user, str) and "@" in user and "#ext#" not in user.lower():
        yield user.rsplit("@", 1)[1]
    owner = data.get("MailboxOwnerUPN")
    if isinstance(owner, str) and "@" in owner:
        yield owner.rsplit("@", 1)[1]


def succeeded(record: dict[str, Any]) -> bool:
    status = str(record.get("ResultStatus", "")).strip().lower()
    return status in ("", "true", "succeeded", "success", "partiallysucceeded")


def split_identities(value: str | None) -> tuple[list[str], list[str]]:
    """(added, removed) from a multi-valued recipient parameter: ``a,b``, ``a;b``, or the
    PowerShell hashtable ``@{Add="a","b"; Remove="c"}`` (its audit rendering is undocumented,
    so both ``Add=`` and ``Add:`` spellings are accepted)."""
    if not value or value.strip() in ("", "$null", "$null;"):
        return [], []
    text = value.strip()
    if re.search(r"\b(add|remove)\s*[=:]", text, re.IGNORECASE):
        added: list[str] = []
        removed: list[str] = []
        for key, vals in re.findall(r"(add|remove)\s*[=:]\s*([^;}]*)", text, re.IGNORECASE):
            names = [v.strip().strip("\"'") for v in re.split(r"[,]", vals) if v.strip().strip("\"'")]
            (added if key.lower() == "add" else removed).extend(names)
        return added, removed
    return [v.strip().strip("\"'") for v in re.split(r"[,;]", text) if v.strip().strip("\"'")], []


def split_folder_identity(identity: str | None) -> tuple[str | None, str | None]:
    """``ceo@contoso.com:\\Inbox`` → (``ceo@contoso.com``, ``\\Inbox``); root is ``\\``."""
    if not identity:
        return None, None
    if ":\\" in identity:
        mbx, folder = identity.split(":\\", 1)
        return mbx, "\\" + folder.strip("\\")
    if ":" in identity and not identity.lower().startswith("smtp:"):
        mbx, folder = identity.rsplit(":", 1)
        return mbx, "\\" + folder.strip("\\/")
    return identity, None


class UalMapper:
    def __init__(self, resolver: Resolver) -> None:
        self.resolver = resolver
        self._by_op: dict[str, Callable[[Record, dict[str, Any], dict[str, str], dict[str, Any]], list[Event]]] = {
            "add-mailboxpermission": self._mailbox_permission,
            "remove-mailboxpermission": self._mailbox_permission,
            "add-recipientpermission": self._recipient_permission,
            "remove-recipientpermission": self._recipient_permission,
            "add-adpermission": self._ad_permission,
            "set-mailbox": self._set_mailbox,
            "add-mailboxfolderpermission": self._folder_cmdlet,
            "set-mailboxfolderpermission": self._folder_cmdlet,
            "remove-mailboxfolderpermission": self._folder_cmdlet,
            "addfolderpermissions": self._folder_audit,
            "modifyfolderpermissions": self._folder_audit,
            "removefolderpermissions": self._folder_audit,
            "new-managementroleassignment": self._role_assignment,
            "new-rolegroup": self._role_group,
            "add-rolegroupmember": self._role_group_member,
            "update-rolegroupmember": self._role_group_member,
            "set-mailboxauditbypassassociation": self._audit_bypass,
            "new-inboxrule": self._inbox_rule,
            "set-inboxrule": self._inbox_rule,
            "consent to application.": self._app_permission,
            "add delegated permission grant.": self._app_permission,
            "add app role assignment to service principal.": self._app_permission,
            "update application.": self._app_permission,
            "updateinboxrules": self._update_inbox_rules,
            "send": self._send,
            "sendas": self._send,
            "sendonbehalf": self._send,
            "mailitemsaccessed": self._access,
            "mailboxlogin": self._access,
        }

    def observe(self, data: dict[str, Any]) -> None:
        """Learn the organisation's domains: the tenant name and the domains of its own users
        (regular and admin actors), so grantees elsewhere can be called external without a
        directory file."""
        for domain in org_domains(data):
            self.resolver.observe_org_domain(domain)

    def events(self, record: Record) -> list[Event]:
        data = record.data
        op = str(data.get("Operation", ""))
        handler = self._by_op.get(op.lower())
        if handler is None:
            return []
        base = {
            "time": parse_time(data.get("CreationTime")),
            "operation": op,
            "actor": self.resolver.resolve(data.get("UserId")),
            "record": record,
            "session_id": data.get("SessionId") or (data.get("AppAccessContext") or {}).get("AADSessionId"),
            "client_ip": client_ip(data),
            "succeeded": succeeded(data),
        }
        return handler(record, data, parameters(data), base)

    # -- permission grants ------------------------------------------------------------------
    def _action(self, op: str, *, remove: bool = False) -> Action:
        low = op.lower()
        if remove or low.startswith("remove"):
            return Action.REVOKE
        return Action.MODIFY if low.startswith(("set-", "modify", "update")) else Action.GRANT

    def _mailbox_permission(self, rec, data, p, base):
        action = self._action(base["operation"])
        if p.get("deny", "").lower() == "true" and action is Action.GRANT:
            action = Action.DENY
        return [PermissionChange(**base, action=action, scope=Scope.MAILBOX,
                                 mailbox=self.resolver.resolve(p.get("identity") or data.get("ObjectId")),
                                 grantee=self.resolver.resolve(p.get("user")),
                                 rights=R.normalise(p.get("accessrights")))]

    def _recipient_permission(self, rec, data, p, base):
        return [PermissionChange(**base, action=self._action(base["operation"]), scope=Scope.SEND_AS,
                                 mailbox=self.resolver.resolve(p.get("identity") or data.get("ObjectId")),
                                 grantee=self.resolver.resolve(p.get("trustee")),
                                 rights=R.normalise(p.get("accessrights") or R.SEND_AS))]

    def _ad_permission(self, rec, data, p, base):
        ext = (p.get("extendedrights") or "").lower().replace("-", " ")
        if "send as" not in ext:
            return []
        return [PermissionChange(**base, action=self._action(base["operation"]), scope=Scope.SEND_AS,
                                 mailbox=self.resolver.resolve(p.get("identity")),
                                 grantee=self.resolver.resolve(p.get("user")), rights=frozenset({R.SEND_AS}))]

    def _set_mailbox(self, rec, data, p, base):
        out: list[Event] = []
        mailbox = self.resolver.resolve(p.get("identity") or data.get("ObjectId"))
        if "grantsendonbehalfto" in p:
            added, removed = split_identities(p["grantsendonbehalfto"])
            for who in added:
                out.append(PermissionChange(**base, action=Action.GRANT, scope=Scope.SEND_ON_BEHALF, mailbox=mailbox,
                                            grantee=self.resolver.resolve(who), rights=frozenset({R.SEND_ON_BEHALF})))
            for who in removed:
                out.append(PermissionChange(**base, action=Action.REVOKE, scope=Scope.SEND_ON_BEHALF, mailbox=mailbox,
                                            grantee=self.resolver.resolve(who), rights=frozenset({R.SEND_ON_BEHALF})))
            if not added and not removed:
                out.append(PermissionChange(**base, action=Action.REVOKE, scope=Scope.SEND_ON_BEHALF, mailbox=mailbox,
                                            rights=frozenset({R.SEND_ON_BEHALF})))
        for key in ("forwardingsmtpaddress", "forwardingaddress"):
            if p.get(key):
                out.append(SettingChange(**base, target=mailbox, setting=key, value=p[key]))
        return out

    def _folder_cmdlet(self, rec, data, p, base):
        mbx, folder = split_folder_identity(p.get("identity"))
        rights = R.normalise(p.get("accessrights"))
        action = self._action(base["operation"])
        if action is Action.MODIFY and not rights:
            action = Action.REVOKE  # Set-… -AccessRights None takes everything away
        return [PermissionChange(**base, action=action, scope=Scope.FOLDER, mailbox=self.resolver.resolve(mbx),
                                 grantee=self.resolver.resolve(p.get("user")), rights=rights, folder=folder)]

    def _folder_audit(self, rec, data, p, base):
        item = data.get("Item") or {}
        parent = item.get("ParentFolder") or {}
        rights = R.normalise(parent.get("MemberRights"), audit_names=True)
        action = self._action(base["operation"])
        if action is Action.MODIFY and not rights:
            action = Action.REVOKE
        folder = parent.get("Path") or parent.get("Name")
        return [PermissionChange(**base, action=action, scope=Scope.FOLDER,
                                 mailbox=self.resolver.resolve(data.get("MailboxOwnerUPN")),
                                 grantee=self.resolver.resolve(parent.get("MemberUpn") or parent.get("MemberSid")),
                                 rights=rights, folder=folder)]

    def _role_assignment(self, rec, data, p, base):
        role = p.get("role", "")
        if not any(r in role.lower() for r in IMPERSONATION_ROLES):
            return []
        who = p.get("user") or p.get("securitygroup") or p.get("app") or p.get("policy")
        return [PermissionChange(**base, action=Action.GRANT, scope=Scope.IMPERSONATION,
                                 grantee=self.resolver.resolve(who), rights=frozenset({role}),
                                 target=p.get("customresourcescope") or p.get("customrecipientwritescope") or "organization")]

    def _role_group(self, rec, data, p, base):
        roles = R.tokens(p.get("roles"))
        impersonation = [r for r in roles if any(x in r.lower() for x in IMPERSONATION_ROLES)]
        name = p.get("name") or data.get("ObjectId")
        members, _ = split_identities(p.get("members"))
        scope = Scope.IMPERSONATION if impersonation else Scope.ROLE_GROUP
        rights = frozenset(impersonation or roles)
        return [PermissionChange(**base, action=Action.GRANT, scope=scope, grantee=self.resolver.resolve(m),
                                 rights=rights, target=name) for m in members] or [
            PermissionChange(**base, action=Action.GRANT, scope=scope, rights=rights, target=name)]

    def _role_group_member(self, rec, data, p, base):
        members, removed = split_identities(p.get("member") or p.get("members"))
        group = p.get("identity") or data.get("ObjectId")
        out: list[Event] = [PermissionChange(**base, action=Action.GRANT, scope=Scope.ROLE_GROUP,
                                             grantee=self.resolver.resolve(m), target=group) for m in members]
        out += [PermissionChange(**base, action=Action.REVOKE, scope=Scope.ROLE_GROUP,
                                 grantee=self.resolver.resolve(m), target=group) for m in removed]
        return out

    def _audit_bypass(self, rec, data, p, base):
        on = p.get("auditbypassenabled", "").lower() == "true"
        return [PermissionChange(**base, action=Action.GRANT if on else Action.REVOKE, scope=Scope.AUDIT_BYPASS,
                                 grantee=self.resolver.resolve(p.get("identity") or data.get("ObjectId")),
                                 rights=frozenset({"AuditBypass"}))]

    def _app_permission(self, rec, data, p, base):
        text = " ".join(str(m.get("NewValue", "")) for m in data.get("ModifiedProperties") or [] if isinstance(m, dict))
        scopes = set(MAIL_SCOPES.findall(text))
        scopes |= {name for rid, name in MAIL_APP_ROLE_IDS.items() if rid in text.lower()}
        app = None
        for t in data.get("Target") or []:
            if isinstance(t, dict) and t.get("Type") in (1, 2, "1", "2") and t.get("ID") and not GUIDISH.match(str(t["ID"])):
                app = t["ID"]
                break
        app = app or data.get("ObjectId")
        return [PermissionChange(**base, action=Action.GRANT, scope=Scope.APP, grantee=self.resolver.resolve(app),
                                 rights=frozenset(scopes), target=app)]

    # -- other activity ---------------------------------------------------------------------
    def _inbox_rule(self, rec, data, p, base):
        mailbox = self.resolver.resolve(p.get("mailbox") or (p.get("identity", "").split("\\")[0] or None)
                                        or data.get("UserId"))
        forwards = [v for k in ("forwardto", "forwardasattachmentto", "redirectto") for v in split_identities(p.get(k))[0]]
        return [RuleChange(**base, mailbox=mailbox, rule_name=p.get("name"), forwards_to=forwards,
                           deletes=p.get("deletemessage", "").lower() == "true" or p.get("softdeletemessage", "").lower() == "true",
                           marks_read=p.get("markasread", "").lower() == "true", moves_to=p.get("movetofolder"))]

    def _update_inbox_rules(self, rec, data, p, base):
        # Rules made in Outlook: the actions come as text in OperationProperties (shape not documented
        # verbatim; addresses are taken from wherever they appear in the forwarding actions).
        props = {str(i.get("Name")): str(i.get("Value", "")) for i in data.get("OperationProperties") or []
                 if isinstance(i, dict)}
        text = " ".join(props.values())
        forwards = sorted(set(re.findall(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+", text))) if re.search(
            r"(Forward|Redirect)\w*Action", text) else []
        return [RuleChange(**base, mailbox=self.resolver.resolve(data.get("MailboxOwnerUPN") or data.get("UserId")),
                           rule_name=props.get("RuleName"), forwards_to=forwards,
                           deletes="DeleteAction" in text, marks_read="MarkAsReadAction" in text)]

    def _send(self, rec, data, p, base):
        item = data.get("Item") or {}
        owner = data.get("SendAsUserSmtp") or data.get("SendOnBehalfOfUserSmtp") or data.get("MailboxOwnerUPN")
        return [MailSend(**base, mailbox=self.resolver.resolve(owner), subject=item.get("Subject"),
                         message_id=item.get("InternetMessageId"), recipients=data.get("recipientCount"),
                         as_delegate=base["operation"].lower() != "send")]

    def _access(self, rec, data, p, base):
        owner = data.get("MailboxOwnerUPN")
        logon = data.get("LogonType")
        non_owner = (isinstance(logon, int) and logon in (1, 2, 6)) or (
            bool(owner) and str(owner).lower() != str(data.get("UserId", "")).lower())
        return [MailboxAccess(**base, mailbox=self.resolver.resolve(owner), logon_type=logon if isinstance(logon, int) else None,
                              non_owner=non_owner, items=data.get("OperationCount"))]


GUIDISH = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-")

__all__ = ["UalMapper", "client_ip", "org_domains", "split_folder_identity", "split_identities"]
