"""The ``spark-submit`` entry point: the ``delegatewatch`` command line, on the submitted Spark.

``hunt`` and ``export-events`` run with ``--engine spark`` unless told otherwise, and take the
master and configuration ``spark-submit`` (or Databricks) set up. Use this file as the
application, or the ``delegatewatch-spark`` console script (a Databricks *Python wheel* task's
entry point)::

    spark-submit --master yarn --archives env.tar.gz#env --conf spark.pyspark.python=./env/bin/python \\
        "$(python -c 'import delegatewatch.engine.spark_submit as m; print(m.__file__)')" \\
        hunt s3a://audit/ual/2024/ --format jsonl --output findings.jsonl

See docs/spark.md.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

SPARK_COMMANDS = ("hunt", "export-events")


def arguments(argv: Sequence[str]) -> list[str]:
    """``argv`` with ``--engine spark`` added after a Spark-capable command that names no engine."""
    args = list(argv)
    if args and args[0] in SPARK_COMMANDS and not any(a == "--engine" or a.startswith("--engine=") for a in args):
        args[1:1] = ["--engine", "spark"]
    return args


def main(argv: Sequence[str] | None = None) -> None:
    from delegatewatch.cli import main as cli

    cli.main(arguments(sys.argv[1:] if argv is None else argv), prog_name="delegatewatch-spark")


if __name__ == "__main__":
    main()
