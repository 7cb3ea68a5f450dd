"""Sampling cost: `impute --samples N` on a 744 x 33 x 49 cube (a month of hourly fields on a
small regional grid) for N = 1, 8, 64: wall time and peak RSS of each run, and of the point
estimate alone, so the growth with N is visible.

    python benchmarks/sample_timing.py OUT [--train-steps 1500] [--samples 1 8 64] [--steps 20]

The cube is the project's synthetic advected Gaussian-process field with drifting cloud gaps
(50 % observed); the model is trained once with the quick preset (reused if OUT/model exists).
Time on 2 CPU cores: about 35 minutes (training about 3 min, `--samples 64` about 25 min).
Writes OUT/gappy.nc and OUT/truth.nc, OUT/model/, OUT/point.nc and OUT/samples<N>.nc;
prints a Markdown table. Needs GNU time (/usr/bin/time). Not part of the test suite."""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import time
from pathlib import Path

from impute_cli.synthetic import write_demo


def timed(cmd: list[str]) -> tuple[float, float]:
    """Wall seconds and peak RSS (GiB) of a command, from GNU time."""
    t0 = time.time()
    res = subprocess.run(["/usr/bin/time", "-v", *cmd], capture_output=True, text=True)
    wall = time.time() - t0
    if res.returncode != 0:
        sys.exit(f"failed: {' '.join(cmd)}\n{res.stderr[-3000:]}")
    rss = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", res.stderr).group(1)) / 2**20
    return wall, rss


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out", type=Path)
    ap.add_argument("--train-steps", type=int, default=1500)
    ap.add_argument("--samples", type=int, nargs="+", default=[1, 8, 64])
    ap.add_argument("--steps", type=int, default=20, help="sampler steps")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    gappy = args.out / "gappy.nc"
    if not gappy.exists():
        write_demo(args.out, T=744, H=33, W=49, pattern="cloud", observed=0.5, seed=0)
    model = args.out / "model"
    if not (model / "model.yaml").exists():
        wall, rss = timed(["impute-cli", "train", str(gappy), "--out", str(model), "--steps",
                           str(args.train_steps), "--quiet", "--overwrite"])
        print(f"train {args.train_steps} steps: {wall:.0f} s, peak RSS {rss:.2f} GiB", flush=True)
    print("| run | wall time (s) | peak RSS (GiB) |")
    print("|---|---|---|")
    wall, rss = timed(["impute-cli", "impute", str(gappy), str(args.out / "point.nc"), "--model", str(model),
                       "--quiet", "--overwrite"])
    print(f"| point estimate only | {wall:.0f} | {rss:.2f} |", flush=True)
    for n in args.samples:
        wall, rss = timed(["impute-cli", "impute", str(gappy), str(args.out / f"samples{n}.nc"), "--model",
                           str(model), "--samples", str(n), "--sampler-steps", str(args.steps), "--quiet", "--overwrite"])
        print(f"| --samples {n} --sampler-steps {args.steps} | {wall:.0f} | {rss:.2f} |", flush=True)


if __name__ == "__main__":
    main()
