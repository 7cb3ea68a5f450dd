"""The first paper's synthetic dynamical systems at CPU scale, as complete space-time cubes.

[CQ] (*Incomplete Data, Complete Dynamics*, ../shared/papers/incomplete-data-complete-dynamics.txt)
evaluates on three PDE data sets (§4.2 "Datasets", App. G.1 "Dataset settings", eqs. 65-66).
This module makes one gap-free (T, H, W) trajectory of each, on the unit torus [0, 1)^2 (y
along axis 0, x along axis 1), from a seed; hide cells with impute_cli.synthetic.gap_mask or
the project's other gap makers. Each generator returns float32, normalised to zero mean and
unit std over the whole cube, the same for the same arguments (numpy FFTs, one numpy
Generator per call). Not part of the test suite. Run from the project root:

    python benchmarks/systems.py navier_stokes /tmp/ns.nc --frames 256 --size 32 --seed 0

It writes the one complete cube as a CF NetCDF file (seconds at this size: see "Sizes" below);
paper_tables.py imports it to make its cubes.

**advection** -- [CQ] eq. (65b), d_t u + beta . grad u = 0: a smooth random field carried by a
constant velocity. The initial field is a sum of all Fourier modes below Nyquist with complex
Gaussian coefficients and amplitude (1 + (|k| / 3)^2)^-2 (k in integer wavenumbers), the
velocity has a uniform random direction and a speed of U[0.25, 1] cells per frame. The
solution is exact: frame t is u0 shifted by beta t, a phase factor per Fourier mode (Nyquist
modes are zeroed so that a fractional shift stays real), so there is no time step and no
numerical diffusion.
Matched: the equation, random velocity and random initial condition per sample, 32 x 32.
Scaled/changed: 2-D (eq. 65b is written in 1-D, the data are 32 x 32 frames); one trajectory
of T frames (default 256) instead of 5k/1k/1k samples of 50 frames.

**shallow_water** -- [CQ] eq. (65a), the rotating shallow-water equations (after Klöwer et al.
2018), here by default in their nonlinear flux form
    d_t u + u.grad u - f v = -g d_x h - nu4 lap^2 u,   d_t v + u.grad v + f u = -g d_y h - nu4 lap^2 v,
    d_t h + div((H + h) u) = -nu4 lap^2 h,
with `nonlinear=False` giving eq. (65a) itself (the linearisation about rest, depth H). Initial
state: 1-3 Gaussian bumps of h (amplitude +-U[0.05, 0.2] H, width U[0.05, 0.1]) at random
places, zero velocity; the bumps adjust geostrophically and radiate gravity waves. Random
physical parameters as in the paper: g = 1 (only gH matters), H = c^2 with wave speed
c ~ U[0.64, 1.28] domains per time unit, f = c / L_d with deformation radius L_d ~ U[0.1, 0.3].
Frames every 1/64 time unit (a gravity wave moves 0.3-0.6 cells a frame at 32 x 32).
Pseudo-spectral, RK4 with 4 substeps a frame, 2/3-rule dealiasing of the products, light
biharmonic diffusion nu4 = 1e-7 on u, v, h for stability (ShallowWaters.jl's default kind;
it damps the 2/3-cutoff wavenumber of a 32-grid at rate 2 per time unit, the bumps' scales
(k ~ 1/width) at 0.001-0.02). The output is the height anomaly h.
The mean of h (the mass) is the k = 0 Fourier coefficient, whose tendency is exactly zero, so
mass is conserved to rounding.
Matched: the equations' terms, random f, gH and initial conditions, 32 x 32. Scaled/changed:
nonlinear by default (the paper writes the linearised form); one trajectory of T frames.

**navier_stokes** -- [CQ] eq. (66), 2-D incompressible Navier-Stokes, in vorticity form on the
unit torus as in the FNO benchmark (Li et al. 2021, data_generation/navier_stokes/ns_2d.py):
    d_t w + u.grad w = nu lap w + f,  u = (d_y psi, -d_x psi),  -lap psi = w,
f(x, y) = 0.1 (sin(2 pi (x + y)) + cos(2 pi (x + y))), nu = 1e-3, w0 from the Gaussian random
field N(0, 7^(3/2) (-lap + 49 I)^-2.5) (FNO's GaussianRF(alpha=2.5, tau=7), drawn at the
output grid). Pseudo-spectral, Crank-Nicolson for viscosity, forward Euler for the
dealiased (2/3 rule) nonlinear term and the forcing -- FNO's scheme. The output is w.
Matched: equation, forcing, viscosity, initial-condition law, scheme, frame interval 1 time
unit (FNO's nu = 1e-3 set: frames at t = 1..50). Scaled/changed: simulated at the output grid
(32 x 32) instead of 256 x 256 with dt = 1e-2 instead of 1e-4 (with nu = 1e-3 the field is
smooth: from the same w0, 32 x 32 at dt = 1e-2 and 128 x 128 at dt = 2.5e-3 differ by 0.1 % of
the field's rms at t = 21); a spin-up of 10 time units, then T frames (FNO: 50 from t = 1).
[CQ] itself uses another NS set (Cao 2024: isotropic turbulence, 64 x 64, 100 frames); FNO's
is the standard one that is feasible on a CPU. What the cube holds: the forced mode grows out
of the decaying initial vortices, goes unstable near t = 25-30 and from t ~ 40 the flow is on
a quasi-periodic state whose statistics do not depend on the seed (non-forced part of w: std
0.62 of the 0.95 total; frames 23 and 68 time units apart come back within ~5 % rms). So with
T = 256 the first ~30 frames carry the seed's initial condition and the rest a recurring,
seed-independent regime (up to phase); energy is bounded (0.0035-0.0079 over the cube).
At 64 x 64 (dt = 5e-3) the same regime shows: non-forced std 0.63.

Sizes: [CQ]'s advection / shallow-water samples are 32 x 32 x 50 frames, its NS samples
64 x 64 x 100. Time for T = 256, 32 x 32 on one core: advection 0.01 s, shallow water about
1.2 s, Navier-Stokes about 3 s (26,600 steps)."""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

SYSTEMS = ("advection", "shallow_water", "navier_stokes")
VARIABLES = {"advection": ("u", "advected scalar"),
             "shallow_water": ("h", "height anomaly"),
             "navier_stokes": ("w", "vorticity")}
TIME_UNITS = "days since 2000-01-01"


# --------------------------------------------------------------------------- spectral grid

def _wavenumbers(H: int, W: int) -> tuple[np.ndarray, np.ndarray]:
    """Integer wavenumbers of an rfft2 array on an H x W grid: ky (H, 1), kx (1, W//2+1)."""
    return np.fft.fftfreq(H, 1.0 / H)[:, None], np.fft.rfftfreq(W, 1.0 / W)[None, :]


def _dealias(ky: np.ndarray, kx: np.ndarray, H: int, W: int) -> np.ndarray:
    """The 2/3 rule: keep |k| <= (2/3) k_max along each axis, as FNO's ns_2d.py."""
    return ((np.abs(ky) <= (2 / 3) * (H // 2)) & (np.abs(kx) <= (2 / 3) * (W // 2))).astype("float64")


def _no_nyquist(ky: np.ndarray, kx: np.ndarray, H: int, W: int) -> np.ndarray:
    """False on the Nyquist row/column of an even axis (a fractional shift would make it complex)."""
    keep = np.ones(np.broadcast_shapes(ky.shape, kx.shape), bool)
    if H % 2 == 0:
        keep &= np.abs(ky) != H // 2
    if W % 2 == 0:
        keep &= np.abs(kx) != W // 2
    return keep


def normalise(field: np.ndarray) -> np.ndarray:
    """Zero mean, unit std over the whole cube, float32."""
    f = np.asarray(field, "float64")
    return ((f - f.mean()) / f.std()).astype("float32")


# --------------------------------------------------------------------------- advection

def simulate_advection(T: int, H: int, W: int, seed: int = 0,
                       velocity: tuple[float, float] | None = None) -> tuple[np.ndarray, dict]:
    """Exact linear advection on the torus: (T, H, W) float64 in the field's own units, and
    the parameters. `velocity` (cells per frame, (y, x)) is drawn when None."""
    rng = np.random.default_rng([seed, 1])
    ky, kx = _wavenumbers(H, W)
    k = np.hypot(ky, kx)
    amp = (1 + (k / 3.0) ** 2) ** -2.0 * _no_nyquist(ky, kx, H, W)
    amp[0, 0] = 0.0
    coef = (rng.standard_normal(amp.shape) + 1j * rng.standard_normal(amp.shape)) * amp
    u0_hat = np.fft.rfft2(np.fft.irfft2(coef, s=(H, W)))  # the Hermitian spectrum of a real field
    u0_hat *= _no_nyquist(ky, kx, H, W)
    if velocity is None:
        speed, angle = rng.uniform(0.25, 1.0), rng.uniform(0, 2 * np.pi)
        velocity = (speed * np.sin(angle), speed * np.cos(angle))
    cy, cx = map(float, velocity)
    phase = -2j * np.pi * (ky * cy / H + kx * cx / W)  # shift by (cy, cx) cells per frame
    t = np.arange(T)[:, None, None]
    field = np.fft.irfft2(u0_hat[None] * np.exp(phase[None] * t), s=(H, W))
    return field, {"velocity_y_cells_per_frame": cy, "velocity_x_cells_per_frame": cx,
                   "spectrum": "(1 + (|k|/3)^2)^-2, k in integer wavenumbers"}


def advection(T: int, H: int, W: int, seed: int = 0) -> np.ndarray:
    """[CQ] eq. (65b) in 2-D, exact: (T, H, W) float32, normalised."""
    return normalise(simulate_advection(T, H, W, seed)[0])


# --------------------------------------------------------------------------- shallow water

SWE_FRAME_DT = 1 / 64  # time units per frame
SWE_SUBSTEPS = 4
SWE_NU4 = 1e-7  # biharmonic: damping rate 2 per time unit at the 2/3 cutoff of a 32-grid


def _bumps(H: int, W: int, rng: np.random.Generator, depth: float) -> tuple[np.ndarray, dict]:
    y = (np.arange(H) / H)[:, None]
    x = (np.arange(W) / W)[None, :]
    n = int(rng.integers(1, 4))
    h0 = np.zeros((H, W))
    amps, widths, centres = [], [], []
    for _ in range(n):
        a = rng.choice([-1.0, 1.0]) * rng.uniform(0.05, 0.2) * depth
        s = rng.uniform(0.05, 0.1)
        y0, x0 = rng.uniform(0, 1, 2)
        dy = (y - y0 + 0.5) % 1.0 - 0.5  # nearest periodic image
        dx = (x - x0 + 0.5) % 1.0 - 0.5
        h0 += a * np.exp(-(dy**2 + dx**2) / (2 * s**2))
        amps.append(a); widths.append(s); centres += [y0, x0]
    return h0, {"bump_amplitude": amps, "bump_width": widths, "bump_centre_yx": centres}


def simulate_shallow_water(T: int, H: int, W: int, seed: int = 0, nonlinear: bool = True,
                           diagnostics: dict | None = None) -> tuple[np.ndarray, dict]:
    """Rotating shallow water on the unit torus: the height anomaly h, (T, H, W) float64, and
    the parameters. `diagnostics`, when given, receives per-frame mean(h) and total energy."""
    rng = np.random.default_rng([seed, 2])
    g = 1.0
    c = rng.uniform(0.64, 1.28)  # gravity-wave speed sqrt(gH), domains per time unit
    depth = c**2 / g
    f = c / rng.uniform(0.1, 0.3)  # Coriolis parameter from the deformation radius c / f
    h0, bump = _bumps(H, W, rng, depth)

    ky, kx = _wavenumbers(H, W)
    iky, ikx = 2j * np.pi * ky, 2j * np.pi * kx
    damp = SWE_NU4 * (4 * np.pi**2 * (ky**2 + kx**2)) ** 2
    keep = _dealias(ky, kx, H, W)

    def irfft(a: np.ndarray) -> np.ndarray:
        return np.fft.irfft2(a, s=(H, W))

    def tendency(uh: np.ndarray, vh: np.ndarray, hh: np.ndarray) -> tuple[np.ndarray, ...]:
        du = f * vh - g * ikx * hh - damp * uh
        dv = -f * uh - g * iky * hh - damp * vh
        dh = -depth * (ikx * uh + iky * vh) - damp * hh
        if nonlinear:
            u, v, h = irfft(uh), irfft(vh), irfft(hh)
            adv_u = u * irfft(ikx * uh) + v * irfft(iky * uh)
            adv_v = u * irfft(ikx * vh) + v * irfft(iky * vh)
            du = du - keep * np.fft.rfft2(adv_u)
            dv = dv - keep * np.fft.rfft2(adv_v)
            dh = dh - keep * (ikx * np.fft.rfft2(h * u) + iky * np.fft.rfft2(h * v))
        return du, dv, dh

    state = (np.zeros((H, W // 2 + 1), complex), np.zeros((H, W // 2 + 1), complex), np.fft.rfft2(h0))
    dt = SWE_FRAME_DT / SWE_SUBSTEPS
    out = np.empty((T, H, W))
    for t in range(T):
        if t:  # frame 0 is the initial state
            for _ in range(SWE_SUBSTEPS):  # classical RK4
                k1 = tendency(*state)
                k2 = tendency(*(s + 0.5 * dt * k for s, k in zip(state, k1)))
                k3 = tendency(*(s + 0.5 * dt * k for s, k in zip(state, k2)))
                k4 = tendency(*(s + dt * k for s, k in zip(state, k3)))
                state = tuple(s + dt / 6 * (a + 2 * b + 2 * c_ + d)
                              for s, a, b, c_, d in zip(state, k1, k2, k3, k4))
        out[t] = irfft(state[2])
        if diagnostics is not None:
            u, v, h = (irfft(s) for s in state)
            col = depth + h if nonlinear else depth
            energy = 0.5 * np.mean(col * (u**2 + v**2) + g * h**2)
            diagnostics.setdefault("mean_h", []).append(float(h.mean()))
            diagnostics.setdefault("energy", []).append(float(energy))
    params = {"g": g, "mean_depth_H": depth, "wave_speed_c": c, "coriolis_f": f,
              "deformation_radius": c / f, "biharmonic_viscosity": SWE_NU4, "nonlinear": int(nonlinear),
              "frame_interval": SWE_FRAME_DT, "substeps": SWE_SUBSTEPS, **bump}
    return out, params


def shallow_water(T: int, H: int, W: int, seed: int = 0) -> np.ndarray:
    """[CQ] eq. (65a) (nonlinear form), height anomaly: (T, H, W) float32, normalised."""
    return normalise(simulate_shallow_water(T, H, W, seed)[0])


# --------------------------------------------------------------------------- Navier-Stokes

NS_NU = 1e-3
NS_DT = 1e-2
NS_FRAME_INTERVAL = 1.0
NS_SPINUP = 10.0


def grf_vorticity(H: int, W: int, rng: np.random.Generator, alpha: float = 2.5, tau: float = 7.0) -> np.ndarray:
    """FNO's GaussianRF(2, alpha, tau) on the unit torus: N(0, sigma (-lap + tau^2 I)^-alpha) with
    sigma = tau^(alpha - 1) = 7^(3/2), zero mean; the real part of the inverse FFT of complex white
    noise times sqrt(2) sigma (4 pi^2 |k|^2 + tau^2)^(-alpha/2), scaled by H W as FNO does."""
    ky = np.fft.fftfreq(H, 1.0 / H)[:, None]
    kx = np.fft.fftfreq(W, 1.0 / W)[None, :]
    sigma = tau ** (0.5 * (2 * alpha - 2))
    sqrt_eig = H * W * np.sqrt(2.0) * sigma * (4 * np.pi**2 * (kx**2 + ky**2) + tau**2) ** (-alpha / 2)
    sqrt_eig[0, 0] = 0.0
    xi = (rng.standard_normal((H, W)) + 1j * rng.standard_normal((H, W))) * sqrt_eig
    return np.fft.ifft2(xi).real


def simulate_navier_stokes(T: int, H: int, W: int, seed: int = 0, dt: float = NS_DT,
                           interval: float = NS_FRAME_INTERVAL, spinup: float = NS_SPINUP,
                           diagnostics: dict | None = None) -> tuple[np.ndarray, dict]:
    """Forced 2-D Navier-Stokes (FNO setting): vorticity, (T, H, W) float64, and the
    parameters. `diagnostics`, when given, receives per-frame kinetic energy and enstrophy."""
    rng = np.random.default_rng([seed, 3])
    w0 = grf_vorticity(H, W, rng)
    y = (np.arange(H) / H)[:, None]
    x = (np.arange(W) / W)[None, :]
    forcing_hat = np.fft.rfft2(0.1 * (np.sin(2 * np.pi * (x + y)) + np.cos(2 * np.pi * (x + y))))

    ky, kx = _wavenumbers(H, W)
    iky, ikx = 2j * np.pi * ky, 2j * np.pi * kx
    lap = 4 * np.pi**2 * (kx**2 + ky**2)  # -Laplacian
    inv_lap = np.divide(1.0, lap, out=np.zeros_like(lap), where=lap > 0)
    keep = _dealias(ky, kx, H, W)

    def irfft(a: np.ndarray) -> np.ndarray:
        return np.fft.irfft2(a, s=(H, W))

    cn_explicit, cn_implicit = 1.0 - 0.5 * dt * NS_NU * lap, 1.0 / (1.0 + 0.5 * dt * NS_NU * lap)

    w_hat = np.fft.rfft2(w0)
    steps_per_frame = round(interval / dt)
    spin_steps = round(spinup / dt)
    out = np.empty((T, H, W))
    frame = 0
    for step in range(1, spin_steps + T * steps_per_frame + 1):
        psi_hat = w_hat * inv_lap
        u, v = irfft(iky * psi_hat), irfft(-ikx * psi_hat)  # u = d_y psi, v = -d_x psi
        nonlin = np.fft.rfft2(u * irfft(ikx * w_hat) + v * irfft(iky * w_hat))  # u . grad w
        w_hat = (dt * (forcing_hat - keep * nonlin) + cn_explicit * w_hat) * cn_implicit
        if step > spin_steps and (step - spin_steps) % steps_per_frame == 0:
            out[frame] = irfft(w_hat)
            frame += 1
            if diagnostics is not None:
                psi_hat = w_hat * inv_lap
                u, v = irfft(iky * psi_hat), irfft(-ikx * psi_hat)
                diagnostics.setdefault("energy", []).append(float(0.5 * np.mean(u**2 + v**2)))
                diagnostics.setdefault("enstrophy", []).append(float(0.5 * np.mean(out[frame - 1] ** 2)))
                diagnostics.setdefault("max_speed", []).append(float(np.sqrt(u**2 + v**2).max()))
    params = {"viscosity": NS_NU, "dt": dt, "frame_interval": interval, "spinup": spinup,
              "forcing": "0.1 (sin(2 pi (x + y)) + cos(2 pi (x + y)))",
              "initial_condition": "N(0, 7^(3/2) (-lap + 49 I)^-2.5)", "dealiasing": "2/3 rule",
              "scheme": "pseudo-spectral, Crank-Nicolson viscosity, forward Euler nonlinear + forcing"}
    return out, params


def navier_stokes(T: int, H: int, W: int, seed: int = 0) -> np.ndarray:
    """FNO's forced 2-D Navier-Stokes, nu = 1e-3, vorticity: (T, H, W) float32, normalised."""
    return normalise(simulate_navier_stokes(T, H, W, seed)[0])


SIMULATORS = {"advection": simulate_advection, "shallow_water": simulate_shallow_water,
              "navier_stokes": simulate_navier_stokes}


# --------------------------------------------------------------------------- files

def to_dataset(field: np.ndarray, name: str, system: str, params: dict | None = None) -> xr.Dataset:
    """A complete (T, H, W) cube as a CF-1.8 dataset: dims (time, y, x), daily time from
    2000-01-01 (written as int days), y/x the unit-torus positions with axis Y/X. Encodings
    are set, so `ds.to_netcdf(path)` writes the CF layout as it is."""
    if system not in SYSTEMS:
        raise ValueError(f"unknown system {system!r}; use one of {SYSTEMS}")
    T, H, W = field.shape
    coords = {
        "time": ("time", pd.date_range("2000-01-01", periods=T, freq="D"),
                 {"standard_name": "time", "axis": "T", "long_name": "frame time (one day a frame)"}),
        "y": ("y", (np.arange(H) / H).astype("float32"),
              {"axis": "Y", "units": "1", "long_name": "y position on the unit torus"}),
        "x": ("x", (np.arange(W) / W).astype("float32"),
              {"axis": "X", "units": "1", "long_name": "x position on the unit torus"}),
    }
    long_name = f"{VARIABLES[system][1]} ({system.replace('_', ' ')}), normalised to zero mean and unit std"
    ds = xr.Dataset({name: (("time", "y", "x"), np.asarray(field, "float32"),
                            {"units": "1", "long_name": long_name})}, coords=coords)
    ds.attrs = {"Conventions": "CF-1.8",
                "title": f"synthetic {system.replace('_', ' ')} cube (complete), after [CQ] App. G.1",
                "source": f"benchmarks/systems.py {system}",
                "system": system}
    for k, v in (params or {}).items():
        ds.attrs[f"{system}_{k}"] = v
    ds["time"].encoding.update({"units": TIME_UNITS, "dtype": "int32"})
    for c in ("y", "x"):
        ds[c].encoding["_FillValue"] = None  # CF: no fill on coordinates
    return ds


def write_cube(system: str, path: str | Path, frames: int = 256, size: int = 32, seed: int = 0) -> dict:
    """Simulate, normalise and write OUT (to a temporary name in its folder, then renamed)."""
    t0 = time.perf_counter()
    raw, params = SIMULATORS[system](frames, size, size, seed)
    t1 = time.perf_counter()
    field = normalise(raw)
    if not np.isfinite(field).all():
        raise RuntimeError(f"{system}: the simulation produced non-finite values")
    ds = to_dataset(field, VARIABLES[system][0], system, {**params, "seed": seed,
                                                         "raw_mean": float(raw.mean()), "raw_std": float(raw.std())})
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent or ".")
    os.close(fd)
    umask = os.umask(0)
    os.umask(umask)
    try:
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes it 0600; the file should be as open as any other
        ds.to_netcdf(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return {"system": system, "path": str(path), "shape": list(field.shape), "variable": VARIABLES[system][0],
            "simulate_s": t1 - t0, "total_s": time.perf_counter() - t0}


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("system", choices=SYSTEMS)
    p.add_argument("out", help="the NetCDF file to write (complete cube)")
    p.add_argument("--frames", type=int, default=256)
    p.add_argument("--size", type=int, default=32, help="grid size H = W")
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args(argv)
    if a.frames < 1 or a.size < 4:
        sys.exit("systems: need --frames >= 1 and --size >= 4")
    if not Path(a.out).parent.is_dir():
        sys.exit(f"systems: folder {Path(a.out).parent} does not exist")
    r = write_cube(a.system, a.out, a.frames, a.size, a.seed)
    print(f"{r['system']}: wrote {r['path']} ({r['variable']}, {'x'.join(map(str, r['shape']))}) "
          f"in {r['total_s']:.1f} s (simulation {r['simulate_s']:.1f} s)")


if __name__ == "__main__":
    main()
