#!/usr/bin/env python3
"""Benchmark `delegatewatch collect m365` against a local fake Management Activity API.

A fake API server (tests/collectors/fake_o365.py, HTTPS on 127.0.0.1, in its own process) serves
N records (default 2,000,000) in blobs spread over the last 24 hours, 1 % of them repeated in the
next blob (the API's duplicates). The collector runs as a separate process through
bench/spawn_measure.py, which reads its wall time and peak RSS (os.wait4). The result is checked
(records stored = unique records served, no duplicates) and printed as a Markdown table.

    .venv/bin/python bench/collect_bench.py                     # 2 M records, ~2 minutes
    .venv/bin/python bench/collect_bench.py --records 200000    # quick
    .venv/bin/python bench/collect_bench.py --concurrency 4 8   # one row per setting

Note: the server and the collector share the machine; on a 2-core box the server's JSON
generation and TLS take a good part of one core, so the figures are a floor for the collector.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import platform
import shutil
import subprocess
import sys
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(ROOT / "tests" / "collectors"))
SECRET = "bench-secret-value"
DUP_SHARE = 0.01

# One realistic Exchange mailbox-audit record (~800 bytes) with slots for Id, time and user.
TEMPLATE = (
    '{"CreationTime":"%(t)s","Id":"%(id)s","Operation":"MailItemsAccessed","OrganizationId":'
    '"7c1aec86-7bc7-44d0-a01c-72c2f196f29b","RecordType":50,"ResultStatus":"Succeeded","UserKey":'
    '"1003BFFDACDB%(k)04X","UserType":0,"Version":1,"Workload":"Exchange","ClientIP":"2a01:111:f400:7e1b::%(k)x",'
    '"UserId":"user%(u)d@contoso.com","AppId":"00000002-0000-0ff1-ce00-000000000000","ClientAppId":"",'
    '"ClientIPAddress":"2a01:111:f400:7e1b::%(k)x","ClientInfoString":"Client=OWA;Mozilla/5.0 (Windows NT 10.0; '
    'Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36;","ExternalAccess":false,'
    '"InternalLogonType":0,"LogonType":0,"LogonUserSid":"S-1-5-21-3007612373-2921148939-1855325539-%(k)d",'
    '"MailboxGuid":"5f4b7a2e-9c1d-4e3f-8a6b-%(k)012x","MailboxOwnerSid":"S-1-5-21-3007612373-2921148939-'
    '1855325539-%(k)d","MailboxOwnerUPN":"user%(u)d@contoso.com","OperationProperties":[{"Name":"MailAccessType",'
    '"Value":"Bind"},{"Name":"IsThrottled","Value":"False"}],"OrganizationName":"contoso.onmicrosoft.com",'
    '"OriginatingServer":"AM6PR04MB5831 (15.20.7228.000)\\r\\n","SessionId":"6807dee3-e818-4e10-bcaf-%(k)012x"}'
)


def _record(b: int, i: int, per_blob: int, created: datetime) -> str:
    k = b * per_blob + i
    t = (created - timedelta(hours=1) + timedelta(seconds=(k * 7) % 3600)).strftime("%Y-%m-%dT%H:%M:%S")
    return TEMPLATE % {"t": t, "id": f"{b:08x}-{i:04x}-4000-8000-{k:012x}", "k": k % 65536, "u": k % 5000}


def blob_body(b: int, per_blob: int, created: list[datetime], dups: int) -> bytes:
    """Records of blob ``b`` (deterministic), then ``dups`` exact repeats of records of blob b-1."""
    recs = [_record(b, i, per_blob, created[b]) for i in range(per_blob)]
    if b > 0:
        recs += [_record(b - 1, i, per_blob, created[b - 1]) for i in range(dups)]
    return ("[" + ",".join(recs) + "]").encode()


def serve(conn, records: int, per_blob: int, ca_dir: str) -> None:
    from fake_o365 import FakeO365
    fake = FakeO365(secret=SECRET, page_size=100)
    now = datetime.now(UTC)
    blobs = max(1, records // per_blob)
    dups = int(per_blob * DUP_SHARE)
    created = [(now - timedelta(hours=24) + timedelta(hours=24) * (b + 0.5) / blobs).replace(microsecond=0)
               for b in range(blobs)]
    for b in range(blobs):
        fake.add_blob("Audit.Exchange", created[b], body=(lambda b=b: blob_body(b, per_blob, created, dups)))
    fake.subscriptions["Audit.Exchange"] = "enabled"
    fake.start(Path(ca_dir))
    conn.send((fake.base, str(fake.ca_file), blobs, dups * (blobs - 1)))
    conn.recv()  # stop
    conn.send(dict(fake.stats) | {"blob_gets": sum(fake.blob_gets.values())})
    fake.stop()


def run(records: int, per_blob: int, concurrency: int, keep: bool, compress_threads: int | None = None) -> dict:
    work = Path(tempfile.mkdtemp(prefix="dw-collect-bench-"))
    ctx = multiprocessing.get_context("spawn")
    parent, child = ctx.Pipe()
    server = ctx.Process(target=serve, args=(child, records, per_blob, str(work)), daemon=True)
    server.start()
    base, ca_file, blobs, dup_count = parent.recv()
    out = work / "out"
    result_file = work / "measure.txt"
    py = str(Path(sys.executable))
    cmd = [py, "-S", "-I", str(BENCH / "spawn_measure.py"), str(result_file),
           py, "-m", "delegatewatch.collectors.m365_cli", "--tenant", "7c1aec86-7bc7-44d0-a01c-72c2f196f29b",
           "--client-id", "3f1d2c0b-9a8e-4d7c-b6a5-443322110000", "--secret-env", "DW_BENCH_SECRET",
           "--out", str(out), "--since", "25h", "--content-types", "Audit.Exchange", "--login-url", base,
           "--api-url", base, "--ca-bundle", ca_file, "--concurrency", str(concurrency), "-q"]
    if compress_threads is not None:
        cmd += ["--compress-threads", str(compress_threads)]
    env = {**os.environ, "DW_BENCH_SECRET": SECRET, "PYTHONPATH": str(ROOT / "src")}
    subprocess.run(cmd, env=env, check=False)
    seconds, maxrss_kb, rc = result_file.read_text().split()
    parent.send("stop")
    stats = parent.recv()
    server.join(10)
    manifest = json.loads((out / "manifest.json").read_text())
    entry = manifest["content_types"]["Audit.Exchange"]
    out_bytes = sum(p.stat().st_size for p in out.glob("*/*/part-*.ndjson.gz"))
    row = {
        "records_served": blobs * per_blob + dup_count, "unique": blobs * per_blob, "blobs": blobs,
        "stored": entry["records"], "duplicates_dropped": entry["duplicates_dropped"],
        "seconds": float(seconds), "peak_rss_mb": int(maxrss_kb) / 1024, "exit": int(rc),
        "concurrency": concurrency, "compress_threads": compress_threads, "output_mb": out_bytes / 1e6, "files": entry["files"],
        "blob_gets": stats.get("blob_gets"),
    }
    row["records_per_s"] = row["records_served"] / row["seconds"]
    row["ok"] = row["stored"] == row["unique"] and row["duplicates_dropped"] == dup_count and row["exit"] == 0
    if not keep:
        shutil.rmtree(work, ignore_errors=True)
    else:
        row["dir"] = str(work)
    return row


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--records", type=int, default=2_000_000)
    ap.add_argument("--per-blob", type=int, default=2000, help="records per blob (real blobs vary widely)")
    ap.add_argument("--concurrency", type=int, nargs="+", default=[8])
    ap.add_argument("--compress-threads", type=int, nargs="+", default=[None],
                    help="gzip threads beside the committer (default: by core count; 0 = inline)")
    ap.add_argument("--keep", action="store_true", help="keep the output folder")
    ap.add_argument("--json", type=Path, help="also write the rows as JSON here")
    args = ap.parse_args()
    rows = [run(args.records, args.per_blob, c, args.keep, z) for c in args.concurrency for z in args.compress_threads]
    print(f"\n`delegatewatch collect m365` against the local fake API ({platform.machine()}, "
          f"{os.cpu_count()} CPUs, Python {platform.python_version()}; server and collector on the same machine)\n")
    print("| records served | blobs | duplicates dropped | concurrency | gzip threads | wall s | records/s "
          "| peak RSS MB | output MB (gz) | files | correct |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|:---:|")
    for r in rows:
        print(f"| {r['records_served']:,} | {r['blobs']:,} | {r['duplicates_dropped']:,} | {r['concurrency']} "
              f"| {'auto' if r['compress_threads'] is None else r['compress_threads']} "
              f"| {r['seconds']:.1f} | {r['records_per_s']:,.0f} | {r['peak_rss_mb']:.0f} | {r['output_mb']:.0f} "
              f"| {r['files']} | {'yes' if r['ok'] else 'NO'} |")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))
    return 0 if all(r["ok"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
