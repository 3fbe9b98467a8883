"""Rights vocabulary, principal resolution and the UAL → event mapping."""

from __future__ import annotations

import pytest

from delegatewatch.events import rights as R
from delegatewatch.events.model import Action, PermissionChange, Scope
from delegatewatch.events.principals import Directory, DirectoryUser, Kind, Resolver
from delegatewatch.events.ual import UalMapper, client_ip, split_folder_identity, split_identities
from delegatewatch.records import Record
from tests.conftest import ual


# -- rights -----------------------------------------------------------------------------------
@pytest.mark.parametrize("value,expected", [
    ("Reviewer", {R.READ_ITEMS, R.FOLDER_VISIBLE}),
    ("{Editor}", R.ROLES["Editor"]),
    ("ReadItems, FolderVisible", {R.READ_ITEMS, R.FOLDER_VISIBLE}),
    ("None", set()),
    ("", set()),
    ("DeleteItem, ReadPermission, FullAccess", {"DeleteItem", "ReadPermission", "FullAccess"}),
    ("AvailabilityOnly", {R.FREE_BUSY_SIMPLE}),
    ("LimitedDetails", {R.FREE_BUSY_SIMPLE, R.FREE_BUSY_DETAILED}),
    ("SomethingNew", {"SomethingNew"}),
])
def test_normalise_roles_and_rights(value, expected):
    assert R.normalise(value) == frozenset(expected)


def test_member_rights_names_map_to_the_same_vocabulary():
    owner = "ReadAny, Create, EditOwned, DeleteOwned, EditAny, DeleteAny, CreateSubfolder, Owner, Contact, Visible"
    assert R.normalise(owner, audit_names=True) == R.ROLES["Owner"]
    assert R.role_of(R.normalise("ReadAny, Visible", audit_names=True)) == "Reviewer"
    # "Owner" alone in MemberRights is the single FolderOwner right, not the Owner role.
    assert R.normalise("Owner", audit_names=True) == {R.FOLDER_OWNER}
    assert R.normalise("Owner") == R.ROLES["Owner"]


def test_questions_asked_once():
    assert R.can_read_items(R.normalise("Editor")) and R.can_read_items(R.normalise("PublishingEditor"))
    assert not R.can_read_items(R.normalise("Contributor"))
    assert R.can_read_items(R.normalise("FullAccess"))
    assert R.free_busy_only(R.normalise("LimitedDetails")) and not R.free_busy_only(R.normalise("Reviewer"))
    assert R.is_none(R.normalise("None"))
    assert R.describe(R.normalise("Reviewer")) == "Reviewer (FolderVisible, ReadItems)"


# -- principals -------------------------------------------------------------------------------
@pytest.fixture
def directory():
    d = Directory()
    d.add(DirectoryUser("51eb55af-6419-4551-a56f-64f63a068fca", "lidia@contoso.com", "Lidia Holloway", "Member", True,
                        "lidia@contoso.com"))
    d.add(DirectoryUser("7702c034-4540-4862-88f4-95a7a224bdb0", "pat_fabrikam.com#EXT#@contoso.onmicrosoft.com",
                        "Pat Ortiz", "Guest", True, "pat@fabrikam.com"))
    return d


@pytest.mark.parametrize("raw,kind", [
    ("Default", Kind.DEFAULT), ("Everyone", Kind.DEFAULT), ("S-1-1-0", Kind.DEFAULT), ("Anonymous", Kind.ANONYMOUS),
    ("NT AUTHORITY\\SELF", Kind.SELF), ("NT AUTHORITY\\SYSTEM (Microsoft.Exchange.ServiceHost)", Kind.SYSTEM),
    ("S-1-5-18", Kind.SYSTEM), ("Member@local", Kind.GROUP),
    ("NAMPR10A011.PROD.OUTLOOK.COM/Microsoft Exchange Hosted Organizations/x.onmicrosoft.com/Discovery Management", Kind.GROUP),
])
def test_special_principals(raw, kind):
    assert Resolver().resolve(raw).kind is kind


def test_directory_resolves_guid_alias_display_name_and_marks_guests(directory):
    r = Resolver(directory)
    p = r.resolve("51eb55af-6419-4551-a56f-64f63a068fca")
    assert (p.kind, p.upn, p.display_name) == (Kind.USER, "lidia@contoso.com", "Lidia Holloway")
    assert p.label() == "lidia@contoso.com (Lidia Holloway) [51eb55af-6419-4551-a56f-64f63a068fca]"
    assert r.resolve("lidia").upn == "lidia@contoso.com"
    assert r.resolve("Lidia Holloway").upn == "lidia@contoso.com"
    assert r.resolve("{51EB55AF-6419-4551-A56F-64F63A068FCA}").upn == "lidia@contoso.com"
    assert r.resolve("7702c034-4540-4862-88f4-95a7a224bdb0").kind is Kind.GUEST
    assert r.resolve("eve@gmail.com").kind is Kind.EXTERNAL
    assert r.resolve("bob@contoso.com").kind is Kind.USER
    assert r.resolve("unknown#EXT#@contoso.onmicrosoft.com").kind is Kind.GUEST


def test_unresolved_guid_stays_raw():
    p = Resolver().resolve("288fc35b-236b-4b73-868a-11f9d367bb13")
    assert p.kind is Kind.UNKNOWN and p.name == "288fc35b-236b-4b73-868a-11f9d367bb13"


def test_directory_file_errors_are_clear(tmp_path):
    bad = tmp_path / "users.csv"
    bad.write_text("name,mail\nx,y\n")
    with pytest.raises(ValueError, match="userPrincipalName"):
        Directory.load(str(bad))


# -- helpers ----------------------------------------------------------------------------------
@pytest.mark.parametrize("raw,ip", [
    ("185.73.124.135:19823", "185.73.124.135"), ("[2001:db8::abcd]:12345", "2001:db8::abcd"),
    ("[2001:db8::abcd]", "2001:db8::abcd"), ("::ffff:10.11.12.13", "10.11.12.13"), ("::1", "::1"),
    ("10.1.2.3", "10.1.2.3"), ("", None),
])
def test_client_ip(raw, ip):
    assert client_ip({"ClientIP": raw}) == ip


def test_split_identities():
    assert split_identities("a@x.com,b@x.com") == (["a@x.com", "b@x.com"], [])
    assert split_identities("a@x.com; b@x.com") == (["a@x.com", "b@x.com"], [])
    assert split_identities('@{Add="a@x.com","b@x.com"; Remove="c@x.com"}') == (["a@x.com", "b@x.com"], ["c@x.com"])
    assert split_identities("$null") == ([], [])


def test_split_folder_identity():
    assert split_folder_identity("ceo@contoso.com:\\") == ("ceo@contoso.com", "\\")
    assert split_folder_identity("John:\\Inbox\\Reports") == ("John", "\\Inbox\\Reports")
    assert split_folder_identity("ceo@contoso.com") == ("ceo@contoso.com", None)


# -- mapping ----------------------------------------------------------------------------------
def events(record: dict, directory=None):
    return UalMapper(Resolver(directory)).events(Record(record, "f", 1, 1, "ndjson"))


def test_full_access_grant_event(directory):
    [e] = events(ual(Identity="ceo@contoso.com", User="51eb55af-6419-4551-a56f-64f63a068fca",
                     AccessRights="DeleteItem, FullAccess"), directory)
    assert isinstance(e, PermissionChange)
    assert (e.action, e.scope) == (Action.GRANT, Scope.MAILBOX)
    assert e.grantee.upn == "lidia@contoso.com" and e.rights == {"DeleteItem", "FullAccess"}
    assert e.client_ip == "154.66.247.79" and e.time.isoformat() == "2024-02-04T23:19:46+00:00"


def test_send_on_behalf_add_and_remove_events():
    evs = events(ual("Set-Mailbox", Identity="ceo", GrantSendOnBehalfTo='@{Add="a@x.com"; Remove="b@x.com"}'))
    assert [(e.action, e.grantee.raw) for e in evs] == [(Action.GRANT, "a@x.com"), (Action.REVOKE, "b@x.com")]


def test_folder_cmdlet_and_audit_events_agree():
    [cmd] = events(ual("Add-MailboxFolderPermission", Identity="ceo@contoso.com:\\Inbox", User="Default",
                       AccessRights="Reviewer"))
    audit = {"Id": "x", "Operation": "ModifyFolderPermissions", "CreationTime": "2024-01-01T00:00:00",
             "UserId": "ceo@contoso.com", "MailboxOwnerUPN": "ceo@contoso.com",
             "Item": {"ParentFolder": {"Path": "\\Inbox", "MemberUpn": "Everyone", "MemberRights": "ReadAny, Visible"}}}
    [aud] = events(audit)
    assert cmd.rights == aud.rights == R.ROLES["Reviewer"]
    assert cmd.grantee.kind is aud.grantee.kind is Kind.DEFAULT
    assert cmd.folder == aud.folder == "\\Inbox"
    assert cmd.action is Action.GRANT and aud.action is Action.MODIFY


def test_set_folder_permission_to_none_is_a_revocation():
    [e] = events(ual("Set-MailboxFolderPermission", Identity="ceo:\\Inbox", User="Default", AccessRights="None"))
    assert e.action is Action.REVOKE


def test_new_role_group_members_each_get_impersonation():
    evs = events(ual("New-RoleGroup", Name="X", Roles="ApplicationImpersonation, Mail Recipients", Members="a,b"))
    assert [(e.scope, e.grantee.raw, e.rights) for e in evs] == [
        (Scope.IMPERSONATION, "a", {"ApplicationImpersonation"}), (Scope.IMPERSONATION, "b", {"ApplicationImpersonation"})]


def test_app_consent_scopes():
    rec = {"Id": "x", "Operation": "Add delegated permission grant.", "CreationTime": "2024-01-01T00:00:00",
           "ModifiedProperties": [{"Name": "DelegatedPermissionGrant.Scope", "NewValue": " User.Read Mail.ReadWrite",
                                   "OldValue": ""}], "Target": [{"ID": "Mail Archiver", "Type": 1}]}
    [e] = events(rec)
    assert e.scope is Scope.APP and e.rights == {"Mail.ReadWrite"} and e.target == "Mail Archiver"
