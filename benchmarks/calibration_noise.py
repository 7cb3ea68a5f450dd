"""Is a region factor of `confidence --calibrate` off because of the calibration regions' size,
or because of noise? (issue 3; numpy only, no model run.)

From an `impute --samples N --save-samples` output and the complete truth, on the *real* gaps:

1. the factor the 90 % regions would need (the level-quantile of ‖y − x̂*‖ / D̂ over regions),
   for whole time steps and for the gaps inside random sub-boxes of a quarter, 9/16 and all
   of the grid -- if these agree, the size of the hidden regions does not bias the factor;
2. how much that factor moves between draws of a calibration like --calibrate's (S segments of
   L time steps, one quarter-size box through each segment), drawn from the real gaps
   themselves (so exchangeable by construction): the 5/50/95 % quantiles of the factor and the
   coverage of the whole-time-step regions each would give.

    python benchmarks/calibration_noise.py SAMPLES.nc TRUTH.nc VAR [--segments 8] [--length 32]
"""

from __future__ import annotations

import argparse
import math

import numpy as np
import xarray as xr

from impute_cli.confidence import conformal_quantile, read_uncertain


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("samples")
    ap.add_argument("truth")
    ap.add_argument("var")
    ap.add_argument("--level", type=float, default=0.9)
    ap.add_argument("--segments", type=int, default=8)
    ap.add_argument("--length", type=int, default=32)
    ap.add_argument("--draws", type=int, default=200)
    a = ap.parse_args()
    u = read_uncertain(xr.open_dataset(a.samples), a.var)
    y = xr.open_dataset(a.truth)[a.var].transpose(*u.dims).values.astype(float)
    if u.centre.ndim != 3:
        raise SystemExit("one variable on (time, y, x) only")
    B, T = u.samples.shape[:2]
    H, W = u.centre.shape[-2:]

    def ratio(mask: np.ndarray) -> np.ndarray:
        """‖y − x̂*‖ / D̂ per time step over the cells of mask (imputed ones), where there are any."""
        e = np.sqrt((np.where(mask, y - u.centre, 0) ** 2).reshape(T, -1).sum(1))
        D = np.sqrt((np.where(mask, u.samples - u.centre, 0) ** 2).reshape(B, T, -1).sum(2))
        ok = mask.reshape(T, -1).any(1)
        return e[ok] / np.quantile(D, a.level, axis=0)[ok]

    rng = np.random.default_rng(0)
    full = ratio(u.imputed)
    print(f"needed region factor (level {a.level:g}): whole time steps {np.quantile(full, a.level):.3f}, "
          f"raw coverage {(full <= 1).mean():.1%}")
    for frac in (0.25, 0.5625, 1.0):
        bh, bw = max(1, round(H * math.sqrt(frac))), max(1, round(W * math.sqrt(frac)))
        rs = []
        for _ in range(8):
            box = np.zeros((T, H, W), bool)
            for t in range(T):
                y0, x0 = rng.integers(H - bh + 1), rng.integers(W - bw + 1)
                box[t, y0:y0 + bh, x0:x0 + bw] = True
            rs.append(ratio(u.imputed & box))
        r = np.concatenate(rs)
        print(f"  gaps inside random {bh} x {bw} boxes: needed factor {np.quantile(r, a.level):.3f}")
    L, S = min(a.length, T), min(a.segments, T // min(a.length, T))
    qs = []
    for _ in range(a.draws):
        rr = []
        for s0 in rng.choice(np.arange(0, T - L + 1, L), S, replace=False):
            box = np.zeros((T, H, W), bool)
            y0, x0 = rng.integers(H - H // 2 + 1), rng.integers(W - W // 2 + 1)
            box[s0:s0 + L, y0:y0 + H // 2, x0:x0 + W // 2] = True
            rr.append(ratio(u.imputed & box))
        qs.append(conformal_quantile(np.concatenate(rr), a.level))
    q = np.quantile(qs, [0.05, 0.5, 0.95])
    print(f"a calibration of {S} segments x {L} steps, one quarter box each, drawn from the real gaps: "
          f"factor {q[0]:.3f} / {q[1]:.3f} / {q[2]:.3f} (5/50/95 %) -> whole-time-step coverage "
          + " / ".join(f"{(full <= f).mean():.1%}" for f in q))


if __name__ == "__main__":
    main()
