"""A small deterministic generator of multi-week mail flow with labelled cases, used by the
send-volume, lure and end-to-end tests (and its own sanity tests below).

Every case is labelled, so tests compute precision and recall per case:

* ``burst``: injected bursts (a user at 14:00 on a weekday, a user on a Saturday night, a busier
  user's moderate burst, a delegate sending as the CFO, a brand-new account on its second day);
* ``lure``: two campaigns of look-alike messages from several real internal accounts;
* benign look-alikes that must stay quiet: ``steady_high_volume`` (a newsletter and an alert
  mailbox), ``broadcast`` (one message to hundreds), ``reply_storm`` (replies to one organiser; a
  reply-all storm to one list), ``recurring_template`` (daily stand-up notes from team leads),
  ``assistant`` (an assistant who sends on behalf of the CEO every day), ``new_account`` (a new
  hire with ordinary volume), ``common_subject`` ("Quick question" to one colleague each).
"""

from __future__ import annotations

import csv
import json
import random
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

ORG = "contoso.com"
START = datetime(2024, 3, 4, tzinfo=UTC)  # a Monday
WORDS = ["budget", "forecast", "review", "contract", "draft", "agenda", "slides", "report", "invoice", "client", "project", "design", "meeting", "notes", "hiring", "plan", "roadmap", "launch", "campaign", "audit", "policy", "training", "offsite", "survey", "feedback", "summary", "proposal", "quote", "order", "shipment", "vendor", "release", "sprint", "backlog", "migration"]


@dataclass
class Mail:
    time: datetime
    sender: str  # mailbox sent from
    subject: str
    recipients: list[str]
    actor: str | None = None  # acting user when not the owner
    operation: str = "Send"
    attachments: list[str] = field(default_factory=list)
    mid: str = ""
    case: str = "normal"


@dataclass
class Truth:
    bursts: list[tuple[str, datetime, datetime]] = field(default_factory=list)  # (account, start, end)
    lures: list[tuple[frozenset[str], datetime, datetime]] = field(default_factory=list)
    #: benign case → accounts that must not be flagged by the volume analytic
    quiet_accounts: dict[str, set[str]] = field(default_factory=dict)
    #: benign case → subjects (without prefixes) that must not be reported as lures
    quiet_subjects: dict[str, set[str]] = field(default_factory=dict)


def addr(name: str) -> str:
    return f"{name}@{ORG}"


def generate(seed: int = 7, weeks: int = 4, users: int = 60) -> tuple[list[Mail], Truth]:
    """``weeks`` ≥ 4 and ``users`` ≥ 60: the injected cases sit on fixed days and accounts."""
    if weeks < 4 or users < 60:
        raise ValueError("generate() needs at least 4 weeks and 60 users")
    rnd = random.Random(seed)
    mails: list[Mail] = []
    truth = Truth()
    people = [addr(f"user{i:03d}") for i in range(users)]
    externals = [f"contact{i}@fabrikam.example" for i in range(40)]
    days = weeks * 7
    pool = [" ".join(rnd.sample(WORDS, 3)).capitalize() for _ in range(400)]  # everyday subjects
    rate = {p: rnd.uniform(0.3, 2.5) for p in people}
    busy = people[5]
    rate[busy] = 6.0  # a busier user (sales): about six messages an hour
    # -- ordinary users: working hours on weekdays, a trickle on weekends
    for p in people:
        for d in range(days):
            day = START + timedelta(days=d)
            weekend = day.weekday() >= 5
            for h in range(24):
                lam = rate[p] * (1.0 if 8 <= h < 18 else 0.05) * (0.05 if weekend else 1.0)
                for _ in range(_poisson(rnd, lam)):
                    t = day + timedelta(hours=h, seconds=rnd.randrange(3600))
                    to = rnd.sample(people, rnd.randint(1, 3)) if rnd.random() < 0.7 else [rnd.choice(externals)]
                    subject = rnd.choice(pool) + f" {rnd.randint(1, 99)}"
                    mails.append(Mail(t, p, subject, [r for r in to if r != p] or [rnd.choice(externals)]))
    # -- steady high volume: a newsletter (300/h, 09–11 on weekdays) and an alert mailbox
    news, alerts = addr("newsletter"), addr("alerts")
    for d in range(days):
        day = START + timedelta(days=d)
        if day.weekday() < 5:
            for h in (9, 10):
                for k in range(rnd.randint(280, 320)):
                    mails.append(Mail(day + timedelta(hours=h, seconds=rnd.randrange(3600)), news,
                                      f"Weekly digest {d}", [rnd.choice(people)], case="steady_high_volume"))
        for h in range(24):
            n = rnd.randint(20, 40) + (rnd.randint(60, 90) if h == 3 and d % 2 == 0 else 0)  # nightly batch
            for _ in range(n):
                mails.append(Mail(day + timedelta(hours=h, seconds=rnd.randrange(3600)), alerts,
                                  f"[Monitor] host{rnd.randint(1, 200)} cpu {rnd.randint(80, 99)}%",
                                  [addr("ops")], case="steady_high_volume"))
    truth.quiet_accounts["steady_high_volume"] = {news, alerts}
    truth.quiet_subjects["steady_high_volume"] = {"Weekly digest", "[Monitor]"}
    # -- broadcasts: one message to many (counts once)
    comms = addr("comms")
    for d in range(0, days, 7):
        t = START + timedelta(days=d, hours=10)
        mails.append(Mail(t, comms, f"Company update week {d // 7 + 1}", list(people), case="broadcast"))
    for k in range(6):  # a busy comms morning: six announcements to everyone
        t = START + timedelta(days=15, hours=9, minutes=10 * k)
        mails.append(Mail(t, comms, f"Announcement {k}: building access", list(people), case="broadcast"))
    mails.append(Mail(START + timedelta(days=9, hours=11), people[7], "Team offsite logistics", list(people),
                      case="broadcast"))
    truth.quiet_accounts["broadcast"] = {comms, people[7]}
    truth.quiet_subjects["broadcast"] = {"Company update week", "building access", "Team offsite logistics"}
    # -- the assistant who sends on behalf of the CEO every weekday
    ceo, assistant = addr("ceo"), addr("assistant")
    for d in range(days):
        day = START + timedelta(days=d)
        if day.weekday() >= 5:
            continue
        for h in range(8, 18):
            for _ in range(_poisson(rnd, 1.0)):
                mails.append(Mail(day + timedelta(hours=h, seconds=rnd.randrange(3600)), ceo,
                                  "Re: " + " ".join(rnd.sample(WORDS, 2)), [rnd.choice(people)], case="assistant"))
        for _ in range(rnd.randint(6, 10)):
            mails.append(Mail(day + timedelta(hours=rnd.randint(8, 17), seconds=rnd.randrange(3600)), ceo,
                              "Meeting request: " + " ".join(rnd.sample(WORDS, 2)), [rnd.choice(people + externals)],
                              actor=assistant, operation="SendOnBehalf", case="assistant"))
    truth.quiet_accounts["assistant"] = {ceo, assistant}
    truth.quiet_subjects["assistant"] = {"Meeting request"}
    # -- a new hire with ordinary volume in the last week
    newhire = addr("newhire")
    for d in range(days - 3, days):
        for h in range(9, 17):
            for _ in range(_poisson(rnd, 2)):
                mails.append(Mail(START + timedelta(days=d, hours=h, seconds=rnd.randrange(3600)), newhire,
                                  "Hello " + rnd.choice(WORDS), [rnd.choice(people)], case="new_account"))
    truth.quiet_accounts["new_account"] = {newhire}
    # -- injected bursts
    def burst(account: str, start: datetime, n: int, actor: str | None = None, operation: str = "Send",
              subject: str = "Please review") -> None:
        for k in range(n):
            to = rnd.sample(externals, 3)
            mails.append(Mail(start + timedelta(seconds=rnd.randrange(3600)), account, f"{subject} {k}", to,
                              actor=actor, operation=operation, case="burst"))
        truth.bursts.append((account, start, start + timedelta(hours=1)))

    burst(people[11], START + timedelta(days=16, hours=14), 120)  # a weekday afternoon
    burst(people[12], START + timedelta(days=19, hours=2), 60)  # Saturday 02:00
    burst(busy, START + timedelta(days=22, hours=11), 60)  # a busy user's moderate burst
    cfo = addr("cfo")
    for d in range(days):
        day = START + timedelta(days=d)
        if day.weekday() < 5:
            for h in range(9, 17):
                for _ in range(_poisson(rnd, 1.5)):
                    mails.append(Mail(day + timedelta(hours=h, seconds=rnd.randrange(3600)), cfo,
                                      " ".join(rnd.sample(WORDS, 3)), [rnd.choice(people)]))
    burst(cfo, START + timedelta(days=24, hours=20), 80, actor=addr("eve"), operation="SendAs",
          subject="Urgent wire transfer")
    fresh = addr("fresh")
    for h in range(9, 12):
        mails.append(Mail(START + timedelta(days=days - 2, hours=h, minutes=5), fresh, "Hi", [people[1]]))
    burst(fresh, START + timedelta(days=days - 1, hours=15), 150, subject="Invoice")  # a new account
    # -- look-alike lures from real accounts
    def lure(senders: list[str], start: datetime, template: str, attachment: str | None) -> None:
        for i, s in enumerate(senders):
            for j in range(rnd.randint(1, 3)):
                n = rnd.randint(1000, 9999)
                mails.append(Mail(start + timedelta(minutes=20 * i + 7 * j + rnd.randint(0, 5)), s,
                                  template.format(n=n, name=rnd.choice(WORDS)),
                                  rnd.sample([p for p in people if p != s], rnd.randint(8, 15)),
                                  attachments=[attachment.format(n=n)] if attachment else [], case="lure"))
        truth.lures.append((frozenset(senders), start, start + timedelta(hours=2)))

    lure([people[20], people[21], people[22], people[23]], START + timedelta(days=10, hours=13),
         "Action required: updated payroll portal - verify your account #{n}", "Payroll_Update_{n}.html")
    lure([people[30], people[31], people[32]], START + timedelta(days=23, hours=9),
         "Shared document: Q1 bonus review for {name} ({n})", None)
    # -- reply storms
    organiser = people[40]
    for i, p in enumerate(people[:25]):
        if p == organiser:
            continue
        mails.append(Mail(START + timedelta(days=8, hours=15, minutes=3 * i), p, "RE: Holiday party RSVP",
                          [organiser], case="reply_storm"))
    team = people[:40]
    for i, p in enumerate(team[:12]):
        mails.append(Mail(START + timedelta(days=12, hours=10, minutes=4 * i), p, "RE: Office move on Friday",
                          [r for r in team if r != p], case="reply_storm"))
    truth.quiet_subjects["reply_storm"] = {"Holiday party RSVP", "Office move on Friday"}
    # their senders must not look like a volume burst either (user005, user011 and user012 get a real
    # burst on other days: the burst case judges those)
    truth.quiet_accounts["reply_storm"] = ({p for p in people[:25] if p != organiser} | set(team[:12])) - {
        busy, people[11], people[12]}
    # -- recurring template: daily stand-up notes from ten team leads to their teams
    for d in range(days):
        day = START + timedelta(days=d)
        if day.weekday() >= 5:
            continue
        for k, lead in enumerate(people[45:55]):
            mails.append(Mail(day + timedelta(hours=9, minutes=30 + k), lead,
                              f"Daily stand-up notes {day:%Y-%m-%d} team {k}",
                              rnd.sample(people, 6), case="recurring_template"))
    truth.quiet_subjects["recurring_template"] = {"Daily stand-up notes"}
    # -- a common subject to one colleague each
    for i, p in enumerate(people[:20]):
        mails.append(Mail(START + timedelta(days=17, hours=11, minutes=2 * i), p, "Quick question",
                          [rnd.choice(people)], case="common_subject"))
    truth.quiet_subjects["common_subject"] = {"Quick question"}
    mails.sort(key=lambda m: m.time)
    for i, m in enumerate(mails):
        m.mid = f"<{i:08d}.{rnd.getrandbits(40):010x}@AM0PR01MB{i % 97:04d}.eurprd01.prod.outlook.com>"
    return mails, truth


def _poisson(rnd: random.Random, lam: float) -> int:
    # Knuth; lam is small
    import math

    limit, k, p = math.exp(-lam), 0, 1.0
    while True:
        p *= rnd.random()
        if p <= limit:
            return k
        k += 1


# -- rendering ----------------------------------------------------------------------------------
def to_sends(mails: list[Mail]):
    from delegatewatch.analytics.mailflow import Send, classify
    from delegatewatch.findings.model import Evidence

    sends = []
    for i, m in enumerate(mails):
        sends.append(Send(time=m.time, sender=m.sender, actor=m.actor or m.sender, subject=m.subject,
                          message_id=m.mid.strip("<>").lower(), recipients=tuple(m.recipients),
                          recipient_count=len(m.recipients), attachments=tuple(m.attachments),
                          operation=m.operation, sources=("generated",),
                          evidence=[Evidence("generated", f"mail-{i}", m.time.isoformat(), i + 1)]))
    classify(sends, {ORG})
    return sends


TRACE_HEADER = ["PSComputerName", "RunspaceId", "PSShowComputerName", "Organization", "MessageId", "Received",
                "SenderAddress", "RecipientAddress", "Subject", "Status", "ToIP", "FromIP", "Size",
                "MessageTraceId", "StartDate", "EndDate", "Index"]


def write_message_trace(mails: list[Mail], path: Path) -> int:
    """Get-MessageTrace | Export-Csv -NoTypeInformation: one row per recipient, US dates."""
    rows = 0
    with open(path, "w", newline="", encoding="utf-8-sig") as f:
        w = csv.writer(f, quoting=csv.QUOTE_ALL, lineterminator="\r\n")
        w.writerow(TRACE_HEADER)
        for i, m in enumerate(mails):
            for r in m.recipients:
                t = m.time
                received = f"{t.month}/{t.day}/{t.year} {(t.hour % 12) or 12}:{t.minute:02d}:{t.second:02d} " \
                           f"{'AM' if t.hour < 12 else 'PM'}"
                w.writerow(["outlook.office365.com", "9c7a1f2e-3b4d-4e5f-8a9b-0c1d2e3f4a5b", "False",
                            "contoso.onmicrosoft.com", m.mid, received, m.sender, r, m.subject,
                            "Delivered", "", "10.1.2.3", "24512", f"{i:08x}-1111-2222-3333-444455556666",
                            "3/4/2024 12:00:00 AM", "4/1/2024 12:00:00 AM", str(rows)])
                rows += 1
    return rows


def ual_send(m: Mail, i: int) -> dict:
    op = m.operation
    record = {
        "CreationTime": m.time.strftime("%Y-%m-%dT%H:%M:%S"), "Id": f"5e{i:06d}-0c1d-4e2f-8a3b-08dc{i:08x}",
        "Operation": op, "OrganizationId": "7c1aec86-7bc7-44d0-a01c-72c2f196f29b", "RecordType": 2,
        "ResultStatus": "Succeeded", "UserKey": "1003BFFDACDB6497", "UserType": 0, "Version": 1,
        "Workload": "Exchange", "ClientIP": "203.0.113.77:51234", "UserId": m.actor or m.sender,
        "ClientIPAddress": "203.0.113.77", "ClientInfoString": "Client=OWA;Action=ViaProxy",
        "ExternalAccess": False, "InternalLogonType": 0, "LogonType": 2 if m.actor else 0,
        "MailboxGuid": "a78873bc-8394-40d1-8e2f-a0b6c3334455", "MailboxOwnerUPN": m.sender,
        "OrganizationName": "contoso.onmicrosoft.com", "OriginatingServer": "AM0PR01MB1234 (15.20.7249.032)\r\n",
        "Item": {"Id": f"RgAAAAD{i:010d}", "InternetMessageId": m.mid, "Subject": m.subject,
                 "ParentFolder": {"Id": "LgAAAAA", "Path": "\\Sent Items"}, "SizeInBytes": 24512,
                 **({"Attachments": "; ".join(f"{a} ({2048 + k}b)" for k, a in enumerate(m.attachments))}
                    if m.attachments else {})},
        "SaveToSentItems": True, "recipientCount": len(m.recipients),
    }
    if op == "SendAs":
        record["SendAsUserSmtp"] = m.sender
    elif op == "SendOnBehalf":
        record["SendOnBehalfOfUserSmtp"] = m.sender
    return record


def write_ual(mails: list[Mail], path: Path) -> int:
    with open(path, "w", encoding="utf-8") as f:
        f.writelines(json.dumps(ual_send(m, i), separators=(",", ":")) + "\n" for i, m in enumerate(mails))
    return len(mails)


def gmail_send(m: Mail, i: int) -> dict:
    """A Reports API ``gmail`` activity for a sent message (formats.md §6.4): one ``delivery`` event
    with ``event_info.mail_event_type`` 1; the ``message`` sub-parameters use the BigQuery Gmail-log
    names (``subject``, ``rfc2822_message_id``, ``source.address``, ``destination[].address``) that
    formats.md marks as likely but unconfirmed."""
    def p(name: str, value: str) -> dict:
        return {"name": name, "value": value}

    message = [p("subject", m.subject), p("rfc2822_message_id", m.mid or f"<gm{i}@mail.gmail.com>"),
               {"name": "source", "messageValue": {"parameter": [p("address", m.sender)]}},
               {"name": "destination", "multiMessageValue": [{"parameter": [p("address", r)]} for r in m.recipients]}]
    if m.attachments:
        message.append({"name": "attachment", "multiMessageValue": [{"parameter": [p("file_name", a)]}
                                                                   for a in m.attachments]})
    return {"kind": "admin#reports#activity",
            "id": {"time": m.time.strftime("%Y-%m-%dT%H:%M:%S.000Z"), "uniqueQualifier": str(-(10 ** 12) - i),
                   "applicationName": "gmail", "customerId": "C01abcd2e"},
            "actor": {"callerType": "USER", "email": m.actor or m.sender, "profileId": str(10 ** 11 + i)},
            "ipAddress": "203.0.113.77",
            "events": [{"type": "delivery_type", "name": "delivery", "parameters": [
                {"name": "event_info", "messageValue": {"parameter": [{"name": "mail_event_type", "intValue": "1"}]}},
                {"name": "message", "messageValue": {"parameter": message}}]}]}


def write_gmail(mails: list[Mail], path: Path) -> int:
    """One activity per line, as ``collect google`` writes them."""
    with open(path, "w", encoding="utf-8") as f:
        f.writelines(json.dumps(gmail_send(m, i), separators=(",", ":")) + "\n" for i, m in enumerate(mails))
    return len(mails)


# -- sanity of the generator itself ---------------------------------------------------------------
def test_generator_is_deterministic() -> None:
    a, ta = generate(seed=3)
    b, tb = generate(seed=3)
    assert [(m.time, m.sender, m.subject) for m in a] == [(m.time, m.sender, m.subject) for m in b]
    assert ta == tb


def test_generator_covers_every_case() -> None:
    mails, truth = generate()
    cases = {m.case for m in mails}
    assert {"normal", "burst", "lure", "steady_high_volume", "broadcast", "reply_storm", "recurring_template",
            "assistant", "new_account", "common_subject"} <= cases
    assert len(truth.bursts) == 5 and len(truth.lures) == 2
    assert len(mails) > 50_000  # several weeks of an organisation
