"""Google Workspace Admin SDK Reports ``activities.list`` responses (formats.md §6.1), saved as the
API returns them: pretty-printed pages of up to 1,000 activities, newest first, with
``nextPageToken`` on every page but the last; one file per application and day."""

from __future__ import annotations

import hashlib

import orjson

from delegatewatch.simulate.model import GOOGLE, Item
from delegatewatch.simulate.writers.base import DayWriter

PAGE = 1000


class GoogleReportsWriter(DayWriter):
    name = "google-reports"
    stream = GOOGLE

    def __init__(self, root, date, day) -> None:
        super().__init__(root, date, day)
        self.pending: dict[str, list[Item]] = {}

    def hour(self, items: list[Item]) -> None:
        for it in items:
            self.pending.setdefault(it.data["id"]["applicationName"], []).append(it)

    def finish(self):
        for app, items in sorted(self.pending.items()):  # Google volume is small: a day fits easily
            items.reverse()  # the API lists newest first
            f = self.open(f"google/{app}-{self.date}.json")
            pages = [items[i:i + PAGE] for i in range(0, len(items), PAGE)]
            for n, page in enumerate(pages):
                doc: dict = {"kind": "admin#reports#activities",
                             "etag": '"' + hashlib.sha1(f"{app}{self.date}{n}".encode()).hexdigest()[:27] + '"',
                             "items": [it.data for it in page]}
                if n + 1 < len(pages):
                    doc["nextPageToken"] = hashlib.sha1(f"{app}{self.date}{n}t".encode()).hexdigest()
                data = orjson.dumps(doc, option=orjson.OPT_INDENT_2) + b"\n"
                f.block(data, data.count(b"\n"), [(it, it.data["id"]["uniqueQualifier"], 0) for it in page
                                                   if it.tag is not None], len(page))
        return super().finish()
