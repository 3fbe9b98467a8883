"""Gmail sends (Reports API ``gmail`` application, ``delivery`` events with ``mail_event_type`` 1)
reach the send-volume and lure analytics through the hunt (``analytics/google.py``)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from delegatewatch.analytics import google, mailflow
from delegatewatch.engine.hunt import hunt
from delegatewatch.records import ReadStats
from delegatewatch.sources import read_file
from tests.test_mailflow_generator import generate, gmail_send, write_gmail


@pytest.fixture(scope="module")
def gmail_folder(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, object]:
    folder = tmp_path_factory.mktemp("gmail")
    mails, truth = generate()
    write_gmail(mails, folder / "gmail_activities.ndjson")
    return folder, truth


def test_gmail_sends_reach_the_analytics(gmail_folder) -> None:
    folder, truth = gmail_folder
    result = hunt([str(folder)], jobs=1)
    assert result.stats.files_read == [(str(folder / "gmail_activities.ndjson"), "google-reports-ndjson")]
    bursts = [f for f in result.findings if f.rule == mailflow.VOLUME_RULE]
    found = {f.mailbox for f in bursts}
    expected = {a for a, _, _ in truth.bursts}
    assert len(found & expected) / len(found) == 1.0 and len(found & expected) / len(expected) == 1.0
    lures = sorted(frozenset(f.campaign["senders"]) for f in result.findings if f.rule == mailflow.LURE_RULE)
    assert lures == sorted(s for s, _, _ in truth.lures)
    quiet = set().union(*truth.quiet_accounts.values())
    assert not found & quiet
    # evidence points at the Gmail activity lines; the delegate's SendAs burst names the delegate
    f = bursts[0]
    assert all(Path(e.source).name == "gmail_activities.ndjson" and e.line for e in f.evidence)
    cfo = next(f for f in bursts if f.mailbox == "cfo@contoso.com")
    assert cfo.grantee == "eve@contoso.com"


def test_only_sent_gmail_messages_are_kept(tmp_path: Path) -> None:
    from datetime import UTC, datetime

    from tests.test_mailflow_generator import Mail

    sent = gmail_send(Mail(datetime(2024, 5, 1, 12, tzinfo=UTC), "ann@example.com", "Hi", ["bob@example.com"]), 1)
    received = json.loads(json.dumps(sent))
    received["id"]["uniqueQualifier"] = "-2"
    received["events"][0]["parameters"][0]["messageValue"]["parameter"][0]["intValue"] = "2"
    page = {"kind": "admin#reports#activities", "items": [sent, received]}  # an activities.list page
    (tmp_path / "page.json").write_text(json.dumps(page, indent=2))
    records = list(read_file(str(tmp_path / "page.json"), ReadStats()))
    assert [r.family for r in records] == ["google", "google"]
    kept = [r for r in records if google.reduce(r) is not None]
    assert len(kept) == 1 and kept[0].data["Id"] == sent["id"]["uniqueQualifier"]
    send = mailflow.google_send(kept[0])
    assert send is not None and (send.sender, send.recipients, send.subject) == ("ann@example.com",
                                                                               ("bob@example.com",), "Hi")


def test_real_google_records_are_not_sends(corpus: Path) -> None:
    """ScubaGoggles' real ``Raw.gmail_logs`` (settings changes, no delivery events): read, never kept
    as sends, no mail finding."""
    path = corpus / "cisagov-scubagoggles" / "ScubaResults_5134dab6-be86-4c35.Raw.gmail_logs.json"
    records = list(read_file(str(path), ReadStats()))
    assert len(records) > 400 and all(google.reduce(r) is None for r in records)
    result = hunt([str(path)], jobs=1)
    assert not [f for f in result.findings if f.rule in (mailflow.VOLUME_RULE, mailflow.LURE_RULE)]
