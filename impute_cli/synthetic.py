"""synthetic: demo and test cubes made by the project itself, with realistic gaps.

The field is a space-time Gaussian process: Fourier modes with a k^-3 spectrum, each an AR(1)
in time and advected by a mean wind -- smooth in space, correlated in time, moving. Gaps are
drifting cloud blobs, pixel dropouts, or block outages lasting several time steps."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

GAP_PATTERNS = ("cloud", "pixel", "block")


def advected_field(T: int, H: int, W: int, seed: int = 0, rho: float = 0.95,
                   velocity: tuple[float, float] = (0.6, 0.9)) -> np.ndarray:
    """(T, H, W) float32, zero mean, unit variance."""
    rng = np.random.default_rng(seed)
    ky = np.fft.fftfreq(H)[:, None] * 2 * np.pi
    kx = np.fft.rfftfreq(W)[None, :] * 2 * np.pi
    k = np.sqrt(ky**2 + kx**2)
    amp = np.where(k > 0, (k + 2 * np.pi / max(H, W)) ** -1.5, 0.0)
    shift = np.exp(-1j * (ky * velocity[0] + kx * velocity[1]))  # advection by one step
    def noise() -> np.ndarray:
        return (rng.standard_normal(amp.shape) + 1j * rng.standard_normal(amp.shape)) * amp
    psi = noise()
    out = np.empty((T, H, W), "float64")
    for t in range(T):
        out[t] = np.fft.irfft2(psi, s=(H, W))
        psi = rho * psi * shift + np.sqrt(1 - rho**2) * noise()
    out = (out - out.mean()) / out.std()
    return out.astype("float32")


def gap_mask(shape: tuple[int, int, int], pattern: str, observed: float, seed: int = 0,
             block_frames: int = 8, block_grid: int = 4) -> np.ndarray:
    """Observation mask (True = observed) with about `observed` of cells kept."""
    T, H, W = shape
    rng = np.random.default_rng(seed + 1)
    if pattern == "pixel":
        return rng.random(shape) < observed
    if pattern == "cloud":  # smooth random blobs drifting in time, thresholded
        f = cloud_field(shape, rng)
        return f > np.quantile(f, 1 - observed)
    if pattern == "block":  # a block grid; whole blocks out for runs of `block_frames` steps
        m = np.zeros(shape, bool)
        bh, bw = -(-H // block_grid), -(-W // block_grid)
        keep = max(1, int(round(observed * block_grid**2)))
        for t0 in range(0, T, block_frames):
            for kk in rng.choice(block_grid**2, keep, replace=False):
                i, j = divmod(int(kk), block_grid)
                m[t0:t0 + block_frames, i * bh:(i + 1) * bh, j * bw:(j + 1) * bw] = True
        return m
    raise ValueError(f"unknown gap pattern {pattern!r}; use one of {GAP_PATTERNS}")


def series_gaps(T: int, S: int, observed: float = 0.75, seed: int = 0,
                outage_steps: tuple[int, int] = (3, 12)) -> np.ndarray:
    """(T, S) bool, True = observed: stations out for runs of `outage_steps` time steps (about
    half of the missing cells) plus random dropouts (the other half); every station keeps at
    least two observations."""
    rng = np.random.default_rng(seed + 7)
    obs = np.ones((T, S), bool)
    missing = 1.0 - observed
    lo, hi = max(1, min(outage_steps[0], T)), max(1, min(outage_steps[1], T))
    for s in range(S):
        budget = rng.poisson(missing / 2 * T)  # outage steps for this station
        while budget > 0:
            run = int(rng.integers(lo, hi + 1))
            t0 = int(rng.integers(0, T - run + 1))
            obs[t0:t0 + run, s] = False
            budget -= run
    obs &= rng.random((T, S)) >= missing / 2
    for s in np.flatnonzero(obs.sum(0) < 2):
        obs[rng.choice(T, min(2, T), replace=False), s] = True
    return obs


def cloud_field(shape: tuple[int, int, int], rng: np.random.Generator) -> np.ndarray:
    """A smooth random (T, H, W) field whose upper level sets look like drifting clouds: white
    noise on a grid 6x coarser in space and 3x in time, interpolated up."""
    T, H, W = shape
    lo = rng.standard_normal((T // 3 + 2, max(2, H // 6), max(2, W // 6)))
    t_idx = np.linspace(0, lo.shape[0] - 1, T)
    return np.stack([_interp2(_lerp_time(lo, ti), H, W) for ti in t_idx])


def _lerp_time(a: np.ndarray, ti: float) -> np.ndarray:
    i = int(np.floor(ti)); f = ti - i
    return a[i] if i + 1 >= a.shape[0] else (1 - f) * a[i] + f * a[i + 1]


def _interp2(a: np.ndarray, H: int, W: int) -> np.ndarray:
    yi, xi = np.linspace(0, a.shape[0] - 1, H), np.linspace(0, a.shape[1] - 1, W)
    tmp = np.stack([np.interp(xi, np.arange(a.shape[1]), row) for row in a])
    return np.stack([np.interp(yi, np.arange(a.shape[0]), col) for col in tmp.T]).T


def analysis_of(field: np.ndarray, seed: int, blur: float = 2.0, error: float = 0.5) -> np.ndarray:
    """A gap-free, coarser and imperfect view of `field` (T, H, W), as a model analysis or
    reanalysis gives beside satellite data: smoothed in space (a Gaussian of `blur` cells),
    plus an error field of its own (smooth and moving, std `error`)."""
    from scipy.ndimage import gaussian_filter
    T, H, W = field.shape
    own = advected_field(T, H, W, seed + 50, rho=0.9, velocity=(-0.4, 0.3))
    return (gaussian_filter(field, (0, blur, blur), mode="nearest") + error * own).astype("float32")


def demo_datasets(T: int = 96, H: int = 48, W: int = 64, pattern: str = "cloud", observed: float = 0.5,
                  seed: int = 0, var: str = "sst", covariate: str | None = None) -> tuple[xr.Dataset, xr.Dataset]:
    """(gappy, truth): a CF-style SST-like cube and its complete version with an `observed` flag.
    `covariate`: also a gap-free variable of that name, an analysis of the same SST (`analysis_of`)."""
    field = 18.0 + 2.5 * advected_field(T, H, W, seed)
    obs = gap_mask((T, H, W), pattern, observed, seed)
    coords = {
        "time": ("time", pd.date_range("2020-01-01", periods=T, freq="D"), {"standard_name": "time", "axis": "T"}),
        "lat": ("lat", np.linspace(30, 30 + 0.25 * (H - 1), H, dtype="float32"),
                {"standard_name": "latitude", "units": "degrees_north", "axis": "Y"}),
        "lon": ("lon", np.linspace(-40, -40 + 0.25 * (W - 1), W, dtype="float32"),
                {"standard_name": "longitude", "units": "degrees_east", "axis": "X"}),
    }
    attrs = {"standard_name": "sea_surface_temperature", "units": "degC", "long_name": "synthetic SST"}
    dims = ("time", "lat", "lon")
    gappy = xr.Dataset({var: (dims, np.where(obs, field, np.nan).astype("float32"), attrs)}, coords=coords,
                       attrs={"Conventions": "CF-1.8", "title": f"impute-cli synthetic cube, {pattern} gaps",
                              "source": "impute_cli.synthetic.demo_datasets"})
    truth = xr.Dataset({var: (dims, field, attrs), "observed": (dims, obs)}, coords=coords)
    if covariate:
        cov = (dims, analysis_of(field, seed), {**attrs, "long_name": "synthetic SST analysis (gap-free, coarser)"})
        gappy[covariate] = truth[covariate] = cov
    return gappy, truth


def hourly_datasets(T: int = 720, H: int = 48, W: int = 64, observed: float = 0.5,
                    seed: int = 0, var: str = "t2m") -> tuple[xr.Dataset, xr.Dataset]:
    """(gappy, truth): an hourly 2-m temperature-like cube with a strong daily cycle.

    Field: a mean decreasing with latitude, a daily cycle in local solar time (the cube spans
    16 degrees of longitude, about an hour of solar time) whose amplitude shrinks towards the
    pole and on "cloudy" days (a slow anomaly field), and weather anomalies advected across the
    grid (the AR(1) Fourier field, correlated over about a day). Gaps: large clouds drifting
    slowly (blobs on a grid 12x coarser in space and 8x in time), `observed` of the cells kept."""
    rng = np.random.default_rng(seed + 7)
    hours = np.arange(T)[:, None, None]
    lat = np.linspace(40, 40 + 0.25 * (H - 1), H, dtype="float32")
    lon = np.linspace(0, 0.25 * (W - 1), W, dtype="float32")
    weather = advected_field(T, H, W, seed, rho=0.96, velocity=(0.1, 0.3))
    cloudiness = advected_field(T, H // 4, W // 4, seed + 1, rho=0.99)
    cloudiness = np.stack([_interp2(c, H, W) for c in cloudiness])
    solar = (hours + lon[None, None, :] / 15.0 - 15.0) * 2 * np.pi / 24  # warmest at 15 h local time
    amp = (6.0 - 0.1 * (lat[None, :, None] - 40)) * (1 - 0.25 * np.tanh(cloudiness))
    field = (290.0 - 0.5 * (lat[None, :, None] - 40) + amp * np.cos(solar) + 2.5 * weather).astype("float32")
    lo = rng.standard_normal((T // 8 + 2, max(2, H // 12), max(2, W // 12)))
    clouds = np.stack([_interp2(_lerp_time(lo, ti), H, W) for ti in np.linspace(0, lo.shape[0] - 1, T)])
    obs = clouds > np.quantile(clouds, 1 - observed)
    coords = {
        "time": ("time", pd.date_range("2021-07-01", periods=T, freq="h"), {"standard_name": "time", "axis": "T"}),
        "lat": ("lat", lat, {"standard_name": "latitude", "units": "degrees_north", "axis": "Y"}),
        "lon": ("lon", lon, {"standard_name": "longitude", "units": "degrees_east", "axis": "X"}),
    }
    attrs = {"standard_name": "air_temperature", "units": "K", "long_name": "synthetic 2 m temperature"}
    dims = ("time", "lat", "lon")
    gappy = xr.Dataset({var: (dims, np.where(obs, field, np.nan).astype("float32"), attrs)}, coords=coords,
                       attrs={"Conventions": "CF-1.8", "title": "impute-cli synthetic hourly cube, cloud gaps",
                              "source": "impute_cli.synthetic.hourly_datasets"})
    truth = xr.Dataset({var: (dims, field, attrs), "observed": (dims, obs)}, coords=coords)
    return gappy, truth


def write_demo(outdir: str | Path, kind: str = "daily", **kw) -> tuple[Path, Path]:
    """Write gappy.nc and truth.nc: the daily SST-like demo cube or (`kind="hourly"`) the
    hourly cube with a daily cycle."""
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    gappy, truth = (hourly_datasets if kind == "hourly" else demo_datasets)(**kw)
    g, t = outdir / "gappy.nc", outdir / "truth.nc"
    start = str(gappy.time.values[0])[:10]
    enc = {"time": {"dtype": "int32", "units": f"{'hours' if kind == 'hourly' else 'days'} since {start}"},
           "lat": {"_FillValue": None}, "lon": {"_FillValue": None}}  # CF: no fill on coordinates
    gappy.to_netcdf(g, encoding=enc)
    truth.to_netcdf(t, encoding=enc)
    return g, t
