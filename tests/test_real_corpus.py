"""The outcomes detections.md §4 expects on the real public samples."""

from __future__ import annotations

from delegatewatch.engine.hunt import hunt

BT = "blueteam0ps-det-eng-samples"


def _rules_fired(paths) -> dict[str, set[str]]:
    result = hunt([str(p) for p in paths])
    out: dict[str, set[str]] = {}
    for f in result.findings:
        out.setdefault(f.evidence[0].record_id, set()).add(f.rule)
    return out


def test_human_full_access_grant_alerts(corpus):
    fired = _rules_fired([corpus / BT / "t1098.002_Mail Account Delegation full access permissions.json"])
    assert fired == {"97fc1f52-4cd1-498b-f05e-08db8b78efd7": {"m365_mailbox_full_access_grant"}}


def test_system_discovery_search_mailbox_grant_is_quiet(corpus):
    path = corpus / BT / "t1098.002_Mail Account Delegation full access permissions.csv"
    result = hunt([str(path)])
    assert result.stats.records_parsed == 1  # the record was read, and is quiet
    assert result.findings == []


def test_guid_send_as_grant_alerts(corpus):
    result = hunt([str(corpus / BT / "t1098.002_Mail account delegation-SendAs permission.csv")])
    [f] = result.findings
    assert f.rule == "m365_send_as_grant"
    assert f.evidence[0].record_id == "c1b9ac08-49c3-4757-1702-08db603a8b4a"
    assert f.grantee == "311b45d6-1a3e-46ac-8434-721367961e19" and f.rights == ["SendAs"]
    assert f.evidence[0].line == 2  # header is line 1


def test_new_role_group_application_impersonation_alerts(corpus):
    result = hunt([str(corpus / BT / "t1098.002_ApplicationImpersonation.csv")])
    [f] = result.findings
    assert f.rule == "m365_application_impersonation" and f.severity in ("high", "critical")
    assert f.rights == ["ApplicationImpersonation"]
    assert f.grantee == "0a1b7ab4-e3c2-4e75-93ad-6ea6d16cffbf"


def test_reset_then_full_access_grant_alerts_on_the_grant(corpus):
    fired = _rules_fired([corpus / BT / "t1098.002_user-reset_mailbox_full_access.json"])
    assert fired == {"bc0b2d0b-9cbe-4b2f-fcfd-08dc25d7c6ac": {"m365_mailbox_full_access_grant"}}


def test_system_group_calendar_folder_permissions_are_quiet(corpus):
    result = hunt([str(corpus / "elastic-integrations-o365" / "test-exchange-item.log")])
    assert result.stats.records_seen == 9
    assert result.candidates == 6  # the six ModifyFolderPermissions records reached the rules …
    assert result.findings == []  # … and none fired


def test_duplicates_in_real_export_count_once(corpus):
    result = hunt([str(corpus / BT / "t1114.003_Forward_Rule_Multi_Users_Same_Forward_dest.json")])
    assert result.stats.duplicates == 2
    assert len(result.findings) == 3  # three distinct Set-Mailbox forwarding records


def test_whole_blueteam_folder(corpus):
    """Every file is read (none skipped), nothing malformed, and the expected rules fire."""
    result = hunt([str(corpus / BT)])
    assert result.stats.files_skipped == []
    assert result.stats.skipped == 0
    rules = {f.rule for f in result.findings}
    assert {"m365_mailbox_full_access_grant", "m365_send_as_grant", "m365_application_impersonation",
            "m365_mailbox_audit_bypass", "m365_inbox_rule_hiding", "m365_mail_forwarding"} <= rules
    ids = {f.evidence[0].record_id for f in result.findings}
    assert "158ad9da-ad36-4762-e5d7-08db5f647901" not in ids  # the system DiscoverySearchMailbox grant
    # The same audit-bypass record is in a .json and a .csv: one finding.
    assert sum(f.rule == "m365_mailbox_audit_bypass" for f in result.findings) == 1


def test_pretty_convertto_json_files_are_read(corpus):
    result = hunt([str(corpus / BT / "t1564.008_rule_mark_as_read_move.json"),
                   str(corpus / BT / "t1114.003_rule_mail_forward_same_dest.json")])
    assert result.stats.records_parsed == 3
    assert {f.rule for f in result.findings} == {"m365_inbox_rule_hiding", "m365_mail_forwarding"}
