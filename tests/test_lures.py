"""Look-alike lures on generated multi-week mail flow: precision and recall per case, subject
normalisation, and LSH clustering at scale (buckets, not all pairs)."""

from __future__ import annotations

import dataclasses
import random
import time
from functools import cache

import pytest

from delegatewatch import config as configuration
from delegatewatch.analytics import lures as L
from delegatewatch.analytics import mailflow
from tests.test_mailflow_generator import ORG, generate, to_sends


@cache
def _run():
    mails, truth = generate()
    sends = to_sends(mails)
    findings = mailflow.lure_findings(sends, configuration.Config(), {ORG})
    campaigns = L.find_campaigns(mailflow.lure_messages(sends, {ORG}), configuration.LuresConfig())
    return findings, campaigns, truth


def scores_by_case():
    findings, _, truth = _run()
    table = {}
    matched = set()
    tp = 0
    for senders, start, end in truth.lures:
        hit = [f for f in findings if set(f.campaign["senders"]) == senders
               and f.campaign["window"]["start"] < end.strftime("%Y-%m-%dT%H:%M:%SZ")
               and f.campaign["window"]["end"] >= start.strftime("%Y-%m-%dT%H:%M:%SZ")]
        tp += bool(hit)
        matched |= {f.id for f in hit}
    table["lure"] = {"tp": tp, "fp": len([f for f in findings if f.id not in matched]), "fn": len(truth.lures) - tp}
    for case, subjects in truth.quiet_subjects.items():
        fp = [f for f in findings if any(s in subj for s in subjects for subj in f.campaign["subjects"])]
        table[case] = {"tp": 0, "fp": len(fp), "fn": 0}
    for row in table.values():
        row["precision"] = row["tp"] / (row["tp"] + row["fp"]) if row["tp"] + row["fp"] else 1.0
        row["recall"] = row["tp"] / (row["tp"] + row["fn"]) if row["tp"] + row["fn"] else 1.0
    return table


@pytest.mark.parametrize("case", ["lure", "reply_storm", "recurring_template", "common_subject",
                                  "steady_high_volume", "broadcast", "assistant"])
def test_precision_and_recall_per_case(case: str) -> None:
    row = scores_by_case()[case]
    assert row["precision"] == 1.0, (case, row)
    assert row["recall"] == 1.0, (case, row)


def test_every_benign_look_alike_is_scored() -> None:
    _, _, truth = _run()
    assert {"steady_high_volume", "broadcast", "reply_storm", "assistant"} <= set(truth.quiet_subjects)
    assert set(truth.quiet_subjects) <= set(scores_by_case())
    mails, _ = generate()
    for case, subjects in truth.quiet_subjects.items():  # each names subjects the generator really sends
        assert all(any(s in m.subject for m in mails if m.case == case) for s in subjects), case


def test_benign_look_alikes_are_seen_and_set_aside_for_the_right_reason() -> None:
    _, campaigns, _ = _run()
    reasons = {}
    for c in campaigns:
        for subject in ("Holiday party RSVP", "Office move on Friday", "Daily stand-up notes", "Quick question"):
            if any(subject in s for s in c.subjects):
                reasons.setdefault(subject, set()).add((c.suppressed or "").split(":")[0])
    # replies to the organiser reach one recipient: never even a candidate
    assert "Holiday party RSVP" not in reasons
    assert reasons["Office move on Friday"] == {"reply storm"}  # reply-all to one list: wide reach, one address
    assert reasons["Daily stand-up notes"] == {"recurring template"}
    assert reasons.get("Quick question", {"common subject"}) == {"common subject"}


def test_lure_finding_names_accounts_subjects_window_and_every_record() -> None:
    findings, _, _ = _run()
    payroll = next(f for f in findings if "payroll" in f.summary)
    assert payroll.rule == "internal_lure_campaign" and payroll.attack == ["T1534"] and payroll.severity == "high"
    assert payroll.campaign["senders"] == [f"user0{i}@{ORG}" for i in (20, 21, 22, 23)]
    assert all(s.startswith("Action required: updated payroll portal") for s in payroll.campaign["subjects"])
    assert payroll.campaign["attachments"][0].startswith("Payroll_Update_")
    assert len(payroll.evidence) == payroll.campaign["messages"]  # one record per generated message
    assert payroll.campaign["reach"] >= 10
    for account in payroll.campaign["senders"]:
        assert account in payroll.summary


@pytest.mark.parametrize(("subject", "expected"), [
    ("RE: Holiday party RSVP", ("Holiday party RSVP", True, False)),
    ("AW: WG: Re: [EXTERNAL] Invoice", ("Invoice", True, False)),
    ("Fwd: FW[2]: report", ("report", True, False)),
    ("[External] Shared document", ("Shared document", False, False)),
    ("Automatic reply: Holiday", ("Automatic reply: Holiday", True, True)),
    ("Accepted: Weekly sync", ("Accepted: Weekly sync", True, True)),
    ("Regarding the plan", ("Regarding the plan", False, False)),
])
def test_normalise_subject(subject: str, expected: tuple) -> None:
    assert L.normalise_subject(subject) == expected


def test_attachment_names_from_ual() -> None:
    assert L.attachment_names("Payroll_Update_4512.html (8192b); logo.png (20480b)") == (
        "Payroll_Update_4512.html", "logo.png")
    assert L.attachment_names(None) == ()


def test_lsh_clusters_near_duplicates_among_many_texts() -> None:
    rnd = random.Random(5)
    words = ["".join(rnd.choices("abcdefghijklmnopqrstuvwxyz", k=rnd.randint(3, 9))) for _ in range(3000)]
    texts = [" ".join(rnd.sample(words, 6)) for _ in range(20_000)]  # unrelated texts
    planted = [f"Action required: verify your mailbox quota for {name} now" for name in ("ann", "bob", "cyd", "dee")]
    texts += planted
    cfg = configuration.LuresConfig()
    t0 = time.perf_counter()
    labels = L.cluster_texts([L.skeleton(t) for t in texts], cfg)
    elapsed = time.perf_counter() - t0
    assert len({labels[-i] for i in range(1, 5)}) == 1  # the planted look-alikes are one cluster
    sizes: dict[int, int] = {}
    for lab in labels[:-4]:
        sizes[lab] = sizes.get(lab, 0) + 1
    assert max(sizes.values()) <= 2  # random texts stay (almost all) alone
    assert elapsed < 15  # linear work: a quadratic pass over 20k texts would be 200M comparisons


def test_similarity_threshold_is_a_tunable() -> None:
    # Jaccard 0.59 over 4-shingles: an LSH tuned for 0.3 (21 bands of 3 rows) buckets them together with
    # probability 0.99 whatever the hashes; one tuned for 0.9 never joins them
    texts = ["quarterly bonus review for ann", "quarterly bonus review for ann and bob in finance"]
    loose = L.cluster_texts(texts, dataclasses.replace(configuration.LuresConfig(), similarity=0.3))
    strict = L.cluster_texts(texts, dataclasses.replace(configuration.LuresConfig(), similarity=0.9))
    assert loose[0] == loose[1] and strict[0] != strict[1]


def test_unknown_recipient_addresses_use_counts() -> None:
    # UAL Send without recipientList: the count stands in for the addresses
    msgs = [L.Message(i, 1_700_000_000 + 60 * i, f"u{i % 3}@{ORG}", f"Verify your account {i}", count=5)
            for i in range(6)]
    (c,) = L.find_campaigns(msgs, configuration.LuresConfig())
    assert c.suppressed is None and c.reach == 30 and c.top_recipient_share is None
    replies = [dataclasses.replace(m, subject="RE: lunch", count=1) for m in msgs]
    assert all(c.suppressed for c in L.find_campaigns(replies, dataclasses.replace(
        configuration.LuresConfig(), min_recipients=3, min_recipients_per_sender=1)))
