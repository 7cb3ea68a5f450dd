"""baselines: classical gap fillers with one signature, `f(values (T, H, W) with NaN, valid (H, W))
-> filled (T, H, W)`, scored on the same hidden cells as the model. Adding one is one function."""

from __future__ import annotations

import time
from typing import Any, Callable

import numpy as np

from impute_cli.evaluation.cdo import cdo_fillmiss
from impute_cli.evaluation.dineof import eof_dineof
from impute_cli.evaluation.fill_steps import (climatology, climatology_map, fill_rest, harmonic_fill, laplace_fill,
                                             outside_valid, prepare, spline_fill)
from impute_cli.evaluation.kriging import BaselineSkipped, gp_kriging, st_kriging


def temporal_linear(values: np.ndarray, valid: np.ndarray | None = None) -> np.ndarray:
    """Linear interpolation along time at each cell, held constant beyond the first/last
    observation; cells never observed fall back to the Laplace fill."""
    T = values.shape[0]
    out = values.astype("float64").copy()
    flat = out.reshape(T, -1)
    t = np.arange(T)
    for j in range(flat.shape[1]):
        col = flat[:, j]
        ok = ~np.isnan(col)
        if ok.all() or not ok.any():
            continue
        flat[:, j] = np.interp(t, t[ok], col[ok])
    if np.isnan(out).any():
        lap = laplace_fill(values, valid)
        out = np.where(np.isnan(out), lap, out)
    return outside_valid(out, valid)


# ---------------------------------------------------------------------------------------------
# Shared helpers for the baselines below. Every baseline: float64 copy of the input, observed
# cells = finite and inside `valid`, only gap cells (inside `valid`, not observed) written,
# land (outside `valid`) set to NaN at the end by `_outside`.
# ---------------------------------------------------------------------------------------------



def laplace(values: np.ndarray, valid: np.ndarray | None = None, workers: int | None = None) -> np.ndarray:
    """Laplace fill of each frame solved to its limit (`harmonic_fill`: land neither a source
    nor a conduit; frames solved on `workers` threads); frames with no observation get the
    filled climatology, so that every gap is filled."""
    return _solved(harmonic_fill, values, valid, workers)


def spline(values: np.ndarray, valid: np.ndarray | None = None, workers: int | None = None) -> np.ndarray:
    """Minimum-curvature spline with tension 0.5 of each frame (`spline_fill`, the fill of GMT's
    `surface`): between the Laplace fill, which meets the observations with a kink, and the
    biharmonic fill, which overshoots inside large gaps; frames with no observation get the
    filled climatology."""
    return _solved(spline_fill, values, valid, workers)


def _solved(fill: Callable[..., np.ndarray], values: np.ndarray, valid: np.ndarray | None,
            workers: int | None) -> np.ndarray:
    v, mask, obs = prepare(values, valid)
    out = fill(np.where(mask[None], v, np.nan), mask, workers=workers)
    if np.isnan(out[:, mask]).any():
        out = np.where(np.isnan(out) & mask[None], climatology_map(v, mask, obs)[None], out)
    return outside_valid(out, mask)


# ---------------------------------------------------------------------------------------------
# OpenCV inpainting (Telea 2004 fast marching; Bertalmio et al. 2001 Navier-Stokes).
# ---------------------------------------------------------------------------------------------

# cv2.inpaint (OpenCV 4.x/5.x) accepts 8-bit, 16-bit unsigned or 32-bit float single-channel
# images, so frames are passed as float32 (no 8-bit quantisation). Frames are NOT scaled to
# [0, 1] though: OpenCV's Telea adds a gradient term normalised to unit length,
# `Ia/s + (Jx+Jy)/(|J| + 1e-20)`, i.e. an offset of up to ~1.4 *intensity units* whatever the
# image's scale (built for 0..255 images). On a [0, 1] frame that offset is as large as the
# whole range (measured: errors ~ the range itself); on a [0, 1e6] frame it is ~1e-6 of the
# range, while float32 still resolves ~6e-8 of the range. Navier-Stokes is scale-free.
_CV_SCALE = 1.0e6
_CV_RADIUS = 3


def _cv2():
    try:
        import cv2  # optional dependency, imported only when used
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError("the telea / ns_inpaint baselines need OpenCV: "
                          "pip install opencv-python-headless") from exc
    return cv2


def _cv_inpaint(values: np.ndarray, valid: np.ndarray | None, method: str) -> np.ndarray:
    """Per-frame cv2.inpaint on a float32 image scaled by the frame's observed min/max."""
    cv2 = _cv2()
    flag = cv2.INPAINT_TELEA if method == "telea" else cv2.INPAINT_NS
    v, mask, obs = prepare(values, valid)
    clim = climatology_map(v, mask, obs)
    out = v.copy()
    for t in range(v.shape[0]):
        ob, gap = obs[t], mask & ~obs[t]
        if not gap.any():
            continue
        if not ob.any():  # nothing observed in this frame: climatology (Laplace where never seen)
            out[t][gap] = clim[gap]
            continue
        # 1. scale the observed cells to [0, _CV_SCALE] by the frame's observed min/max
        lo, hi = float(v[t][ob].min()), float(v[t][ob].max())
        span = hi - lo if hi > lo else 1.0
        # 2. every non-observed cell (gaps AND land) is pre-filled with the mid-range value and
        #    put in the inpaint mask, so land never acts as a source (inpaint ignores masked
        #    pixels' values; the pre-fill only keeps NaN out of OpenCV)
        img = np.where(ob, (v[t] - lo) / span * _CV_SCALE, 0.5 * _CV_SCALE).astype(np.float32)
        hole = (~ob).astype(np.uint8)
        res = _inpaint(cv2, img, hole, flag).astype("float64") / _CV_SCALE * span + lo
        # 3. write back the gap cells only
        out[t][gap] = res[gap]
    out = fill_rest(out, mask, clim)
    return outside_valid(out, mask)


def _inpaint(cv2: Any, img: np.ndarray, hole: np.ndarray, flag: int) -> np.ndarray:
    """cv2.inpaint of one frame. A frame one cell high or wide (a station series' row of stations)
    goes in as three copies of itself side by side and comes back as the middle one: OpenCV reads
    past the edge of a one-pixel line, and its fill then changed from run to run."""
    reps = (3 if img.shape[0] == 1 else 1, 3 if img.shape[1] == 1 else 1)
    if reps == (1, 1):
        return cv2.inpaint(img, hole, _CV_RADIUS, flag)
    res = cv2.inpaint(np.tile(img, reps), np.tile(hole, reps), _CV_RADIUS, flag)
    return res[reps[0] // 2::reps[0], reps[1] // 2::reps[1]]  # the middle copy


def telea(values: np.ndarray, valid: np.ndarray | None = None) -> np.ndarray:
    """OpenCV `cv2.inpaint(..., cv2.INPAINT_TELEA)` per frame, radius 3 (Telea 2004, fast
    marching), on float32 frames (no 8-bit quantisation; see `_CV_SCALE` for the scaling).
    Land is masked, not a source. Frames with no observation: climatology, then Laplace.
    Raises ImportError naming opencv-python-headless when OpenCV is missing."""
    return _cv_inpaint(values, valid, "telea")


def ns_inpaint(values: np.ndarray, valid: np.ndarray | None = None) -> np.ndarray:
    """OpenCV `cv2.inpaint(..., cv2.INPAINT_NS)` per frame, radius 3 (Navier-Stokes, Bertalmio
    et al. 2001), float32 frames, otherwise as `telea`."""
    return _cv_inpaint(values, valid, "ns")


# ---------------------------------------------------------------------------------------------
# DINEOF: EOF reconstruction with the number of modes chosen by cross-validation.
# ---------------------------------------------------------------------------------------------






BASELINES: dict[str, Callable[..., np.ndarray]] = {
    "climatology": climatology,
    "temporal_linear": temporal_linear,
    "laplace": laplace,
    "spline": spline,
    "telea": telea,
    "ns_inpaint": ns_inpaint,
    "eof_dineof": eof_dineof,
    "gp_kriging": gp_kriging,
    "st_kriging": st_kriging,
    "cdo_fillmiss": cdo_fillmiss,  # skipped where the cdo program is not on PATH
}


def run_baselines(names: list[str], gappy: np.ndarray, valid: np.ndarray, log: Callable[[str], None],
                  fits: dict[str, list] | None = None) -> tuple[dict[str, np.ndarray], dict[str, float],
                                                                dict[str, str]]:
    """Each baseline on every channel of the gappy cube: estimates, seconds, and why any was
    skipped. `fits`: per baseline and channel, what it fits to the data (`st_kriging`'s covariance,
    its `cov`), fitted on the whole record when `gappy` is a piece of it (inference.blend.record_fits)."""
    est, secs, skipped = {}, {}, {}
    for name in names:
        fn = BASELINES[name]
        t0 = time.perf_counter()
        try:
            cov = (fits or {}).get(name)
            est[name] = np.stack([fn(gappy[:, c], valid, **({"cov": cov[c]} if cov else {}))
                                  for c in range(gappy.shape[1])], axis=1)
        except (BaselineSkipped, ImportError) as e:  # a baseline that cannot run here says why; a bug still raises
            skipped[name] = str(e)
            log(f"baseline {name} skipped: {e}")
            continue
        secs[name] = round(time.perf_counter() - t0, 2)
    return est, secs, skipped
