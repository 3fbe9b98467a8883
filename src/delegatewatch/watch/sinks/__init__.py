"""Where findings go: one small class per sink, all with ``send(findings) -> None``.

A sink is named on the command line as ``KIND[:TARGET][,key=value…]``::

    stdout
    jsonl:/var/lib/delegatewatch/findings.jsonl
    webhook:https://hooks.slack.com/services/…,format=slack
    syslog:tls://siem.example.com:6514,ca=/etc/ssl/siem-ca.pem,facility=local4
    hec:https://splunk.example.com:8088,index=security

Options every sink takes: ``name=`` (the key its delivery state is kept under; default: a hash of
the spec), ``delivery=at-least-once|at-most-once`` (jsonl: ``exactly-once``), and for network
sinks ``retries=``, ``backoff=``, ``max_backoff=``, ``timeout=``.
"""

from __future__ import annotations

import re

from delegatewatch.watch.sinks.base import (
    AT_LEAST_ONCE,
    AT_MOST_ONCE,
    EXACTLY_ONCE,
    Backoff,
    Sink,
    SinkError,
    finding_dict,
    finding_from_dict,
)

KINDS = ("stdout", "jsonl", "webhook", "syslog", "hec")
_OPTION = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")

__all__ = ["AT_LEAST_ONCE", "AT_MOST_ONCE", "EXACTLY_ONCE", "KINDS", "Backoff", "Sink", "SinkError",
           "finding_dict", "finding_from_dict", "parse_sink", "split_spec"]


def split_spec(spec: str) -> tuple[str, str, dict[str, str]]:
    """``kind:target,key=value,…`` → (kind, "kind:target", options). A comma-separated part that is
    not ``key=value`` belongs to the target (URLs may hold commas)."""
    head, _, rest = spec.strip().partition(":")
    if "," in head:  # "stdout,name=x"
        head, _, opts = head.partition(",")
        parts = ["", *opts.split(",")]
    else:
        parts = rest.split(",")
    kind = head.strip().lower()
    target = [parts[0]]
    options: dict[str, str] = {}
    for p in parts[1:]:
        if _OPTION.match(p):
            k, _, v = p.partition("=")
            options[k.lower()] = v
        else:
            target.append(p)
    target_s = ",".join(target)
    return kind, f"{kind}:{target_s}" if target_s else kind, options


def parse_sink(spec: str, *, hec_token_env: str | None = None) -> Sink:
    kind, canonical, options = split_spec(spec)
    if kind == "stdout":
        from delegatewatch.watch.sinks.stdout import StdoutSink

        return StdoutSink("stdout", options)
    if kind == "jsonl":
        from delegatewatch.watch.sinks.jsonl import JsonlSink

        return JsonlSink(canonical, options)
    if kind == "webhook":
        from delegatewatch.watch.sinks.webhook import WebhookSink

        return WebhookSink(canonical, options)
    if kind == "syslog":
        from delegatewatch.watch.sinks.syslog import SyslogSink

        return SyslogSink(canonical, options)
    if kind == "hec":
        from delegatewatch.watch.sinks.hec import HecSink

        return HecSink(canonical, options, token_env=hec_token_env)
    raise ValueError(f"unknown sink {kind!r}: one of {', '.join(KINDS)}")
