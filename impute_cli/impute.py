"""impute: a model + a gappy file -> the filled file (point estimate, [CQ] §3.3).

The cube is cut into overlapping space-time tiles of the model's window; each tile with a gap
gets the ensemble single-step estimate; overlaps are blended with a taper; observed cells are
put back from the input bit for bit; the result is written atomically."""

from __future__ import annotations

import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from tqdm import tqdm

from .batches import climatology_sums, denormalise, read_tiles
from .checkpoint import ModelCard, load_model
from .context_query import ContextSampler, observation_pool
from .dataset import Cube, Stats, observation_masks, open_cube, open_dataset, refuse_inf
from .device import pick_device
from .ensemble import ensemble_single_step
from .errors import ImputeError
from .train import TrainOptions, train_model
from .windows import blend_weights, plan_tiles
from .writer import build_output, check_output_path, write_atomic

GRID_SPACING_TOLERANCE = 0.01


@dataclass
class ImputeOptions:
    model: str | None = None
    variables: list[str] | None = None
    static_mask: str | None = None
    ensemble: int | None = None
    seed: int = 0
    device: str = "auto"
    overwrite: bool = False
    preset: str = "quick"  # for the model trained on the fly when no --model is given
    mask_pattern: str | None = None
    steps: int | None = None
    history: str = "impute-cli impute"
    progress: bool = True
    log: Callable[[str], None] = field(default=lambda s: print(s, file=sys.stderr))


def check_compatible(card: ModelCard, cube: Cube) -> None:
    """Refuse a model trained on other variables, units or grid spacing."""
    if card.channels != cube.channels:
        raise ImputeError(f"the model was trained on {', '.join(card.channels)} but this file gives "
                          f"{', '.join(cube.channels)}; use a model for these variables or pass --var")
    for c, (u_model, u_here) in enumerate(zip(card.units, cube.units)):
        if u_model != u_here:
            raise ImputeError(f"'{cube.channels[c]}' is in '{u_here}' here but the model was trained on "
                              f"'{u_model}'; convert the units or train a model on this file")
    g = card.grid
    for dim, vals, first_last, n in (("y", cube.grid.y_values, g["y_first_last"], g["shape"][1]),
                                     ("x", cube.grid.x_values, g["x_first_last"], g["shape"][2])):
        if n < 2 or len(vals) < 2:
            continue
        d_model = (first_last[1] - first_last[0]) / (n - 1)
        d_here = (vals[-1] - vals[0]) / (len(vals) - 1)
        if abs(abs(d_here) - abs(d_model)) <= GRID_SPACING_TOLERANCE * abs(d_model) and d_here * d_model < 0:
            raise ImputeError(f"the {dim} axis runs the other way here than in the model's training grid "
                              f"(step {d_here:g} vs {d_model:g}); flip it (e.g. cdo invertlat) or train a model on this file")
        if abs(d_here - d_model) > GRID_SPACING_TOLERANCE * abs(d_model):
            raise ImputeError(f"grid spacing along {dim} is {d_here:g} here but {d_model:g} in the model's "
                              "training grid; regrid the file or train a model on it")


def fill_cube(card: ModelCard, den: torch.nn.Module, cube: Cube, opts: ImputeOptions) -> np.ndarray:
    """The blended point estimate for every cell, (T, C, H, W) float32 in data units."""
    stats = Stats(tuple(card.normalisation["mean"]), tuple(card.normalisation["std"]),
                  card.normalisation["observed_fraction"])
    window = tuple(card.window)
    T, H, W = cube.grid.shape
    if any(w > n for w, n in zip(window, (T, H, W))):
        window = tuple(min(w, n) for w, n in zip(window, (T, H, W)))
        if window[0] != card.window[0]:
            raise ImputeError(f"the model needs windows of {card.window[0]} time steps but the file has {T}; "
                              "train a model with fewer frames (window.frames) on this file")
    refuse_inf(int(np.isinf(cube.data).sum().compute()))
    obs = observation_masks(cube)
    fillable_gaps = int((~obs & cube.valid[None, None]).sum())
    if fillable_gaps == 0:
        raise ImputeError("the input has no gap to fill (every fillable cell is observed); nothing to do")
    pattern = card.mask_strategy["pattern"]
    sampler = ContextSampler(pattern, card.preset.mask.block_sizes,
                             observation_pool(obs, cube.valid) if pattern == "empirical" else None)
    # [CQ] App. G.3: keep the network's input density as in training when the test density differs.
    r_test = float(obs.mean(axis=(0, 1))[cube.valid].mean())
    ratio = min(1.0, card.mask_strategy["context_input_fraction"] / max(r_test, 1e-6))
    if card.mask_strategy.get("missdiff"):
        ratio = 1.0
    device = pick_device(opts.device)
    den = den.to(device)
    K = opts.ensemble or card.preset.impute.ensemble
    tiles = [tl for tl in plan_tiles((T, H, W), window, card.preset.window.overlap)
             if not obs[tl.t, :, tl.y, tl.x].all()]  # a tile without gaps changes nothing
    w = torch.from_numpy(blend_weights(window))[:, None]  # (F, 1, h, w)
    num = np.zeros(cube.data.shape, "float32")
    den_w = np.zeros((T, 1, H, W), "float32")
    per_batch = max(1, card.preset.impute.batch_size // K)
    sums = climatology_sums(cube, stats)
    bar = tqdm(total=len(tiles), desc="impute", file=sys.stderr, disable=not opts.progress, dynamic_ncols=True)
    for i in range(0, len(tiles), per_batch):
        chunk = tiles[i:i + per_batch]
        b = read_tiles(cube, chunk, stats, sums)
        gens = [torch.Generator().manual_seed(opts.seed * 1_000_003 + i + j) for j in range(len(chunk))]
        x = ensemble_single_step(den, b.x_obs.to(device), b.M.to(device), b.valid.to(device), sampler=sampler,
                                 ratio=ratio, K=K, delta=card.preset.impute.delta, generators=gens,
                                 batch_size=card.preset.impute.batch_size,
                                 sums=(b.S.to(device), b.N.to(device))).cpu()
        for tl, xi in zip(chunk, x):
            num[tl.t, :, tl.y, tl.x] += (xi * w).numpy()
            den_w[tl.t, :, tl.y, tl.x] += w.numpy()
        bar.update(len(chunk))
    bar.close()
    est = np.divide(num, den_w, out=np.full_like(num, np.nan), where=den_w > 0)
    return denormalise(est, stats)


def impute_file(inp: str | Path, out: str | Path, opts: ImputeOptions) -> Path:
    """Fill the gaps of INP and write OUT; trains a quick model on INP first without --model."""
    check_output_path(out, inp, opts.overwrite)
    with tempfile.TemporaryDirectory(prefix="impute-cli-model-") as tmp:
        model = opts.model
        if model is None:
            opts.log(f"no --model given: training a '{opts.preset}' model on {inp} itself first "
                     "(the method needs no complete data)")
            model = str(train_model(inp, TrainOptions(preset=opts.preset, mask_pattern=opts.mask_pattern,
                                                      steps=opts.steps, out=Path(tmp) / "model",
                                                      variables=opts.variables, static_mask=opts.static_mask,
                                                      device=opts.device, seed=opts.seed,
                                                      progress=opts.progress, log=opts.log)))
        card, den = load_model(model)
    # The model's variables and static mask unless the user names others (then they must match).
    ds = open_dataset(inp)
    variables = opts.variables or (card.variables if set(card.variables) <= set(ds.data_vars) else None)
    cube = open_cube(inp, variables, opts.static_mask or card.static_mask_var, ds=ds)
    check_compatible(card, cube)
    cube.load()
    filled = fill_cube(card, den, cube, opts)
    ds = build_output(cube, filled, opts.history)
    write_atomic(ds, out, opts.overwrite)
    n = int(((ds[f"{cube.variables[0]}_imputed_flag"] == 1).sum()))
    opts.log(f"wrote {out}: {n} cells of {cube.variables[0]} imputed"
             + (f" (and {len(cube.variables) - 1} more variables)" if len(cube.variables) > 1 else ""))
    return Path(out)
