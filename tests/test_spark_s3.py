"""The Spark engine and the event lake against a real S3 API: moto's server on loopback (one per
module, in its own process), reached as an S3-compatible endpoint through ``AWS_ENDPOINT_URL`` — the way a user points
delegatewatch at MinIO or an on-premises store. ``s3://`` and ``s3a://`` hunts give the embedded hunt's
findings on the same files on local disk; lakes written to S3 (either engine) hunt to the original
findings; a missing bucket or key and refused credentials are one clear message. Skipped where moto
(``pip install 'moto[server]'``), pyspark or Java is absent."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from delegatewatch.cli import main
from delegatewatch.engine import hunt as hunt_mod
from delegatewatch.engine import spark_inputs
from delegatewatch.engine.export_lake import export_lake
from delegatewatch.engine.spark import spark_hunt
from delegatewatch.engine.spark_lake import spark_export_lake
from delegatewatch.events.principals import Directory
from delegatewatch.records import ReadStats
from delegatewatch.sources import uris
from tests.conftest import DEMO
from tests.spark_support import spark  # noqa: F401 - the shared local Spark fixture
from tests.test_engine import big_file  # noqa: F401 - the generated NDJSON the other split tests use
from tests.test_spark import by_rule
from tests.test_spark_lake import lake_rows

BUCKET = "audit"
DIRECTORY = DEMO / "directory.csv"
WIDE = {"COLUMNS": "1000"}  # the CLI's messages unwrapped, so "one line" is what is asserted


@dataclass(frozen=True)
class S3:
    endpoint: str
    client: Any  # boto3's S3 client, to upload fixtures and list what was written

    def upload(self, local: Path, key: str) -> str:
        self.client.upload_file(str(local), BUCKET, key)
        return f"s3://{BUCKET}/{key}"

    def keys(self, prefix: str) -> list[str]:
        pages = self.client.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix)
        return sorted(o["Key"] for page in pages for o in page.get("Contents", []))


#: What the executors are given as a cluster gives them credentials (``spark.executorEnv.*``, an instance
#: role): never the endpoint, which has to come from the driver.
EXECUTOR_ENV = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1",
                "AWS_EC2_METADATA_DISABLED": "true", "AWS_CONFIG_FILE": os.devnull,
                "AWS_SHARED_CREDENTIALS_FILE": os.devnull}


def moto_server() -> tuple[str, subprocess.Popen]:
    """moto's S3 server in its own process on a free loopback port (in this process, pyarrow's S3
    writer and the server's Python threads can deadlock on the GIL), once it answers."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    endpoint = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            urllib.request.urlopen(f"{endpoint}/moto-api/data.json", timeout=2).read()
            return endpoint, server
        except OSError:
            if server.poll() is not None or time.monotonic() > deadline:
                server.kill()
                pytest.skip(f"moto's server did not start on {endpoint}")
            time.sleep(0.2)


@pytest.fixture(scope="module")
def s3(request) -> Iterator[S3]:
    """moto's S3 on 127.0.0.1 (a free port), the AWS settings pointing at it and nowhere else, and the
    demo tenant (without its directory file) uploaded under ``demo/``. The shared Spark session (where
    there is one) is started first, so its Python workers' environment never names this endpoint."""
    pytest.importorskip("moto.server", reason="moto is not installed: pip install 'moto[server]'")
    boto3 = pytest.importorskip("boto3", reason="boto3 (with moto[server]) is not installed")
    try:
        import pyarrow.fs as pafs

        pafs.S3FileSystem  # noqa: B018 - a pyarrow built without S3 has no such class
    except (ImportError, AttributeError):
        pytest.skip("this pyarrow has no S3 support")
    try:
        sc = request.getfixturevalue("spark").sparkContext
    except pytest.skip.Exception:
        sc = None  # no Spark here: the tests that need it skip on their own
    endpoint, server = moto_server()
    workers_env = dict(sc.environment) if sc is not None else {}
    try:
        yield from _serving(endpoint, boto3, sc)
    finally:  # the server and the workers' environment as they were, whatever failed
        server.terminate()
        server.wait(10)
        if sc is not None:
            sc.environment.clear()
            sc.environment.update(workers_env)


def _serving(endpoint: str, boto3: Any, sc: Any) -> Iterator[S3]:
    """The AWS settings for the module (the driver's, and credentials for the workers), the bucket, the demo."""
    with pytest.MonkeyPatch.context() as env:
        for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL_S3"):
            env.delenv(name, raising=False)
        for name, value in {**EXECUTOR_ENV, "AWS_ENDPOINT_URL": endpoint}.items():
            env.setenv(name, value)
        env.setattr(uris, "_shipped", {})
        if sc is not None:  # pyspark starts workers with these (a new worker daemon for a new environment)
            sc.environment.update(EXECUTOR_ENV)
        client = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
        client.create_bucket(Bucket=BUCKET)
        store = S3(endpoint, client)
        for path in sorted(DEMO.iterdir()):
            if path != DIRECTORY:
                store.upload(path, f"demo/{path.name}")
        yield store


@contextmanager
def refused_credentials(store: S3) -> Iterator[None]:
    """moto checks credentials from now on (its documented ``reset-auth`` call): ours are refused."""

    def post(count: str) -> None:
        request = urllib.request.Request(f"{store.endpoint}/moto-api/reset-auth", data=count.encode(), method="POST",
                                         headers={"Content-Type": "text/plain"})
        urllib.request.urlopen(request, timeout=10).read()

    post("0")
    try:
        yield
    finally:
        post("inf")


def as_local(findings, uri: str, local: str) -> dict[str, list[dict]]:
    """Findings by rule with the URI prefix ``uri`` read as the local folder ``local``."""
    return json.loads(json.dumps(by_rule(findings)).replace(uri, local))


def assert_same_as_local(local, on_s3, uri: str, folder: str) -> None:
    """Rule by rule: ids, severity, evidence and its line numbers; the evidence names the URI."""
    assert local.findings
    assert as_local(on_s3.findings, uri, folder) == by_rule(local.findings)
    assert all(ev.source.startswith(uri + "/") for f in on_s3.findings for ev in f.evidence)
    assert (on_s3.by_severity, on_s3.candidates) == (local.by_severity, local.candidates)
    assert [(p.replace(uri, folder), d) for p, d in on_s3.stats.files_read] == local.stats.files_read
    assert on_s3.stats.duplicates == local.stats.duplicates


# -- without Spark: the endpoint settings and the pyarrow layer ----------------------------------------
def test_endpoint_settings_and_precedence(monkeypatch):
    monkeypatch.setattr(uris, "_shipped", {})
    monkeypatch.delenv("AWS_ENDPOINT_URL_S3", raising=False)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    assert uris.s3_endpoint() is None  # AWS itself
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://minio:9000")
    assert uris.s3_endpoint() == "http://minio:9000"
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", "https://s3.internal:443")  # the S3-specific one wins
    assert uris.s3_endpoint() == "https://s3.internal:443"
    uris.use_s3_endpoint("http://driver:9000")  # an executor: the driver's
    assert uris.s3_endpoint() == "http://driver:9000"
    uris.use_s3_endpoint(None)  # the driver named none: the executor's own
    assert uris.s3_endpoint() == "https://s3.internal:443"


def test_driver_lists_and_plans_through_the_endpoint(s3):
    stats = ReadStats()
    found = spark_inputs.list_uri(f"s3a://{BUCKET}/demo/", stats)
    local = sorted(p for p in DEMO.iterdir() if p != DIRECTORY)
    assert found == [(f"s3a://{BUCKET}/demo/{p.name}", p.stat().st_size) for p in local]
    assert not stats.files_skipped
    fs, inner = uris.resolve(f"s3://{BUCKET}/demo/ual_ndjson.jsonl")
    assert inner == f"{BUCKET}/demo/ual_ndjson.jsonl"
    with fs.open_input_file(inner) as f:
        assert f.read() == (DEMO / "ual_ndjson.jsonl").read_bytes()


def test_embedded_lake_written_to_s3(s3, tmp_path):
    users = Directory.load(str(DIRECTORY))
    written = export_lake([str(DEMO)], f"s3://{BUCKET}/lake-api/", directory=users, exclude=[str(DIRECTORY)])
    local = export_lake([str(DEMO)], str(tmp_path / "lake"), directory=users, exclude=[str(DIRECTORY)])
    assert written.rows == local.rows == 314 and written.days == local.days
    assert all(f.startswith(f"s3://{BUCKET}/lake-api/event_day=") for f in written.files)
    parts = [k for k in s3.keys("lake-api/") if k.endswith(".parquet")]
    assert sorted(f"s3://{BUCKET}/{k}" for k in parts) == sorted(written.files)
    assert lake_rows(f"s3://{BUCKET}/lake-api") == lake_rows(tmp_path / "lake")


# -- on Spark -----------------------------------------------------------------------------------------
def test_s3_and_s3a_hunts_give_the_local_findings(spark, s3):
    users = Directory.load(str(DIRECTORY))
    local = hunt_mod.hunt([str(DEMO)], directory=users, exclude=[str(DIRECTORY)])
    assert len(local.findings) >= 10
    for scheme in ("s3", "s3a"):
        uri = f"{scheme}://{BUCKET}/demo"
        on_s3 = spark_hunt([uri + "/"], spark=spark, directory=users)
        assert_same_as_local(local, on_s3, uri, str(DEMO))
    # the Python workers' own environment names no endpoint (or another): the driver's reached them
    seen = spark.sparkContext.parallelize([0], 1).map(
        lambda _: (os.environ.get("AWS_ENDPOINT_URL_S3"), os.environ.get("AWS_ENDPOINT_URL"))).collect()
    assert s3.endpoint not in seen[0]


def test_split_file_on_s3_same_findings_then_its_lake(spark, s3, big_file, monkeypatch):
    """Byte ranges read from S3 (ranged reads into each executor's local copy) keep line numbers;
    the Spark lake of the S3 file, written to S3, hunts to the same findings."""
    monkeypatch.setattr(hunt_mod, "SPLIT_MIN", 1 << 16)
    uri = s3.upload(big_file, "big/big.ndjson")
    units = spark_inputs.plan([uri], spark.sparkContext.defaultParallelism, ReadStats())
    assert len(units) > 2 and all(u.end is not None and u.path == uri for u in units)
    local = hunt_mod.hunt([str(big_file)], jobs=1)
    on_s3 = spark_hunt([uri], spark=spark)
    assert_same_as_local(local, on_s3, f"s3://{BUCKET}/big", str(big_file.parent))
    lines = big_file.read_text().splitlines()
    for ev in (ev for f in on_s3.findings for ev in f.evidence):
        assert ev.record_id in lines[ev.line - 1]
    assert [i.line for i in on_s3.stats.issues] == [i.line for i in local.stats.issues] != []

    lake = f"s3a://{BUCKET}/lake-big"
    written = spark_export_lake([uri], lake, spark=spark)
    assert len(written.files) >= len(units) and all(f.startswith(lake + "/event_day=") for f in written.files)
    for row in lake_rows(lake.replace("s3a://", "s3://")):
        where = row["unmapped"]
        assert where["source"] == uri and row["metadata"]["uid"] in lines[where["line"] - 1]
    from_lake = spark_hunt([lake], spark=spark)
    assert [f.to_dict() for f in from_lake.findings] == [f.to_dict() for f in on_s3.findings]


def test_cli_hunt_s3a_same_jsonl_as_local(spark, s3):
    runner = CliRunner()
    args = ["--directory", str(DIRECTORY), "--format", "jsonl", "-q"]
    local = runner.invoke(main, ["hunt", str(DEMO), *args])
    on_s3 = runner.invoke(main, ["hunt", f"s3a://{BUCKET}/demo/", *args, "--engine", "spark"])
    assert local.exit_code == 0 and on_s3.exit_code == 0, on_s3.output
    assert local.stdout.count("\n") >= 10
    assert on_s3.stdout.replace(f"s3a://{BUCKET}/demo", str(DEMO)) == local.stdout
    assert on_s3.stdout != local.stdout  # the evidence names the URI


@pytest.mark.parametrize("engine, lake", [("embedded", f"s3://{BUCKET}/lake-cli-e/"),
                                          ("spark", f"s3a://{BUCKET}/lake-cli-s/")])
def test_cli_export_lake_to_s3_then_hunt_it(spark, s3, engine, lake):
    runner = CliRunner()
    out = runner.invoke(main, ["export-events", str(DEMO), "--directory", str(DIRECTORY), "--format", "lake",
                               "-o", lake, "--engine", engine])
    assert out.exit_code == 0 and "314 records" in out.stderr, out.output
    prefix = lake.split(f"{BUCKET}/", 1)[1]
    parts = [k for k in s3.keys(prefix) if k.endswith(".parquet")]
    assert {k.split("/")[1] for k in parts} == {"event_day=2024-10-14", "event_day=2024-10-15", "event_day=2024-10-16"}
    args = ["--directory", str(DIRECTORY), "--format", "jsonl", "-q"]
    original = runner.invoke(main, ["hunt", str(DEMO), *args])
    from_lake = runner.invoke(main, ["hunt", lake, *args, "--engine", "spark"])
    assert from_lake.exit_code == 0, from_lake.output
    assert from_lake.stdout == original.stdout and original.stdout  # provenance: the original files


# -- errors: one clear line, no traceback ---------------------------------------------------------------
def one_line(text: str, *needles: str) -> str:
    """The one line of ``text`` naming every needle (and no traceback anywhere)."""
    assert "Traceback" not in text
    found = [ln for ln in text.splitlines() if all(n in ln for n in needles)]
    assert len(found) == 1, text
    return found[0]


def test_missing_bucket_and_key_are_reported_skipped_inputs(spark, s3, tmp_path):
    """As a missing local file: reported in the summary, the rest hunted, exit 0 (docs/operations.md)."""
    missing = [f"s3://no-such-bucket-{os.getpid()}/ual/", f"s3a://{BUCKET}/demo/no-such-file.json"]
    out = CliRunner(env=WIDE).invoke(main, ["hunt", *missing, f"s3://{BUCKET}/demo/ual_api_blob.json",
                                            "--engine", "spark", "--format", "jsonl", "-o", str(tmp_path / "f.jsonl")])
    assert out.exit_code == 0, out.output
    for uri in missing:
        one_line(out.stderr, f"skipped {uri}: no such file or folder")
    assert "1 read, 2 skipped" in out.stderr and (tmp_path / "f.jsonl").read_text()


@pytest.mark.parametrize("engine", ["embedded", "spark"])
def test_lake_into_a_missing_bucket_is_one_error_exit_2(spark, s3, engine):
    bucket = f"no-such-bucket-{os.getpid()}"
    out = CliRunner(env=WIDE).invoke(main, ["export-events", str(DEMO / "ual_api_blob.json"), "--format", "lake",
                                            "-o", f"s3://{bucket}/lake/", "--engine", engine, "-q"])
    assert out.exit_code == 2
    line = one_line(out.stderr, "error:", bucket)
    assert "not found" in line or "NO_SUCH_BUCKET" in line
    assert out.stderr.strip() == line.strip()


def test_refused_credentials_are_one_clear_line(spark, s3, tmp_path):
    runner = CliRunner(env=WIDE)
    with refused_credentials(s3):
        hunt = runner.invoke(main, ["hunt", f"s3://{BUCKET}/demo/", "--engine", "spark", "--format", "jsonl",
                                    "-o", str(tmp_path / "f.jsonl")])
        exports = {engine: runner.invoke(main, ["export-events", str(DEMO / "ual_api_blob.json"), "--format", "lake",
                                                "-o", f"s3://{BUCKET}/lake-refused/", "--engine", engine, "-q"])
                   for engine in ("embedded", "spark")}
    assert hunt.exit_code == 0, hunt.output  # an unreadable input is reported, as a local one is
    assert "ACCESS_DENIED" in one_line(hunt.stderr, f"skipped s3://{BUCKET}/demo/: cannot list:")
    for engine, out in exports.items():
        assert out.exit_code == 2, (engine, out.output)
        line = one_line(out.stderr, "error:")
        assert ("ACCESS_DENIED" in line or "INVALID_ACCESS_KEY_ID" in line) and out.stderr.strip() == line.strip()
    assert not s3.keys("lake-refused/")
