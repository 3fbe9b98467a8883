from __future__ import annotations

import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared"
CORPUS = SHARED / "corpus" / "real"
DEMO = ROOT / "examples" / "demo"


@pytest.fixture
def corpus() -> Path:
    if not CORPUS.is_dir():
        pytest.skip("../shared/corpus/real is not present (real public samples live outside the repo)")
    return CORPUS


def ual(op: str = "Add-MailboxPermission", rid: str = "00000000-0000-0000-0000-000000000001", **params: str) -> dict:
    """A realistic ExchangeAdmin record (formats.md §2.4 shape)."""
    record = {
        "CreationTime": "2024-02-04T23:19:46", "Id": rid, "Operation": op,
        "OrganizationId": "7c1aec86-7bc7-44d0-a01c-72c2f196f29b", "RecordType": 1, "ResultStatus": "True",
        "UserKey": "1003BFFDACDB6497", "UserType": 2, "Version": 1, "Workload": "Exchange",
        "ClientIP": "154.66.247.79:14760", "ObjectId": "ceo", "UserId": "admin@contoso.com",
        "AppId": "497effe9-df71-4043-a8bb-14cf78c4b63b", "ExternalAccess": False,
        "OrganizationName": "contoso.onmicrosoft.com", "OriginatingServer": "TYZPR02MB4767 (15.20.7249.032)\r\n",
        "Parameters": [{"Name": k, "Value": v} for k, v in (params or {
            "Identity": "ceo@contoso.com", "User": "eve@contoso.com", "AccessRights": "FullAccess",
            "InheritanceType": "All"}).items()],
        "SessionId": "6807dee3-e818-4e10-bcaf-9ae7c97fcc9c",
    }
    return record


def noise(i: int) -> dict:
    return {"CreationTime": "2024-02-04T10:00:00", "Id": f"10000000-0000-0000-0000-{i:012d}",
            "Operation": "FileAccessed", "RecordType": 6, "UserType": 0, "Workload": "SharePoint",
            "UserId": f"user{i}@contoso.com", "ObjectId": f"https://contoso.sharepoint.com/f{i}.docx"}


def compact(record: dict) -> str:
    return json.dumps(record, separators=(",", ":"))
