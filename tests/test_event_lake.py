"""The event lake (embedded engine): Parquet by event day that DuckDB and pandas read, and that a
hunt reads back into the same findings as the original files. Spark's side: test_spark_lake.py."""

from __future__ import annotations

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from delegatewatch.cli import main
from delegatewatch.engine.export_lake import export_lake
from delegatewatch.engine.hunt import hunt
from delegatewatch.events.principals import Directory
from delegatewatch.outputs.event_lake import SCHEMA
from tests.conftest import DEMO, compact, noise, ual


def findings(result) -> list[dict]:
    return [f.to_dict() for f in result.findings]


def test_demo_lake_hunts_to_the_same_findings(tmp_path):
    users = Directory.load(str(DEMO / "directory.csv"))
    exclude = [str(DEMO / "directory.csv")]
    lake = tmp_path / "lake"
    written = export_lake([str(DEMO)], str(lake), directory=users, exclude=exclude)
    assert written.rows == 314 and set(written.days) == {"2024-10-14", "2024-10-15", "2024-10-16"}
    original = hunt([str(DEMO)], directory=users, exclude=exclude)
    again = hunt([str(lake)], directory=users)
    assert len(original.findings) >= 10
    assert findings(again) == findings(original)
    assert again.stats.duplicates == original.stats.duplicates
    assert {d for _, d in again.stats.files_read} == {"event-lake"}


def test_real_corpus_lake_hunts_to_the_same_findings(tmp_path, corpus):
    lake = tmp_path / "lake"
    export_lake([str(corpus)], str(lake))
    original = hunt([str(corpus)], jobs=1)
    again = hunt([str(lake)], jobs=1)
    assert findings(again) == findings(original) and original.findings


def test_duckdb_and_pandas_read_the_lake(tmp_path):
    lake = tmp_path / "lake"
    export_lake([str(DEMO)], str(lake), exclude=[str(DEMO / "directory.csv")])
    rows = duckdb.sql(
        f"SELECT event_day, class_uid, count(*) FROM read_parquet('{lake}/*/*.parquet', hive_partitioning = true) "
        "GROUP BY ALL ORDER BY ALL").fetchall()
    assert {str(r[0]) for r in rows} == {"2024-10-14", "2024-10-15", "2024-10-16"}
    assert {r[1] for r in rows} == {0, 3005, 4009} and sum(r[2] for r in rows) == 314
    # a grant: OCSF user (grantee), privileges, and provenance back to the original file and line
    grant = duckdb.sql(
        f"SELECT user.name, privileges, unmapped.source, unmapped.line, metadata.uid "
        f"FROM read_parquet('{lake}/*/*.parquet', hive_partitioning = true) "
        "WHERE class_uid = 3005 AND list_contains(privileges, 'FullAccess') ORDER BY time LIMIT 1").fetchall()[0]
    assert grant[0] and grant[2].startswith(str(DEMO)) and grant[4]
    pd = pytest.importorskip("pandas")
    frame = pd.read_parquet(lake)
    assert len(frame) == 314 and set(frame["event_day"].astype(str)) == {"2024-10-14", "2024-10-15", "2024-10-16"}
    assert str(frame["time_dt"].dtype).startswith("datetime64[ms, UTC]")
    assert pq.read_schema(next(lake.rglob("*.parquet"))).equals(SCHEMA)  # event_day lives in the path only


def test_records_without_time_and_split_provenance(tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    no_time = {"Id": "f0000000-0000-0000-0000-000000000001", "Operation": "Add-MailboxPermission",
               "Parameters": [{"Name": "Identity", "Value": "ceo@contoso.com"}]}
    (src / "a.ndjson").write_text("\n".join([compact(noise(1)), compact(no_time), compact(ual())]) + "\n")
    lake = tmp_path / "lake"
    written = export_lake([str(src)], str(lake))
    assert written.days == {"2024-02-04": 2, "unknown": 1}
    table = pq.read_table(lake / "event_day=2024-02-04")
    assert table.column("unmapped").to_pylist()[1]["line"] == 3  # the grant, line 3 of a.ndjson


def test_foreign_and_damaged_parquet_are_skipped_with_a_message(tmp_path):
    pq.write_table(pa.table({"a": [1, 2]}), tmp_path / "other.parquet")
    (tmp_path / "cut.parquet").write_bytes(b"PAR1" + b"\0" * 40)
    result = hunt([str(tmp_path)])
    messages = [str(i) for i in result.stats.issues]
    assert any("other.parquet" in m and "not a delegatewatch event lake" in m for m in messages)
    assert any("cut.parquet" in m and "cannot be read" in m for m in messages)
    assert result.findings == []


def test_bad_raw_data_row_is_counted_and_the_rest_read(tmp_path):
    lake = tmp_path / "lake"
    export_lake([str(DEMO / "ual_api_blob.json")], str(lake))
    part = next(lake.rglob("*.parquet"))
    table = pq.read_table(part)
    raw = table.column("raw_data").to_pylist()
    raw[0] = "{not json"
    pq.write_table(table.set_column(table.schema.get_field_index("raw_data"), "raw_data", pa.array(raw)), part)
    result = hunt([str(lake)], full_parse=True)
    assert result.stats.skipped == 1 and "row 1: raw_data is not JSON" in str(result.stats.issues[0])
    assert result.stats.records_parsed == table.num_rows - 1


def test_cli_export_events_lake_then_hunt(tmp_path):
    runner = CliRunner()
    lake = tmp_path / "lake"
    out = runner.invoke(main, ["export-events", str(DEMO), "--directory", str(DEMO / "directory.csv"),
                               "--format", "lake", "--output", str(lake)])
    assert out.exit_code == 0 and "314 records" in out.stderr
    a = runner.invoke(main, ["hunt", str(DEMO), "--directory", str(DEMO / "directory.csv"), "-q", "--format", "jsonl"])
    b = runner.invoke(main, ["hunt", str(lake), "--directory", str(DEMO / "directory.csv"), "-q", "--format", "jsonl"])
    assert a.stdout == b.stdout and a.stdout
    bad = runner.invoke(main, ["export-events", str(DEMO), "--format", "ocsf", "-o", "-", "--engine", "spark"])
    assert bad.exit_code == 2 and "--format lake only" in bad.stderr
