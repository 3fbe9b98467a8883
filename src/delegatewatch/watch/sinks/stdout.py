"""``--sink stdout``: one finding per line, the ``--format jsonl`` object."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import TextIO

import orjson

from delegatewatch.findings.model import Finding
from delegatewatch.watch.sinks.base import AT_LEAST_ONCE, Sink, SinkError, finding_dict


class StdoutSink(Sink):
    kind = "stdout"
    default_delivery = AT_LEAST_ONCE

    def __init__(self, spec: str, options: dict[str, str], stream: TextIO | None = None) -> None:
        super().__init__(spec, options)
        self.stream = stream

    @property
    def display(self) -> str:
        return "stdout"

    def send(self, findings: Sequence[Finding]) -> None:
        out = self.stream or sys.stdout
        for i, f in enumerate(findings):
            try:
                out.write(orjson.dumps(finding_dict(f)).decode() + "\n")
                out.flush()
            except (OSError, ValueError) as exc:  # closed pipe, closed file
                raise SinkError(f"cannot write to standard output: {exc}", delivered=i, retryable=False) from exc
