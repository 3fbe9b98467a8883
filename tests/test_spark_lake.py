"""The event lake on Spark: written by Spark tasks (files split in byte ranges included) to the same
rows as the embedded writer, read by Spark SQL, and hunted on Spark to the original findings."""

from __future__ import annotations

import pyarrow.parquet as pq
import pytest

from delegatewatch.engine import hunt as hunt_mod
from delegatewatch.engine.export_lake import export_lake
from delegatewatch.engine.spark import SparkJobFailed, spark_hunt
from delegatewatch.engine.spark_lake import spark_export_lake
from delegatewatch.events.principals import Directory
from tests.conftest import DEMO, compact, noise, ual
from tests.spark_support import spark  # noqa: F401 - the shared local Spark fixture


def lake_rows(root) -> list[dict]:
    """Every row of a lake, without the run-specific part names, in a stable order."""
    rows = pq.read_table(root).to_pylist()
    return sorted(rows, key=lambda r: (r["unmapped"]["source"], r["unmapped"]["line"] or 0, r["unmapped"]["index"]))


def test_spark_writes_the_embedded_lake_and_hunts_it(spark, tmp_path):
    users = Directory.load(str(DEMO / "directory.csv"))
    exclude = [str(DEMO / "directory.csv")]
    on_spark = spark_export_lake([str(DEMO)], (tmp_path / "s").as_uri(), spark=spark, directory=users,
                                 exclude=exclude)
    embedded = export_lake([str(DEMO)], str(tmp_path / "e"), directory=users, exclude=exclude)
    assert on_spark.rows == embedded.rows == 314 and on_spark.days == embedded.days
    assert lake_rows(tmp_path / "s") == lake_rows(tmp_path / "e")
    original = hunt_mod.hunt([str(DEMO)], directory=users, exclude=exclude)
    from_lake = spark_hunt([str(tmp_path / "s")], spark=spark, directory=users)
    assert [f.to_dict() for f in from_lake.findings] == [f.to_dict() for f in original.findings]


def test_spark_sql_reads_the_lake(spark, tmp_path):
    export_lake([str(DEMO)], str(tmp_path / "lake"), exclude=[str(DEMO / "directory.csv")])
    df = spark.read.parquet(str(tmp_path / "lake"))
    assert "event_day" in df.columns and df.count() == 314
    df.createOrReplaceTempView("lake")
    grants = spark.sql("SELECT user.name AS grantee, unmapped.source AS source FROM lake "
                       "WHERE class_uid = 3005 AND array_contains(privileges, 'FullAccess')").collect()
    assert grants and all(g.source.startswith(str(DEMO)) for g in grants)
    days = {str(r.event_day) for r in spark.sql("SELECT DISTINCT event_day FROM lake").collect()}
    assert days == {"2024-10-14", "2024-10-15", "2024-10-16"}


def test_split_file_lake_keeps_original_line_numbers(spark, tmp_path, monkeypatch):
    lines = []
    for i in range(3000):
        lines.append(compact(noise(i)))
        if i % 101 == 0:
            lines.append(compact(ual(rid=f"a1000000-0000-0000-0000-{i:012d}", Identity=f"m{i}@contoso.com",
                                     User="eve@contoso.com", AccessRights="FullAccess")))
        if i % 1000 == 0:
            lines.append("")  # a blank line: line numbers still count it
    src = tmp_path / "in" / "big.ndjson"
    src.parent.mkdir()
    src.write_text("\n".join(lines) + "\n")
    monkeypatch.setattr(hunt_mod, "SPLIT_MIN", 1 << 15)
    result = spark_export_lake([str(src)], str(tmp_path / "lake"), spark=spark)
    assert len(result.files) > 2  # several ranges, each its own part
    for row in pq.read_table(tmp_path / "lake").to_pylist():
        where = row["unmapped"]
        assert row["metadata"]["uid"] in lines[where["line"] - 1], where
    embedded = hunt_mod.hunt([str(src)], jobs=1)
    from_lake = hunt_mod.hunt([str(tmp_path / "lake")], jobs=1)
    assert [f.to_dict() for f in from_lake.findings] == [f.to_dict() for f in embedded.findings]
    assert len(embedded.findings) == 30


def test_unwritable_lake_root_is_one_clear_error(spark, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")  # the lake root would be under a file
    with pytest.raises(SparkJobFailed, match=r"Spark job 'write lake' failed: .*(Error|Exception)") as info:
        spark_export_lake([str(DEMO / "ual_api_blob.json")], str(blocker / "lake"), spark=spark)
    assert "\n" not in str(info.value) and len(str(info.value)) < 600
