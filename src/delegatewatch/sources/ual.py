"""What every Microsoft 365 audit dialect shares: turning one decoded item into the UAL record.

The dialects differ only in how the record is wrapped: bare (API blobs, NDJSON), as a JSON
string in a CSV column (Purview, Search-UnifiedAuditLog), or as an object inside PowerShell's
``ConvertTo-Json`` wrapper (``RecordType``/``CreationDate``/``UserIds``/``Operations``/``AuditData``).
"""

from __future__ import annotations

from typing import Any

import orjson

from delegatewatch.records.times import iso_utc, parse_time

#: AuditLogRecordType names seen as text in PowerShell exports (formats.md §2.2).
RECORD_TYPES: dict[str, int] = {
    "ExchangeAdmin": 1, "ExchangeItem": 2, "ExchangeItemGroup": 3, "SharePoint": 4,
    "SharePointFileOperation": 6, "OneDrive": 7, "AzureActiveDirectory": 8,
    "AzureActiveDirectoryAccountLogon": 9, "DataCenterSecurityCmdlet": 10,
    "SharePointSharingOperation": 14, "AzureActiveDirectoryStsLogon": 15,
    "SecurityComplianceCenterEOPCmdlet": 18, "ExchangeAggregatedOperation": 19,
    "MicrosoftTeams": 25, "ThreatIntelligence": 28, "MailSubmission": 29,
    "SecurityComplianceAlerts": 40, "ExchangeItemAggregated": 50, "HygieneEvent": 51,
    "OWAAuth": 275,
}


class NotAnAuditRecord(ValueError):
    """The item decoded, but is not a UAL record (no AuditData, no Operation/CreationTime)."""


def to_audit_record(item: Any, columns: dict[str, str] | None = None) -> dict[str, Any]:
    """The UAL ``AuditData`` object of one decoded item.

    ``columns`` are the CSV row's other columns; they fill fields missing from AuditData
    (never override it: AuditData is the record, the columns are the export's view of it).
    """
    wrapper: dict[str, Any] = dict(columns or {})
    if isinstance(item, dict) and "AuditData" in item:
        wrapper.update({k: v for k, v in item.items() if k != "AuditData"})
        item = item["AuditData"]
        if isinstance(item, str):
            try:
                item = orjson.loads(item)
            except orjson.JSONDecodeError as exc:
                raise NotAnAuditRecord(f"AuditData is not valid JSON ({exc})") from None
    if not isinstance(item, dict):
        raise NotAnAuditRecord(f"expected a JSON object, found {type(item).__name__}")
    record = item
    if wrapper:
        _fill_from_wrapper(record, wrapper)
    if "Operation" not in record and "CreationTime" not in record:
        raise NotAnAuditRecord("object has neither Operation nor CreationTime: not a UAL audit record")
    server = record.get("OriginatingServer")
    if isinstance(server, str):
        # Mailbox records sometimes end the server name with CR/LF (formats.md §2.4).
        record["OriginatingServer"] = server.strip()
    return record


def _fill_from_wrapper(record: dict[str, Any], wrapper: dict[str, Any]) -> None:
    if "CreationTime" not in record:
        when = parse_time(wrapper.get("CreationDate"))
        if when is not None:
            record["CreationTime"] = iso_utc(when)[:-1]  # type: ignore[index]
    if "Operation" not in record:
        op = wrapper.get("Operation") or wrapper.get("Operations")
        if op:
            record["Operation"] = op
    if "UserId" not in record:
        user = wrapper.get("UserId") or wrapper.get("UserIds")
        if user:
            record["UserId"] = user
    if "Id" not in record:
        rid = wrapper.get("RecordId") or wrapper.get("Identity")
        if rid:
            record["Id"] = rid
    if "RecordType" not in record:
        rtype = wrapper.get("RecordType")
        if isinstance(rtype, str) and rtype.isdigit():
            record["RecordType"] = int(rtype)
        elif isinstance(rtype, str) and rtype in RECORD_TYPES:
            record["RecordType"] = RECORD_TYPES[rtype]
        elif isinstance(rtype, int):
            record["RecordType"] = rtype
