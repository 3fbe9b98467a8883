"""``--sink webhook:URL[,format=slack|teams|messagecard|json]``: one chat message per finding.

- ``slack`` (default): ``{"text": fallback, "blocks": [...]}`` (Block Kit) — Slack incoming webhooks,
  and the Slack-compatible endpoints of Mattermost, Rocket.Chat and Discord (``/slack`` suffix).
- ``teams``: a message with one Adaptive Card attachment (schema 1.4), the payload Teams Workflows
  ("When a Teams webhook request is received") and incoming webhooks accept.
- ``messagecard``: the legacy Office 365 connector ``MessageCard``.
- ``json``: ``{"finding": {...}}``, the jsonl object, for your own receiver.

Attacker-controlled text (folder, mailbox, display names, summary) is escaped for the target's
markup so it can't turn into links or mentions.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit

import httpx

from delegatewatch.findings.model import Finding
from delegatewatch.watch.sinks import _http as http
from delegatewatch.watch.sinks.base import (
    AT_MOST_ONCE,
    Sink,
    SinkError,
    backoff_from,
    finding_dict,
    with_retries,
)

FORMATS = ("slack", "teams", "messagecard", "json")
SEVERITY_COLOUR = {"critical": "8B0000", "high": "D32F2F", "medium": "F57C00", "low": "1976D2",
                   "informational": "757575"}
SEVERITY_EMOJI = {"critical": ":rotating_light:", "high": ":red_circle:", "medium": ":large_orange_circle:",
                  "low": ":large_blue_circle:", "informational": ":white_circle:"}
TEAMS_STYLE = {"critical": "attention", "high": "attention", "medium": "warning", "low": "accent",
               "informational": "default"}


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def slack_escape(text: Any) -> str:
    """Slack mrkdwn: &, <, > are the control characters (links, mentions)."""
    return str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


_MD = re.compile(r"([\\`*_\[\]()<>#~|!])")


def md_escape(text: Any) -> str:
    """Teams/MessageCard markdown: backslash-escape what could make a link, emphasis or HTML."""
    return _MD.sub(r"\\\1", str(text))


def _facts(d: dict[str, Any]) -> list[tuple[str, str]]:
    facts = [("Severity", d["severity"]), ("Rule", d["rule"]), ("Mailbox", d.get("mailbox") or "—"),
             ("Grantee", d.get("grantee") or "—"), ("Actor", d.get("actor") or "—"),
             ("Rights", ", ".join(d.get("rights") or []) or "—"), ("Time", d.get("time") or "—")]
    if d.get("folder"):
        facts.insert(4, ("Folder", d["folder"]))
    if d.get("attack"):
        facts.append(("ATT&CK", ", ".join(d["attack"])))
    return facts


def _evidence(d: dict[str, Any], limit: int = 5) -> list[str]:
    out = []
    for e in (d.get("evidence") or [])[:limit]:
        where = e.get("source") or ""
        if e.get("line") is not None:
            where += f":{e['line']}"
        out.append(f"{where} record {e.get('record_id')} at {e.get('time') or '?'}")
    return out


def slack_payload(f: Finding) -> dict[str, Any]:
    d = finding_dict(f)
    sev = d["severity"]
    fallback = f"[{sev.upper()}] {d['title']}: {d['summary']}"
    fields = [{"type": "mrkdwn", "text": _clip(f"*{k}*\n{slack_escape(v)}", 2000)} for k, v in _facts(d)[:10]]
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": _clip(f"{sev.upper()}: {d['title']}", 150),
                                    "emoji": True}},
        {"type": "section", "text": {"type": "mrkdwn",
                                     "text": _clip(f"{SEVERITY_EMOJI.get(sev, '')} {slack_escape(d['summary'])}", 3000)}},
        {"type": "section", "fields": fields},
    ]
    ev = _evidence(d)
    if ev:
        blocks.append({"type": "context", "elements": [
            {"type": "mrkdwn", "text": _clip("*Evidence*: " + "; ".join(slack_escape(e) for e in ev), 3000)}]})
    blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": f"delegatewatch finding `{d['id']}`"}]})
    return {"text": _clip(slack_escape(fallback), 3000), "blocks": blocks}


def adaptive_card(f: Finding) -> dict[str, Any]:
    d = finding_dict(f)
    sev = d["severity"]
    body: list[dict[str, Any]] = [
        {"type": "Container", "style": TEAMS_STYLE.get(sev, "default"), "bleed": True, "items": [
            {"type": "TextBlock", "text": md_escape(f"{sev.upper()}: {d['title']}"), "weight": "Bolder",
             "size": "Medium", "wrap": True}]},
        {"type": "TextBlock", "text": md_escape(d["summary"]), "wrap": True},
        {"type": "FactSet", "facts": [{"title": k, "value": md_escape(v)} for k, v in _facts(d)]},
    ]
    ev = _evidence(d)
    if ev:
        body.append({"type": "TextBlock", "text": "Evidence", "weight": "Bolder", "spacing": "Medium"})
        body += [{"type": "TextBlock", "text": md_escape(e), "wrap": True, "isSubtle": True, "spacing": "None"}
                 for e in ev]
    body.append({"type": "TextBlock", "text": f"delegatewatch finding {d['id']}", "isSubtle": True, "size": "Small"})
    card = {"$schema": "http://adaptivecards.io/schemas/adaptive-card.json", "type": "AdaptiveCard",
            "version": "1.4", "msteams": {"width": "Full"}, "body": body}
    return {"type": "message", "attachments": [
        {"contentType": "application/vnd.microsoft.card.adaptive", "contentUrl": None, "content": card}]}


def message_card(f: Finding) -> dict[str, Any]:
    d = finding_dict(f)
    sev = d["severity"]
    sections: list[dict[str, Any]] = [{"activityTitle": md_escape(d["title"]), "activitySubtitle": sev.upper(),
                                       "text": md_escape(d["summary"]),
                                       "facts": [{"name": k, "value": md_escape(v)} for k, v in _facts(d)]}]
    ev = _evidence(d)
    if ev:
        sections.append({"title": "Evidence", "text": "\n\n".join(md_escape(e) for e in ev)})
    return {"@type": "MessageCard", "@context": "https://schema.org/extensions",
            "summary": _clip(f"{sev.upper()}: {d['title']}", 150), "themeColor": SEVERITY_COLOUR.get(sev, "757575"),
            "title": md_escape(f"{sev.upper()}: {d['title']}"), "sections": sections}


RENDER = {"slack": slack_payload, "teams": adaptive_card, "messagecard": message_card,
          "json": lambda f: {"finding": finding_dict(f)}}


class WebhookSink(Sink):
    kind = "webhook"
    # A chat message is read by people: after a crash between posting and recording it, don't post
    # it twice (the finding ids left unconfirmed are logged). Override with delivery=at-least-once.
    default_delivery = AT_MOST_ONCE
    batch_size = 20

    def __init__(self, spec: str, options: dict[str, str]) -> None:
        super().__init__(spec, options)
        self.url = spec.partition(":")[2]
        parts = urlsplit(self.url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError("webhook: an http(s) URL is required (webhook:https://…)")
        self.format = options.get("format", "slack")
        if self.format not in FORMATS:
            raise ValueError(f"webhook: format must be one of {', '.join(FORMATS)}")
        self._host = parts.hostname or "?"
        self.backoff = backoff_from(options)
        self._client: httpx.Client | None = None

    @property
    def display(self) -> str:
        return f"webhook({self.format}) to {self._host} [{self.key}]"  # the URL path is a secret on Slack/Teams

    def _post(self, payload: dict[str, Any]) -> None:
        if self._client is None:
            self._client = http.client(self.options)
        try:
            r = self._client.post(self.url, json=payload)
        except httpx.TransportError as exc:
            err = http.transport_error(f"webhook to {self._host}", exc)
            if getattr(err, "maybe_delivered", False) and self.delivery == AT_MOST_ONCE:
                err.retryable = False
                err.delivered = 1  # may have been posted: at-most-once counts it as sent
            raise err from None
        if 200 <= r.status_code < 300:
            return
        text = _clip(r.text.strip().replace("\n", " "), 200)
        raise SinkError(f"webhook to {self._host}: HTTP {r.status_code} {text}",
                        retryable=r.status_code in http.RETRYABLE_STATUS, retry_after=http.retry_after(r))

    def send(self, findings: Sequence[Finding]) -> None:
        render = RENDER[self.format]
        for i, f in enumerate(findings):
            payload = render(f)
            try:
                with_retries(self.display, lambda p=payload: self._post(p), self.backoff)
            except SinkError as exc:
                exc.delivered += i
                raise

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None
