"""``delegatewatch watch``: collect continuously, hunt each new batch, deliver new findings to sinks.

- :mod:`delegatewatch.watch.loop` — the round (collect → hunt → queue → deliver) and the ``Collector``
  protocol collectors satisfy.
- :mod:`delegatewatch.watch.state` — the state folder (SQLite): records and findings already seen,
  per-sink outbox and sent sets, analytics key/value state.
- :mod:`delegatewatch.watch.sinks` — stdout, jsonl, webhook (Slack/Teams), syslog (RFC 5424 over
  UDP/TCP/TLS), Splunk HEC.
- :mod:`delegatewatch.watch.cli` — the ``watch`` click command.
"""
