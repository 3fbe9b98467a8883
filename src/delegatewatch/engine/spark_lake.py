"""``export-events --format lake --engine spark``: the event lake written by Spark tasks.

Two small jobs: the first counts the newlines of each byte range of split files (so the second
can number lines as in the original file), the second writes every unit's Parquet parts straight
to the lake with pyarrow (any filesystem :mod:`delegatewatch.sources.uris` resolves). Part names
are fixed per run and unit, so a retried task overwrites its own output rather than adding to it.
Only counters come back to the driver. Tasks read and write S3 through the driver's endpoint
(:func:`delegatewatch.sources.uris.use_s3_endpoint`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, TypeVar

from delegatewatch.engine.export_lake import LakeResult, count_lines, write_unit
from delegatewatch.engine.spark import SparkSettings, collect, local_python, session
from delegatewatch.engine.spark_inputs import plan
from delegatewatch.events.principals import Directory
from delegatewatch.outputs.event_lake import run_name
from delegatewatch.records import ReadStats
from delegatewatch.sources.uris import s3_endpoint, use_s3_endpoint

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

T = TypeVar("T")


def _task(endpoint: str | None, work: Callable[..., T], *args: object) -> T:
    """``work(*args)`` on an executor, with the driver's S3 endpoint."""
    use_s3_endpoint(endpoint)
    return work(*args)


def spark_export_lake(paths: Sequence[str], root: str, *, spark: SparkSession | None = None,
                      settings: SparkSettings = SparkSettings(), directory: Directory | None = None,
                      exclude: Sequence[str] = ()) -> LakeResult:
    """Write the event lake of ``paths`` under ``root`` (a path every executor sees, or a URI)."""
    spark = spark if spark is not None else session(settings)
    sc = spark.sparkContext
    local_python(sc)
    result = LakeResult(ReadStats())
    endpoint = s3_endpoint()
    units = plan(paths, max(1, sc.defaultParallelism), result.stats, exclude)
    if not units:
        return result
    ranged = [i for i, u in enumerate(units) if u.end is not None]
    offsets = [0] * len(units)
    if ranged:
        counts = collect(sc.parallelize([units[i] for i in ranged], len(ranged)).map(
            lambda u: _task(endpoint, count_lines, u)), "count lines")
        by_file: dict[str, int] = {}
        for i, n in zip(ranged, counts):
            offsets[i] = by_file.get(units[i].path, 0)
            by_file[units[i].path] = offsets[i] + n
    run = run_name()
    shipped = sc.broadcast(directory)
    jobs = [(i, u, offsets[i]) for i, u in enumerate(units)]
    try:
        parts = collect(sc.parallelize(jobs, len(jobs)).map(
            lambda j: _task(endpoint, write_unit, j[1], f"part-{run}-{j[0]:05d}", root, shipped.value, j[2])),
            "write lake")
    finally:
        shipped.unpersist()
    for part in parts:
        result.add(part)
    return result
