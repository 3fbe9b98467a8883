#!/usr/bin/env python3
"""Run the DuckDB reference query over a UAL NDJSON file and print the count.

This is what run_bench.py measures as the "equivalent filtered query": the same
question the hunt answers for FullAccess grants, asked of DuckDB's JSON reader.
It runs in its own process so the benchmark sees its wall time and peak RSS.

Variants, in the order run_bench.py tries them (the first that works is the
reference; auto-detection can fail on mixed record shapes in other data):
  auto        read_json(..., format='newline_delimited')  -- schema auto-detected
  union       read_json_auto(..., union_by_name=true)
  two_column  read_json(..., columns={Operation: VARCHAR, Parameters: JSON})

Usage: python bench/duckdb_query.py [--variant auto|union|two_column] [--threads N] FILE
Prints the count on stdout; --explain prints the SQL instead of running it.
"""

from __future__ import annotations

import argparse
import sys

WHERE = "WHERE Operation = 'Add-MailboxPermission' AND CAST(Parameters AS VARCHAR) LIKE '%FullAccess%'"

SOURCES = {
    "auto": "read_json('{f}', format='newline_delimited')",
    "union": "read_json_auto('{f}', format='newline_delimited', union_by_name=true)",
    "two_column": ("read_json('{f}', format='newline_delimited', "
                   "columns={{'Operation': 'VARCHAR', 'Parameters': 'JSON'}})"),
}
VARIANTS = list(SOURCES)


def sql(path: str, variant: str) -> str:
    return f"SELECT count(*) FROM {SOURCES[variant].format(f=path.replace(chr(39), chr(39) * 2))} {WHERE}"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="DuckDB reference query for the benchmark.")
    ap.add_argument("file")
    ap.add_argument("--variant", choices=VARIANTS, default="auto")
    ap.add_argument("--threads", type=int, help="DuckDB threads (default: DuckDB's choice, all cores)")
    ap.add_argument("--explain", action="store_true", help="print the SQL and exit")
    args = ap.parse_args(argv)
    query = sql(args.file, args.variant)
    if args.explain:
        print(query)
        return 0
    import duckdb  # imported late so --explain works without it

    con = duckdb.connect()
    if args.threads:
        con.execute(f"SET threads = {int(args.threads)}")
    try:
        print(con.execute(query).fetchone()[0])
    except duckdb.Error as e:  # one line, so run_bench.py can quote it
        print(f"{type(e).__name__}: {str(e).splitlines()[0]}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
