"""One local Spark for every Spark test module (starting one costs seconds): ``local[2]``, two
shuffle partitions, no UI or console progress. Skips with the reason where pyspark or Java is absent."""

from __future__ import annotations

import shutil

import pytest


@pytest.fixture(scope="session")
def spark():
    pytest.importorskip("pyspark", reason="pyspark is not installed")
    if shutil.which("java") is None:
        pytest.skip("no Java runtime: pyspark cannot start a local Spark")
    from pyspark.sql import SparkSession

    from delegatewatch.engine.spark import SparkSettings, session

    other = SparkSession.getActiveSession()
    if other is not None:  # another module's session (e.g. local[1]): these tests need two cores' planning
        other.stop()
    s = session(SparkSettings(master="local[2]", conf={"spark.sql.shuffle.partitions": "2",
                                                      "spark.ui.showConsoleProgress": "false"}))
    s.sparkContext.setLogLevel("ERROR")
    yield s
    s.stop()
