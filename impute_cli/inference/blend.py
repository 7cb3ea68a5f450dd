"""blend: the network's point estimate, classical fills of the same gaps and each gap cell's
distance to the nearest observation -> one estimate.

The network and the classical fillers make different errors: next to an observation a Laplace
fill is hard to beat on a smooth field, far inside a large gap the network's learnt structure
wins. Training fits, on its validation
slice (observed cells hidden with the data's own gap shapes, never a target nor a context), one
convex combination per band of distance to the nearest observed cell of the same time step:

    x_blend = w_0(d) x_network + sum_k w_k(d) x_k,   w_k(d) >= 0,   sum_k w_k(d) = 1,

the weights that minimise the squared error on the held-out cells of that band (stacked
regression, Breiman 1996, with non-negative weights summing to one, so that a constant field is
left unchanged and the blend never extrapolates beyond its members). A band with too few
held-out cells is fitted together with its neighbours (`band_groups`): weights fitted on all
cells would be those of the many cells next to the observations, where a classical fill is best,
and a thin band lies deep inside large gaps. A partner (among the preset's
`train.blend`) is kept only if it lowers the cross-fitted held-out error by MIN_GAIN, so
imputation does not pay for a fill that does not help. One partner is the network's own estimate
anchored to the Laplace fill (`anchored`): in each gap it is moved by the harmonic correction
that makes it meet the Laplace fill on the gap's edge cells, so that a network whose estimate is
offset from the observations around a gap (seen on SST under clouds) keeps its structure inside
the gap without the step at its edge. The card records the weights; `impute`
applies them to the point estimate and shifts every sample by the same correction (the spread
is the network's; the calibration of the intervals sees the shifted samples)."""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
from scipy import ndimage

from impute_cli.config import BLEND_PARTNERS
from impute_cli.errors import ImputeError
from impute_cli.evaluation.baselines import laplace, spline
from impute_cli.evaluation.fill_steps import harmonic_fill
from impute_cli.evaluation.kriging import (FIT_STEPS, GP_MAX_CELLS, BaselineSkipped, gp_kriging, st_covariance,
                                          st_kriging)
from impute_cli.io.cube import Cube, wrap_columns
from impute_cli.progress import progress_bar

PARTNERS = BLEND_PARTNERS  # the fills the blend may use, in this order (a preset's train.blend picks)
ANCHORED = "anchored"  # the partner made of the network's estimate and the Laplace fill (`anchored`)
EDGES = (1.5, 2.5, 4.0, 6.0, 10.0, 20.0)  # band edges, in grid cells from the nearest observation
MIN_BAND_CELLS = 200  # fewer held-out cells in a band: it is fitted together with its neighbours
FIT_BYTES = 256 * 1024**2  # cube_fits reads at most this much of a file (float32) to fit the blend's fills on
MIN_GAIN = 0.01  # a partner is kept only when it lowers the held-out RMSE by at least this fraction (docs/choices.md)


@dataclass
class Blend:
    """Per distance band (edges in grid cells), the weights of [network, *partners]."""

    partners: list[str]
    edges: list[float]
    weights: list[list[float]]

    def to_dict(self) -> dict[str, Any]:
        return {"partners": list(self.partners), "edges": [float(e) for e in self.edges],
                "weights": [[round(float(w), 4) for w in ws] for ws in self.weights]}

    @classmethod
    def from_dict(cls, d: Any, where: str = "the model card") -> "Blend":
        """The card's `blend`, checked: known partners, increasing edges, one weight per member
        and band. A hand-edited or damaged entry raises ImputeError in one line."""
        try:
            b = cls([str(p) for p in d["partners"]], [float(e) for e in d["edges"]],
                    [[float(x) for x in w] for w in d["weights"]])
            ok = (set(b.partners) <= set(PARTNERS) and list(b.edges) == sorted(b.edges)
                  and len(b.weights) == len(b.edges) + 1 and all(len(w) == 1 + len(b.partners) for w in b.weights))
        except (KeyError, TypeError, ValueError):
            ok = False
        if not ok:
            raise ImputeError(f"{where} has a damaged 'blend' entry (partners, edges, weights); "
                              "train the model again, or impute with --no-blend")
        return b

    def cell_weights(self, dist: np.ndarray) -> np.ndarray:
        """(1 + partners, *dist.shape) weights of each cell by its distance band."""
        band = np.searchsorted(np.asarray(self.edges), dist, side="right")
        return np.moveaxis(np.asarray(self.weights, "float32")[band], -1, 0)


def simplex_weights(gram: np.ndarray) -> np.ndarray:
    """argmin_w w' G w over w >= 0, sum w = 1, for a few members (G the errors' Gram matrix):
    on each support S the minimiser is G_S^-1 1 / (1' G_S^-1 1); the best support whose
    solution is non-negative is exact."""
    p = gram.shape[0]
    best, best_w = np.inf, np.eye(p)[0]
    scale = max(float(np.trace(gram)) / p, 1e-300)
    for m in range(1, p + 1):
        for support in itertools.combinations(range(p), m):
            s = list(support)
            g = gram[np.ix_(s, s)] / scale
            try:
                x = np.linalg.solve(g + 1e-10 * np.eye(m), np.ones(m))
            except np.linalg.LinAlgError:
                continue
            if x.sum() <= 0:
                continue
            x /= x.sum()
            if (x < 0).any():
                continue
            w = np.zeros(p)
            w[s] = x
            v = float(w @ gram @ w)
            if v < best - 1e-12 * abs(best if np.isfinite(best) else 0):
                best, best_w = v, w
    return best_w


def band_groups(counts: list[int], least: int = MIN_BAND_CELLS) -> list[int]:
    """Each band's group, given its held-out cells `counts` (shallowest first): from the deepest
    band inwards, bands join until their group holds `least` cells; a shallowest remainder
    that holds fewer joins the group below it, and when all bands together hold fewer they
    form one group. Every band of a group takes the weights fitted on the group's cells."""
    group, n, g = [0] * len(counts), 0, 0
    for b in reversed(range(len(counts))):
        group[b], n = g, n + counts[b]
        if n >= least and b > 0:
            g, n = g + 1, 0
    if 0 < n < least and g > 0:  # the shallowest bands hold too few: they join the group below
        group = [x if x < g else g - 1 for x in group]
    return group


def fit_weights(errors: np.ndarray, dist: np.ndarray, edges: tuple[float, ...] = EDGES) -> list[list[float]]:
    """Per band, the simplex weights of the members' errors (n, members) on the cells at
    distance `dist` (n,). A band with fewer than MIN_BAND_CELLS cells is fitted together with
    its neighbours (`band_groups`): deep inside the gaps of a slice of small clouds, whose cells
    mostly lie next to an observation, the few deep cells keep weights of their own kind
    instead of those of all cells."""
    band = np.searchsorted(np.asarray(edges), dist, side="right")
    group = np.asarray(band_groups(np.bincount(band, minlength=len(edges) + 1).tolist()))
    fits = {}
    for g in np.unique(group):
        e = errors[group[band] == g]
        fits[g] = simplex_weights(e.T @ e).tolist()
    return [fits[g] for g in group]


def _rmse(e: np.ndarray) -> float:
    return float(np.sqrt(np.mean(e ** 2))) if e.size else float("nan")


def fit_blend(network: np.ndarray, partners: dict[str, np.ndarray], dist: np.ndarray,
              seed: int = 0) -> tuple[Blend | None, dict[str, Any]]:
    """The blend of the network's errors (n,) with the partners' (name -> (n,)) on held-out
    cells at distance `dist` (n,), errors in normalised units. Returns the blend (None when no
    partner lowers the error by MIN_GAIN) and its cross-fitted score: the cells are split in
    two halves, weights fitted on each are scored on the other, so the reported error is on
    cells the weights never saw (the kept weights are fitted on all cells); `errors` are those
    cross-fitted errors per cell (the network's own when no blend is kept)."""
    rng = np.random.default_rng([seed, 7])
    half = rng.random(len(network)) < 0.5

    def crossfit(cols: np.ndarray) -> np.ndarray:
        err = np.empty(len(cols))
        for fit_on in (half, ~half):
            w = np.asarray(fit_weights(cols[fit_on], dist[fit_on]))
            band = np.searchsorted(np.asarray(EDGES), dist[~fit_on], side="right")
            err[~fit_on] = (cols[~fit_on] * w[band]).sum(1)
        return err

    best_err, best_names = network, []
    best = base = _rmse(network)
    names = [n for n in PARTNERS if n in partners]
    for m in range(1, len(names) + 1):  # every subset: a partner's cost is paid only if it pays
        for sub in itertools.combinations(names, m):
            err = crossfit(np.stack([network, *(partners[n] for n in sub)], 1))
            if _rmse(err) < best * (1 - MIN_GAIN):
                best, best_names, best_err = _rmse(err), list(sub), err
    report = {"network_rmse": base, "blend_rmse": best, "partners": best_names, "errors": best_err}
    if not best_names:
        return None, report
    cols = np.stack([network, *(partners[n] for n in best_names)], 1)
    return Blend(best_names, list(EDGES), fit_weights(cols, dist)), report


def distance_to_observed(observed: np.ndarray) -> np.ndarray:
    """(T, C, H, W) observed -> each cell's distance, in grid cells, to the nearest observed
    cell of its time step and channel (0 on observed cells, inf in a step with none)."""
    out = np.zeros(observed.shape, "float32")
    for t in range(observed.shape[0]):
        for c in range(observed.shape[1]):
            ob = observed[t, c]
            if ob.all():
                continue
            out[t, c] = ndimage.distance_transform_edt(~ob) if ob.any() else np.inf
    return out


FILLS: dict[str, Callable[..., np.ndarray]] = {  # the same fills as evaluate's baselines
    "laplace": lambda values, valid, workers=None, step=None, cov=None: laplace(values, valid, workers=workers),
    "spline": lambda values, valid, workers=None, step=None, cov=None: spline(values, valid, workers=workers),
    "gp_kriging": lambda values, valid, workers=None, step=None, cov=None: gp_kriging(values, valid, step=step),
    "st_kriging": lambda values, valid, workers=None, step=None, cov=None: st_kriging(values, valid, step=step,
                                                                                      cov=cov)}
SLOW = ("gp_kriging", "st_kriging")  # fills that take long enough (~0.1 s a time step) to show progress
FITTED = {"st_kriging": st_covariance}  # fills whose fit a piece of a record takes from the record (`record_fits`)


def record_fits(names: list[str], values: np.ndarray, valid: np.ndarray) -> dict[str, list]:
    """For the fills among `names` that fit something to the data (FITTED): that fit of each
    channel of the whole record's (T, C, H, W) values (NaN in gaps), for `partner_fills(fits=)`
    on pieces of it. A few dozen time steps are too few for space-time kriging's time scale: on
    24-step pieces of the GP pixel cube its error was 1.24x the record's, with the record's
    covariance the same as on the record."""
    return {n: [FITTED[n](values[:, c], valid) for c in range(values.shape[1])] for n in names if n in FITTED}


def cube_fits(blends: list[Blend | None], cube: Cube) -> dict[str, list] | None:
    """`record_fits` of the blend's fills that fit the data, on a whole (possibly lazy) cube: its
    middle FIT_STEPS time steps (at most FIT_BYTES of them) read once, the fit shared by every
    region it is imputed in. A region fitting its own is a piece of the record: on the GP pixel
    cube imputed in 6 regions of about 85 steps the point estimate's MSE was 1.32x the exact
    posterior's, against 1.01x in one. None when the blend has no such fill, or the grid is too
    large for kriging (each region then leaves the fill out, saying so). The imputed channels'
    fits only: the blend never fills a covariate. `blends`: each model's (training.members)."""
    names = list(dict.fromkeys(p for b in blends if b is not None for p in b.partners if p in FITTED))
    T, H, W = cube.grid.shape
    if not names or H * W > GP_MAX_CELLS:
        return None
    n = min(T, FIT_STEPS, max(24, FIT_BYTES // (4 * len(cube.channels) * H * W)))
    t0 = (T - n) // 2
    values = cube.read(slice(t0, t0 + n), slice(None), slice(None))[:, :cube.n_targets]
    return record_fits(names, values, cube.valid)


def anchored(estimate: np.ndarray, lap: np.ndarray, observed: np.ndarray, valid: np.ndarray,
             workers: int | None = None, dist: np.ndarray | None = None) -> np.ndarray:
    """The (T, C, H, W) network `estimate` anchored to the Laplace fill `lap` of the same gaps:
    estimate + h, where h is the offset lap - estimate on each gap's edge cells (within EDGES[0]
    cells of an observed cell of its frame: the blend's first band) and, inside the gap, the
    solution of the 5-point Laplace equation between those edge values (`harmonic_fill`: land
    neither a source nor a conduit). The estimate keeps its structure inside the gap and meets
    the Laplace fill, which next to the observations is hard to beat on a smooth field, at its
    edge; the offset fades smoothly in between. A frame with no observation stays NaN (the
    blend then keeps the network's estimate there). `dist`: `distance_to_observed(observed)`
    when the caller has it."""
    dist = distance_to_observed(observed) if dist is None else dist
    edge = ~observed & valid[None, None] & (dist <= EDGES[0])
    # the offset known on the edge cells; observed cells take 0, which no cell inside a gap
    # touches (a gap cell next to an observed cell is an edge cell)
    offset = np.where(observed, 0.0, np.where(edge, lap - estimate, np.nan))
    h = np.stack([harmonic_fill(offset[:, c], valid, workers=workers) for c in range(offset.shape[1])], axis=1)
    return np.where(observed, estimate, estimate + h)


def partner_fills(names: list[str], values: np.ndarray, valid: np.ndarray,
                  log: Callable[[str], None] | None = None, workers: int | None = None,
                  progress: bool = False, fits: dict[str, list] | None = None,
                  estimate: np.ndarray | None = None, laplace_fill: np.ndarray | None = None,
                  dist: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Each partner's fill of the (T, C, H, W) values (NaN in gaps), channel by channel. A
    partner that cannot run here (a grid too large for kriging) is left out, with a notice.
    `progress`: a bar by time steps for the slow fills (kriging). `fits`: a whole record's fits
    per partner and channel (`record_fits`) when `values` are a piece of it; default: the piece's own.
    `estimate`: the network's (T, C, H, W) estimate of the same gaps, which `anchored` is made
    of (left out without it); `laplace_fill`, `dist`: the Laplace fill of `values` and each cell's
    distance to its nearest observation (`distance_to_observed`) when the caller has them."""
    out = {}
    T, C = values.shape[:2]
    for name in names:
        if name == ANCHORED:
            continue
        bar = progress_bar(T * C, f"blend: {name}", "step", enabled=progress and name in SLOW, leave=False)
        try:
            out[name] = np.stack([FILLS[name](values[:, c], valid, workers=workers, step=bar.update,
                                              cov=(fits or {}).get(name, [None] * C)[c]) for c in range(C)], axis=1)
        except BaselineSkipped as e:
            if log is not None:
                log(f"notice: blend partner {name} skipped ({e}); its weight goes to the network")
        finally:
            bar.close()
    if ANCHORED in names and estimate is not None:
        lap = out.get("laplace", laplace_fill)
        if lap is None:
            lap = partner_fills(["laplace"], values, valid, workers=workers)["laplace"]
        out[ANCHORED] = anchored(estimate, lap, np.isfinite(values) & valid[None, None], valid, workers, dist)
    return out


def apply_blend(blend: Blend, estimate: np.ndarray, values: np.ndarray, valid: np.ndarray,
                log: Callable[[str], None] | None = None, workers: int | None = None,
                wrap: int = 0, progress: bool = False, fits: dict[str, list] | None = None,
                targets: int | None = None) -> np.ndarray:
    """The blended estimate (T, C, H, W) of the network's `estimate` and the partners' fills of
    `values` (NaN in gaps), both in data units; observed cells keep the network's estimate
    (the writer puts the input back there). A partner that cannot run gives its weight to the
    network. `workers`: threads for the fills (default: the cores this process may use).
    `wrap` > 0: the grid is a whole circle of longitude; the fills and the distances are found
    on the values widened by `wrap` columns from the other side (`io.cube.wrap_columns`) and
    cut back, so that they do not stop at the east-west edge either. `progress`: a bar for
    kriging's time steps. `fits`: as `partner_fills`'s. `targets`: how many leading channels are
    imputed; the rest (covariates, never written) keep the network's estimate, unfilled by the
    partners (default: every channel)."""
    n = values.shape[1] if targets is None else targets
    observed = np.isfinite(values) & valid[None, None]
    full, estimate, values, observed = estimate, estimate[:, :n], values[:, :n], observed[:, :n]
    if wrap:
        core = slice(wrap, -wrap)
        dist = distance_to_observed(wrap_columns(observed, wrap))
        fills = {k: f[..., core] for k, f in partner_fills(blend.partners, wrap_columns(values, wrap),
                                                           wrap_columns(valid, wrap), log, workers, progress, fits,
                                                           wrap_columns(estimate, wrap), dist=dist).items()}
        dist = dist[..., core]
    else:
        dist = distance_to_observed(observed)
        fills = partner_fills(blend.partners, values, valid, log, workers, progress, fits, estimate, dist=dist)
    w = blend.cell_weights(dist)  # (1 + P, T, C, H, W)
    out = w[0] * estimate
    for k, name in enumerate(blend.partners, start=1):
        f = fills.get(name)
        out += w[k] * (np.where(np.isfinite(f), f, estimate) if f is not None else estimate)
    out = np.where(observed, estimate, out).astype(estimate.dtype)
    return out if n == full.shape[1] else np.concatenate([out, full[:, n:]], axis=1)
