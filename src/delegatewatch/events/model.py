"""The typed events every source maps into. Rules read vendor fields; everything after the
rules (findings, incidents, the ledger) reads these."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import Enum

from delegatewatch.events.principals import Principal
from delegatewatch.records import Record


class Action(str, Enum):
    GRANT = "grant"
    MODIFY = "modify"
    REVOKE = "revoke"
    DENY = "deny"  # an explicit deny entry (Add-MailboxPermission -Deny)


class Scope(str, Enum):
    MAILBOX = "mailbox"  # Add-MailboxPermission rights on the whole mailbox
    FOLDER = "folder"
    SEND_AS = "send_as"
    SEND_ON_BEHALF = "send_on_behalf"
    DELEGATE = "delegate"  # Outlook/Gmail delegate
    IMPERSONATION = "impersonation"  # ApplicationImpersonation, RBAC for Applications
    APP = "app"  # OAuth app permissions (Mail.*, full_access_as_app)
    ROLE_GROUP = "role_group"  # membership of an Exchange role group
    AUDIT_BYPASS = "audit_bypass"


@dataclass(slots=True, kw_only=True)
class Event:
    time: datetime | None
    operation: str
    actor: Principal | None
    record: Record
    session_id: str | None = None
    client_ip: str | None = None
    succeeded: bool = True

    @property
    def kind(self) -> str:
        return type(self).__name__


@dataclass(slots=True, kw_only=True)
class PermissionChange(Event):
    action: Action
    scope: Scope
    mailbox: Principal | None = None
    grantee: Principal | None = None
    rights: frozenset[str] = frozenset()
    folder: str | None = None  # folder path for folder scope ("\\", "\\Inbox", …)
    target: str | None = None  # what else was changed (role group name, app, role)


@dataclass(slots=True, kw_only=True)
class RuleChange(Event):
    mailbox: Principal | None
    rule_name: str | None = None
    forwards_to: list[str] = field(default_factory=list)
    deletes: bool = False
    marks_read: bool = False
    moves_to: str | None = None


@dataclass(slots=True, kw_only=True)
class SettingChange(Event):
    target: Principal | None
    setting: str
    value: str | None = None


@dataclass(slots=True, kw_only=True)
class MailSend(Event):
    mailbox: Principal | None  # the mailbox the mail was sent from (the owner for SendAs)
    subject: str | None = None
    message_id: str | None = None
    recipients: int | None = None
    as_delegate: bool = False  # SendAs / SendOnBehalf


@dataclass(slots=True, kw_only=True)
class MailboxAccess(Event):
    mailbox: Principal | None
    logon_type: int | None = None
    non_owner: bool = False
    items: int | None = None
