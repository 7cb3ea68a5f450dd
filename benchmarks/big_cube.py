"""Bounded memory on a big cube: impute a synthetic Zarr cube of 8.6 GB on disk, and the same
cube eight times shorter, and compare the peak RSS of the two `impute` runs.

    python benchmarks/big_cube.py OUTDIR [--steps 8192] [--train-steps 300] [--keep]

The cubes are made lazily, chunk by chunk (dask `map_blocks`, written with `to_zarr`, no
compression, so the bytes on disk are the float32 bytes): a 512 x 512 field of travelling waves
plus noise, with a cloud (a disc of radius 40 cells) over one time step in every 256. Sparse
gaps keep the network's work small enough for 2 CPU cores: the point is memory, and every
region still reads, fills and writes its whole box (the statistics pass reads the whole cube,
and every input and output variable is written in full). A `quick` model is trained on the
small cube (lazily too), then `impute-cli impute` runs on each cube under `/usr/bin/time -v`.

Time on 2 CPU cores: about 8 minutes for training and the two imputations (156 + 32 + 259 s
measured), plus the time to write the two cubes. Disk: about 25 GB free in OUTDIR (9.7 GB of
cubes, and each output, up to 14.5 GB, until it is scored and deleted).
Writes OUTDIR/big_cube.json, the `/usr/bin/time -v` logs OUTDIR/train.log and
OUTDIR/impute-{small,big}.log and the model OUTDIR/model/; prints a Markdown table. The cubes
and outputs are deleted at the end unless --keep."""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

import dask.array as dsa
import numpy as np
import xarray as xr
from timing import timed

H = W = 512
CHUNK_T = 32
GAP_EVERY = 256


def _block(block_info: dict | None = None) -> np.ndarray:
    """One chunk of the field, from its global position only (so the cube is the same however
    it is chunked or computed)."""
    (t0, t1), (y0, y1), (x0, x1) = block_info[None]["array-location"]
    t = np.arange(t0, t1, dtype="float32")[:, None, None]
    y = np.arange(y0, y1, dtype="float32")[None, :, None]
    x = np.arange(x0, x1, dtype="float32")[None, None, :]
    f = (15 + 5 * np.sin(2 * np.pi * (x / 256 + t / 200)) * np.cos(2 * np.pi * y / 300)
         + 2 * np.sin(2 * np.pi * (x + y) / 97 - t / 37)).astype("float32")
    f += 0.3 * np.random.default_rng([t0, y0, x0]).standard_normal(f.shape, dtype="float32")
    for k, tt in enumerate(range(t0, t1)):
        if tt % GAP_EVERY == 17:  # a cloud, placed by the time step
            cy, cx = 60 + (tt * 37) % 390, 60 + (tt * 91) % 390
            f[k][((y[0] - cy) ** 2 + (x[0] - cx) ** 2) < 40**2] = np.nan
    return f


def make_cube(path: Path, steps: int) -> None:
    data = dsa.map_blocks(_block, dtype="float32", chunks=((CHUNK_T,) * (steps // CHUNK_T), (H,), (W,)))
    ds = xr.Dataset(
        {"sst": (("time", "lat", "lon"), data, {"units": "degC", "standard_name": "sea_surface_temperature",
                                                "long_name": "synthetic sea surface temperature"})},
        coords={"time": ("time", np.arange(steps, dtype="float64"), {"units": "hours since 2000-01-01 00:00:00",
                                                                     "standard_name": "time", "axis": "T"}),
                "lat": ("lat", np.linspace(-30, 30, H), {"units": "degrees_north", "standard_name": "latitude"}),
                "lon": ("lon", np.linspace(100, 160, W), {"units": "degrees_east", "standard_name": "longitude"})},
        attrs={"Conventions": "CF-1.8", "title": "impute-cli big-cube benchmark"})
    ds.sst.encoding = {"compressors": None, "chunks": (CHUNK_T, H, W)}
    tmp = path.with_name(path.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    ds.to_zarr(tmp, mode="w", consolidated=True)
    tmp.rename(path)


def du(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("outdir", type=Path)
    ap.add_argument("--steps", type=int, default=8192, help="time steps of the big cube (8192: 8.6 GB)")
    ap.add_argument("--train-steps", type=int, default=300)
    ap.add_argument("--keep", action="store_true", help="keep the cubes and outputs")
    a = ap.parse_args()
    out = a.outdir
    out.mkdir(parents=True, exist_ok=True)
    cli = str(Path(sys.executable).with_name("impute-cli"))
    cubes = {"small": (out / "small.zarr", a.steps // 8), "big": (out / "big.zarr", a.steps)}
    results: dict = {"command": " ".join(sys.argv), "cubes": {}}
    for name, (path, steps) in cubes.items():
        if not path.exists():
            t0 = time.perf_counter()
            make_cube(path, steps)
            print(f"made {path} in {time.perf_counter() - t0:.0f} s", flush=True)
        results["cubes"][name] = {"shape": [steps, H, W], "bytes_on_disk": du(path)}
    model = out / "model"
    if not (model / "model.yaml").exists():
        results["train"] = timed([cli, "train", str(cubes["small"][0]), "--preset", "quick", "--out", str(model),
                                  "--steps", str(a.train_steps), "--overwrite", "--quiet"], out / "train.log")
        print("train", results["train"], flush=True)
    for name, (path, _) in cubes.items():
        dest = out / f"{name}-filled.zarr"
        r = timed([cli, "impute", str(path), str(dest), "--model", str(model), "--overwrite", "--quiet"],
                  out / f"impute-{name}.log")
        with xr.open_zarr(dest) as o:
            gaps = int((o.sst_imputed_flag == 1).sum().compute())
            left = int((o.sst_filled.isnull() & (o.sst_imputed_flag == 1)).sum().compute())
        r.update(imputed_cells=gaps, nan_left_in_gaps=left, output_bytes_on_disk=du(dest))
        results["cubes"][name]["impute"] = r
        print(name, r, flush=True)
        if not a.keep:
            shutil.rmtree(dest)
    s, b = results["cubes"]["small"]["impute"], results["cubes"]["big"]["impute"]
    results["peak_ratio_big_over_small"] = round(b["peak_rss_mb"] / s["peak_rss_mb"], 3)
    (out / "big_cube.json").write_text(json.dumps(results, indent=1))
    print("\n| cube | shape | on disk | impute wall | peak RSS |\n|---|---|---|---|---|")
    for name, c in results["cubes"].items():
        print(f"| {name} | {' x '.join(map(str, c['shape']))} | {c['bytes_on_disk'] / 1e9:.2f} GB | "
              f"{c['impute']['wall_s']:.0f} s | {c['impute']['peak_rss_mb']:.0f} MB |")
    print(f"peak RSS big / small: {results['peak_ratio_big_over_small']}")
    if not a.keep:
        for path, _ in cubes.values():
            shutil.rmtree(path)


if __name__ == "__main__":
    main()
