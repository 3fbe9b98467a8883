"""The hunt on Apache Spark: the embedded hunt's units, scanned by Spark tasks.

What runs where:

* **driver** — planning (:func:`delegatewatch.engine.spark_inputs.plan`: files, and byte ranges of
  large NDJSON files), then the merge every engine shares (:func:`delegatewatch.engine.hunt.merge`:
  cross-unit de-duplication, line renumbering, events, findings, whole-input analytics, context,
  allow-list, grant → use incidents);
* **executors** — one task per unit: read the source, de-duplicate, prefilter, evaluate the Sigma
  rules in an in-process DuckDB (:func:`delegatewatch.engine.hunt._scan`, unchanged), and send back
  the matches and what the analytics are fed, reduced in the task where a module has ``reduce``
  (a small fraction of the input).

The rules and the configuration are broadcast once; each Python worker builds its DuckDB rule
engine once per hunt. Results are collected in unit order, so findings are the embedded hunt's.
"""

from __future__ import annotations

import os
import shutil
import sys
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from delegatewatch import config
from delegatewatch.detections.rules import Rule, load_rules
from delegatewatch.engine import hunt as hunt_mod
from delegatewatch.engine.hunt import HuntResult, Unit, UnitResult, merge
from delegatewatch.engine.spark_inputs import localised, plan, restore_provenance
from delegatewatch.events.principals import Directory
from delegatewatch.records import ReadStats
from delegatewatch.sources.uris import s3_endpoint, use_s3_endpoint

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

DEFAULT_MASTER = "local[*]"
APP_NAME = "delegatewatch"


class SparkUnavailable(RuntimeError):
    """pyspark is not installed, or no Java runtime to start it."""


class SparkJobFailed(RuntimeError):
    """A Spark job failed (a task raised, an executor was lost for good): the first line of why."""


def collect(rdd: Any, what: str) -> list:
    """``rdd.collect()``, its failure a :class:`SparkJobFailed` with the task's own error message
    rather than a page of JVM stack (the full trace is in the Spark logs)."""
    try:
        return rdd.collect()
    except Exception as exc:  # Py4JJavaError / PythonException: no common base class worth naming
        text = str(exc)
        lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
        # a Python task error ends its traceback with "SomeError: message"; prefer that line
        cause = next((ln for ln in lines if ln.split(":", 1)[0].endswith(("Error", "Exception"))
                      and not ln.startswith(("org.", "py4j", "java.", "An error occurred"))), lines[0] if lines else "")
        raise SparkJobFailed(f"Spark job '{what}' failed: {cause[:500]}") from exc


@dataclass(frozen=True)
class SparkSettings:
    """How to reach Spark. ``master`` None: the one ``spark-submit`` set, else ``local[*]``."""

    master: str | None = None
    conf: Mapping[str, str] = field(default_factory=dict)
    app_name: str = APP_NAME


def parse_conf(pairs: Sequence[str]) -> dict[str, str]:
    """``["k=v", …]`` (``--spark-conf``) → a dict; a pair without ``=`` is a ValueError naming it."""
    out: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"--spark-conf {pair!r}: expected KEY=VALUE, e.g. spark.executor.memory=4g")
        out[key.strip()] = value.strip()
    return out


def session(settings: SparkSettings = SparkSettings()) -> SparkSession:
    """A Spark session (the active one when there is one, e.g. on Databricks or under
    ``spark-submit``). For a local master, the workers run this very Python (which has delegatewatch
    installed) unless ``PYSPARK_PYTHON`` or ``spark.pyspark.python`` says otherwise."""
    try:
        from pyspark.sql import SparkSession
    except ImportError as exc:
        raise SparkUnavailable("pyspark is not installed: pip install 'delegatewatch[spark]'") from exc
    active = SparkSession.getActiveSession()
    if active is not None:
        return active
    # spark-submit starts the JVM first and hands Python its gateway; the master is then its own
    submitted = bool(os.environ.get("PYSPARK_GATEWAY_PORT"))
    master = settings.master or (None if submitted else DEFAULT_MASTER)
    if not submitted and not (os.environ.get("JAVA_HOME") or shutil.which("java")):
        raise SparkUnavailable("no Java runtime (set JAVA_HOME or put java on PATH) to start Spark")
    builder = SparkSession.builder.appName(settings.app_name)
    if master:
        builder = builder.master(master)
    conf = dict(settings.conf)
    if (master or "").startswith("local"):
        # pyspark starts workers with $PYSPARK_PYTHON, else a bare "python3" that may lack delegatewatch
        if "spark.pyspark.python" not in conf:
            os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
        conf.setdefault("spark.ui.enabled", "false")
    for key, value in conf.items():
        builder = builder.config(key, value)
    try:
        return builder.getOrCreate()
    except Exception as exc:  # py4j and JVM start-up errors have no common base class
        raise SparkUnavailable(f"cannot start Spark (master {master or 'from spark-submit'}): {exc}") from exc


def local_python(sc: Any) -> None:
    """Local mode runs the workers on this machine: with neither ``PYSPARK_PYTHON`` nor
    ``spark.pyspark.python`` set, use this very interpreter (it has delegatewatch) rather than the
    bare ``python3`` a session made elsewhere (a notebook, another library) would start."""
    if (str(sc.master).startswith("local") and not os.environ.get("PYSPARK_PYTHON")
            and not sc.getConf().get("spark.pyspark.python")):
        sc.pythonExec = sys.executable


# -- executors ---------------------------------------------------------------------------------
_loaded: dict[str, Any] = {}


def _scan_on_executor(unit: Unit, shipped: Any) -> UnitResult:
    """One task: the embedded engine's ``_scan`` on one unit, in this Python worker. ``shipped``
    is the broadcast (hunt token, rules, full parse, configuration, the driver's S3 endpoint); set up
    once per worker and hunt."""
    token, rules, full_parse, cfg, endpoint = shipped.value
    use_s3_endpoint(endpoint)
    if _loaded.get("token") != token:
        config.use(cfg)
        engine = hunt_mod._worker.pop("engine", None)
        if engine is not None:
            engine.close()
        hunt_mod._init_worker(rules, full_parse)
        _loaded["token"] = token
    with localised(unit) as local:
        result = hunt_mod._scan(local)
    return restore_provenance(result, local.path, unit.path)


# -- driver ------------------------------------------------------------------------------------
@dataclass
class SparkTimings:
    """Seconds spent: starting (or finding) the session, planning, the Spark job, the merge."""

    startup: float = 0.0
    plan: float = 0.0
    scan: float = 0.0
    merge: float = 0.0
    units: int = 0


def spark_hunt(paths: Sequence[str], *, spark: SparkSession | None = None,
               settings: SparkSettings = SparkSettings(), directory: Directory | None = None,
               rules: Sequence[Rule] | None = None, full_parse: bool = False, exclude: Sequence[str] = (),
               timings: SparkTimings | None = None) -> HuntResult:
    """Hunt ``paths`` (files, folders, or URIs of either on any filesystem pyarrow reads) on Spark:
    the same findings as :func:`delegatewatch.engine.hunt.hunt` on the same input."""
    timings = timings if timings is not None else SparkTimings()
    rules = list(rules) if rules is not None else load_rules()
    t0 = time.perf_counter()
    if spark is None:
        spark = session(settings)
    sc = spark.sparkContext
    local_python(sc)
    t1 = time.perf_counter()
    stats = ReadStats()
    units = plan(paths, max(1, sc.defaultParallelism), stats, exclude)
    t2 = time.perf_counter()
    results: list[UnitResult] = []
    if units:
        shipped = sc.broadcast((uuid.uuid4().hex, rules, full_parse, config.current(), s3_endpoint()))
        try:
            sc.setJobDescription(f"delegatewatch hunt: {len(units)} units")
            results = collect(sc.parallelize(units, len(units)).map(lambda u: _scan_on_executor(u, shipped)), "hunt")
        finally:
            shipped.unpersist()
    t3 = time.perf_counter()
    result = merge(units, results, rules, stats, directory=directory)
    timings.startup, timings.plan, timings.scan = t1 - t0, t2 - t1, t3 - t2
    timings.merge, timings.units = time.perf_counter() - t3, len(units)
    return result
