"""Keep secrets (client secret, certificate passphrase, access tokens) out of every message.

Everything the collectors record or log about a failure passes through a ``Redactor``, which
replaces each known secret, in the spellings it can take on the wire (plain, URL-encoded as in a
form body, JSON-escaped), with ``***``. Token endpoints and APIs have been known to echo the
request in an error description; that text is redacted before it is stored or printed.
"""

from __future__ import annotations

import json
import logging
import threading
from urllib.parse import quote, quote_plus

MASK = "***"
MIN_LENGTH = 4  # shorter values would mask ordinary words; such a secret is rejected earlier anyway


class Redactor:
    def __init__(self, *secrets: str | None) -> None:
        self._lock = threading.Lock()
        self._forms: list[str] = []
        for s in secrets:
            self.add(s)

    def add(self, secret: str | None) -> None:
        if not secret or len(secret) < MIN_LENGTH:
            return
        forms = {secret, quote_plus(secret), quote(secret, safe=""), json.dumps(secret)[1:-1],
                 quote_plus(quote_plus(secret))}
        with self._lock:
            self._forms = sorted(set(self._forms) | forms, key=len, reverse=True)[:64]

    def __call__(self, text: object) -> str:
        out = str(text)
        for form in self._forms:
            if form in out:
                out = out.replace(form, MASK)
        return out


class RedactingFilter(logging.Filter):
    """A handler filter: the formatted message of every record goes through the redactor."""

    def __init__(self, redactor: Redactor) -> None:
        super().__init__()
        self.redactor = redactor

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a broken log call must not break the run
            message = str(record.msg)
        record.msg = self.redactor(message)
        record.args = None
        if record.exc_info:
            import traceback
            record.exc_text = self.redactor("".join(traceback.format_exception(*record.exc_info)))
            record.exc_info = None
        return True
