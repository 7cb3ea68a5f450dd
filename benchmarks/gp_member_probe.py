"""One ensemble member of a trained model against the exact conditional mean it should return
(issue 3: is the network learning the GP's interpolation, or the training record's values?).

A network trained with the context/query strategy should output E[x | context values] for the
context it is shown ([CQ] §3.1-3.2, Thm 1); on the GP cube that is exact linear algebra
(benchmarks/gp_method_limit.py). For windows of a cube, one random context each (the model's
own sampler and ratio), this prints the mean squared error in K² of the network's x_θ(δ, ·)
and of the exact E[x | context], and their ratio, on two sets of cells:

  query    observed cells left out of the context (what training scores it on)
  hidden   cells never observed (what imputation asks of it)

On the cube the model was trained on, a query ratio well below the hidden one -- or below 1 --
means the network knows observed values it was not shown: it has learnt the record. On another
realisation of the same process (`gp_exact.py make DIR --seed 1`) both are pure generalisation.

    python benchmarks/gp_member_probe.py CUBE_DIR MODEL_DIR [--windows 14]
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
from gp_method_limit import cond_mean, read_truth, window_cov

from impute_cli.batches import context_climatology
from impute_cli.checkpoint import load_model
from impute_cli.context_query import ContextSampler


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("cube_dir")
    ap.add_argument("model_dir")
    ap.add_argument("--windows", type=int, default=14)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    torch.set_num_threads(2)
    card, den = load_model(a.model_dir)
    den.eval()
    x, M, gp = read_truth(a.cube_dir)
    phi, ell, loc, scale = gp["phi"], gp["ell"], gp["loc"], gp["scale"]
    mean, std = card.normalisation["mean"][0], card.normalisation["std"][0]
    T, H, W = x.shape
    f, h, w = card.window
    if (h, w) != (H, W):
        raise SystemExit(f"the model's window {h} x {w} is not the cube's grid {H} x {W}")
    xn = np.where(M, (x - mean) / std, 0.0)
    S = torch.tensor(xn.sum(0), dtype=torch.float32)[None, None]  # climatology input, as impute gives it
    N = torch.tensor(M.sum(0), dtype=torch.float32)[None, None]
    C = window_cov(f, h, w, phi, ell)
    pattern = card.mask_strategy["pattern"]
    # empirical: borrow real gap shapes from this cube, as impute does (its pool is M itself)
    sampler = ContextSampler(pattern, card.preset.mask.block_sizes, M if pattern == "empirical" else None)
    ratio = card.preset.mask.context_ratio
    gen = torch.Generator().manual_seed(a.seed)
    delta = card.preset.impute.delta
    t = torch.full((1,), delta)
    al, si = den.schedule.alpha(t), den.schedule.sigma(t)
    sq = {k: [0.0, 0.0, 0] for k in ("query", "hidden")}  # network SSE, exact SSE, cells
    for t0 in np.linspace(0, T - f, a.windows).astype(int):
        tw = slice(t0, t0 + f)
        xw = torch.tensor(xn[tw], dtype=torch.float32)[None, :, None]
        Mw = torch.tensor(M[tw])[None, :, None]
        ctx = sampler(Mw, ratio, gen)
        x_delta = Mw * (al * xw + si * torch.randn(xw.shape, generator=gen))  # [CQ] eq. 9
        with torch.no_grad():
            pred = den(x_delta, ctx, torch.ones(1, h, w, dtype=torch.bool), t,
                       context_climatology(S, N, xw, Mw, ctx))[0, :, 0].double().numpy()
        net = mean + std * pred
        c = ctx[0, :, 0].numpy()
        exact = loc + scale * cond_mean(C, ((x[tw] - loc) / scale).ravel(), c.ravel()).reshape(f, h, w)
        for name, cells in (("query", M[tw] & ~c), ("hidden", ~M[tw])):
            sq[name][0] += float(((net - x[tw])[cells] ** 2).sum())
            sq[name][1] += float(((exact - x[tw])[cells] ** 2).sum())
            sq[name][2] += int(cells.sum())
    print(f"model {a.model_dir} ({pattern} context, ratio {ratio}), cube {a.cube_dir}, {a.windows} windows")
    print("| cells | network MSE | exact E[x given context] MSE | ratio |\n|---|---|---|---|")
    for name, (se_n, se_e, n) in sq.items():
        print(f"| {name} ({n}) | {se_n / n:.3f} | {se_e / n:.3f} | {se_n / se_e:.2f} |")


if __name__ == "__main__":
    main()
