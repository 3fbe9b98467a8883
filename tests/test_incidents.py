"""Grant → use incidents (findings/incidents.py, analytics/incident_feed.py): the real reset-then-grant
sample, each kind of use and precursor, identity correlation, windows, allow-lists, the prefilter's
LogonType literals in every spelling the readers see, and the outputs."""

from __future__ import annotations

import contextlib
import csv
import io
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner

from delegatewatch import config
from delegatewatch.analytics import incident_feed, m365_feed_needs, m365_feeds
from delegatewatch.cli import main
from delegatewatch.engine.hunt import hunt
from delegatewatch.events.principals import Directory, DirectoryUser, Resolver
from delegatewatch.findings.identities import Identities, normalise
from tests.conftest import compact, ual

T0 = datetime(2024, 5, 6, 9, 0, tzinfo=UTC)
ORG_ID = "7c1aec86-7bc7-44d0-a01c-72c2f196f29b"
_n = [0]


def _rid() -> str:
    _n[0] += 1
    return f"00000000-1111-2222-3333-{_n[0]:012d}"


def _ts(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%S")


# -- record builders (also used by test_incidents_generated.py) ----------------------------------
def grant(mailbox: str, grantee: str, t: datetime, actor: str = "admin@contoso.com", *, op: str = "Add-MailboxPermission",
          session: str | None = None, rid: str | None = None) -> dict:
    params = {"Add-MailboxPermission": {"Identity": mailbox, "User": grantee, "AccessRights": "FullAccess",
                                        "InheritanceType": "All"},
              "Add-RecipientPermission": {"Identity": mailbox, "Trustee": grantee, "AccessRights": "SendAs"},
              "Set-Mailbox": {"Identity": mailbox, "GrantSendOnBehalfTo": grantee}}[op]
    r = ual(op, rid or _rid(), **params)
    r.update(CreationTime=_ts(t), UserId=actor, SessionId=session or f"sess-{_rid()}")
    return r


def inbox_rule(actor: str, mailbox: str, t: datetime, session: str | None = None) -> dict:
    r = ual("New-InboxRule", _rid(), Mailbox=mailbox, Name=".", MoveToFolder="RSS Feeds", MarkAsRead="True")
    r.update(CreationTime=_ts(t), UserId=actor, SessionId=session or f"sess-{_rid()}")
    return r


def access(user: str, owner: str, t: datetime, *, op: str = "MailItemsAccessed", logon: object = 2,
           session: str | None = None, rid: str | None = None) -> dict:
    r = {"CreationTime": _ts(t), "Id": rid or _rid(), "Operation": op, "OrganizationId": ORG_ID,
         "RecordType": 50 if op == "MailItemsAccessed" else 2, "ResultStatus": "Succeeded", "UserKey": "10032000AAAA0001",
         "UserType": 0, "Version": 1, "Workload": "Exchange", "ClientIP": "203.0.113.9:50111", "UserId": user,
         "ClientIPAddress": "203.0.113.9", "ClientInfoString": "Client=OWA;Action=ViaProxy", "ExternalAccess": False,
         "LogonType": logon, "InternalLogonType": 0, "MailboxGuid": "a78873bc-8394-40d1-8e2f-a0b6c3334455",
         "MailboxOwnerUPN": owner, "OrganizationName": "contoso.onmicrosoft.com",
         "OriginatingServer": "AM0PR01MB1234 (15.20.7249.032)\r\n"}
    if op == "MailItemsAccessed":
        r.update(OperationCount=12, OperationProperties=[{"Name": "MailAccessType", "Value": "Bind"}],
                 Folders=[{"Path": "\\Inbox", "FolderItems": [{"InternetMessageId": "<a@b>"}]}])
    if session:
        r["SessionId"] = session
    return r


def send(user: str, owner: str, t: datetime, *, op: str = "SendAs", subject: str = "Invoice", rid: str | None = None) -> dict:
    r = access(user, owner, t, op=op, logon=2 if op != "Send" else 0, rid=rid)
    r.update(RecordType=2, Item={"Id": "RgAAAAD1", "InternetMessageId": f"<{_rid()}@x>", "Subject": subject,
                                 "ParentFolder": {"Path": "\\Sent Items"}})
    if op == "SendAs":
        r["SendAsUserSmtp"] = owner
    elif op == "SendOnBehalf":
        r["SendOnBehalfOfUserSmtp"] = owner
    return r


def entra(op: str, actor: str, target_upn: str, target_guid: str, t: datetime, *, role: str | None = None,
          props: list[dict] | None = None, rid: str | None = None) -> dict:
    """An Entra ID audit record as the unified audit log carries it (the real sample's shape)."""
    modified = list(props or [])
    if role:
        modified += [{"Name": "Role.DisplayName", "NewValue": role, "OldValue": ""}]
    return {"CreationTime": _ts(t), "Id": rid or _rid(), "Operation": op, "OrganizationId": ORG_ID, "RecordType": 8,
            "ResultStatus": "Success", "UserKey": "1003BFFDACDB6497@contoso.onmicrosoft.com", "UserType": 0,
            "Version": 1, "Workload": "AzureActiveDirectory", "ObjectId": target_upn, "UserId": actor,
            "AzureActiveDirectoryEventType": 1, "ModifiedProperties": modified,
            "Actor": [{"ID": actor, "Type": 5}, {"ID": "1003BFFDACDB6497", "Type": 3}],
            "Target": [{"ID": f"User_{target_guid}", "Type": 2}, {"ID": target_guid, "Type": 2}, {"ID": "User", "Type": 2},
                       {"ID": target_upn, "Type": 5}]}


@contextlib.contextmanager
def configured(tmp_path: Path, toml: str) -> Iterator[None]:
    """Run with this configuration file's settings, then the defaults again."""
    cfg = tmp_path / "dw.toml"
    cfg.write_text(toml, encoding="utf-8")
    config.use(config.load(cfg))
    try:
        yield
    finally:
        config.use(config.Config())


def write(path: Path, records: list[dict]) -> Path:
    path.write_text("".join(compact(r) + "\n" for r in records), encoding="utf-8")
    return path


def run(tmp_path: Path, records: list[dict], **kw):
    return hunt([str(write(tmp_path / "ual.jsonl", records))], jobs=1, **kw)


def grant_incident(result, mailbox: str):
    """The one incident holding the grant on ``mailbox`` (asserting there is exactly one)."""
    found = [i for i in result.incidents if any(s.kind == "grant" and mailbox in s.summary for s in i.steps)]
    assert len(found) == 1, [i.title for i in result.incidents]
    return found[0]


def kinds(inc) -> list[tuple[str, str]]:
    return [(s.kind, s.what) for s in inc.steps]


# -- the real sample ----------------------------------------------------------------------------------
def test_real_reset_then_full_access_is_one_incident(corpus):
    sample = corpus / "blueteam0ps-det-eng-samples" / "t1098.002_user-reset_mailbox_full_access.json"
    result = hunt([str(sample)])
    assert len(result.incidents) == 1
    [inc] = result.incidents
    assert kinds(inc) == [("precursor", "password"), ("grant", "m365_mailbox_full_access_grant")]
    assert [e.record_id for e in inc.evidence] == ["4d7e6990-ec4f-4cd5-9d76-a56b0e327e53",
                                                   "bc0b2d0b-9cbe-4b2f-fcfd-08dc25d7c6ac"]
    # correlated on the object id: the grant names 288fc35b-…, the reset names vic@contoso.com and 288fc35b-…
    [f] = result.findings
    assert f.mailbox == "288fc35b-236b-4b73-868a-11f9d367bb13" and f.incident == inc.id
    assert inc.mailboxes == ["vic@contoso.com"] and inc.actors == ["stinger@contoso.onmicrosoft.com"]
    assert {x.name for x in inc.factors} == {"grant", "precursor"} and inc.severity in ("medium", "high")
    # "Update user." with no sign-in property changed is not a precursor; nothing else joined nothing
    assert result.activities == 1 and result.activities_unmatched == 0
    assert hunt([str(sample)]).incidents[0].id == inc.id  # stable across runs


def test_real_owner_mail_access_is_not_a_use(corpus):
    # OTRF: MailItemsAccessed through Graph with Logon_Type "Owner" (Sentinel's spelling)
    result = hunt([str(corpus / "otrf-security-datasets-GoldenSAMLADFSMailAccess" / "OfficeActivityEvents.json")],
                  full_parse=True)
    assert result.activities == 0 and result.incidents == []


# -- each use and precursor ---------------------------------------------------------------------------
@pytest.mark.parametrize("use,what", [
    (lambda t: access("eve@contoso.com", "ceo@contoso.com", t), "read"),
    (lambda t: access("eve@contoso.com", "ceo@contoso.com", t, op="MailboxLogin", logon=2), "logon"),
    (lambda t: access("eve@contoso.com", "ceo@contoso.com", t, logon=6), "read"),  # DelegatedAdmin
    (lambda t: send("eve@contoso.com", "ceo@contoso.com", t, op="SendAs"), "send_as"),
    (lambda t: send("eve@contoso.com", "ceo@contoso.com", t, op="SendOnBehalf"), "send_on_behalf"),
])
def test_each_use_joins_the_grant(tmp_path, use, what):
    result = run(tmp_path, [grant("ceo@contoso.com", "eve@contoso.com", T0), use(T0 + timedelta(hours=30))])
    inc = grant_incident(result, "ceo@contoso.com")
    assert kinds(inc)[1] == ("use", what)
    assert inc.severity in ("medium", "high", "critical") and inc.uses


def test_inbox_rule_by_the_grantee_is_evasion_and_raises_the_score(tmp_path):
    plain = run(tmp_path, [grant("ceo@contoso.com", "eve@contoso.com", T0),
                           access("eve@contoso.com", "ceo@contoso.com", T0 + timedelta(hours=2))])
    base = grant_incident(plain, "ceo@contoso.com").score
    result = run(tmp_path, [grant("ceo@contoso.com", "eve@contoso.com", T0),
                            access("eve@contoso.com", "ceo@contoso.com", T0 + timedelta(hours=2)),
                            inbox_rule("eve@contoso.com", "ceo@contoso.com", T0 + timedelta(hours=3))])
    inc = grant_incident(result, "ceo@contoso.com")
    assert [k for k, _ in kinds(inc)] == ["grant", "use", "evasion"]
    assert len(result.incidents) == 1 and inc.score > base


@pytest.mark.parametrize("record,what", [
    (lambda t: entra("Reset user password.", "mallory@contoso.com", "ceo@contoso.com",
                     "288fc35b-236b-4b73-868a-11f9d367bb13", t), "password"),
    (lambda t: entra("Change user password.", "ceo@contoso.com", "ceo@contoso.com",
                     "288fc35b-236b-4b73-868a-11f9d367bb13", t), "password"),
    (lambda t: entra("Add member to role.", "root@contoso.com", "admin@contoso.com",
                     "53eb688e-e2fc-4b6f-a5ef-f4173a8228d6", t, role="Exchange Administrator"), "role"),
    (lambda t: entra("Update user.", "mallory@contoso.com", "ceo@contoso.com", "288fc35b-236b-4b73-868a-11f9d367bb13", t,
                     props=[{"Name": "StrongAuthenticationPhoneAppDetail", "NewValue": "[...]", "OldValue": "[]"}]),
     "sign_in_change"),
])
def test_each_precursor_joins_the_grant(tmp_path, record, what):
    result = run(tmp_path, [record(T0 - timedelta(hours=3)), grant("ceo@contoso.com", "eve@contoso.com", T0)])
    inc = grant_incident(result, "ceo@contoso.com")
    assert kinds(inc)[0] == ("precursor", what)
    assert "precursor" in {f.name for f in inc.factors}


def test_precursor_outside_its_window_or_about_someone_else_does_not_join(tmp_path):
    result = run(tmp_path, [
        entra("Reset user password.", "mallory@contoso.com", "ceo@contoso.com", "288fc35b-236b-4b73-868a-11f9d367bb13",
              T0 - timedelta(hours=30)),  # > 24 h before
        entra("Reset user password.", "mallory@contoso.com", "bob@contoso.com", "11111111-236b-4b73-868a-11f9d367bb13",
              T0 - timedelta(hours=1)),  # another user
        entra("Update user.", "mallory@contoso.com", "ceo@contoso.com", "288fc35b-236b-4b73-868a-11f9d367bb13",
              T0 - timedelta(hours=1), props=[{"Name": "Department", "NewValue": "x", "OldValue": "y"}]),
        grant("ceo@contoso.com", "eve@contoso.com", T0)])
    inc = grant_incident(result, "ceo@contoso.com")
    assert kinds(inc) == [("grant", "m365_mailbox_full_access_grant")]
    assert result.activities == 2 and result.activities_unmatched == 2


def test_role_group_membership_then_grant_by_the_new_member(tmp_path):
    member = ual("Add-RoleGroupMember", _rid(), Identity="Organization Management", Member="mallory@contoso.com")
    member.update(CreationTime=_ts(T0 - timedelta(hours=2)))
    g = grant("ceo@contoso.com", "mallory@contoso.com", T0, actor="mallory@contoso.com")
    result = run(tmp_path, [member, g])
    assert len(result.incidents) == 1
    assert [k for k, _ in kinds(result.incidents[0])] == ["precursor", "grant"]


# -- what is not a use ----------------------------------------------------------------------------------
def test_owner_access_other_users_and_other_times_are_not_uses(tmp_path):
    result = run(tmp_path, [
        access("eve@contoso.com", "ceo@contoso.com", T0 - timedelta(hours=5)),  # before the grant
        grant("ceo@contoso.com", "eve@contoso.com", T0),
        access("ceo@contoso.com", "ceo@contoso.com", T0 + timedelta(hours=1), logon=0),  # the owner
        access("bob@contoso.com", "ceo@contoso.com", T0 + timedelta(hours=1), logon=1),  # not the grantee
        access("eve@contoso.com", "cfo@contoso.com", T0 + timedelta(hours=1)),  # another mailbox
        access("eve@contoso.com", "ceo@contoso.com", T0 + timedelta(days=8)),  # after the 7-day window
        access("S-1-5-18", "ceo@contoso.com", T0 + timedelta(hours=1), logon=1),  # the system
    ])
    inc = grant_incident(result, "ceo@contoso.com")
    assert kinds(inc) == [("grant", "m365_mailbox_full_access_grant")] and inc.severity == "low"
    assert len(result.incidents) == 1  # uses without a grant are not incidents
    assert result.activities == 4 and result.activities_unmatched == 4


def test_use_window_is_configurable(tmp_path):
    records = [grant("ceo@contoso.com", "eve@contoso.com", T0),
               access("eve@contoso.com", "ceo@contoso.com", T0 + timedelta(days=8))]
    with configured(tmp_path, "[incidents]\nuse_window_hours = 240\n"):
        inc = grant_incident(run(tmp_path, records), "ceo@contoso.com")
    assert [k for k, _ in kinds(inc)] == ["grant", "use"]


def test_use_joins_the_latest_grant_before_it(tmp_path):
    result = run(tmp_path, [grant("ceo@contoso.com", "eve@contoso.com", T0),
                            grant("ceo@contoso.com", "eve@contoso.com", T0 + timedelta(days=3)),
                            access("eve@contoso.com", "ceo@contoso.com", T0 + timedelta(days=4))])
    assert len(result.incidents) == 2
    first, second = sorted(result.incidents, key=lambda i: i.start)
    assert not first.uses and len(second.uses) == 1


def test_grants_of_one_pair_or_one_session_are_one_incident(tmp_path):
    result = run(tmp_path, [grant("ceo@contoso.com", "eve@contoso.com", T0, session="s1"),
                            grant("ceo@contoso.com", "eve@contoso.com", T0 + timedelta(minutes=1),
                                  op="Add-RecipientPermission", session="s2"),
                            grant("cfo@contoso.com", "eve@contoso.com", T0 + timedelta(minutes=2), session="s2"),
                            grant("hr@contoso.com", "bob@contoso.com", T0 + timedelta(minutes=3))])
    assert sorted(len(i.findings) for i in result.incidents) == [1, 3]
    assert {f.incident for f in result.findings} == {i.id for i in result.incidents}


# -- principals: object ids, UPNs, the directory ---------------------------------------------------------
def test_grant_by_object_ids_meets_uses_by_upn_through_a_directory(tmp_path):
    ceo_id, eve_id = "288fc35b-236b-4b73-868a-11f9d367bb13", "51eb55af-6419-4551-a56f-64f63a068fca"
    d = Directory()
    d.add(DirectoryUser(ceo_id, "ceo@contoso.com", "CEO", "Member", True, "ceo@contoso.com"))
    d.add(DirectoryUser(eve_id, "eve@contoso.com", "Eve", "Member", True, "eve@contoso.com"))
    records = [grant(ceo_id, eve_id, T0), access("eve@contoso.com", "ceo@contoso.com", T0 + timedelta(hours=1))]
    without = grant_incident(run(tmp_path, records), ceo_id)
    assert not without.uses  # nothing in the records links the object ids to the addresses
    inc = grant_incident(run(tmp_path, records, directory=d), "ceo@contoso.com")
    assert [k for k, _ in kinds(inc)] == ["grant", "use"]


def test_links_learnt_from_entra_target_lists(tmp_path):
    eve_id = "51eb55af-6419-4551-a56f-64f63a068fca"
    records = [entra("Update user.", "admin@contoso.com", "eve@contoso.com", eve_id, T0 - timedelta(days=20)),
               grant("ceo@contoso.com", eve_id, T0), access("eve@contoso.com", "ceo@contoso.com", T0 + timedelta(hours=1))]
    inc = grant_incident(run(tmp_path, records), "ceo@contoso.com")
    assert [k for k, _ in kinds(inc)] == ["grant", "use"] and inc.grantees == ["eve@contoso.com"]


def test_identities_link_only_unambiguous_lists():
    ids = Identities(Resolver())
    ids.learn({"Target": [{"ID": "User_288FC35B-236b-4b73-868a-11f9d367bb13", "Type": 2},
                          {"ID": "vic@contoso.com", "Type": 5}, {"ID": "User", "Type": 2}]})
    assert ids.same("288fc35b-236b-4b73-868a-11f9d367bb13", "VIC@contoso.com")
    assert ids.same("{288FC35B-236B-4B73-868A-11F9D367BB13}", "smtp:vic@contoso.com")
    ids.learn({"Target": [{"ID": "a@contoso.com", "Type": 5}, {"ID": "b@contoso.com", "Type": 5},
                          {"ID": "11111111-1111-1111-1111-111111111111", "Type": 2}]})
    assert not ids.same("a@contoso.com", "b@contoso.com")
    assert not ids.same("a@contoso.com", "11111111-1111-1111-1111-111111111111")
    # an app's id beside the user's (the real Update user. record): the User_ form decides
    ids.learn({"Actor": [{"ID": "stinger@contoso.com", "Type": 5}, {"ID": "Microsoft Office 365 Portal", "Type": 1},
                         {"ID": "00000006-0000-0ff1-ce00-000000000000", "Type": 2},
                         {"ID": "User_53eb688e-e2fc-4b6f-a5ef-f4173a8228d6", "Type": 2}]})
    assert ids.same("stinger@contoso.com", "53eb688e-e2fc-4b6f-a5ef-f4173a8228d6")
    assert not ids.same("stinger@contoso.com", "00000006-0000-0ff1-ce00-000000000000")
    assert normalise("NAMPR10A011.PROD.OUTLOOK.COM/Microsoft Exchange Hosted Organizations/contoso.onmicrosoft.com/eve") == "eve"


# -- allow-lists ------------------------------------------------------------------------------------------
def test_allow_listed_pair_stays_informational_with_daily_use(tmp_path):
    records = [grant("ceo@contoso.com", "assistant@contoso.com", T0)]
    records += [send("assistant@contoso.com", "ceo@contoso.com", T0 + timedelta(days=d, hours=2), op="SendOnBehalf")
                for d in range(6)]
    with configured(tmp_path, '[allow]\npairs = [["ceo@contoso.com", "assistant@*"]]\n'):
        inc = grant_incident(run(tmp_path, records), "ceo@contoso.com")
    assert len(inc.uses) == 6 and inc.severity == "informational" and inc.allowed
    assert inc.factors[-1].name == "allow-listed"


# -- the prefilter asks for MailItemsAccessed / MailboxLogin only with a non-owner LogonType ---------------
def test_feed_hook_lists_operations_and_patterns():
    import re

    feeds, needs = m365_feeds(), m365_feed_needs()
    assert "incident_feed" in feeds["mailitemsaccessed"] and "incident_feed" in feeds["reset user password."]
    assert needs["reset user password."].whole
    logon = re.compile(needs["mailitemsaccessed"].pattern.encode())
    for kept in ('"LogonType":2,', '"LogonType": 2,', '"LogonType":  1}', '""LogonType"":6,', '"LogonType":"5"',
                 '""LogonType"":""2""', '"LogonType":"Delegate"', '"Logon_Type":"Admin"'):
        assert logon.search(kept.encode()), kept
    for dropped in ('"LogonType":0,', '"LogonType": 0}', '""LogonType"":0,', '"Logon_Type":"Owner"', '"LogonType":3,',
                    '"LogonType":20,'):
        assert not logon.search(dropped.encode()), dropped


def _purview_csv(records: list[dict]) -> str:
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\r\n")
    w.writerow(["RecordId", "CreationDate", "RecordType", "Operation", "UserId", "AuditData", "AssociatedAdminUnits",
                "AssociatedAdminUnitsNames"])
    for r in records:
        w.writerow([r["Id"], r["CreationTime"] + ".0000000Z", r["RecordType"], r["Operation"], r["UserId"],
                    json.dumps(r, separators=(",", ":")), "", ""])
    return out.getvalue()


@pytest.mark.parametrize("form", ["ndjson", "spaced", "purview-csv", "string-logon", "full-parse"])
def test_non_owner_access_survives_the_prefilter_in_every_spelling(tmp_path, form):
    owner = [access("ceo@contoso.com", "ceo@contoso.com", T0 + timedelta(minutes=m), logon=0) for m in range(50)]
    use = access("eve@contoso.com", "ceo@contoso.com", T0 + timedelta(hours=1),
                 logon="2" if form == "string-logon" else 2)
    records = [grant("ceo@contoso.com", "eve@contoso.com", T0), *owner, use]
    path = tmp_path / "in.txt"
    if form == "spaced":
        path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    elif form == "purview-csv":
        path.write_text(_purview_csv(records), encoding="utf-8", newline="")
    else:
        write(path, records)
    result = hunt([str(path)], jobs=1, full_parse=form == "full-parse")
    inc = grant_incident(result, "ceo@contoso.com")
    assert [e.record_id for s in inc.uses for e in s.evidence] == [use["Id"]]
    if form != "full-parse":  # the owner's 50 reads are counted, never parsed
        assert result.stats.records_parsed <= 2 + 1


# -- outputs ------------------------------------------------------------------------------------------------
def test_cli_incidents_jsonl_and_summary(tmp_path):
    path = write(tmp_path / "ual.jsonl", [
        entra("Reset user password.", "mallory@contoso.com", "ceo@contoso.com", "288fc35b-236b-4b73-868a-11f9d367bb13",
              T0 - timedelta(minutes=5)),
        grant("ceo@contoso.com", "eve@contoso.com", T0, actor="mallory@contoso.com"),
        access("eve@contoso.com", "ceo@contoso.com", T0 + timedelta(minutes=20))])
    out, incidents = tmp_path / "f.jsonl", tmp_path / "inc.jsonl"
    r = CliRunner().invoke(main, ["hunt", str(path), "--format", "jsonl", "-o", str(out), "--incidents", str(incidents)])
    assert r.exit_code == 0, r.output
    [line] = incidents.read_text().splitlines()
    inc = json.loads(line)
    assert [s["kind"] for s in inc["steps"]] == ["precursor", "grant", "use"]
    assert {f["name"] for f in inc["factors"]} >= {"grant", "precursor", "read", "quick_use"}
    assert inc["severity"] == "critical" and len(inc["evidence"]) == 3
    [finding] = [json.loads(x) for x in out.read_text().splitlines()]
    assert finding["incident"] == inc["id"] and {"id", "rule", "severity", "evidence"} <= set(finding)
    assert "Incidents" in r.output and inc["id"] in r.output


def test_attacker_strings_in_steps_are_escaped_in_the_report(tmp_path):
    from delegatewatch.outputs import html
    from tests.test_report import data_block

    subject = "</script><script>alert(1)</script>"
    result = run(tmp_path, [grant("ceo@contoso.com", "eve@contoso.com", T0),
                            send("eve@contoso.com", "ceo@contoso.com", T0 + timedelta(hours=1), subject=subject)])
    page = html.render(result)
    assert "<script>alert(1)" not in page
    data = data_block(page)
    assert any(subject in s.get("summary", "") for i in data["incidents"] for s in i["steps"])


def test_disabled(tmp_path):
    with configured(tmp_path, "[incidents]\nenabled = false\n"):
        result = run(tmp_path, [grant("ceo@contoso.com", "eve@contoso.com", T0)])
    assert result.incidents == [] and result.findings[0].incident is None


def test_bad_incidents_config_is_a_clear_error(tmp_path):
    cfg = tmp_path / "dw.toml"
    cfg.write_text("[incidents]\nseverity_thresholds = [50, 10, 60, 70]\n", encoding="utf-8")
    with pytest.raises(config.ConfigError, match="severity_thresholds"):
        config.load(cfg)
    cfg.write_text("[incidents]\nuse_window = 3\n", encoding="utf-8")
    with pytest.raises(config.ConfigError, match="unknown setting"):
        config.load(cfg)


def test_activity_parsing_is_strict():
    from delegatewatch.records import Record

    def rec(d: dict) -> Record:
        return Record(d, "x.jsonl", 1, 1, "ndjson")

    assert incident_feed.activity(rec(access("eve@contoso.com", "ceo@contoso.com", T0, logon=0))) is None
    assert incident_feed.activity(rec(access("eve@contoso.com", "ceo@contoso.com", T0, logon=3))) is None  # transport
    failed = access("eve@contoso.com", "ceo@contoso.com", T0)
    failed["ResultStatus"] = "Failed"
    assert incident_feed.activity(rec(failed)) is None
    sentinel = {k: v for k, v in access("eve@contoso.com", "ceo@contoso.com", T0).items() if k != "LogonType"}
    sentinel["Logon_Type"] = "Delegate"
    assert incident_feed.activity(rec(sentinel)).what == "read"
    assert incident_feed.logon_type({"LogonType": "DelegatedAdmin"}) == 6


def test_documented_incidents_example_loads(tmp_path):
    from tests.conftest import ROOT

    text = (ROOT / "docs" / "configuration.md").read_text(encoding="utf-8")
    example = text[text.index("## `[incidents]`"):].split("```toml\n", 1)[1].split("```", 1)[0]
    cfg = tmp_path / "dw.toml"
    cfg.write_text(example, encoding="utf-8")
    loaded = config.load(cfg)
    assert loaded.incidents.use_window_hours == 72 and dict(loaded.incidents.grant_points)["high"] == 30
    assert loaded.allow.pairs == (("ceo@contoso.com", "assistant@contoso.com"),)


@pytest.mark.parametrize("odd", [
    {"Target": "vic@contoso.com", "ModifiedProperties": "x", "Actor": [1, None, {"ID": 5, "Type": "5"}]},
    {"AppAccessContext": "not a dict", "Item": ["list"], "LogonType": True, "OperationCount": "many"},
    {"CreationTime": "not a time"}, {"UserId": None, "MailboxOwnerUPN": 7}, {"ModifiedProperties": [None, {"Name": 3}]},
])
def test_odd_field_types_never_raise(odd):
    from delegatewatch.records import Record

    ids = Identities(Resolver())
    for op in ("MailItemsAccessed", "SendAs", "Reset user password.", "Update user.", "Add member to role."):
        data = {**access("eve@contoso.com", "ceo@contoso.com", T0), "Operation": op, **odd}
        ids.learn(data)
        incident_feed.activity(Record(data, "x.jsonl", 1, 1, "ndjson"))


def outlook_rule(user: str, owner: str, t: datetime, actions: str) -> dict:
    """UpdateInboxRules as rules/m365_mail_forwarding.yml's own test records have it."""
    r = access(user, owner, t, op="UpdateInboxRules", logon=2 if user != owner else 0)
    r.update(RecordType=2, OperationProperties=[{"Name": "RuleName", "Value": "x"},
                                                {"Name": "RuleActions", "Value": actions}])
    return r


def test_outlook_rules_by_the_grantee_are_evasion_steps_once(tmp_path):
    hide = '[{"ActionType":"MoveToFolderAction","Folder":"RSS Feeds"},{"ActionType":"MarkAsReadAction"}]'
    forward = '[{"ActionType":"ForwardToRecipientsAction","Recipients":["x@gmail.com"]}]'
    news = '[{"ActionType":"MoveToFolderAction","Folder":"News"}]'
    result = run(tmp_path, [grant("ceo@contoso.com", "eve@contoso.com", T0),
                            outlook_rule("eve@contoso.com", "ceo@contoso.com", T0 + timedelta(hours=1), hide),
                            outlook_rule("eve@contoso.com", "ceo@contoso.com", T0 + timedelta(hours=2), forward),
                            outlook_rule("eve@contoso.com", "ceo@contoso.com", T0 + timedelta(hours=3), news),
                            outlook_rule("ceo@contoso.com", "ceo@contoso.com", T0 + timedelta(hours=4), hide)])
    inc = grant_incident(result, "ceo@contoso.com")
    # the hiding rule as an activity, the forwarding one as its finding (not twice); filing news
    # and the owner's own rule are not evasion by the grantee
    assert kinds(inc) == [("grant", "m365_mailbox_full_access_grant"), ("evasion", "inbox_rule"),
                          ("evasion", "m365_mail_forwarding")]
    assert "evasion" in {f.name for f in inc.factors}


def test_demo_bec_chain_is_one_incident():
    """examples/demo chain 1 (EXPECTED.md): reset → FullAccess by object ids → hiding rule → four
    delegated reads, spread over three files in three dialects."""
    from tests.conftest import DEMO

    result = hunt([str(DEMO)])
    grant_id = "54404c32-a76f-4b18-999d-08dc1369fb20"
    [inc] = [i for i in result.incidents if grant_id in {e.record_id for e in i.evidence}]
    assert [k for k, _ in kinds(inc)] == ["precursor", "grant", "evasion", "use", "use", "use", "use"]
    assert {e.record_id for e in inc.evidence} >= {
        "867d8e78-3486-4528-8af8-7be5c305fd6a", "e8acacb2-14eb-4eb8-8b6f-08dc0b74f08f",
        "07f5929e-fa91-4ef3-abd2-678a7ef0d5d5", "919b4ed2-0367-45e7-acac-baf1cf093b45"}
    assert inc.mailboxes == ["dana.whitfield@contoso.com"] and inc.severity == "critical"
    assert result.incidents[0] is inc  # the riskiest
    # SendAs granted by object ids, used 16 minutes later as ceo@contoso.com (chain 2)
    [sendas] = [i for i in result.incidents if "9293557d-8aa8-4508-9dff-08dce2fb7d29" in {e.record_id for e in i.evidence}]
    assert "ed3c12ff-acc9-496b-8f5f-cd00d0904160" in {e.record_id for s in sendas.uses for e in s.evidence}


def test_exchange_server_grant_and_mailbox_audit_uses_with_a_directory(tmp_path):
    """On-premises: an admin-audit Add-MailboxPermission to CONTOSO\\eve, then Search-MailboxAuditLog
    rows of her Delegate logons (MailboxLogin, FolderBind, SendAs by UPN, SendOnBehalf by display
    name). The directory ties the four spellings of Eve together."""
    from tests.test_exchange_audit import ADMIN_CSV, EVE_SID, MAILBOX_CSV, OWNER_SID

    (tmp_path / "admin.csv").write_text(ADMIN_CSV, encoding="utf-8")
    (tmp_path / "mailbox.csv").write_text(MAILBOX_CSV, encoding="utf-8")
    d = Directory()
    d.add(DirectoryUser("51eb55af-6419-4551-a56f-64f63a068fca", "eve@contoso.com", "Eve Adams", "Member", True,
                        "eve@contoso.com", sam="eve", domain="contoso.com", sid=EVE_SID))
    d.add(DirectoryUser("288fc35b-236b-4b73-868a-11f9d367bb13", "ceo@contoso.com", "Chief Executive", "Member", True,
                        "ceo@contoso.com", sam="ceo", domain="contoso.com", sid=OWNER_SID))
    result = hunt([str(tmp_path)], directory=d, jobs=1)
    [inc] = [i for i in result.incidents if i.title.startswith("eve@contoso.com given FullAccess on ceo@contoso.com")]
    assert [w for k, w in kinds(inc) if k == "use"] == ["logon", "read", "send_as", "send_on_behalf"]
    assert inc.severity in ("high", "critical")


def test_report_of_a_result_without_incidents_groups_its_findings(tmp_path):
    """audit and the report benchmark build results without a hunt: the report still puts every
    finding in one incident, without changing the findings."""
    from delegatewatch.engine.hunt import HuntResult
    from delegatewatch.outputs import html

    hunted = run(tmp_path, [grant("ceo@contoso.com", "eve@contoso.com", T0), grant("cfo@contoso.com", "bob@contoso.com", T0)])
    for f in hunted.findings:
        f.incident = None
    bare = HuntResult(hunted.findings, hunted.stats, hunted.rules)
    data = html.report_data(bare)
    assert len(data["incidents"]) == 2
    assert {f["incident"] for f in data["findings"]} == {i["id"] for i in data["incidents"]}
    assert all(f.incident is None for f in bare.findings)


def test_same_session_factor_needs_a_shared_session(tmp_path):
    apart = run(tmp_path, [grant("ceo@contoso.com", "eve@contoso.com", T0, session="s1"),
                           grant("ceo@contoso.com", "eve@contoso.com", T0 + timedelta(hours=1), op="Add-RecipientPermission",
                                 session="s2")])
    together = run(tmp_path, [grant("ceo@contoso.com", "eve@contoso.com", T0, session="s1"),
                              grant("ceo@contoso.com", "eve@contoso.com", T0 + timedelta(hours=1),
                                    op="Add-RecipientPermission", session="s1")])
    [a], [b] = apart.incidents, together.incidents
    assert "same_session" not in {f.name for f in a.factors}
    assert "same_session" in {f.name for f in b.factors}


def test_update_user_listing_changed_properties_in_one_field(tmp_path):
    """Entra writes the changed property names as one quoted, comma-separated value."""
    listed = [{"Name": "Included Updated Properties", "NewValue": '"StrongAuthenticationMethod", "Department"',
               "OldValue": ""}]
    result = run(tmp_path, [entra("Update user.", "mallory@contoso.com", "ceo@contoso.com",
                                  "288fc35b-236b-4b73-868a-11f9d367bb13", T0 - timedelta(hours=2), props=listed),
                            grant("ceo@contoso.com", "eve@contoso.com", T0)])
    inc = grant_incident(result, "ceo@contoso.com")
    assert kinds(inc)[0] == ("precursor", "sign_in_change")
    assert inc.steps[0].summary == "mallory@contoso.com changed StrongAuthenticationMethod of ceo@contoso.com (Update user.)"


def test_feed_keeps_only_non_owner_reads_in_memory():
    keep = incident_feed.M365_KEEP
    assert keep(access("eve@contoso.com", "ceo@contoso.com", T0, logon=2))
    assert not keep(access("ceo@contoso.com", "ceo@contoso.com", T0, logon=0))
    assert not keep(access("eve@contoso.com", "ceo@contoso.com", T0, logon=4))  # SystemService
    assert keep(entra("Update user.", "a@contoso.com", "b@contoso.com", "288fc35b-236b-4b73-868a-11f9d367bb13", T0))
    from delegatewatch.analytics import m365_feed_filters

    assert m365_feed_filters()["incident_feed"] is keep
