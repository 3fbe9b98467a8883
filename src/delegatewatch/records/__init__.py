"""Records: raw audit records (dicts) with provenance, and the bookkeeping of reading them.

Every source yields :class:`Record` objects; nothing downstream needs to know which export
dialect a record came from, only where (file and line or position) so findings can point back.
"""

from delegatewatch.records.model import Record, ReadStats, RecordIssue

__all__ = ["Record", "ReadStats", "RecordIssue"]
