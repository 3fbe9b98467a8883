"""Tiny launcher: run a command, report its wall time and peak RSS via os.wait4.

    python -S -I bench/spawn_measure.py RESULT_FILE CMD [ARGS...]

Writes "seconds maxrss_kb returncode" to RESULT_FILE. The command's stdin/stdout/
stderr are this process's.

Why a separate process: on Linux a child's ru_maxrss starts at the RSS of the
process it was forked from (exec copies the old address space's high-water mark
into the signal struct, and it survives exec). Forking measured commands straight
from run_bench.py, which has generated 1 GB of data in-process, made even `wc -l`
report ~300 MB. This launcher imports nothing beyond the interpreter's core, so
the floor is a few MB; run_bench.py measures that floor with `true` and reports it.
Keep this file free of imports.
"""

import os
import sys
import time


def main() -> None:
    result_file, cmd = sys.argv[1], sys.argv[2:]
    t0 = time.perf_counter()
    pid = os.fork()
    if pid == 0:
        try:
            os.execvp(cmd[0], cmd)
        except OSError as e:
            os.write(2, f"spawn_measure: cannot run {cmd[0]!r}: {e}\n".encode())
        os._exit(127)
    _, status, usage = os.wait4(pid, 0)
    elapsed = time.perf_counter() - t0
    with open(result_file, "w") as fh:
        fh.write(f"{elapsed} {usage.ru_maxrss} {os.waitstatus_to_exitcode(status)}\n")


if __name__ == "__main__":
    main()
