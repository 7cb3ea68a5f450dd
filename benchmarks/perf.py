"""Performance: wall time, throughput, accuracy and peak RSS of `train` and `impute` at three
cube sizes, for the point estimate and N = 1, 8, 64 samples, beside `cdo fillmiss`, and the
fraction of the machine's matrix-multiply rate the network reaches in impute and in training.

    python benchmarks/perf.py OUTDIR [--device auto] [--sizes 96 384 1536] [--grid 32 48]
                              [--train-steps 300] [--samples 1 8 64] [--max-sample-cells 2e5]
                              [--sampler-steps N] [--reference-args "--ensemble 10 ..."]
                              [--distill STEPS]

Time on 2 CPU cores: about 5 minutes with the defaults; the sample sweep on the middle size
(`--sizes 384 --max-sample-cells 1e6`) about 10 minutes more. `--device cuda` gives the GPU rows.

- Cubes: the project's synthetic advected field with drifting cloud gaps (50 % observed),
  T x H x W for each T in --sizes. One `quick` model is trained per size (so train's time and
  memory at each size are measured too); every impute uses its size's model.
- Each command runs in its own process under /usr/bin/time -v: wall time and peak RSS are the
  whole command's (start-up, reading, writing included). Throughput is imputed cells (the
  gaps filled) per second of that wall time. RMSE: the filled variable against the cube's
  truth on the gap cells (the same cells for every row).
- Samples use the model's default sampler (`--sampler-steps` overrides); N is run on the cubes
  of at most --max-sample-cells cells, so the sweep stays short on 2 CPU cores.
- `cdo fillmiss` (when cdo is on PATH) fills the same gappy cube, timed the same way: the rate
  users compare the point estimate with.
- `--reference-args`: one more point-estimate row per cube with these impute options (e.g. the
  settings of an earlier release), so a speed-up is a ratio from one run on one machine.
- `--distill STEPS`: each model that samples also gets a distilled sampler (`impute-cli distill`,
  timed like train); the sample rows then draw with it, and each has a `--sampler full` row (the
  multi-step solver) beside it.
- Matmul fraction: the rate of a large float32 (bf16 on CUDA) matrix product is measured in this
  process, then one forward pass of the trained network on a batch of tiles the size impute
  uses (impute's precision), and one training step (forward, backward, optimiser; float32 on
  CPU) on train's batch, their FLOPs counted by torch.utils.flop_counter; achieved FLOP/s over
  the matmul rate.

Writes OUTDIR/perf.json, OUTDIR/T<size>/ (the cube, its model and the `/usr/bin/time -v` logs of
each command) and prints Markdown tables for benchmarks/RESULTS.md."""

from __future__ import annotations

import argparse
import json
import platform
import shlex
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import torch
import xarray as xr
from timing import timed

from impute_cli.checkpoint import load_model
from impute_cli.device import autocast, pick_device
from impute_cli.errors import ImputeError
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


def _inputs(card, batch: int, device: torch.device) -> tuple[list[int], tuple]:
    """A batch of random windows of the model's shape, as the network's arguments."""
    f, h, w = card.window
    C = len(card.channels)
    x = torch.randn(batch, f, C, h, w, device=device)
    M = torch.rand(batch, f, C, h, w, device=device) < 0.5
    valid = torch.ones(batch, h, w, dtype=torch.bool, device=device)
    t = torch.rand(batch, device=device)
    clim = torch.zeros(batch, 2 * C, h, w, device=device)
    args = (x, M, valid, t, clim) if card.preset.network.climatology_input else (x, M, valid, t)
    return [batch, f, C, h, w], args


def _measure(work, device: torch.device, reps: int) -> tuple[float, float]:
    """FLOPs of one call of `work` (torch.utils.flop_counter) and its seconds, the mean of
    `reps` calls after two warm-up calls."""
    from torch.utils.flop_counter import FlopCounterMode
    with FlopCounterMode(display=False) as fc:
        work()
    for _ in range(2):
        work()
    _sync(device)
    t0 = time.perf_counter()
    for _ in range(reps):
        work()
    _sync(device)
    return fc.get_total_flops(), (time.perf_counter() - t0) / reps


@torch.no_grad()
def forward_rate(model: Path, device: torch.device, reps: int = 5) -> dict:
    """FLOPs and FLOP/s of the network's forward pass on impute's batch of tiles, in impute's
    precision."""
    card, den = load_model(model)
    den = den.to(device).eval()
    shape, args = _inputs(card, card.preset.impute.batch_size, device)
    with autocast(device, inference=True):
        flops, sec = _measure(lambda: den(*args), device, reps)
    return {"batch": shape, "gflop_per_forward": round(flops / 1e9, 3), "seconds_per_forward": round(sec, 4),
            "achieved_gflops": round(flops / sec / 1e9, 2)}


def train_rate(model: Path, device: torch.device, reps: int = 5) -> dict:
    """FLOPs and FLOP/s of one training step (forward, squared-error backward, AdamW step) of the
    network on train's batch of windows, in training's precision."""
    card, den = load_model(model)
    den = den.to(device).train()
    shape, args = _inputs(card, card.preset.train.batch_size, device)
    y = torch.randn_like(args[0])
    opt = torch.optim.AdamW(den.parameters(), lr=1e-4)

    def step() -> None:
        with autocast(device):
            loss = ((den(*args).float() - y) ** 2).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    flops, sec = _measure(step, device, reps)
    return {"batch": shape, "gflop_per_step": round(flops / 1e9, 3), "seconds_per_step": round(sec, 4),
            "achieved_gflops": round(flops / sec / 1e9, 2)}


def gap_rmse(out: Path, gappy: Path, truth: Path, var: str = "sst") -> tuple[float, int]:
    """RMSE of `out`'s fill of `var` (impute's `var`_filled, CDO's `var`) against the truth on
    the gap cells of `gappy` that it filled, and the number of gap cells it left missing."""
    with xr.open_dataset(out) as o, xr.open_dataset(gappy) as g, xr.open_dataset(truth) as t:
        gap = g[var].isnull().values
        filled = o[f"{var}_filled"] if f"{var}_filled" in o else o[var]
        err = filled.values[gap] - t[var].values[gap]
    left = ~np.isfinite(err)
    return float(np.sqrt(np.mean(err[~left] ** 2))), int(left.sum())


def fill_row(cmd: list[str], out: Path, log: Path, what: str, samples: int, T: int, cells: int, imputed: int,
             gappy: Path, truth: Path) -> dict:
    """Time one command that fills `gappy` into `out`, score the fill on the gaps, delete `out`;
    the table's row."""
    out.unlink(missing_ok=True)  # cdo does not overwrite without -O
    r = timed(cmd, log)
    r.update(what=what, T=T, cells=cells, imputed=imputed, samples=samples, cells_per_s=round(imputed / r["wall_s"], 1))
    r["rmse"], r["left_missing"] = gap_rmse(out, gappy, truth)
    out.unlink()
    return r


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out", type=Path)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--sizes", type=int, nargs="+", default=[96, 384, 1536], help="time steps of the three cubes")
    ap.add_argument("--grid", type=int, nargs=2, default=[32, 48], metavar=("H", "W"))
    ap.add_argument("--train-steps", type=int, default=300)
    ap.add_argument("--samples", type=int, nargs="+", default=[1, 8, 64])
    ap.add_argument("--max-sample-cells", type=float, default=2e5)
    ap.add_argument("--sampler-steps", type=int, default=None, help="sampler steps (default: the model's)")
    ap.add_argument("--reference-args", default="", help="impute options of one more point-estimate row per cube")
    ap.add_argument("--distill", type=int, default=0, metavar="STEPS",
                    help="give each model a distilled sampler of STEPS steps (timed); samples then come from it, "
                         "and each sample count gets a `--sampler full` row too")
    a = ap.parse_args()
    try:
        device = pick_device(a.device)
    except ImputeError as e:
        ap.error(str(e))
    a.out.mkdir(parents=True, exist_ok=True)
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
        gappy, truth = write_demo(d, T=T, H=H, W=W, pattern="cloud", observed=0.5, seed=0)
        with xr.open_dataset(gappy) as ds:
            gaps = int(ds.sst.isnull().sum())
        cells = T * H * W
        model = d / "model"
        r = timed([cli, "train", str(gappy), "--out", str(model), "--steps", str(a.train_steps), "--overwrite",
                   "--quiet", *dev], d / "train.log")
        res["runs"].append({"what": "train", "T": T, "cells": cells, "steps": a.train_steps, **r})
        print(res["runs"][-1], flush=True)
        if T == a.sizes[0]:
            for key, fn in (("forward", forward_rate), ("train_step", train_rate)):
                res[key] = fn(model, device)
                res[key]["fraction_of_matmul"] = round(res[key]["achieved_gflops"] / res["matmul_gflops"], 4)
                print(key, res[key], flush=True)
        sampling = cells <= a.max_sample_cells and any(a.samples)
        if a.distill and sampling:
            r = timed([cli, "distill", str(model), "--steps", str(a.distill), "--overwrite", "--quiet", *dev],
                      d / "distill.log")
            res["runs"].append({"what": "distill", "T": T, "cells": cells, "steps": a.distill, **r})
            print(res["runs"][-1], flush=True)
        tags = {"": [], "ref": shlex.split(a.reference_args), "full": ["--sampler", "full"]}
        cube = {"T": T, "cells": cells, "imputed": gaps, "gappy": gappy, "truth": truth}

        for n, tag in [(0, ""), *([(0, "ref")] if tags["ref"] else []), *[(n, "") for n in a.samples],
                       *[(n, "full") for n in a.samples if a.distill]]:
            if n and cells > a.max_sample_cells:
                continue
            extra = ["--samples", str(n)] if n else []
            if n and a.sampler_steps:
                extra += ["--sampler-steps", str(a.sampler_steps)]
            out = d / f"out{n}{tag}.nc"
            rows = [fill_row([cli, "impute", str(gappy), str(out), "--model", str(model), "--overwrite", "--quiet",
                              *dev, *extra, *tags[tag]], out, d / f"impute{n}{tag}.log",
                             " ".join(["impute", *tags[tag]]), n, **cube)]
            if n == 0 and not tag and shutil.which("cdo"):  # what users compare the point estimate with
                rows.append(fill_row(["cdo", "-s", "fillmiss", str(gappy), str(d / "cdo.nc")], d / "cdo.nc",
                                     d / "cdo.log", "cdo fillmiss", 0, **cube))
            for r in rows:
                res["runs"].append(r)
                print(r, flush=True)
    (a.out / "perf.json").write_text(json.dumps(res, indent=1))
    print(f"\n{res['machine']}, torch {res['torch']}; matmul {res['matmul_gflops']} GFLOP/s")
    f, s = res["forward"], res["train_step"]
    print(f"forward pass, batch {f['batch']}: {f['gflop_per_forward']} GFLOP in {f['seconds_per_forward']} s = "
          f"{f['achieved_gflops']} GFLOP/s, {100 * f['fraction_of_matmul']:.1f} % of the matmul rate")
    print(f"training step, batch {s['batch']}: {s['gflop_per_step']} GFLOP in {s['seconds_per_step']} s = "
          f"{s['achieved_gflops']} GFLOP/s, {100 * s['fraction_of_matmul']:.1f} % of the matmul rate\n")
    print("| command | cube (T x H x W) | samples | wall (s) | imputed cells / s | RMSE on the gaps | "
          "x point estimate's wall | peak RSS (MB) |")
    print("|---|---|---|---|---|---|---|---|")
    point = {r["T"]: r["wall_s"] for r in res["runs"] if r["what"] == "impute" and r["samples"] == 0}
    for r in res["runs"]:
        trains = r["what"] in ("train", "distill")
        n = "-" if trains else (r["samples"] or "point")
        rate = f"{r['steps'] / r['wall_s']:.1f} steps/s" if trains else f"{r['cells_per_s']:.0f}"
        rmse = f"{r['rmse']:.4f}" if "rmse" in r else "-"
        if r.get("left_missing"):
            rmse += f" ({r['left_missing']} left missing)"
        x = f"{r['wall_s'] / point[r['T']]:.2f}" if not trains and r["T"] in point else "-"
        print(f"| {r['what']} | {r['T']} x {H} x {W} | {n} | {r['wall_s']:.1f} | {rate} | {rmse} | {x} | "
              f"{r['peak_rss_mb']:.0f} |")


if __name__ == "__main__":
    main()
