"""OCSF output: Detection Findings (2004) of the hunt, and the event export (3005 / 4009) as JSON
lines and as Security Lake Parquet. Every object is validated against the OCSF 1.7.0 models of
pydantic-ocsf, made strict: an attribute the class does not define (outside ``unmapped``, ``data``
and the attributes of the profiles the object declares) is an error too."""

from __future__ import annotations

import copy
import importlib
import io
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import Any

import orjson
import pytest

from delegatewatch.engine.export_events import JSONL_NAME, export_events
from delegatewatch.engine.hunt import HuntResult, hunt
from delegatewatch.events.principals import Directory
from delegatewatch.outputs import ocsf
from delegatewatch.outputs.ocsf_events import SCHEMAS
from tests.conftest import compact, ual

DEMO = Path(__file__).resolve().parent.parent / "examples" / "demo"
GRANT_ID = "54404c32-a76f-4b18-999d-08dc1369fb20"  # Add-MailboxPermission FullAccess, CFO mailbox (chain 1)
REVOKE_ID = "61136c10-e12e-41ac-87b4-08dc8f6fcc97"  # Remove-MailboxPermission FullAccess
SEND_AS_ID = "ed3c12ff-acc9-496b-8f5f-cd00d0904160"  # SendAs as the CEO (chain 2)
TENANT = "3f0d8a5c-9b1e-4c27-8d43-6a2e91f7b0c4"
CLASS_MODELS = {2004: "DetectionFinding", 3005: "UserAccess", 4009: "EmailActivity"}


# -- strict validation against pydantic-ocsf --------------------------------------------------
@cache
def _module(kind: str) -> Any:
    assert ocsf.OCSF_VERSION == "1.7.0"
    return importlib.import_module(f"ocsf.v1_7_0.{kind}")


#: Profile attributes the class models leave out: attribute → object model (None: a scalar).
PROFILE_ATTRIBUTES = {"cloud": {"cloud": "Cloud", "api": "Api"}, "host": {"actor": "Actor", "device": "Device"}}
FREE_FORM = {"unmapped", "data"}


def _extras(model: Any, path: str, problems: list[str]) -> None:
    from pydantic import BaseModel

    for key in model.model_extra or {}:
        problems.append(f"{path}{key}: not an attribute of {type(model).__name__}")
    for name in type(model).model_fields:
        if name in FREE_FORM:
            continue
        value = getattr(model, name)
        items = value if isinstance(value, list) else [value]
        for item in items:
            if isinstance(item, BaseModel):
                _extras(item, f"{path}{name}.", problems)


def strict_validate(obj: dict[str, Any]) -> Any:
    """Validate one OCSF object; raise ValueError (or pydantic's ValidationError) when invalid."""
    data = copy.deepcopy(obj)  # the models fill in sibling labels in place
    cls = getattr(_module("events"), CLASS_MODELS[data.get("class_uid")])
    profiles = set((data.get("metadata") or {}).get("profiles") or [])
    extra: dict[str, Any] = {}
    for profile, attributes in PROFILE_ATTRIBUTES.items():
        for attr, obj_name in attributes.items():
            if attr in data and attr not in cls.model_fields:
                if profile not in profiles:
                    raise ValueError(f"{attr}: needs the {profile} profile in metadata.profiles")
                extra[attr] = (obj_name, data.pop(attr))
    if "datetime" in profiles:
        for key in [k for k in data if k.endswith("_dt") and k[:-3] in cls.model_fields]:
            datetime.fromisoformat(data.pop(key))
    model = cls.model_validate(data)
    problems: list[str] = []
    _extras(model, "", problems)
    for attr, (obj_name, value) in extra.items():
        _extras(getattr(_module("objects"), obj_name).model_validate(value), f"{attr}.", problems)
    if problems:
        raise ValueError("; ".join(problems))
    return model


# -- fixtures -----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def demo_hunt() -> HuntResult:
    return hunt([str(DEMO)], jobs=1)


@pytest.fixture(scope="module")
def demo_findings(demo_hunt: HuntResult) -> list[dict[str, Any]]:
    buf = io.StringIO()
    n = ocsf.write(demo_hunt.findings, buf, records=demo_hunt.records)
    lines = buf.getvalue().splitlines()
    assert n == len(lines) == len(demo_hunt.findings) > 0
    return [orjson.loads(line) for line in lines]


@pytest.fixture(scope="module")
def demo_events() -> tuple[Any, list[dict[str, Any]]]:
    buf = io.StringIO()
    result = export_events([str(DEMO)], "ocsf", buf, directory=Directory.load(str(DEMO / "directory.csv")))
    return result, [orjson.loads(line) for line in buf.getvalue().splitlines()]


def _event(events: list[dict[str, Any]], record_id: str) -> dict[str, Any]:
    hits = [e for e in events if e["metadata"]["original_event_uid"] == record_id]
    assert len(hits) == 1, hits
    return hits[0]


# -- Detection Finding (2004) -------------------------------------------------------------------
def test_every_demo_finding_is_valid_ocsf(demo_findings: list[dict[str, Any]]) -> None:
    for obj in demo_findings:
        strict_validate(obj)
        assert (obj["class_uid"], obj["category_uid"], obj["type_uid"], obj["activity_id"]) == (2004, 2, 200401, 1)
        assert obj["status_id"] == 1 and obj["is_alert"] is True
        assert obj["metadata"]["version"] == "1.7.0" and obj["metadata"]["product"]["name"] == "delegatewatch"
    assert len({o["finding_info"]["uid"] for o in demo_findings}) == len(demo_findings)


def test_full_access_finding(demo_hunt: HuntResult, demo_findings: list[dict[str, Any]]) -> None:
    f = next(f for f in demo_hunt.findings if f.evidence[0].record_id == GRANT_ID)
    obj = next(o for o in demo_findings if o["finding_info"]["uid"] == f.id)
    assert obj["severity_id"] == ocsf.SEVERITY_IDS[f.severity]
    assert obj["severity"] == f.severity.capitalize()
    assert obj["time"] == int(datetime(2024, 10, 15, 13, 44, 51, tzinfo=UTC).timestamp() * 1000)
    info = obj["finding_info"]
    assert info["analytic"] == {"uid": f.rule_id, "name": "m365_mailbox_full_access_grant", "type_id": 1,
                                "type": "Rule", "category": "Sigma"}
    assert info["title"] == f.title and info["desc"] == f.summary
    assert info["first_seen_time"] == info["last_seen_time"] == obj["time"]
    attack = info["attacks"][0]
    assert attack["technique"] == {"uid": "T1098", "name": "Account Manipulation",
                                   "src_url": "https://attack.mitre.org/techniques/T1098/"}
    assert attack["sub_technique"]["uid"] == "T1098.002"
    assert attack["sub_technique"]["name"] == "Additional Email Delegate Permissions"
    assert {a["tactic"]["uid"] for a in info["attacks"]} == {"TA0003", "TA0004"}
    # evidence: the raw record, by file, UAL Id and line
    (ev,) = obj["evidences"]
    assert ev["uid"] == GRANT_ID == obj["metadata"]["original_event_uid"]
    assert ev["data"]["source"] == f.evidence[0].source
    assert Path(ev["data"]["source"]).name in ("purview_new.csv", "search_unifiedauditlog.csv")
    assert ev["data"]["line"] == f.evidence[0].line and isinstance(ev["data"]["line"], int)
    assert ev["actor"]["user"]["name"] == "mark.ross@contoso.com"
    assert ev["src_endpoint"] == {"ip": "192.0.2.77"}
    assert ev["user"]["uid"] == "6c031de9-957a-4a54-8a4c-d6ee00deecc3"  # the grantee, by object id
    mailbox, grantee = obj["resources"]
    assert mailbox["type"] == "Mailbox" and mailbox["uid"] == "6305e988-e051-4b7e-ba06-1c2fb260a3c7"
    assert grantee["type"] == "User" and grantee["role_id"] == 4
    assert obj["cloud"]["account"]["uid"] == obj["metadata"]["tenant_uid"] == TENANT  # from `records`
    assert obj["unmapped"]["rights"] == ["FullAccess"]
    assert "anomaly_analyses" not in obj


def test_attack_mapping() -> None:
    (hiding,) = ocsf.attacks(["T1564.008"])
    assert hiding["technique"]["uid"] == "T1564" and hiding["sub_technique"]["name"] == "Email Hiding Rules"
    assert hiding["tactic"]["uid"] == "TA0005"
    (fwd,) = ocsf.attacks(["T1114.003"])
    assert fwd["tactic"]["name"] == "Collection"
    assert {a["sub_technique"]["uid"] for a in ocsf.attacks(["T1098.003", "T1562.008"])} == {"T1098.003", "T1562.008"}
    assert ocsf.attacks(["not-an-id"]) == []


def test_default_grantee_is_a_synthetic_user(demo_findings: list[dict[str, Any]]) -> None:
    obj = next(o for o in demo_findings if o["unmapped"].get("grantee_kind") == "default")
    (ev,) = obj["evidences"]
    assert ev["user"]["name"] == "Default" and ev["user"]["type_id"] == 99 and ev["user"]["type"] == "Default"
    assert any(r["type"] == "Mailbox Folder" for r in obj["resources"])


def test_anomaly_hook(demo_hunt: HuntResult) -> None:
    f = copy.copy(demo_hunt.findings[0])
    f.anomaly = {"analysis_targets": [{"name": "mail sent per hour", "type": "Mailbox"}],  # type: ignore[attr-defined]
                 "anomalies": [{"observation_parameter": "messages_sent", "observations": [{"value": "412"}]}],
                 "baselines": [{"observation_parameter": "messages_sent", "observations": [{"value": "9"}]}]}
    obj = ocsf.finding_to_ocsf(f)
    assert obj["anomaly_analyses"][0]["anomalies"][0]["observation_parameter"] == "messages_sent"
    strict_validate(obj)
    f.anomaly = "a spike"  # type: ignore[attr-defined]
    with pytest.raises(TypeError):
        ocsf.finding_to_ocsf(f)


def test_validator_rejects_invalid_objects(demo_findings: list[dict[str, Any]],
                                           demo_events: tuple[Any, list[dict[str, Any]]]) -> None:
    """The validation above is real: broken objects fail it."""
    from pydantic import ValidationError

    good = demo_findings[0]
    strict_validate(good)
    broken: list[dict[str, Any]] = []
    for mutate in (
        lambda o: o.pop("finding_info"),  # required
        lambda o: o.update(severity_id=42),  # not in the enum
        lambda o: o.update(type_uid=200402),  # must be class_uid * 100 + activity_id
        lambda o: o.update(severity="Low"),  # label contradicts severity_id
        lambda o: o["finding_info"].pop("uid"),  # required in finding_info
        lambda o: o["finding_info"]["analytic"].update(type_id=1000),  # not in the nested enum
        lambda o: o.update(finding_infos={}),  # not an attribute (caught by the strict check)
        lambda o: o["evidences"][0].update(actors={}),  # nested unknown attribute
        lambda o: o["metadata"].update(profiles=[]),  # cloud used without declaring its profile
    ):
        obj = copy.deepcopy(good)
        mutate(obj)
        broken.append(obj)
    for obj in broken:
        with pytest.raises((ValidationError, ValueError)):
            strict_validate(obj)
    grant = copy.deepcopy(_event(demo_events[1], GRANT_ID))
    del grant["privileges"]  # required in User Access Management
    with pytest.raises(ValidationError):
        strict_validate(grant)


# -- event export: User Access Management (3005), Email Activity (4009) ------------------------
def test_exported_events_are_valid_ocsf(demo_events: tuple[Any, list[dict[str, Any]]]) -> None:
    result, events = demo_events
    assert result.records == 310 and result.stats.duplicates == 4  # EXPECTED.md: 310 distinct records
    assert result.events[3005] == sum(e["class_uid"] == 3005 for e in events) > 0
    assert result.events[4009] == sum(e["class_uid"] == 4009 for e in events) > 0
    assert result.written == len(events)
    assert result.not_exported["MailboxAccess"] > 0  # no class for it here: counted, not written
    for obj in events:
        strict_validate(obj)
    assert len({e["metadata"]["uid"] for e in events}) == len(events)
    assert "3005" in result.summary() and "duplicate" in result.summary()


def test_full_access_grant_is_assign_privileges(demo_events: tuple[Any, list[dict[str, Any]]]) -> None:
    obj = _event(demo_events[1], GRANT_ID)
    assert (obj["class_uid"], obj["activity_id"], obj["type_uid"]) == (3005, 1, 300501)
    assert obj["privileges"] == ["FullAccess"]
    # the directory resolves the object GUIDs the record names
    assert obj["user"]["name"] == "mark.ross@contoso.com"
    assert obj["user"]["uid"] == "6c031de9-957a-4a54-8a4c-d6ee00deecc3"
    (mailbox,) = obj["resources"]
    assert mailbox["type"] == "Mailbox" and mailbox["owner"]["email_addr"] == "dana.whitfield@contoso.com"
    assert obj["actor"]["user"]["name"] == "mark.ross@contoso.com"
    assert obj["src_endpoint"] == {"ip": "192.0.2.77"}
    assert obj["cloud"]["provider"] == "Microsoft" and obj["cloud"]["account"]["uid"] == TENANT
    assert obj["metadata"]["original_event_uid"] == GRANT_ID
    assert obj["metadata"]["product"] == {"name": "Exchange Online", "vendor_name": "Microsoft"}
    assert obj["unmapped"]["action"] == "grant" and obj["unmapped"]["scope"] == "mailbox"


def test_revoke_is_activity_2(demo_events: tuple[Any, list[dict[str, Any]]]) -> None:
    obj = _event(demo_events[1], REVOKE_ID)
    assert (obj["class_uid"], obj["activity_id"], obj["type_uid"]) == (3005, 2, 300502)
    assert obj["activity_name"] == "Revoke Privileges" and obj["privileges"] == ["FullAccess"]


def test_folder_grant_to_default(demo_events: tuple[Any, list[dict[str, Any]]]) -> None:
    obj = _event(demo_events[1], "c20709cc-954b-47e8-a2a3-08dc7b646e4c")  # Default: Reviewer on the CEO's Inbox
    assert obj["user"]["name"] == "Default" and obj["user"]["type_id"] == 99
    assert "ReadItems" in obj["privileges"]
    assert [r["type"] for r in obj["resources"]] == ["Mailbox", "Mailbox Folder"]
    assert obj["resources"][1]["name"] == "\\Inbox"


def test_send_as_is_email_activity(demo_events: tuple[Any, list[dict[str, Any]]]) -> None:
    obj = _event(demo_events[1], SEND_AS_ID)
    assert (obj["class_uid"], obj["activity_id"], obj["type_uid"], obj["category_uid"]) == (4009, 1, 400901, 4)
    assert obj["email"]["from"] == "ceo@contoso.com"
    assert obj["actor"]["user"]["name"] == "mark.ross@contoso.com"
    assert obj["unmapped"]["as_delegate"] is True and obj["unmapped"]["operation"] == "SendAs"


def test_export_to_a_file_or_folder(tmp_path: Path) -> None:
    target = tmp_path / "out.jsonl"
    result = export_events([str(DEMO)], "ocsf", str(target))
    assert result.outputs == [str(target)]
    assert len(target.read_text(encoding="utf-8").splitlines()) == result.written
    # a folder gets a file inside; our own output in the input folder is never read back
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "a.jsonl").write_bytes((DEMO / "ual_spaced.ndjson").read_bytes())
    first = export_events([str(tmp_path / "in")], "ocsf", str(tmp_path / "in"))
    assert first.outputs == [str(tmp_path / "in" / JSONL_NAME)]
    again = export_events([str(tmp_path / "in")], "ocsf", str(tmp_path / "in"))
    assert again.records == first.records and again.written == first.written
    with pytest.raises(ValueError):
        export_events([str(DEMO)], "xml", io.StringIO())
    with pytest.raises(ValueError):
        export_events([str(DEMO)], "parquet", io.StringIO())


# -- Security Lake Parquet --------------------------------------------------------------------------
def test_parquet_security_lake_layout(tmp_path: Path, demo_events: tuple[Any, list[dict[str, Any]]]) -> None:
    import duckdb
    import pyarrow as pa
    import pyarrow.parquet as pq

    _, events = demo_events
    result = export_events([str(DEMO)], "parquet", str(tmp_path), directory=Directory.load(str(DEMO / "directory.csv")),
                           region="eu-west-1", account_id="123456789012")
    expected: dict[tuple[int, str], int] = {}
    for e in events:
        day = datetime.fromtimestamp(e["time"] / 1000, UTC).strftime("%Y%m%d")
        expected[(e["class_uid"], day)] = expected.get((e["class_uid"], day), 0) + 1
    # one source per class, one partition per event day
    for (cls, day) in expected:
        part = tmp_path / "ext" / f"delegatewatch-{cls}" / "region=eu-west-1" / "accountId=123456789012" / f"eventDay={day}"
        assert len(list(part.glob("part-*.parquet"))) == 1, part
    assert {d.name for d in (tmp_path / "ext").iterdir()} == {"delegatewatch-3005", "delegatewatch-4009"}
    assert len(result.outputs) == len(expected) and {d for _, d in expected} == {"20241014", "20241015", "20241016"}

    con = duckdb.connect()
    try:
        got = {}
        for cls in (3005, 4009):
            glob = f"{tmp_path}/ext/delegatewatch-{cls}/*/*/*/*.parquet"
            for day, n, classes in con.execute(
                    f"SELECT eventDay, count(*), list(DISTINCT class_uid) FROM read_parquet('{glob}', hive_partitioning=true)"
                    " GROUP BY eventDay").fetchall():
                assert classes == [cls]
                got[(cls, str(day))] = n
        assert got == expected
        row = con.execute(
            f"SELECT activity_id, privileges, \"user\".name, resources[1].owner.email_addr, metadata.original_event_uid,"
            f" src_endpoint.ip, time, epoch_ms(time_dt), unmapped['scope'], region, accountId"
            f" FROM read_parquet('{tmp_path}/ext/delegatewatch-3005/*/*/*/*.parquet', hive_partitioning=true,"
            f" hive_types_autocast=false) WHERE metadata.original_event_uid = '{GRANT_ID}'").fetchone()
        grant = _event(events, GRANT_ID)
        assert row == (1, ["FullAccess"], "mark.ross@contoso.com", "dana.whitfield@contoso.com", GRANT_ID,
                       "192.0.2.77", grant["time"], grant["time"], "mailbox", "eu-west-1", "123456789012")
        sent = con.execute(f"SELECT email.\"from\", email.subject FROM read_parquet('{tmp_path}/ext/delegatewatch-4009/*/*/*/*.parquet')"
                           f" WHERE metadata.original_event_uid = '{SEND_AS_ID}'").fetchone()
        assert sent[0] == "ceo@contoso.com" and sent[1] == _event(events, SEND_AS_ID)["email"]["subject"]
    finally:
        con.close()

    # millisecond timestamps, sorted by time, and every JSON field survives the round trip
    by_uid = {e["metadata"]["uid"]: e for e in events}
    for path in result.outputs:
        table = pq.read_table(path)
        assert table.schema.field("time_dt").type == pa.timestamp("ms", tz="UTC")
        assert table.schema.equals(SCHEMAS[table.column("class_uid")[0].as_py()])
        times = table.column("time").to_pylist()
        assert times == sorted(times)
        for row in table.to_pylist():
            src = by_uid[row["metadata"]["uid"]]
            row["unmapped"] = {k: (v if isinstance(src["unmapped"][k], str) else orjson.loads(v)) for k, v in row["unmapped"]}
            row["time_dt"] = src["time_dt"] if row["time_dt"] == datetime.fromisoformat(
                src["time_dt"]) else row["time_dt"]
            assert _drop_none(row) == src


def _drop_none(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _drop_none(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_drop_none(v) for v in value]
    return value


def test_export_edge_cases(tmp_path: Path) -> None:
    """Deny entries, grants without a grantee, records without a time, odd shapes: valid or counted."""
    deny = ual(rid="00000000-0000-0000-0000-0000000000d1", Identity="ceo@contoso.com", User="eve@contoso.com",
               AccessRights="FullAccess", Deny="True")
    clear = ual("Set-Mailbox", rid="00000000-0000-0000-0000-0000000000c1", Identity="ceo@contoso.com",
                GrantSendOnBehalfTo="$null")
    timeless = ual(rid="00000000-0000-0000-0000-0000000000e1")
    del timeless["CreationTime"]
    odd = ual(rid="00000000-0000-0000-0000-0000000000f1")
    odd["Parameters"] = "not a list"
    behalf = {"CreationTime": "2024-02-05T08:00:00", "Id": "00000000-0000-0000-0000-0000000000b1",
              "Operation": "SendOnBehalf", "RecordType": 2, "UserType": 0, "Workload": "Exchange",
              "UserId": "eve@contoso.com", "MailboxOwnerUPN": "ceo@contoso.com", "ResultStatus": "Succeeded",
              "SendOnBehalfOfUserSmtp": "ceo@contoso.com", "ClientIP": "[2001:db8::5]:443",
              "Item": {"Subject": "hi", "InternetMessageId": "<m1@contoso.com>"}}
    src = tmp_path / "ual.jsonl"
    src.write_text("\n".join(compact(r) for r in (deny, clear, timeless, odd, behalf)) + "\n", encoding="utf-8")
    buf = io.StringIO()
    result = export_events([str(src)], "ocsf", buf)
    events = [orjson.loads(line) for line in buf.getvalue().splitlines()]
    for obj in events:
        strict_validate(obj)
    by_id = {e["metadata"]["original_event_uid"]: e for e in events}
    assert by_id[deny["Id"]]["activity_id"] == 99 and by_id[deny["Id"]]["activity_name"] == "Deny"
    cleared = by_id[clear["Id"]]
    assert cleared["activity_id"] == 2 and cleared["privileges"] == ["SendOnBehalf"]
    assert cleared["user"]["type_id"] == 0  # every delegate removed: no one named
    sent = by_id[behalf["Id"]]
    assert sent["email"] == {"from": "ceo@contoso.com", "sender": "eve@contoso.com", "subject": "hi",
                             "message_uid": "<m1@contoso.com>"}
    assert sent["src_endpoint"] == {"ip": "2001:db8::5"} and "host" in sent["metadata"]["profiles"]
    assert result.not_exported["no time"] == 1 and timeless["Id"] not in by_id
    assert result.records == 5
