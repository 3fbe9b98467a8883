#!/usr/bin/env python3
"""Validate a file written by generate_ual.py against its truth file.

Checks that every line is one JSON object with the common UAL fields in the right
shape, that record Ids are unique, that the noise mix matches the generator's
intended shares, that every injected grant is in the file where the truth file
says, and that the number of FullAccess Add-MailboxPermission records equals the
truth file's `expected_fullaccess_query_count` (the DuckDB benchmark query's answer).

Usage: .venv/bin/python bench/check_ual.py [FILE] [--truth PATH]
Exit code 0 when every check passes, 1 otherwise.
"""

from __future__ import annotations

import argparse
import hashlib
import re
import sys
import time
from collections import Counter
from pathlib import Path

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent))
from generate_ual import (  # noqa: E402
    DEFAULT_OUT,
    GRANT_MIX,
    NOISE_MIX,
    SYSTEM_SERVICEHOST,
    default_truth_path,
)

GUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
PORT_RE = re.compile(r"^(\[[0-9a-f:]+\]|\d+\.\d+\.\d+\.\d+):\d+$")  # "1.2.3.4:5" / "[v6]:5"
TIME_RE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d$")  # no Z, no fraction
COMMON = ("CreationTime", "Id", "Operation", "OrganizationId", "RecordType", "UserType",
          "UserKey", "Version", "Workload", "UserId")


def category(r: dict) -> str:
    """Map a record back to the generator's noise kind (or 'grant'/'system_discovery')."""
    rt, op = r["RecordType"], r["Operation"]
    if rt == 6:
        return "sp_file"
    if rt == 15:
        return "aad_login"
    if rt == 25:
        return "teams"
    if rt == 50:
        return "mail_access"
    if rt == 3:
        return "item_group"
    if op == "Send":
        return "send"
    if op == "MailboxLogin":
        return "mbx_login"
    if op == "ModifyFolderPermissions":
        return "sys_folder_perm" if r["UserId"] == "S-1-5-18" else "grant"
    if op == "Set-Mailbox":
        return "sys_set_mailbox" if r["UserId"] == SYSTEM_SERVICEHOST else "grant"
    if op == "Add-MailboxPermission" and r["UserId"] == SYSTEM_SERVICEHOST:
        return "system_discovery"
    return {"New-InboxRule": "inbox_rule", "Add-MailboxFolderPermission": "cal_share",
            "Remove-MailboxPermission": "remove_perm"}.get(op, "grant")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Validate a generated UAL NDJSON file.")
    ap.add_argument("file", nargs="?", type=Path, default=DEFAULT_OUT)
    ap.add_argument("--truth", type=Path)
    args = ap.parse_args(argv)
    truth = orjson.loads((args.truth or default_truth_path(args.file)).read_bytes())
    failures: list[str] = []

    def fail(msg: str) -> None:
        if len(failures) < 50:
            failures.append(msg)

    t0 = time.perf_counter()
    cats: Counter = Counter()
    ops: Counter = Counter()
    id_digests: set[bytes] = set()  # 8-byte digests keep the uniqueness check small
    by_id: dict[str, tuple[int, str]] = {}
    truth_ids = {e["Id"] for e in truth["grants"] + truth["system_grants"]}
    fullaccess = 0
    crlf = ported = n = size = 0
    with open(args.file, "rb") as fh:
        for n, line in enumerate(fh, 1):
            size += len(line)
            try:
                r = orjson.loads(line)
            except orjson.JSONDecodeError as e:
                fail(f"line {n}: not JSON ({e})")
                continue
            if not isinstance(r, dict):
                fail(f"line {n}: not an object")
                continue
            missing = [k for k in COMMON if k not in r]
            if missing:
                fail(f"line {n}: missing {missing}")
                continue
            if not GUID_RE.match(r["Id"]):
                fail(f"line {n}: bad Id {r['Id']!r}")
            if not TIME_RE.match(r["CreationTime"]):
                fail(f"line {n}: bad CreationTime {r['CreationTime']!r}")
            if type(r["RecordType"]) is not int or type(r["UserType"]) is not int:
                fail(f"line {n}: RecordType/UserType not int")
            rs = r.get("ResultStatus")
            if r["RecordType"] == 1 and rs != "True":
                fail(f"line {n}: admin ResultStatus {rs!r}")
            if r["RecordType"] in (2, 3, 50) and rs != "Succeeded":
                fail(f"line {n}: mailbox ResultStatus {rs!r}")
            if r["RecordType"] == 1 and not isinstance(r.get("Parameters"), list):
                fail(f"line {n}: admin record without Parameters list")
            if r.get("OriginatingServer", "").endswith("\r\n"):
                crlf += 1
            if PORT_RE.match(r.get("ClientIP") or ""):
                ported += 1
            d = hashlib.blake2b(r["Id"].encode(), digest_size=8).digest()
            if d in id_digests:
                fail(f"line {n}: duplicate Id {r['Id']}")
            id_digests.add(d)
            if r["Id"] in truth_ids:
                by_id[r["Id"]] = (n, r["Operation"])
            op = r["Operation"]
            ops[op] += 1
            cats[category(r)] += 1
            if op == "Add-MailboxPermission" and "FullAccess" in orjson.dumps(r.get("Parameters")).decode():
                fullaccess += 1
    elapsed = time.perf_counter() - t0

    # -- file-level checks --------------------------------------------------
    if n != truth["records"]:
        fail(f"{n} lines, truth says {truth['records']}")
    if size != truth["bytes"]:
        fail(f"{size} bytes, truth says {truth['bytes']}")
    for e in truth["grants"] + truth["system_grants"]:
        got = by_id.get(e["Id"])
        if got is None:
            fail(f"truth Id {e['Id']} not in file")
        elif got != (e["line"], e["Operation"]):
            fail(f"truth Id {e['Id']}: file has {got}, truth {(e['line'], e['Operation'])}")
    if fullaccess != truth["expected_fullaccess_query_count"]:
        fail(f"FullAccess Add-MailboxPermission: {fullaccess}, "
             f"truth expects {truth['expected_fullaccess_query_count']}")
    if cats["grant"] != truth["injected_grants"]:
        fail(f"{cats['grant']} grant-shaped records, truth says {truth['injected_grants']}")
    if set(truth["injected_by_kind"]) - {k for k, _ in GRANT_MIX}:
        fail(f"unknown grant kinds in truth: {truth['injected_by_kind']}")

    # -- report the mix -----------------------------------------------------
    print(f"{args.file}: {n:,} records, {size:,} bytes ({size / max(n, 1):.0f} B/record), "
          f"checked in {elapsed:.1f} s")
    print(f"{'kind':<18}{'records':>10}{'share':>9}{'intended':>10}")
    total_w = sum(w for _, w in NOISE_MIX)
    for kind, w in NOISE_MIX:
        share = cats[kind] / n
        print(f"{kind:<18}{cats[kind]:>10,}{share:>9.2%}{w / 100:>10.2%}")
        # Binomial noise on 1M records is < 0.1 percentage points; allow a bit more
        # (and relative slack for tiny files).
        if abs(share - w / total_w) > max(0.002, 0.15 * w / 100) and n >= 10_000:
            fail(f"share of {kind} is {share:.3%}, intended {w}%")
    print(f"{'grant (injected)':<18}{cats['grant']:>10,}")
    print(f"{'system_discovery':<18}{cats['system_discovery']:>10,}")
    print(f"FullAccess Add-MailboxPermission records: {fullaccess} "
          f"(injected {truth['fullaccess_add_mailboxpermission_injected']} + system "
          f"{truth['fullaccess_add_mailboxpermission_system']})")
    mbx = sum(cats[k] for k in ("mail_access", "send", "mbx_login", "item_group"))
    print(f"OriginatingServer with trailing CRLF: {crlf:,}; mailbox/admin ClientIP with port: {ported:,} "
          f"(of ~{mbx + cats['inbox_rule'] + cats['cal_share'] + cats['remove_perm'] + cats['grant']:,})")
    print(f"distinct operations: {len(ops)}")
    if failures:
        print(f"FAILED ({len(failures)} shown):")
        for f in failures:
            print("  " + f)
        return 1
    print("OK")
    return 0


if __name__ == "__main__":
    sys.exit(main())
