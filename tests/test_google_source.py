"""Google Workspace Reports API: reader shapes, mapper events, rules end to end."""

from __future__ import annotations

import copy
import gzip
import json
from pathlib import Path

from delegatewatch import config
from delegatewatch.engine.hunt import hunt
from delegatewatch.events.model import (
    Action,
    MailSend,
    PermissionChange,
    Scope,
    SettingChange,
)
from delegatewatch.events.principals import Resolver
from delegatewatch.events.registry import mapper_for
from delegatewatch.records import ReadStats
from delegatewatch.sources import read_file
from delegatewatch.sources.formats import google as G


def activity(name: str, params: list[dict], *, app: str = "admin", uq: str = "-5830285940198725361",
             etype: str = "EMAIL_SETTINGS", actor: str = "admin@example.com",
             time: str = "2024-05-01T12:34:56.789Z", extra_events: list[dict] | None = None) -> dict:
    """A Reports API activity as the API returns it (formats.md §6.1)."""
    return {
        "kind": "admin#reports#activity",
        "id": {"time": time, "uniqueQualifier": uq, "applicationName": app, "customerId": "C01abcd2e"},
        "etag": "\"abc/def\"",
        "actor": {"callerType": "USER", "email": actor, "profileId": "104365882917420383921"},
        "ownerDomain": "example.com",
        "ipAddress": "203.0.113.10",
        "events": [{"type": etype, "name": name, "parameters": params}, *(extra_events or [])],
    }


def delegation_on(uq: str = "-5830285940198725361") -> dict:
    return activity("CHANGE_EMAIL_SETTING", [
        {"name": "SETTING_NAME", "value": "ENABLE_MAIL_DELEGATION_WITHIN_DOMAIN"},
        {"name": "OLD_VALUE", "value": "false"}, {"name": "NEW_VALUE", "value": "true"},
        {"name": "ORG_UNIT_NAME", "value": "Example Org"}], uq=uq)


def dwd(scopes: list[str], uq: str = "-7312729053723258069") -> dict:
    return activity("AUTHORIZE_API_CLIENT_ACCESS", [
        {"name": "API_CLIENT_NAME", "value": "113927442849203847561"},
        {"name": "API_SCOPES", "multiValue": scopes}], etype="DOMAIN_SETTINGS", uq=uq)


def page(items: list[dict], token: str | None = "tok") -> dict:
    p = {"kind": "admin#reports#activities", "etag": "\"x\"", "items": items}
    if token:
        p["nextPageToken"] = token
    return p


def read(path: Path) -> tuple[list, ReadStats]:
    stats = ReadStats()
    return list(read_file(str(path), stats)), stats


def compact(obj: object) -> str:
    return json.dumps(obj, separators=(",", ":"))


# -- the real corpus ---------------------------------------------------------------------------
def test_real_google_files_parse_without_errors(corpus: Path) -> None:
    files = sorted((corpus / "cisagov-scubagoggles").glob("*.json")) + \
        sorted((corpus / "elastic-integrations-google-workspace").glob("*"))
    assert files
    expected = {"ScubaResults_5134dab6-be86-4c35.Raw.gmail_logs.json": (140, 461),
                "ScubaResults_5134dab6-be86-4c35.json": (555, 1547), "test-token.log": (1, 1)}
    for f in files:
        records, stats = read(f)
        assert stats.files_skipped == [] and stats.issues == [] and stats.skipped == 0, (f, stats.issues)
        assert all(r.family == "google" for r in records)
        if f.name in expected:
            assert (stats.records_parsed, len(records)) == expected[f.name], f.name
    token, _ = read(corpus / "elastic-integrations-google-workspace" / "test-token.log")
    params = token[0].data["events"]["parameters"]
    assert params["num_response_bytes"] == "1223"  # a bare number in Elastic's copy: text anyway
    assert "gmail.addons.execute" in params["scope"]
    assert params["scope_data"][0]["product_bucket"] == "GMAIL"


def test_real_scubagoggles_findings(corpus: Path) -> None:
    result = hunt([str(corpus / "cisagov-scubagoggles")], jobs=1)
    rules = sorted(f.rule for f in result.findings)
    # false→true of ENABLE_MAIL_DELEGATION_WITHIN_DOMAIN, logged in the legacy and the new form;
    # true→false and →INHERIT_FROM_PARENT do not count. Auto-forwarding turned on, in both forms.
    assert rules == ["google_gmail_routing_forwarding"] * 2 + ["google_mail_delegation_enabled"] * 2
    assert all(f.actor == "pearsonchad@example.net" for f in result.findings)
    assert result.stats.duplicates > 0  # the report repeats activities; the Raw.gmail_logs file repeats the report


# -- shapes ------------------------------------------------------------------------------------
def test_record_shape_and_parameter_values(tmp_path: Path) -> None:
    act = activity("delivery", [
        {"name": "event_info", "messageValue": {"parameter": [
            {"name": "mail_event_type", "intValue": "1"}, {"name": "success", "boolValue": True}]}},
        {"name": "message_info", "messageValue": {"parameter": [
            {"name": "subject", "value": "Invoice"}, {"name": "rfc2822_message_id", "value": "<m1@example.com>"},
            {"name": "source", "messageValue": {"parameter": [{"name": "address", "value": "ceo@example.com"}]}},
            {"name": "destination", "multiMessageValue": [
                {"parameter": [{"name": "address", "value": "a@x.example"}]},
                {"parameter": [{"name": "address", "value": "b@x.example"}]}]}]}},
        {"name": "labels", "multiValue": ["INBOX", "SENT"]},
        {"name": "size", "multiIntValue": ["1", "2"]},
        {"name": "flag", "boolValue": False}], app="gmail", etype="delivery_type")
    f = tmp_path / "gmail.ndjson"
    f.write_text(compact(act) + "\n")
    (rec,), _ = read(f)
    d = rec.data
    assert d["Id"] == "-5830285940198725361" and rec.record_id == "-5830285940198725361"
    assert d["_dedup"] == "gmail|2024-05-01T12:34:56.789Z|-5830285940198725361|0"
    assert d["CreationTime"] == "2024-05-01T12:34:56"
    assert d["events"]["name"] == "delivery" and d["ownerDomain"] == "example.com"
    p = d["events"]["parameters"]
    assert p["event_info"] == {"mail_event_type": "1", "success": "true"}
    assert p["labels"] == "INBOX, SENT" and p["size"] == "1, 2" and p["flag"] == "false"
    assert p["message_info"]["source"]["address"] == "ceo@example.com"
    from delegatewatch.records.flatten import flatten
    flat = flatten(d)
    assert flat["events.parameters.event_info.mail_event_type"] == "1"
    assert flat["id.applicationName"] == "gmail"
    assert rec.line == 1 and rec.dialect == G.LINES


def test_one_record_per_event(tmp_path: Path) -> None:
    act = delegation_on()
    act["events"].append({"type": "EMAIL_SETTINGS", "name": "CHANGE_EMAIL_SETTING", "parameters": [
        {"name": "SETTING_NAME", "value": "ENABLE_MAILBOX_GROUP_DELEGATION"}, {"name": "NEW_VALUE", "value": "true"}]})
    f = tmp_path / "a.json"
    f.write_text(compact(act))
    records, stats = read(f)
    assert [r.data["events"]["parameters"]["SETTING_NAME"] for r in records] == [
        "ENABLE_MAIL_DELEGATION_WITHIN_DOMAIN", "ENABLE_MAILBOX_GROUP_DELEGATION"]
    assert {r.record_id for r in records} == {"-5830285940198725361"}
    assert len({r.data["_dedup"] for r in records}) == 2
    assert stats.records_parsed == 1


def test_pages_pretty_concatenated_and_compact_lines(tmp_path: Path) -> None:
    p1 = page([delegation_on("-1"), dwd(["https://mail.google.com/"], "-2")])
    p2 = page([delegation_on("-3")], token=None)
    pretty = tmp_path / "pages.json"
    pretty.write_text(json.dumps(p1, indent=2) + "\n" + json.dumps(p2, indent=4) + "\n")
    records, stats = read(pretty)
    assert [r.record_id for r in records] == ["-1", "-2", "-3"] and not stats.issues
    assert stats.files_read[0][1] == G.DOCUMENT
    assert records[2].line == len(json.dumps(p1, indent=2).splitlines()) + 5  # line of activity -3's "{"
    lines = tmp_path / "pages.ndjson"
    lines.write_text(compact(p1) + "\n" + compact(p2) + "\n")
    records, stats = read(lines)
    assert [(r.record_id, r.line) for r in records] == [("-1", 1), ("-2", 1), ("-3", 2)]
    array = tmp_path / "array.json"
    array.write_text(json.dumps([delegation_on("-4"), p2], indent=2))
    records, stats = read(array)
    assert [r.record_id for r in records] == ["-4", "-3"] and not stats.issues
    items_only = tmp_path / "items.json"  # ScubaGoggles' Raw.gmail_logs: no kind
    items_only.write_text(json.dumps({"items": [delegation_on("-5")]}, indent=4))
    records, _ = read(items_only)
    assert [r.record_id for r in records] == ["-5"]
    empty = tmp_path / "empty_page.json"  # the API leaves "items" out when nothing matched
    empty.write_text(json.dumps({"kind": "admin#reports#activities", "etag": "\"e\""}, indent=2))
    records, stats = read(empty)
    assert records == [] and not stats.issues and stats.files_read


def test_ndjson_gzip_as_the_collector_writes(tmp_path: Path) -> None:
    f = tmp_path / "run-1.ndjson.gz"
    with gzip.open(f, "wt", encoding="utf-8") as g:
        for i in range(5):
            g.write(compact(delegation_on(f"-{i + 10}")) + "\n")
    records, stats = read(f)
    assert [r.line for r in records] == [1, 2, 3, 4, 5] and stats.files_read[0][1] == G.LINES
    assert all(r.family == "google" for r in records)


def test_elastic_single_event_shape(tmp_path: Path) -> None:
    act = delegation_on()
    act["events"] = act["events"][0]
    act["id"]["uniqueQualifier"] = 1  # Elastic's test values are numbers
    act["actor"]["profileId"] = 1
    f = tmp_path / "test-admin.log"
    f.write_text(compact(act) + "\n")
    (rec,), _ = read(f)
    assert rec.record_id == "1" and rec.data["actor"]["profileId"] == "1"
    assert rec.data["events"]["parameters"]["SETTING_NAME"] == "ENABLE_MAIL_DELEGATION_WITHIN_DOMAIN"


def test_malformed_ndjson_line_reported_rest_read(tmp_path: Path) -> None:
    f = tmp_path / "bad.ndjson"
    f.write_text(compact(delegation_on("-1")) + "\n" + '{"kind":"admin#reports#activity","id":{' + "\n"
                 + '{"kind":"admin#reports#activity","foo":1}' + "\n" + compact(delegation_on("-2")) + "\n")
    records, stats = read(f)
    assert [r.record_id for r in records] == ["-1", "-2"]
    assert stats.skipped == 2
    where = [(i.source, i.line) for i in stats.issues]
    assert where == [(str(f), 2), (str(f), 3)]
    assert "not a JSON activity" in stats.issues[0].message
    assert "not a Reports API activity" in stats.issues[1].message


def test_malformed_pretty_page_resumes_at_next_page(tmp_path: Path) -> None:
    good = json.dumps(page([delegation_on("-1")]), indent=2).splitlines()
    second = json.dumps(page([delegation_on("-2")]), indent=2).splitlines()
    broken = list(second)
    broken[8] = broken[8] + " ]]"  # damage the second page
    last = json.dumps(page([delegation_on("-3")], token=None), indent=2).splitlines()
    f = tmp_path / "pages.json"
    f.write_text("\n".join(good + broken + last) + "\n")
    records, stats = read(f)
    ids = [r.record_id for r in records]
    assert ids[0] == "-1" and ids[-1] == "-3"
    assert stats.issues and stats.issues[0].line == len(good) + 9
    assert "invalid JSON" in stats.issues[0].message and "resumes" in stats.issues[0].message
    truncated = tmp_path / "cut.json"
    truncated.write_text("\n".join(good + second[:12]))  # a download cut short
    records, stats = read(truncated)
    assert [r.record_id for r in records] == ["-1"]
    assert stats.issues and "ends before the JSON is complete" in stats.issues[0].message


def test_google_lines_not_taken_by_the_ual_reader(tmp_path: Path) -> None:
    f = tmp_path / "x.ndjson"
    f.write_text(compact(dwd(["https://mail.google.com/"])) + "\n")
    records, stats = read(f)
    assert stats.files_read[0][1] == G.LINES and records[0].family == "google"


# -- mapper and findings -----------------------------------------------------------------------
def _hunt(tmp_path: Path, activities: list[dict], name: str = "acts.ndjson"):
    f = tmp_path / name
    f.write_text("".join(compact(a) + "\n" for a in activities))
    return hunt([str(f)], jobs=1)


def test_findings_carry_actor_grantee_rights(tmp_path: Path) -> None:
    acts = [
        dwd(["https://mail.google.com/", "https://www.googleapis.com/auth/admin.directory.user.readonly"], "-1"),
        dwd(["https://www.googleapis.com/auth/calendar"], "-2"),
        activity("ASSIGN_ROLE", [{"name": "ROLE_NAME", "value": "_SEED_ADMIN_ROLE"},
                                 {"name": "USER_EMAIL", "value": "eve@example.com"}], etype="DELEGATED_ADMIN_SETTINGS", uq="-3"),
        activity("authorize", [{"name": "client_id", "value": "555.apps.googleusercontent.com"},
                               {"name": "app_name", "value": "Mail Organizer"},
                               {"name": "scope", "multiValue": ["https://www.googleapis.com/auth/gmail.readonly"]}],
                 app="token", etype="auth", actor="victim@example.com", uq="-4"),
        activity("email_forwarding_out_of_domain", [{"name": "email_forwarding_destination_address",
                                                     "value": "drop@evil.example"}],
                 app="user_accounts", etype="email_forwarding_change", actor="victim@example.com", uq="-5"),
        delegation_on("-6"),
    ]
    result = _hunt(tmp_path, acts)
    by_rule = {f.rule: f for f in result.findings}
    assert set(by_rule) == {"google_dwd_gmail_scopes", "google_dwd_other_scopes", "google_delegated_admin_role",
                            "google_oauth_gmail_scopes", "google_user_email_forwarding",
                            "google_mail_delegation_enabled"}
    f = by_rule["google_dwd_gmail_scopes"]
    assert (f.severity, f.actor, f.grantee) == ("high", "admin@example.com", "113927442849203847561")
    assert "https://mail.google.com/" in f.rights and f.evidence[0].record_id == "-1"
    assert f.time == "2024-05-01T12:34:56Z"
    f = by_rule["google_delegated_admin_role"]
    assert (f.grantee, f.rights) == ("eve@example.com", ["_SEED_ADMIN_ROLE"])
    f = by_rule["google_oauth_gmail_scopes"]
    assert (f.actor, f.mailbox, f.grantee) == ("victim@example.com", "victim@example.com", "555.apps.googleusercontent.com")
    f = by_rule["google_user_email_forwarding"]
    assert "drop@evil.example" in f.summary
    assert by_rule["google_mail_delegation_enabled"].actor == "admin@example.com"


def test_configured_delegate_added_event(tmp_path: Path) -> None:
    add = activity("ADD_DELEGATE", [{"name": "delegate_email", "value": "eve@evil.example"},
                                    {"name": "USER_EMAIL", "value": "ceo@example.com"}],
                   app="user_accounts", etype="mail_delegation", actor="ceo@example.com", uq="-9")
    assert _hunt(tmp_path, [add]).findings == []  # no documented event: nothing without configuration
    previous = config.current()
    config.use(config.Config(google=config.GoogleConfig(delegate_added_events=("add_delegate",))))
    try:
        result = _hunt(tmp_path, [add], "configured.ndjson")
    finally:
        config.use(previous)
    (f,) = result.findings
    assert f.rule == "google_gmail_delegate_added_configured"
    assert (f.mailbox, f.grantee, f.rights, f.actor) == ("ceo@example.com", "eve@evil.example", ["Delegate"], "ceo@example.com")
    assert f.grantee_kind == "external" and f.severity == "critical"  # outside ownerDomain: one step up


def test_config_file_names_the_event(tmp_path: Path) -> None:
    toml = tmp_path / "dw.toml"
    toml.write_text('[google]\ndelegate_added_events = ["ADD_MAIL_DELEGATE"]\n')
    previous = config.current()
    config.use(config.load(toml))
    try:
        data = G.activity_records(activity("add_mail_delegate", [{"name": "DELEGATE", "value": "x@example.com"}]))
    finally:
        config.use(previous)
    assert data[0]["delegatewatch"] == {"mapping": "gmail_delegate_added"}
    assert "delegatewatch" not in G.activity_records(activity("add_mail_delegate", []))[0]


def _events(act: dict, tmp_path: Path):
    f = tmp_path / "one.ndjson"
    f.write_text(compact(act) + "\n")
    records, _ = read(f)
    mapper = mapper_for("google", Resolver())
    return [e for r in records for e in mapper.events(r)]


def test_gmail_delivery_sent_is_mailsend(tmp_path: Path) -> None:
    def delivery(kind: str) -> dict:
        return activity("delivery", [
            {"name": "event_info", "messageValue": {"parameter": [{"name": "mail_event_type", "intValue": kind}]}},
            {"name": "message_info", "messageValue": {"parameter": [
                {"name": "subject", "value": "Urgent: invoice"},
                {"name": "rfc2822_message_id", "value": "<abc@mail.gmail.com>"},
                {"name": "source", "messageValue": {"parameter": [{"name": "address", "value": "ceo@example.com"}]}},
                {"name": "destination", "multiMessageValue": [
                    {"parameter": [{"name": "address", "value": "a@x.example"}]},
                    {"parameter": [{"name": "address", "value": "b@x.example"}]}]}]}}],
            app="gmail", etype="delivery_type", actor="ceo@example.com")
    (ev,) = _events(delivery("1"), tmp_path)
    assert isinstance(ev, MailSend)
    assert (ev.mailbox.name, ev.actor.name, ev.subject, ev.message_id, ev.recipients) == (
        "ceo@example.com", "ceo@example.com", "Urgent: invoice", "<abc@mail.gmail.com>", 2)
    assert _events(delivery("2"), tmp_path) == []  # received, not sent
    bare = activity("delivery", [{"name": "event_info", "messageValue": {"parameter": [
        {"name": "mail_event_type", "intValue": "1"}]}}], app="gmail", etype="delivery_type", actor="u@example.com")
    (ev,) = _events(bare, tmp_path)  # no message_info at all: the actor's mailbox, nothing else
    assert ev.mailbox.name == "u@example.com" and ev.subject is None and ev.recipients is None


def test_mapper_setting_change_and_revocations(tmp_path: Path) -> None:
    (ev,) = _events(delegation_on(), tmp_path)
    assert isinstance(ev, SettingChange)
    assert (ev.setting, ev.value, ev.target.display_name) == ("ENABLE_MAIL_DELEGATION_WITHIN_DOMAIN", "true", "Example Org")
    remove = dwd(["https://mail.google.com/"])
    remove["events"][0]["name"] = "REMOVE_API_CLIENT_ACCESS"
    (ev,) = _events(remove, tmp_path)
    assert isinstance(ev, PermissionChange) and ev.action == Action.REVOKE and ev.scope == Scope.APP
    (ev,) = _events(dwd(["https://mail.google.com/", "https://www.googleapis.com/auth/gmail.settings.sharing"]), tmp_path)
    assert ev.rights == frozenset({"https://mail.google.com/", "https://www.googleapis.com/auth/gmail.settings.sharing"})
    assert ev.client_ip == "203.0.113.10"


def test_duplicate_activities_across_files_count_once(tmp_path: Path) -> None:
    a = dwd(["https://mail.google.com/"], "-1")
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "one.ndjson").write_text(compact(a) + "\n")
    (tmp_path / "d" / "two.json").write_text(json.dumps(page([copy.deepcopy(a)]), indent=2))
    result = hunt([str(tmp_path / "d")], jobs=1)
    assert len(result.findings) == 1 and result.stats.duplicates == 1
