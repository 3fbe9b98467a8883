"""A fake collector that writes real UAL NDJSON.gz part files, batch by batch (what the M365
collector commits), and UAL records that the built-in rules turn into findings."""

from __future__ import annotations

import gzip
import json
from dataclasses import dataclass, field
from pathlib import Path

from delegatewatch.findings.model import Evidence, Finding


def grant(n: int, *, mailbox: str | None = None, grantee: str | None = None) -> dict:
    """A FullAccess grant (rule m365_mailbox_full_access_grant), record Id ending in ``n``."""
    return {
        "CreationTime": f"2024-02-04T23:{n % 60:02d}:46", "Id": f"00000000-0000-0000-0000-{n:012d}",
        "Operation": "Add-MailboxPermission", "OrganizationId": "7c1aec86-7bc7-44d0-a01c-72c2f196f29b",
        "RecordType": 1, "ResultStatus": "True", "UserKey": "1003BFFDACDB6497", "UserType": 2, "Version": 1,
        "Workload": "Exchange", "ClientIP": "154.66.247.79:14760", "ObjectId": mailbox or f"box{n}",
        "UserId": "admin@contoso.com", "AppId": "497effe9-df71-4043-a8bb-14cf78c4b63b", "ExternalAccess": False,
        "OrganizationName": "contoso.onmicrosoft.com", "OriginatingServer": "TYZPR02MB4767 (15.20.7249.032)\r\n",
        "Parameters": [{"Name": "Identity", "Value": mailbox or f"box{n}@contoso.com"},
                       {"Name": "User", "Value": grantee or f"eve{n}@contoso.com"},
                       {"Name": "AccessRights", "Value": "FullAccess"}, {"Name": "InheritanceType", "Value": "All"}],
        "SessionId": "6807dee3-e818-4e10-bcaf-9ae7c97fcc9c",
    }


def noise(n: int) -> dict:
    return {"CreationTime": "2024-02-04T10:00:00", "Id": f"10000000-0000-0000-0000-{n:012d}",
            "Operation": "FileAccessed", "RecordType": 6, "UserType": 0, "Workload": "SharePoint",
            "UserId": f"user{n}@contoso.com", "ObjectId": f"https://contoso.sharepoint.com/f{n}.docx"}


@dataclass
class CollectResult:
    files: list[Path] = field(default_factory=list)
    records: int = 0
    errors: list[str] = field(default_factory=list)


class FakeCollector:
    """``batches[i]`` is what round i collects (then nothing). ``fail_rounds``: rounds that raise."""

    def __init__(self, out: Path, batches: list[list[dict]], fail_rounds: set[int] = frozenset()) -> None:
        self.out = Path(out)
        self.batches = batches
        self.fail_rounds = set(fail_rounds)
        self.calls = 0
        self.out.mkdir(parents=True, exist_ok=True)

    def run_once(self) -> CollectResult:
        i = self.calls
        self.calls += 1
        if i in self.fail_rounds:
            raise ConnectionError("management API unreachable (fake)")
        if i >= len(self.batches) or not self.batches[i]:
            return CollectResult()
        path = self.out / f"part-{i:05d}-{len(list(self.out.iterdir())):03d}.ndjson.gz"
        tmp = path.with_suffix(".tmp")
        with gzip.open(tmp, "wt", encoding="utf-8") as f:
            for r in self.batches[i]:
                f.write(json.dumps(r, separators=(",", ":")) + "\n")
        tmp.rename(path)
        return CollectResult([path], len(self.batches[i]))


def batches_for_cli() -> list[list[dict]]:
    return [[grant(1), grant(2), noise(1)]]


def make_finding(n: int = 1, **kw) -> Finding:
    base = dict(id=f"f{n:015d}", rule="m365_mailbox_full_access_grant", rule_id="0b7c6f0e-1111-4d7a-9a7e-000000000001",
                title="FullAccess granted on a mailbox", severity="high", time="2024-02-04T23:19:46Z",
                attack=["T1098.002"], actor="admin@contoso.com", mailbox=f"box{n}@contoso.com",
                grantee=f"eve{n}@contoso.com", rights=["FullAccess"],
                summary=f"admin@contoso.com gave eve{n}@contoso.com FullAccess on box{n}@contoso.com",
                evidence=[Evidence("audit.ndjson.gz", f"00000000-0000-0000-0000-{n:012d}", "2024-02-04T23:19:46Z", n)],
                operation="Add-MailboxPermission")
    base.update(kw)
    return Finding(**base)
