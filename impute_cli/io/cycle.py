"""cycle: a cube's time coordinate and observed values -> its mean daily cycle per cell (a few
harmonics of the day), so that the network fills anomalies from it and the cycle is added back.

A field sampled several times a day (hourly 2-m temperature, 3-hourly reanalysis) carries a
daily cycle that a window of a few hours sees only in part: the network would have to infer the
time of day, and the cycle's amplitude at each cell, from the context alone. Climatologists
remove it first. Per cell and channel, least squares over the cell's observed values,

    x(t) ~ a_0 + sum_{k=1..K} a_k cos(k phi_t) + b_k sin(k phi_t),   phi_t = 2 pi (hour of day at t) / 24,

gives the cycle c(t) = sum_k a_k cos(k phi_t) + b_k sin(k phi_t) (the mean a_0 is fitted but not
removed: the normalisation and the climatology input keep it). A cell with few observed values
is pulled towards the cycle of the whole field (a ridge of weight RIDGE on its harmonics, centred
on the observation-weighted mean of the well-observed cells' harmonics), so that a cell never
observed gets the field's cycle rather than none. The network is trained and run on x - c;
every estimate and sample gets c back before it is written or scored. Observed cells are
written from the input itself, bit for bit."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Callable, TypeVar

import dask.array as dsa
import numpy as np

from impute_cli.errors import ImputeError
from impute_cli.io.cube import Cube

MIN_SPAN_HOURS = 48.0  # a record shorter than two days says little about its daily cycle
MAX_HARMONICS = 2  # the daily wave and its first overtone (a cycle warming fast and cooling slowly)
RIDGE = 4.0  # weight of the field's cycle in a cell's fit, in observations (a harmonic's mean square is 1/2)
CHUNK = 256  # time steps per piece of the fitting pass, at most
PIECE_VALUES = 4_000_000  # and at most this many values (32 MB in float64) a piece
F = TypeVar("F")


def hours_of_day(cube: Cube) -> np.ndarray | None:
    """(T,) hour of the day (UTC, 0..24) of each time step, or None when the time coordinate is
    not a date (a plain step count, a station series without dates)."""
    name = cube.grid.time_dim
    if name not in cube.ds.coords:
        return None
    t = cube.ds[name].values
    if np.issubdtype(t.dtype, np.datetime64):
        ns = (t.astype("datetime64[ns]") - t.astype("datetime64[D]").astype("datetime64[ns]")).astype("int64")
        return ns / 3.6e12
    if t.dtype == object and len(t) and all(hasattr(v, "hour") for v in t):  # cftime dates
        return np.array([v.hour + v.minute / 60 + v.second / 3600 for v in t], "float64")
    return None


def times_of_day(hours: np.ndarray) -> int:
    """How many distinct times of day (to the minute) the time steps fall at."""
    return len(np.unique(np.round(np.asarray(hours) * 60).astype("int64") % 1440))


def harmonics_for(cube: Cube) -> tuple[int, str]:
    """How many harmonics of the day the cube's sampling resolves (0: no daily cycle is
    removed), and why, in words for the log."""
    hours = hours_of_day(cube)
    if hours is None or len(hours) < 3:
        return 0, "the time coordinate holds no dates"
    t = cube.ds[cube.grid.time_dim].values
    steps = np.diff(t) / np.timedelta64(1, "h") if np.issubdtype(t.dtype, np.datetime64) else \
        np.array([d.total_seconds() / 3600 for d in np.diff(t)])
    span = float(steps.sum() + np.median(steps))  # the hours the record covers, its last step included
    phases = times_of_day(hours)
    k = min(MAX_HARMONICS, (phases - 1) // 2)
    if k < 1:
        return 0, f"the data are sampled at {phases} time(s) of day, too few to see a daily cycle"
    if span < MIN_SPAN_HOURS:
        return 0, f"the record spans {span:g} hours, less than two days"
    return k, f"{phases} times of day over {span / 24:.1f} days"


def basis(hours: np.ndarray, k: int) -> np.ndarray:
    """(T, 1 + 2k): [1, cos phi, sin phi, cos 2 phi, sin 2 phi, ...] of each time step."""
    phi = 2 * np.pi * np.asarray(hours, "float64") / 24.0
    cols = [np.ones_like(phi)]
    for j in range(1, k + 1):
        cols += [np.cos(j * phi), np.sin(j * phi)]
    return np.stack(cols, axis=1)


@dataclass(frozen=True)
class DailyCycle:
    """The fitted cycle of a cube: its time steps' hours and, per channel and cell, the 2k
    harmonic coefficients (the mean is not part of the cycle)."""

    harmonics: int
    hours: np.ndarray  # (T,)
    coef: np.ndarray  # (C, H, W, 2k) float64

    def values(self, t: slice = slice(None), y: slice = slice(None), x: slice = slice(None)) -> np.ndarray:
        """(T', C, h, w) float32: the cycle at time steps t and cells [y, x]."""
        B = basis(self.hours[t], self.harmonics)[:, 1:]
        return np.einsum("tk,chwk->tchw", B, self.coef[:, y, x]).astype("float32")

    def describe(self) -> dict[str, Any]:
        """What the model card records: that the model works on anomalies from a daily cycle."""
        return {"harmonics": self.harmonics, "period_hours": 24}

    def amplitude(self) -> np.ndarray:
        """(C,) the mean over cells of the cycle's half range, in data units (for the log)."""
        v = basis(np.linspace(0, 24, 97)[:-1], self.harmonics)[:, 1:] @ np.moveaxis(self.coef, -1, 0).reshape(
            2 * self.harmonics, -1)
        half = 0.5 * (v.max(0) - v.min(0))
        return half.reshape(self.coef.shape[0], -1).mean(1)


def fit_cycle(cube: Cube, harmonics: int) -> DailyCycle:
    """Least squares per cell and channel over the observed values (one pass over the cube, in
    pieces of at most CHUNK time steps and PIECE_VALUES values: memory follows the grid, not the
    record), each cell's harmonics shrunk towards the field's (module doc)."""
    hours = hours_of_day(cube)
    assert hours is not None, "fit_cycle needs dates (see harmonics_for)"
    T, H, W = cube.grid.shape
    C, n = len(cube.channels), 1 + 2 * harmonics
    X = basis(hours, harmonics)
    XX = (X[:, :, None] * X[:, None, :]).reshape(T, n * n)  # each step's outer product, flattened
    G = np.zeros((n * n, C * H * W))  # normal equations of every cell, side by side
    b = np.zeros((n, C * H * W))
    step = max(1, min(CHUNK, PIECE_VALUES // max(C * H * W, 1)))
    for lo in range(0, T, step):
        v = cube.read(slice(lo, lo + step), slice(None), slice(None)).astype("float64")
        m = cube.observed(v).reshape(len(v), -1).astype("float64")
        G += XX[lo:lo + step].T @ m
        b += X[lo:lo + step].T @ (np.nan_to_num(v.reshape(len(v), -1)) * m)
    G = np.moveaxis(G.reshape(n, n, C, H, W), (0, 1), (-2, -1))
    b = np.moveaxis(b.reshape(n, C, H, W), 0, -1)
    count = G[..., 0, 0]
    P = np.diag([0.0] + [1.0] * (n - 1))
    # 1. each well-observed cell alone (a tiny ridge keeps the solve defined)
    well = count >= 4 * n
    own = np.linalg.solve(G + 1e-9 * np.eye(n), b[..., None])[..., 0]
    # 2. the field's cycle: the count-weighted mean of the well-observed cells' harmonics, per channel
    field = np.zeros((C, n))
    for c in range(C):
        w = np.where(well[c], count[c], 0.0)
        if w.sum() > 0:
            field[c] = (own[c] * w[..., None]).sum((0, 1)) / w.sum()
    field[:, 0] = 0.0
    # 3. every cell, its harmonics pulled towards the field's with weight RIDGE
    rhs = b + RIDGE * (field[:, None, None, :] @ P)
    coef = np.linalg.solve(G + RIDGE * P + 1e-9 * np.eye(n), rhs[..., None])[..., 0]
    return DailyCycle(harmonics, hours, coef[..., 1:])


def remove_cycle(cube: Cube, cycle: DailyCycle) -> Cube:
    """The cube less its daily cycle, lazily (chunk by chunk) or in memory when it is loaded."""
    def minus(block: np.ndarray, block_info: dict | None = None) -> np.ndarray:
        (t0, t1), _, (y0, y1), (x0, x1) = block_info[0]["array-location"]
        return block - cycle.values(slice(t0, t1), slice(y0, y1), slice(x0, x1))

    if cube.memory is not None:
        memory = cube.memory - cycle.values()
        return replace(cube, memory=memory, data=dsa.from_array(memory, chunks=-1))
    if cube.data.chunks[1] != (len(cube.channels),):  # every chunk holds all channels
        data = cube.data.rechunk({1: -1})
    else:
        data = cube.data
    return replace(cube, data=dsa.map_blocks(minus, data, dtype="float32"))


def daily_cycle(cube: Cube, setting: str, log: Callable[[str], None]) -> DailyCycle | None:
    """Training's choice (`network.daily_cycle`): 'auto' fits the cycle when the sampling
    resolves one (`harmonics_for`) and says so; 'off' never."""
    if setting != "auto":
        return None
    k, why = harmonics_for(cube)
    if not k:
        return None
    cycle = fit_cycle(cube, k)
    amp = ", ".join(f"{a:.3g}" for a in cycle.amplitude())
    log(f"daily cycle: {k} harmonics of the day fitted per cell ({why}; mean half range {amp} "
        f"in the data's units) and removed: the network fills the anomalies, the cycle is added back")
    return cycle


def cycle_for_model(normalisation: dict[str, Any], cube: Cube) -> DailyCycle | None:
    """At imputation: the cube's own cycle when the model was trained on anomalies (its card's
    normalisation says `daily_cycle`), fitted as training fitted it; None otherwise."""
    spec = normalisation.get("daily_cycle")
    if not spec:
        return None
    k, hours = int(spec["harmonics"]), hours_of_day(cube)
    phases = 0 if hours is None else times_of_day(hours)
    if phases < 2 * k + 1:
        raise ImputeError(f"the model fills anomalies from a daily cycle, but this file's time coordinate "
                          f"{'holds no dates' if hours is None else f'holds only {phases} time(s) of day'}; "
                          "use a model trained on data like this file (or with network.daily_cycle: off)")
    return fit_cycle(cube, k)


def with_cycle(cycle: DailyCycle | None, filled: F, box: Any = None) -> F:
    """`filled` (an imputation's `estimate` and `samples` of anomalies, over the Tile `box` of
    the cube, or all of it) with the cycle added back, in data units again."""
    if cycle is None:
        return filled
    c = cycle.values() if box is None else cycle.values(box.t, box.y, box.x)
    filled.estimate = filled.estimate + c
    if filled.samples is not None:
        filled.samples += c[None]
    return filled
