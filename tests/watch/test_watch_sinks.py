"""Each sink against a real local server: formats, framing, headers, retries, secrets."""

from __future__ import annotations

import io
import json
import logging
import re

import pytest
from fakes import make_finding

from delegatewatch.watch.sinks import SinkError, finding_dict, parse_sink, split_spec
from delegatewatch.watch.sinks.jsonl import JsonlSink
from delegatewatch.watch.sinks.stdout import StdoutSink
from delegatewatch.watch.sinks.syslog import format_message, sd_escape

FAST = "retries=3,backoff=0.01,max_backoff=0.05,timeout=3"

# RFC 5424 §6: HEADER SP STRUCTURED-DATA [SP MSG]
RFC5424 = re.compile(
    rb'^<(?P<pri>\d{1,3})>1 '
    rb'(?P<ts>\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d{1,6})?(?:Z|[+-]\d\d:\d\d)) '
    rb'(?P<host>[!-~]{1,255}) (?P<app>[!-~]{1,48}) (?P<proc>[!-~]{1,128}) (?P<msgid>[!-~]{1,32}) '
    rb'(?P<sd>-|(?:\[[!-~]{1,32}?(?: [^ =\]"]{1,32}="(?:[^"\\\]]|\\["\\\]])*")*\])+)'
    rb'(?: (?P<msg>.*))?$', re.DOTALL)
SD_PARAM = re.compile(r' ([^ =\]"]{1,32})="((?:[^"\\\]]|\\["\\\]])*)"')


def parse_5424(data: bytes) -> dict:
    m = RFC5424.match(data)
    assert m, f"not RFC 5424: {data[:200]!r}"
    sd = m["sd"].decode()
    sd_id = sd[1:].split(" ", 1)[0].rstrip("]")
    params = {k: re.sub(r'\\(["\\\]])', r"\1", v) for k, v in SD_PARAM.findall(sd)}
    return {"pri": int(m["pri"]), "host": m["host"].decode(), "app": m["app"].decode(), "msgid": m["msgid"].decode(),
            "sd_id": sd_id, "params": params, "msg": json.loads(m["msg"])}


# -- sink specs ---------------------------------------------------------------------------------
def test_split_spec_keeps_commas_of_urls_and_reads_options():
    assert split_spec("webhook:https://h/x?a=1,2,format=teams,retries=0") == \
        ("webhook", "webhook:https://h/x?a=1,2", {"format": "teams", "retries": "0"})
    assert split_spec("stdout") == ("stdout", "stdout", {})
    assert split_spec("stdout,name=console") == ("stdout", "stdout", {"name": "console"})
    assert split_spec("syslog:tls://siem:6514,ca=/x.pem") == ("syslog", "syslog:tls://siem:6514", {"ca": "/x.pem"})


def test_sink_keys_are_stable_and_hide_secrets():
    a = parse_sink("webhook:https://hooks.slack.com/services/T0/B0/SECRETPATH")
    b = parse_sink("webhook:https://hooks.slack.com/services/T0/B0/SECRETPATH,retries=5")
    assert a.key == b.key and a.key.startswith("webhook-")
    assert "SECRETPATH" not in a.display + a.key + repr(a)
    assert parse_sink("jsonl:x.jsonl,name=archive").key == "archive"
    with pytest.raises(ValueError):
        parse_sink("carrier-pigeon:coo")
    with pytest.raises(ValueError):
        parse_sink("stdout,delivery=exactly-once")  # stdout cannot tell what it already wrote


# -- stdout, jsonl ------------------------------------------------------------------------------
def test_stdout_writes_json_lines(findings):
    buf = io.StringIO()
    StdoutSink("stdout", {}, stream=buf).send(findings)
    lines = [json.loads(x) for x in buf.getvalue().splitlines()]
    assert [x["id"] for x in lines] == [f.id for f in findings]
    assert lines[0] == finding_dict(findings[0]) and "runbook" not in lines[0]


def test_jsonl_appends_and_recovers_after_a_torn_line(tmp_path, findings):
    path = tmp_path / "out" / "f.jsonl"
    sink = JsonlSink(f"jsonl:{path}", {})
    sink.send(findings[:1])
    with open(path, "ab") as f:  # a crash in the middle of the second finding's line
        f.write(json.dumps(finding_dict(findings[1]))[:40].encode())
    assert sink.recover(findings[1:]) == set()  # the torn line does not count as delivered
    assert sink.recover(findings[:1]) == {findings[0].id}
    sink.send(findings[1:])
    lines = path.read_bytes().split(b"\n")
    ok = []
    for line in lines:
        try:
            ok.append(json.loads(line)["id"])
        except ValueError:
            pass
    assert ok == [f.id for f in findings]  # the torn line stays alone; every finding whole, once


# -- syslog ------------------------------------------------------------------------------------
def test_rfc5424_message_structure_and_escaping():
    nasty = 'In"box]\\x\nnext'
    f = make_finding(7, folder=nasty, mailbox='ceo"]@contoso.com', severity="critical")
    msg = parse_5424(format_message(f, facility=4, hostname="wd01.contoso.com", procid="42"))
    assert msg["pri"] == 4 * 8 + 2  # auth.crit
    assert (msg["host"], msg["app"], msg["msgid"]) == ("wd01.contoso.com", "delegatewatch", "finding")
    assert msg["sd_id"] == "delegatewatch@32473"
    assert msg["params"]["mailbox"] == 'ceo"]@contoso.com'
    assert msg["params"]["rule"] == f.rule and msg["params"]["severity"] == "critical"
    assert msg["params"]["record_id"] == f.evidence[0].record_id
    assert msg["msg"] == finding_dict(f) and msg["msg"]["folder"] == nasty
    assert sd_escape('a"b\\c]d') == 'a\\"b\\\\c\\]d'
    assert format_message(make_finding(8, grantee="Zoë")).split(b"] ", 1)[1].isascii()


@pytest.mark.parametrize("severity,code", [("critical", 2), ("high", 3), ("medium", 4), ("low", 5),
                                           ("informational", 6)])
def test_severity_maps_to_syslog_severity(severity, code):
    assert parse_5424(format_message(make_finding(severity=severity), facility=16))["pri"] == 16 * 8 + code


def test_syslog_udp(udp_receiver, findings):
    sink = parse_sink(f"syslog:udp://127.0.0.1:{udp_receiver.port},facility=local4,{FAST}")
    assert sink.delivery == "at-most-once"
    sink.send(findings)
    got = udp_receiver.wait(3)
    assert len(got) == 3  # one message per datagram, no framing
    parsed = [parse_5424(d) for d in got]
    assert sorted(p["msg"]["id"] for p in parsed) == sorted(f.id for f in findings)
    assert all(p["pri"] == 20 * 8 + 3 for p in parsed)  # local4.err for high


def test_syslog_tcp_octet_counting(tcp_receiver, findings):
    sink = parse_sink(f"syslog:tcp://127.0.0.1:{tcp_receiver.port},{FAST}")
    assert sink.delivery == "at-least-once"
    sink.send(findings)
    frames = tcp_receiver.wait(3)
    assert len(tcp_receiver.streams) == 1  # one connection for the batch
    assert tcp_receiver.streams[0].startswith(str(len(frames[0])).encode() + b" <")
    assert [parse_5424(fr)["msg"]["id"] for fr in frames] == [f.id for f in findings]


def test_syslog_tls(tls_receiver, findings):
    sink = parse_sink(f"syslog:tls://127.0.0.1:{tls_receiver.port},ca={tls_receiver.ca_file},{FAST}")
    sink.send(findings)
    frames = tls_receiver.wait(3)
    assert [parse_5424(fr)["msg"]["id"] for fr in frames] == [f.id for f in findings]
    assert not tls_receiver.errors


def test_syslog_tls_refuses_an_untrusted_server(tls_receiver, findings):
    sink = parse_sink(f"syslog:tls://127.0.0.1:{tls_receiver.port},{FAST}")  # system CAs: trustme's CA is unknown
    with pytest.raises(SinkError) as exc:
        sink.send(findings)
    assert "TLS" in str(exc.value) and exc.value.delivered == 0 and not exc.value.retryable


def test_syslog_tcp_down_is_a_sink_error(findings):
    import socket
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there
    with pytest.raises(SinkError) as exc:
        parse_sink(f"syslog:tcp://127.0.0.1:{port},{FAST}").send(findings)
    assert exc.value.delivered == 0


# -- webhook -----------------------------------------------------------------------------------
def test_webhook_slack_payload(http_server, findings):
    f = make_finding(5, summary="eve <https://evil.example|click> & co", folder="<!channel>")
    sink = parse_sink(f"webhook:{http_server.url}/services/T0/B0/XYZ,{FAST}")
    sink.send([f, *findings])
    assert len(http_server.requests) == 4  # one message per finding
    r = http_server.requests[0]
    assert r.path == "/services/T0/B0/XYZ" and r.headers["content-type"] == "application/json"
    body = r.json()
    assert set(body) == {"text", "blocks"} and "HIGH" in body["text"]
    assert [b["type"] for b in body["blocks"]][:3] == ["header", "section", "section"]
    text = json.dumps(body)
    assert "<https://evil" not in text and "&lt;https://evil.example|click&gt; &amp; co" in text
    assert "<!channel>" not in text  # no mention smuggled in through a folder name
    fields = {x["text"].split("\n")[0]: x["text"].split("\n", 1)[1] for x in body["blocks"][2]["fields"]}
    assert fields["*Severity*"] == "high" and fields["*Mailbox*"] == "box5@contoso.com"
    assert any("Evidence" in json.dumps(b) for b in body["blocks"] if b["type"] == "context")


def test_webhook_teams_adaptive_card(http_server, findings):
    sink = parse_sink(f"webhook:{http_server.url}/workflows/x,format=teams,{FAST}")
    sink.send(findings[:1])
    body = http_server.requests[0].json()
    assert body["type"] == "message"
    att = body["attachments"][0]
    assert att["contentType"] == "application/vnd.microsoft.card.adaptive"
    card = att["content"]
    assert card["type"] == "AdaptiveCard" and card["version"] == "1.4"
    facts = {x["title"]: x["value"] for b in card["body"] if b["type"] == "FactSet" for x in b["facts"]}
    assert facts["Severity"] == "high" and facts["Grantee"] == "eve1@contoso.com"
    assert any("Evidence" == b.get("text") for b in card["body"])


def test_webhook_messagecard(http_server, findings):
    parse_sink(f"webhook:{http_server.url}/x,format=messagecard,{FAST}").send(findings[:1])
    body = http_server.requests[0].json()
    assert body["@type"] == "MessageCard" and body["themeColor"] and body["sections"][0]["facts"]


def test_webhook_retries_429_with_retry_after(http_server, findings):
    http_server.reply(429, "rate limited", {"Retry-After": "0"})
    sink = parse_sink(f"webhook:{http_server.url}/x,{FAST}")
    sink.send(findings[:1])
    assert len(http_server.requests) == 2


def test_webhook_failure_reports_what_was_delivered(http_server, findings):
    http_server.reply(200, "ok")
    http_server.reply(404, "no_service")
    with pytest.raises(SinkError) as exc:
        parse_sink(f"webhook:{http_server.url}/x,{FAST}").send(findings)
    assert exc.value.delivered == 1 and not exc.value.retryable
    assert len(http_server.requests) == 2  # a 404 is not retried


# -- Splunk HEC --------------------------------------------------------------------------------
def test_hec_batch_auth_and_503_backoff(http_server, findings, monkeypatch):
    monkeypatch.setenv("DW_HEC", "11111111-2222-3333-4444-555555555555")
    http_server.reply(503, '{"text":"Server is busy","code":9}', {"Retry-After": "0"})
    sink = parse_sink(f"hec:{http_server.url},index=security,{FAST}", hec_token_env="DW_HEC")
    sink.send(findings)
    assert len(http_server.requests) == 2  # 503, then 200
    r = http_server.requests[-1]
    assert r.path == "/services/collector/event"
    assert r.headers["authorization"] == "Splunk 11111111-2222-3333-4444-555555555555"
    assert r.headers["content-type"] == "application/json"
    events = [json.loads(x) for x in r.body.decode().replace("}{\"time\"", "}\n{\"time\"").splitlines()]
    assert len(events) == 3  # concatenated JSON objects, HEC's batch format
    for ev, f in zip(events, findings):
        assert set(ev) == {"time", "host", "source", "sourcetype", "event", "index"}
        assert ev["sourcetype"] == "delegatewatch:finding" and ev["index"] == "security"
        assert ev["event"] == finding_dict(f)
        assert ev["time"] == 1707088786.0  # the finding's time, epoch seconds


def test_hec_error_codes_are_not_retried_and_token_never_logged(http_server, findings, monkeypatch, caplog):
    token = "99999999-8888-7777-6666-000000000000"
    monkeypatch.setenv("DW_HEC", token)
    caplog.set_level(logging.DEBUG)  # every logger, httpx and httpcore included
    http_server.reply(503, '{"text":"Server is busy","code":9}')
    http_server.reply(403, '{"text":"Invalid token","code":4}')
    sink = parse_sink(f"hec:{http_server.url}/services/collector,{FAST}", hec_token_env="DW_HEC")
    with pytest.raises(SinkError) as exc:
        sink.send(findings)
    assert "code 4 (invalid token)" in str(exc.value) and not exc.value.retryable
    assert len(http_server.requests) == 2
    assert token not in caplog.text and token not in str(exc.value) and token not in repr(sink)
    assert "503" in caplog.text  # the retry was logged, without the token


def test_hec_bad_event_does_not_hold_back_the_others(http_server, findings, monkeypatch):
    monkeypatch.setenv("DW_HEC", "t")
    sink = parse_sink(f"hec:{http_server.url},{FAST}", hec_token_env="DW_HEC")
    http_server.reply(400, '{"text":"Invalid data format","code":6,"invalid-event-number":1}')
    with pytest.raises(SinkError):
        sink.send(findings)  # the batch is refused whole
    http_server.reply(200, '{"text":"Success","code":0}')
    http_server.reply(400, '{"text":"Invalid data format","code":6}')
    with pytest.raises(SinkError) as exc:
        sink.send(findings)  # then one event per request
    assert exc.value.delivered_ids == {findings[0].id, findings[2].id}


def test_hec_requires_its_token_variable(monkeypatch):
    monkeypatch.delenv("DW_NOPE", raising=False)
    with pytest.raises(ValueError, match="DW_NOPE"):
        parse_sink("hec:https://splunk:8088", hec_token_env="DW_NOPE")
    with pytest.raises(ValueError, match="query"):
        parse_sink("hec:https://splunk:8088/services/collector?token=x", hec_token_env="DW_NOPE")
