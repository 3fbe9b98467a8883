"""The hunt on Spark (local mode) gives the embedded engine's findings, rule by rule, on the same
input: the real corpus, the bundled demo, a file split into byte ranges, many small files, and
``file://`` URIs (the path every remote filesystem takes). Skipped where pyspark or Java is absent."""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

import pytest
from click.testing import CliRunner

from delegatewatch.cli import main
from delegatewatch.engine import hunt as hunt_mod
from delegatewatch.engine import spark_inputs
from delegatewatch.engine.spark import SparkTimings, parse_conf, spark_hunt
from delegatewatch.events.principals import Directory
from delegatewatch.records import ReadStats
from delegatewatch.sources import uris
from tests.conftest import DEMO, compact, noise, ual
from tests.test_engine import big_file  # noqa: F401 - the same generated file as the parallel-hunt tests
from tests.spark_support import spark  # noqa: F401 - the shared local Spark fixture


def by_rule(findings, strip: str = "") -> dict[str, list[dict]]:
    """Findings as plain dicts grouped by rule (``strip``: a source prefix to remove, for URIs)."""
    out: dict[str, list[dict]] = defaultdict(list)
    for f in findings:
        d = f.to_dict()
        if strip:
            d = json.loads(json.dumps(d).replace(strip, ""))
        out[d["rule"]].append(d)
    return dict(out)


def assert_same(embedded, on_spark, strip: str = "") -> None:
    a, b = by_rule(embedded.findings), by_rule(on_spark.findings, strip)
    assert sorted(a) == sorted(b)
    for rule in a:
        assert a[rule] == b[rule], f"rule {rule} differs"
    assert embedded.by_severity == on_spark.by_severity
    assert embedded.candidates == on_spark.candidates


def test_real_corpus_same_findings_rule_by_rule(spark, corpus):
    embedded = hunt_mod.hunt([str(corpus)], jobs=1)
    on_spark = spark_hunt([str(corpus)], spark=spark)
    assert embedded.findings  # the corpus has findings to compare
    assert_same(embedded, on_spark)
    assert on_spark.stats.files_read == embedded.stats.files_read
    assert on_spark.stats.files_skipped == embedded.stats.files_skipped
    assert (on_spark.stats.records_seen, on_spark.stats.skipped) == (embedded.stats.records_seen,
                                                                     embedded.stats.skipped)


def test_demo_with_directory_same_findings(spark):
    users = Directory.load(str(DEMO / "directory.csv"))
    exclude = [str(DEMO / "directory.csv")]
    embedded = hunt_mod.hunt([str(DEMO)], directory=users, exclude=exclude)
    on_spark = spark_hunt([str(DEMO)], spark=spark, directory=users, exclude=exclude)
    assert len(embedded.findings) >= 10
    assert_same(embedded, on_spark)
    assert on_spark.stats.duplicates == embedded.stats.duplicates > 0  # records repeated across files


@pytest.fixture
def split_file(big_file, monkeypatch):
    """test_engine's ~2 MB NDJSON (grants, repeats across ranges, broken lines), split at 64 KB."""
    monkeypatch.setattr(hunt_mod, "SPLIT_MIN", 1 << 16)
    return big_file


def test_file_split_in_ranges_same_findings_and_line_numbers(spark, split_file):
    units = spark_inputs.plan([str(split_file)], spark.sparkContext.defaultParallelism, ReadStats())
    assert len(units) > 2 and all(u.end is not None for u in units)  # really split
    embedded = hunt_mod.hunt([str(split_file)], jobs=1)
    timings = SparkTimings()
    on_spark = spark_hunt([str(split_file)], spark=spark, timings=timings)
    assert timings.units == len(units)
    assert_same(embedded, on_spark)
    lines = split_file.read_text().splitlines()
    evidence = [ev for f in on_spark.findings for ev in f.evidence]
    assert evidence and all(ev.line for ev in evidence)
    for ev in evidence:  # every evidence line number points at its record in the file
        assert ev.record_id in lines[ev.line - 1]
    assert [i.line for i in on_spark.stats.issues] == [i.line for i in embedded.stats.issues]
    assert on_spark.stats.duplicates == embedded.stats.duplicates > 0
    full = spark_hunt([str(split_file)], spark=spark, full_parse=True)  # every record parsed and validated
    assert_same(hunt_mod.hunt([str(split_file)], jobs=1, full_parse=True), full)
    assert full.stats.records_parsed > on_spark.stats.records_parsed


def test_file_uris_of_a_folder_and_of_a_split_file(spark, split_file):
    """``file://`` goes through the pyarrow filesystem layer and the executors' local copies, as
    s3://, abfss:// and hdfs:// would; provenance names the URI."""
    folder = split_file.parent
    for i in range(3):  # more files in the folder, one hidden (skipped as the embedded hunt skips it)
        (folder / f"small{i}.json").write_text(compact(ual(rid=f"c000000{i}-0000-0000-0000-000000000000",
                                                             Identity=f"s{i}@contoso.com", User="eve@contoso.com",
                                                             AccessRights="FullAccess")) + "\n")
    (folder / ".hidden.json").write_text(compact(ual(rid="d0000000-0000-0000-0000-000000000000")) + "\n")
    embedded = hunt_mod.hunt([str(folder)], jobs=1)
    uri = folder.as_uri()
    units = spark_inputs.plan([uri], spark.sparkContext.defaultParallelism, ReadStats())
    assert len([u for u in units if u.end is not None]) > 2 and all(u.path.startswith("file://") for u in units)
    on_spark = spark_hunt([uri], spark=spark)
    assert_same(embedded, on_spark, strip="file://")
    assert all(ev.source.startswith("file://") for f in on_spark.findings for ev in f.evidence)
    assert [p for p, _ in on_spark.stats.files_read] == ["file://" + p for p, _ in embedded.stats.files_read]


def test_many_small_files(spark, tmp_path):
    for i in range(40):
        (tmp_path / f"part{i:02d}.json").write_text(
            compact(noise(i)) + "\n" + compact(ual(rid=f"e{i:07d}-0000-0000-0000-000000000000",
                                                   Identity=f"box{i}@contoso.com", User="eve@contoso.com",
                                                   AccessRights="FullAccess")) + "\n")
    embedded = hunt_mod.hunt([str(tmp_path)], jobs=1)
    on_spark = spark_hunt([str(tmp_path)], spark=spark)
    assert len(embedded.findings) == 40
    assert_same(embedded, on_spark)


def test_missing_inputs_are_counted_not_fatal(spark, tmp_path):
    result = spark_hunt([str(tmp_path / "nope.json"), (tmp_path / "gone").as_uri()], spark=spark)
    assert [r for _, r in result.stats.files_skipped] == ["no such file or folder"] * 2
    assert result.findings == []


def test_cli_engine_spark_same_jsonl_as_embedded(spark, corpus):
    runner = CliRunner()
    embedded = runner.invoke(main, ["hunt", str(corpus), "--format", "jsonl", "--quiet"])
    on_spark = runner.invoke(main, ["hunt", str(corpus), "--format", "jsonl", "--quiet", "--engine", "spark",
                                    "--spark-master", "local[2]", "--spark-conf", "spark.sql.shuffle.partitions=2"])
    assert embedded.exit_code == 0 and on_spark.exit_code == 0, on_spark.output
    assert on_spark.stdout == embedded.stdout and embedded.stdout.count("\n") > 5


def test_embedded_engine_refuses_uris_with_a_clear_message(tmp_path):
    out = CliRunner().invoke(main, ["hunt", tmp_path.as_uri(), "-q"])
    assert out.exit_code == 2 and "--engine spark" in out.stderr


def test_spark_conf_pairs():
    assert parse_conf(["spark.executor.memory=4g", " a.b = c=d "]) == {"spark.executor.memory": "4g", "a.b": "c=d"}
    with pytest.raises(ValueError, match="KEY=VALUE"):
        parse_conf(["spark.executor.memory"])


def test_uris_and_mounts():
    assert uris.is_uri("s3a://bucket/logs/") and uris.is_uri("file:///tmp/x")
    assert not uris.is_uri("/tmp/x") and not uris.is_uri(r"C:\logs\x.json")
    assert uris.local_path("dbfs:/mnt/audit/x.json") == "/dbfs/mnt/audit/x.json"
    assert uris.resolve("file:///tmp/a b.json")[1] == "/tmp/a b.json"
    assert uris.resolve("dbfs:/mnt/x")[1] == "/dbfs/mnt/x"
    fs, inner = uris.resolve("abfss://logs@acct.dfs.core.windows.net/ual/2024")  # no network to build it
    assert (type(fs).__name__, inner) == ("AzureFileSystem", "logs/ual/2024")
    assert uris.inner_path("s3a://audit/ual/2024/a.json.gz") == "audit/ual/2024/a.json.gz"
    assert uris.inner_path("gs://audit/") == "audit"
    assert uris.inner_path("hdfs://namenode:8020/data/ual") == "/data/ual"


def test_split_points_on_line_boundaries(tmp_path):
    path = tmp_path / "x.ndjson"
    path.write_bytes(b"".join(b'{"n":%d,"pad":"%s"}\n' % (i, b"x" * (i % 50)) for i in range(3000)))
    size = path.stat().st_size
    ranges = spark_inputs._split_points(path.as_uri(), size, 7)
    assert ranges[0][0] == 0 and ranges[-1][1] == size
    data = path.read_bytes()
    for (_, end), (start, _) in zip(ranges, ranges[1:]):
        assert end == start and data[start - 1:start] == b"\n"
    from delegatewatch.sources import split_points

    assert ranges == split_points(str(path), 7)  # the local planner's ranges
    # a target exactly at a line start: both planners finish that line (readline's semantics)
    for parts in range(2, 40):
        assert spark_inputs._split_points(path.as_uri(), size, parts) == split_points(str(path), parts)


def test_spark_submit_arguments_default_to_the_spark_engine():
    from delegatewatch.engine.spark_submit import arguments

    assert arguments(["hunt", "s3a://b/ual/", "-q"]) == ["hunt", "--engine", "spark", "s3a://b/ual/", "-q"]
    assert arguments(["hunt", "x", "--engine=embedded"]) == ["hunt", "x", "--engine=embedded"]
    assert arguments(["rules", "list"]) == ["rules", "list"]


def test_spark_submit_runs_the_hunt(spark, tmp_path):
    """The documented entry point under a real ``spark-submit`` (its own JVM and master)."""
    import os
    import subprocess
    import sys

    import delegatewatch
    from delegatewatch.engine import spark_submit

    submit = Path(sys.executable).parent / "spark-submit"
    if not submit.exists():
        pytest.skip("spark-submit is not next to this Python (pyspark installed elsewhere)")
    out = tmp_path / "findings.jsonl"
    env = {**os.environ, "PYSPARK_PYTHON": sys.executable,
           "PYTHONPATH": os.pathsep.join([str(Path(delegatewatch.__file__).parents[1]), os.environ.get("PYTHONPATH", "")])}
    run = subprocess.run([str(submit), "--master", "local[1]", "--conf", "spark.ui.enabled=false", spark_submit.__file__,
                          "hunt", str(DEMO), "--directory", str(DEMO / "directory.csv"), "--format", "jsonl", "-q",
                          "--output", str(out)], env=env, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-2000:]
    embedded = CliRunner().invoke(main, ["hunt", str(DEMO), "--directory", str(DEMO / "directory.csv"),
                                         "--format", "jsonl", "-q"])
    assert out.read_text() == embedded.stdout and embedded.stdout


def test_no_java_is_a_clear_error_exit_2(monkeypatch, tmp_path):
    pyspark_sql = pytest.importorskip("pyspark.sql")
    from delegatewatch.engine import spark as spark_mod

    monkeypatch.setattr(pyspark_sql.SparkSession, "getActiveSession", classmethod(lambda cls: None))
    monkeypatch.setattr(spark_mod.shutil, "which", lambda name: None)
    monkeypatch.delenv("JAVA_HOME", raising=False)
    monkeypatch.delenv("PYSPARK_GATEWAY_PORT", raising=False)
    with pytest.raises(spark_mod.SparkUnavailable, match="no Java runtime"):
        spark_mod.session()
    out = CliRunner().invoke(main, ["hunt", str(tmp_path), "--engine", "spark", "-q"])
    assert out.exit_code == 2 and "no Java runtime" in out.stderr and "Traceback" not in out.output
