"""demo: the main job end to end on data the project makes itself -- make a cube with cloud
gaps (and its hidden truth), train a quick model on the gappy cube only, impute, and score the
hidden cells against the classical baselines of `evaluate` (baselines.BASELINES)."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path
from typing import Callable

import numpy as np
import xarray as xr

from impute_cli.evaluation.baselines import BASELINES
from impute_cli.evaluation.kriging import BaselineSkipped
from impute_cli.errors import ImputeError
from impute_cli.inference.impute import impute_file
from impute_cli.options import ImputeOptions
from impute_cli.synthetic import write_demo
from impute_cli.options import TrainOptions
from impute_cli.training.train import train_model


def rmse_table(filled: np.ndarray, truth: np.ndarray, hidden: np.ndarray, gappy: np.ndarray) -> dict[str, float]:
    """RMSE on the hidden cells of the model's output and of each baseline."""
    rmse = lambda a: float(np.sqrt(np.mean((a[hidden] - truth[hidden]) ** 2)))
    scores = {"impute-cli": rmse(filled)}
    for name, fn in BASELINES.items():
        try:
            scores[name] = rmse(fn(gappy))
        except BaselineSkipped:  # cdo_fillmiss where the cdo program is not installed
            continue
    return scores


def run_demo(outdir: str | Path, steps: int | None = None, preset: str = "quick", seed: int = 0,
             threads: int | None = None,
             log: Callable[[str], None] = lambda s: print(s, file=sys.stderr)) -> dict[str, float]:
    outdir = Path(outdir)
    if outdir.exists() and not outdir.is_dir():
        raise ImputeError(f"'{outdir}' is a file; give the demo a folder (it is created if missing)")
    made = [p for p in (outdir, *(outdir / n for n in ("gappy.nc", "truth.nc", "model", "filled.nc")))
            if not p.exists()]
    try:
        gappy_path, truth_path = write_demo(outdir, seed=seed)
        log(f"demo cube: {gappy_path} (cloud gaps, 50 % observed); hidden truth: {truth_path}")
        model = train_model(gappy_path, TrainOptions(preset=preset, steps=steps, out=outdir / "model",
                                                     overwrite=True, seed=seed, threads=threads, log=log))
        out = outdir / "filled.nc"
        impute_file(gappy_path, out, ImputeOptions(model=str(model), overwrite=True, seed=seed, threads=threads,
                                                   log=log, history=f"impute-cli impute {gappy_path} {out} --model {model}"))
    except BaseException:  # an interrupted or failed demo takes back what it made
        for p in reversed(made):
            shutil.rmtree(p, ignore_errors=True) if p.is_dir() else p.unlink(missing_ok=True)
        raise
    truth = xr.open_dataset(truth_path)
    filled = xr.open_dataset(out)
    hidden = ~truth["observed"].values
    scores = rmse_table(filled["sst_filled"].values, truth["sst"].values, hidden,
                        xr.open_dataset(gappy_path)["sst"].values)
    return scores
