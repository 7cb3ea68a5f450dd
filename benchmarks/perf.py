"""Performance: wall time, throughput and peak RSS of `train` and `impute` at three cube sizes,
for the point estimate and N = 1, 8, 64 samples, and the fraction of the machine's
matrix-multiply rate the network's forward pass reaches.

    python benchmarks/perf.py OUTDIR [--device auto] [--sizes 96 384 1536] [--grid 32 48]
                              [--train-steps 300] [--samples 1 8 64] [--max-sample-cells 2e5]

Time on 2 CPU cores: about 5 minutes with the defaults; the sample sweep on the middle size
(`--sizes 384 --max-sample-cells 1e6`) about 11 minutes more. `--device cuda` gives the GPU rows.

- Cubes: the project's synthetic advected field with drifting cloud gaps (50 % observed),
  T x H x W for each T in --sizes. One `quick` model is trained per size (so train's time and
  memory at each size are measured too); every impute uses its size's model.
- Each command runs in its own process under /usr/bin/time -v: wall time and peak RSS are the
  whole command's (start-up, reading, writing included). Throughput is imputed cells (the
  gaps filled) per second of that wall time.
- Samples (20 sampler steps) cost far more than the point estimate; N is run on the cubes of at
  most --max-sample-cells cells, so the sweep stays short on 2 CPU cores.
- `cdo fillmiss` (when cdo is on PATH) fills the same gappy cube, timed the same way: the rate
  users compare the point estimate with.
- Matmul fraction: the rate of a large float32 (bf16 on CUDA) matrix product is measured in this
  process, then one forward pass of the trained network on a batch of tiles the size impute
  uses, its FLOPs counted by torch.utils.flop_counter; achieved FLOP/s over the matmul rate.

Writes OUTDIR/perf.json, OUTDIR/T<size>/ (the cube, its model and the `/usr/bin/time -v` logs of
each command) and prints Markdown tables for benchmarks/RESULTS.md."""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import sys
import time
from pathlib import Path

import torch
import xarray as xr
from timing import timed

from impute_cli.checkpoint import load_model
from impute_cli.device import autocast, pick_device
from impute_cli.synthetic import write_demo


def matmul_rate(device: torch.device, n: int = 2048, reps: int = 10) -> float:
    """FLOP/s of an n x n matrix product (float32; bf16 on CUDA, as the network runs there)."""
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    for _ in range(2):
        a @ b
    _sync(device)
    t0 = time.perf_counter()
    for _ in range(reps):
        a @ b
    _sync(device)
    return 2 * n**3 * reps / (time.perf_counter() - t0)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


@torch.no_grad()
def forward_rate(model: Path, device: torch.device, reps: int = 5) -> dict:
    """FLOPs and FLOP/s of the network's forward pass on impute's batch of tiles."""
    from torch.utils.flop_counter import FlopCounterMode
    card, den = load_model(model)
    den = den.to(device).eval()
    f, h, w = card.window
    C = len(card.channels)
    B = card.preset.impute.batch_size
    x = torch.randn(B, f, C, h, w, device=device)
    M = torch.rand(B, f, C, h, w, device=device) < 0.5
    valid = torch.ones(B, h, w, dtype=torch.bool, device=device)
    t = torch.full((B,), 0.5, device=device)
    clim = torch.zeros(B, 2 * C, h, w, device=device)
    args = (x, M, valid, t, clim) if card.preset.network.climatology_input else (x, M, valid, t)
    with autocast(device):
        with FlopCounterMode(display=False) as fc:
            den(*args)
        flops = fc.get_total_flops()
        for _ in range(2):
            den(*args)
        _sync(device)
        t0 = time.perf_counter()
        for _ in range(reps):
            den(*args)
        _sync(device)
    sec = (time.perf_counter() - t0) / reps
    return {"batch": [B, f, C, h, w], "gflop_per_forward": round(flops / 1e9, 3), "seconds_per_forward": round(sec, 4),
            "achieved_gflops": round(flops / sec / 1e9, 2)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out", type=Path)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--sizes", type=int, nargs="+", default=[96, 384, 1536], help="time steps of the three cubes")
    ap.add_argument("--grid", type=int, nargs=2, default=[32, 48], metavar=("H", "W"))
    ap.add_argument("--train-steps", type=int, default=300)
    ap.add_argument("--samples", type=int, nargs="+", default=[1, 8, 64])
    ap.add_argument("--max-sample-cells", type=float, default=2e5)
    ap.add_argument("--steps", type=int, default=20, help="sampler steps")
    a = ap.parse_args()
    a.out.mkdir(parents=True, exist_ok=True)
    device = pick_device(a.device)
    cli = str(Path(sys.executable).with_name("impute-cli"))
    dev = ["--device", a.device]
    H, W = a.grid
    res: dict = {"command": " ".join(sys.argv), "machine": f"{platform.processor() or platform.machine()}, "
                 f"{torch.get_num_threads()} torch threads, device {device}"
                 + (f" ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else ""),
                 "torch": torch.__version__, "runs": []}
    res["matmul_gflops"] = round(matmul_rate(device) / 1e9, 1)
    print(f"matmul: {res['matmul_gflops']} GFLOP/s on {device}", flush=True)
    for T in a.sizes:
        d = a.out / f"T{T}"
        gappy, _ = write_demo(d, T=T, H=H, W=W, pattern="cloud", observed=0.5, seed=0)
        with xr.open_dataset(gappy) as ds:
            gaps = int(ds.sst.isnull().sum())
        cells = T * H * W
        model = d / "model"
        r = timed([cli, "train", str(gappy), "--out", str(model), "--steps", str(a.train_steps), "--overwrite",
                   "--quiet", *dev], d / "train.log")
        res["runs"].append({"what": "train", "T": T, "cells": cells, "steps": a.train_steps, **r})
        print(res["runs"][-1], flush=True)
        if T == a.sizes[0]:
            res["forward"] = forward_rate(model, device)
            res["forward"]["fraction_of_matmul"] = round(res["forward"]["achieved_gflops"] / res["matmul_gflops"], 4)
            print("forward", res["forward"], flush=True)
        for n in [0, *a.samples]:
            if n and cells > a.max_sample_cells:
                continue
            extra = ["--samples", str(n), "--sampler-steps", str(a.steps)] if n else []
            r = timed([cli, "impute", str(gappy), str(d / f"out{n}.nc"), "--model", str(model), "--overwrite",
                       "--quiet", *dev, *extra], d / f"impute{n}.log")
            r.update(what="impute", T=T, cells=cells, imputed=gaps, samples=n,
                     cells_per_s=round(gaps / r["wall_s"], 1))
            res["runs"].append(r)
            print(r, flush=True)
            (d / f"out{n}.nc").unlink()
            if n == 0 and shutil.which("cdo"):  # what users compare the point estimate with
                c = timed(["cdo", "-s", "fillmiss", str(gappy), str(d / "cdo.nc")], d / "cdo.log")
                c.update(what="cdo fillmiss", T=T, cells=cells, imputed=gaps, samples=0,
                         cells_per_s=round(gaps / c["wall_s"], 1))
                res["runs"].append(c)
                print(c, flush=True)
                (d / "cdo.nc").unlink(missing_ok=True)
    (a.out / "perf.json").write_text(json.dumps(res, indent=1))
    print(f"\n{res['machine']}, torch {res['torch']}; matmul {res['matmul_gflops']} GFLOP/s")
    f = res["forward"]
    print(f"forward pass, batch {f['batch']}: {f['gflop_per_forward']} GFLOP in {f['seconds_per_forward']} s = "
          f"{f['achieved_gflops']} GFLOP/s, {100 * f['fraction_of_matmul']:.1f} % of the matmul rate\n")
    print("| command | cube (T x H x W) | samples | wall (s) | imputed cells / s | peak RSS (MB) |")
    print("|---|---|---|---|---|---|")
    for r in res["runs"]:
        n = "-" if r["what"] == "train" else (r["samples"] or "point")
        rate = f"{r['steps'] / r['wall_s']:.1f} steps/s" if r["what"] == "train" else f"{r['cells_per_s']:.0f}"
        print(f"| {r['what']} | {r['T']} x {H} x {W} | {n} | {r['wall_s']:.1f} | {rate} | {r['peak_rss_mb']:.0f} |")


if __name__ == "__main__":
    main()
