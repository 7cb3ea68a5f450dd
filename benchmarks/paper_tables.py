"""[CQ] Table 2 and Table 4 at CPU scale, on the first paper's synthetic systems.

Not part of the test suite. Run from the project root:

    python benchmarks/paper_tables.py OUTDIR [--systems advection shallow_water navier_stokes]
        [--frames 256] [--size 32] [--observed 0.5] [--steps 1000] [--seed 0]

Time on 2 CPU cores: about 16 minutes with the defaults (three systems, three trainings each).
Writes OUTDIR/<system>/ (the gappy cube and the three models), OUTDIR/tables.json and
OUTDIR/tables.md, and prints the Markdown tables.

For each system (benchmarks/systems.py) a complete cube is made, and block gaps on a 3 x 3 block
grid ([CQ] §4.1 / the authors' code: whole blocks missing, each block out for runs of 8 time
steps) hide (1 - observed) of it. Every model is trained on the gappy cube only and scored on the
hidden cells (RMSE in units of the field's standard deviation).

Table 2 (context strategy on block gaps), three trainings per system:
- block context ([CQ]): `--mask-pattern block`, blocks of the gaps' size; query = all observed;
- pixel context: `--mask-pattern pixel` (the mismatched strategy);
- MissDiff: context = query = M (`--context-ratio 1 --query-ratio 1`);
- AmbientDiff: one further-corrupted pixel context (ratio 0.7), query = all observed -- the
  pixel row's training -- and at test time one context draw (K = 1) instead of the ensemble.

Table 4 (how the point estimate uses the observations), with the block model:
- the context-mask ensemble ([CQ] eq. 10, K = 10);
- one random context mask (K = 1);
- the full mask M fed as context (the train/test mismatch the paper warns of).

Baselines on the same cells: temporal linear interpolation, Laplace fill, DINEOF (EOF)."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

import systems  # noqa: E402

from impute_cli.evaluation.baselines import BASELINES  # noqa: E402
from impute_cli.checkpoint import load_model  # noqa: E402
from impute_cli.io.dataset import open_cube  # noqa: E402
from impute_cli.inference.fill import fill_cube
from impute_cli.options import ImputeOptions
from impute_cli.synthetic import gap_mask  # noqa: E402
from impute_cli.options import TrainOptions
from impute_cli.training.train import train_model

BLOCK_GRID = 3
BLOCK_FRAMES = 8

MODELS = {  # one training per setting: TrainOptions overrides
    "block": dict(mask_pattern="block"),
    "pixel": dict(mask_pattern="pixel"),  # further-corrupted pixel context, ratio 0.7, query = M
    "missdiff": dict(mask_pattern="pixel", context_ratio=1.0, query_ratio=1.0),
}
TABLE2 = {  # row -> (model, test-time ensemble K; None = the model's, 10)
    "block context (ours)": ("block", None),
    "pixel context": ("pixel", None),
    "MissDiff (context = query = M)": ("missdiff", None),
    # AmbientDiff trains exactly as the pixel row (one further-corrupted pixel context, loss on
    # all of M) and imputes from one such context: the pixel model with K = 1.
    "AmbientDiff (one further-corrupted context, K = 1)": ("pixel", 1),
}


def make_system(name: str, folder: Path, T: int, S: int, observed: float, seed: int) -> tuple[Path, np.ndarray, np.ndarray]:
    field = getattr(systems, name)(T, S, S, seed)
    obs = gap_mask((T, S, S), "block", observed, seed, block_frames=BLOCK_FRAMES, block_grid=BLOCK_GRID)
    ds = systems.to_dataset(np.where(obs, field, np.nan).astype("float32"), name=systems.VARIABLES[name][0], system=name)
    path = folder / f"{name}-gappy.nc"
    ds.to_netcdf(path)
    return path, field, obs


def rmse(est: np.ndarray, truth: np.ndarray, hidden: np.ndarray) -> float:
    return float(np.sqrt(np.mean((est[hidden] - truth[hidden]) ** 2)))


def point_estimate(model: Path, gappy: Path, ensemble: int | None, full_mask: bool = False) -> np.ndarray:
    card, den = load_model(model)
    if full_mask:  # feed M itself as the context: ratio 1 (the MissDiff branch of fill_cube), K = 1
        card = dataclasses.replace(card, mask_strategy={**card.mask_strategy, "missdiff": True})
        ensemble = 1
    cube = open_cube(gappy, card.variables, card.static_mask_var)
    cube.load()
    return fill_cube(card, den, cube, ImputeOptions(ensemble=ensemble, progress=False)).estimate[:, 0]


def run_system(name: str, args: argparse.Namespace, out: Path) -> dict:
    work = out / name
    work.mkdir(parents=True, exist_ok=True)
    gappy, field, obs = make_system(name, work, args.frames, args.size, args.observed, args.seed)
    hidden = ~obs
    res: dict = {"system": name, "hidden_cells": int(hidden.sum()), "table2": {}, "table4": {}, "baselines": {},
                 "train_seconds": {}}
    g = np.where(obs, field, np.nan)
    for b in ("temporal_linear", "laplace", "eof_dineof"):
        res["baselines"][b] = rmse(BASELINES[b](g), field, hidden)
    block = max(2, -(-args.size // BLOCK_GRID))
    models = {}
    for tag, over in MODELS.items():
        t0 = time.perf_counter()
        models[tag] = train_model(gappy, TrainOptions(preset=args.preset, steps=args.steps, out=work / f"model-{tag}",
                                                      overwrite=True, seed=args.seed, block_sizes=[block],
                                                      progress=False, log=lambda s: None, **over))
        res["train_seconds"][tag] = round(time.perf_counter() - t0, 1)
    for row, (tag, K) in TABLE2.items():
        res["table2"][row] = rmse(point_estimate(models[tag], gappy, K), field, hidden)
        print(f"  {name}: {row}: {res['table2'][row]:.4f}", file=sys.stderr)
    m = models["block"]
    res["table4"]["context-mask ensemble (K = 10)"] = rmse(point_estimate(m, gappy, 10), field, hidden)
    res["table4"]["one random context (K = 1)"] = rmse(point_estimate(m, gappy, 1), field, hidden)
    res["table4"]["full mask M as context"] = rmse(point_estimate(m, gappy, None, full_mask=True), field, hidden)
    return res


def markdown(results: list[dict], args: argparse.Namespace) -> str:
    names = [r["system"] for r in results]
    head = "| method | " + " | ".join(names) + " |\n|---|" + "---|" * len(names)
    lines = [f"Cubes {args.frames} x {args.size} x {args.size}, block gaps ({BLOCK_GRID} x {BLOCK_GRID} grid, "
             f"runs of {BLOCK_FRAMES} steps), {args.observed:.0%} observed; preset {args.preset}, {args.steps} "
             "training steps per model; RMSE on hidden cells in units of the field's std.", "",
             "**Table 2** (context strategy, block gaps)", "", head]
    for row in TABLE2:
        lines.append(f"| {row} | " + " | ".join(f"{r['table2'][row]:.4f}" for r in results) + " |")
    for b in results[0]["baselines"]:
        lines.append(f"| {b} | " + " | ".join(f"{r['baselines'][b]:.4f}" for r in results) + " |")
    lines += ["", "**Table 4** (point estimate of the block model)", "", head]
    for row in results[0]["table4"]:
        lines.append(f"| {row} | " + " | ".join(f"{r['table4'][row]:.4f}" for r in results) + " |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out")
    ap.add_argument("--systems", nargs="+", default=["advection", "shallow_water", "navier_stokes"])
    ap.add_argument("--frames", type=int, default=256)
    ap.add_argument("--size", type=int, default=32)
    ap.add_argument("--observed", type=float, default=0.5)
    ap.add_argument("--steps", type=int, default=1000)
    ap.add_argument("--preset", default="quick")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    results = [run_system(s, args, out) for s in args.systems]
    (out / "tables.json").write_text(json.dumps(results, indent=1))
    md = markdown(results, args)
    (out / "tables.md").write_text(md)
    print(md)
    print(f"\n{time.perf_counter() - t0:.0f} s in all", file=sys.stderr)


if __name__ == "__main__":
    main()
