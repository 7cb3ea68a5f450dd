"""How close can the [CQ] ensemble estimate get to the exact posterior mean on the GP cube, with a
perfect network? The method's own limit, which no training can beat.

A perfect network trained with the context/query strategy returns E[x | context values] for
the context it is shown ([CQ] §3.1-3.2, Thm 1). On the GP cube that conditional mean is exact
linear algebra, so the best possible ensemble estimate of [CQ] eq. 9-10 -- the average over K
context masks M_ctx ⊆ M drawn by the training sampler -- can be computed, tile by tile with the
same tiling and taper blending as `impute`. Printed, as MSE over the hidden cells divided by
the exact posterior mean's MSE (benchmarks/gp_exact.py's figure):

  window    every observed cell of the tile as context: what the window alone loses
  ens K r   the [CQ] ensemble of K contexts at context ratio r: what a perfect network,
            used the way the method uses it, would score

Run from the project root after `python benchmarks/gp_exact.py make DIR --pattern P` (about a
minute on 2 CPU cores for the default runs):

    python benchmarks/gp_method_limit.py DIR --pattern block [--context empirical] [--frames 16] [--overlap 0.25]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
import xarray as xr

from impute_cli.evaluation.gp import matern32
from impute_cli.io.tiling import blend_weights, plan_tiles
from impute_cli.masks.context_query import ContextSampler


def window_cov(f: int, h: int, w: int, phi: float, ell: float) -> np.ndarray:
    """Cov of a (f, h, w) window of the unit-variance process: phi^|t-s| ⊗ Matérn-3/2."""
    t = np.arange(f)
    return np.kron(phi ** np.abs(t[:, None] - t[None, :]), matern32(h, w, ell))


def cond_mean(C: np.ndarray, y: np.ndarray, ctx: np.ndarray) -> np.ndarray:
    """E[x | x[ctx] = y[ctx]] for x ~ N(0, C), every cell (flattened)."""
    o = np.flatnonzero(ctx)
    if o.size == 0:
        return np.zeros(C.shape[0])
    S = C[np.ix_(o, o)] + 1e-6 * np.eye(o.size)
    return C[:, o] @ np.linalg.solve(S, y[o])


def read_truth(cube_dir: str) -> tuple[np.ndarray, np.ndarray, dict[str, float]]:
    """A `gp_exact.py make` folder's complete field (T, H, W) in K, its observed mask, and the
    process parameters phi, ell, loc, scale."""
    truth = xr.open_dataset(f"{cube_dir}/truth.nc")
    p = {k: float(truth.attrs[f"gp_{a}"]) for k, a in
         (("phi", "phi"), ("ell", "ell_cells"), ("loc", "loc"), ("scale", "scale"))}
    return truth["tas"].values.astype("float64"), truth["observed"].values.astype(bool), p


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("dir")
    ap.add_argument("--pattern", choices=["pixel", "block"], required=True)
    ap.add_argument("--context", choices=["pixel", "block", "empirical"], default=None,
                    help="the context sampler (default: the gap pattern); empirical borrows the cube's own gaps")
    ap.add_argument("--frames", type=int, default=16)
    ap.add_argument("--overlap", type=float, default=0.25)
    ap.add_argument("--runs", default="16:0.7,64:0.7,16:0.9", help="K:ratio pairs, comma-separated")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--save", default=None, help="write each estimate (T, H, W, in K) to SAVE-<n>.npy")
    a = ap.parse_args()
    x, M, gp = read_truth(a.dir)
    phi, ell, loc, scale = gp["phi"], gp["ell"], gp["loc"], gp["scale"]
    pm = xr.open_dataset(f"{a.dir}/posterior.nc")["tas_mean"].values
    T, H, W = x.shape
    hidden = ~M
    mse_post = float(((pm - x)[hidden] ** 2).mean())
    z = (x - loc) / scale
    win = (min(a.frames, T), H, W)
    C = window_cov(*win, phi, ell)
    taper = blend_weights(win).astype("float64")
    tiles = plan_tiles((T, H, W), win, a.overlap)
    context = a.context or a.pattern
    sampler = ContextSampler(context, [4, 8], M if context == "empirical" else None)
    runs = [("window", 1, 1.0)] + [(f"ens K={k} r={r}", int(k), float(r))
                                   for k, r in (p.split(":") for p in a.runs.split(","))]
    print(f"posterior-mean MSE {mse_post:.4f} K^2; {len(tiles)} tiles of {win}")
    print("| estimate | MSE / posterior-mean MSE | s |\n|---|---|---|")
    for i, (name, K, r) in enumerate(runs):
        t0 = time.perf_counter()
        gen = torch.Generator().manual_seed(a.seed)
        acc, wsum = np.zeros((T, H, W)), np.zeros((T, H, W))
        for tl in tiles:
            m = M[tl.t, tl.y, tl.x]
            y = z[tl.t, tl.y, tl.x].ravel()
            Mt = torch.from_numpy(m)[None, :, None]  # (1, F, C=1, h, w)
            est = np.zeros(y.size)
            for _ in range(K):
                ctx = Mt if r >= 1.0 else sampler(Mt, r, gen)
                est += cond_mean(C, y, ctx[0, :, 0].numpy().ravel())
            acc[tl.t, tl.y, tl.x] += taper * (est / K).reshape(win)
            wsum[tl.t, tl.y, tl.x] += taper
        e = loc + scale * acc / wsum
        mse = float(((e - x)[hidden] ** 2).mean())
        if a.save:
            np.save(f"{a.save}-{i}.npy", e)
        print(f"| {name} | {mse / mse_post:.3f} | {time.perf_counter() - t0:.0f} |", flush=True)


if __name__ == "__main__":
    main()
