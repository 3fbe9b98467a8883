#!/usr/bin/env python3
"""The hunt benchmark's data set, made by ``delegatewatch simulate``: one UAL NDJSON file of realistic
tenant noise with a few hundred attack grants mixed in, and a truth file in the shape run_bench.py reads.

The simulated days (``evidence/ual/ual-*.ndjson``) are concatenated in date order into one file (a
collector's export of a month). Truth: the scenarios' labelled grant records (labels.json) and the
routine system grant (DiscoverySearchMailbox) the background adds on its first day.

Usage:
    .venv/bin/python bench/sim_data.py --records 1000000 --grants 300 --out bench/data/ual_1m.ndjson
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "src"))

from delegatewatch.simulate.run import SimConfig, simulate  # noqa: E402

#: bump when the data for the same arguments changes, so an old file is regenerated
VERSION = 1
#: UAL records per user per day at density 1.0 (weekends included), measured on the simulator
UAL_PER_USER_DAY = 11.5
#: the scenarios whose grants are unified-audit-log records (the others write other formats)
UAL_SCENARIOS = ("bec", "folder_exposure", "sendas_guid", "impersonation", "guest_grant")
GRANT_RULES = {"m365_mailbox_full_access_grant", "m365_send_as_grant", "m365_folder_default_anonymous_cmdlet",
               "m365_folder_default_anonymous_audit", "m365_application_impersonation", "m365_role_group_member_added"}


def default_truth_path(data: Path) -> Path:
    return data.with_suffix(".truth.json")


def plan(records: int, grants: int, seed: int) -> SimConfig:
    users, days = (5000, 30) if records >= 500_000 else (1000, 14)
    return SimConfig(users=users, days=days, seed=seed, scenarios=UAL_SCENARIOS, formats=("ual-ndjson",),
                     density=records / (users * days * UAL_PER_USER_DAY),
                     instances=max(1, round(grants / 8)),  # eight grant records per round of the scenarios
                     jobs=2)


def generate(data: Path, truth_path: Path, records: int, grants: int, seed: int, jobs: int = 2,
             force: bool = False) -> dict:
    cfg = plan(records, grants, seed)
    cfg = SimConfig(**{**cfg.__dict__, "jobs": max(1, jobs)})
    key = {"version": VERSION, "records": records, "grants": grants, "seed": seed}
    if not force and data.exists() and truth_path.exists():
        old = json.loads(truth_path.read_text())
        if old.get("key") == key:
            return {"reused": True}
    began = time.perf_counter()
    data.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=data.parent) as tmp:
        result = simulate(cfg, Path(tmp))
        with open(data, "wb") as out:
            for day in sorted((Path(tmp) / "evidence" / "ual").glob("ual-*.ndjson")):
                with open(day, "rb") as fh:
                    shutil.copyfileobj(fh, out, 1 << 22)
        labels = json.loads((Path(tmp) / "labels.json").read_text())
    grant_recs = [r for inst in labels["instances"] for r in inst["records"]
                  if r["stream"] == "ual" and r["expect"] and r["rule"] in GRANT_RULES]
    full_access = [r for r in grant_recs if r["rule"] == "m365_mailbox_full_access_grant"]
    system = []
    with open(data, "rb") as fh:  # the background's routine system grant(s)
        for line in fh:
            if b"DiscoverySearchMailbox" in line and b'"Add-MailboxPermission"' in line:
                system.append({"Id": json.loads(line)["Id"]})
    truth = {"key": key, "generator": "delegatewatch simulate", "parameters": labels["parameters"],
             "records": result.records, "injected_grants": len(grant_recs),
             "grants": [{"Id": r["record_id"], "rule": r["rule"]} for r in grant_recs],
             "system_grants": system, "fullaccess_add_mailboxpermission_injected": len(full_access),
             "fullaccess_add_mailboxpermission_system": len(system),
             "expected_fullaccess_query_count": len(full_access) + len(system)}
    truth_path.write_text(json.dumps(truth, indent=1) + "\n")
    return {"reused": False, "generation_seconds": time.perf_counter() - began}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--records", type=int, default=1_000_000)
    ap.add_argument("--grants", type=int, default=300)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--out", type=Path, default=REPO / "bench" / "data" / "ual_1m.ndjson")
    args = ap.parse_args()
    meta = generate(args.out, default_truth_path(args.out), args.records, args.grants, args.seed, args.jobs,
                    force=True)
    truth = json.loads(default_truth_path(args.out).read_text())
    print(f"{args.out}: {truth['records']:,} records, {truth['injected_grants']} grants, "
          f"{meta['generation_seconds']:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
