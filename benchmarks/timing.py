"""timing: run a command under /usr/bin/time -v and read its wall time and peak RSS.

A helper, not a benchmark: imported by perf.py and big_cube.py from the benchmarks folder, which
is on sys.path when a script in it is run. Needs GNU time (/usr/bin/time)."""

from __future__ import annotations

import re
import subprocess
import sys
import time
from pathlib import Path


def timed(cmd: list[str], log: Path) -> dict:
    """Wall seconds and peak RSS (MB, the largest process of the tree) of `cmd`; its output goes
    to `log`; a failure ends the benchmark with the command's last error lines."""
    t0 = time.perf_counter()
    r = subprocess.run(["/usr/bin/time", "-v", *cmd], capture_output=True, text=True)
    wall = time.perf_counter() - t0
    log.write_text(r.stdout + r.stderr)
    if r.returncode != 0:
        sys.exit(f"failed ({r.returncode}): {' '.join(cmd)}\n{r.stderr[-3000:]}")
    rss = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", r.stderr).group(1))
    return {"wall_s": round(wall, 2), "peak_rss_mb": round(rss / 1024, 1)}
