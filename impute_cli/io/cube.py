"""cube: a file's variables on one grid as a lazy `Cube` (time, channel, y, x) plus its `Grid`.

A channel is a variable, or one level of a variable with extra dims (level, member). Only
`Cube.read` and `Cube.load` compute; everything else is sizes and masks."""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from typing import Any

import dask
import dask.array as dsa
import numpy as np
import xarray as xr


IN_MEMORY_LIMIT = 256 * 1024**2  # cubes up to this size (float32 bytes) are read into memory once


PASS_THREADS = 4  # threads of a pass over the file: its memory is this many chunks' working sets


def compute(*arrays: Any) -> tuple:
    """dask.compute on at most PASS_THREADS threads of this process, so that the memory of a
    pass over the file is bounded whatever the machine's core count (and never sent to a
    Dask cluster)."""
    return dask.compute(*arrays, scheduler="threads", num_workers=min(PASS_THREADS, os.cpu_count() or 1))


def wrap_columns(a: Any, p: int) -> Any:
    """An array (numpy or dask) with its last `p` columns (last axis) put before its first and
    its first `p` after its last."""
    cat = np.concatenate if isinstance(a, np.ndarray) else dsa.concatenate
    return cat([a[..., -p:], a, a[..., :p]], axis=-1)


@dataclass(frozen=True)
class Grid:
    """The cube's main grid: dim names, sizes and coordinate fingerprints.

    A series (time x station / feature) has `y_dim` None: its y is a dummy axis of length 1
    and x the station/feature dim; `file_dims` and `to_file` give the file's own layout."""

    time_dim: str
    y_dim: str | None
    x_dim: str
    extra_dims: tuple[str, ...]
    shape: tuple[int, int, int]  # (T, H, W)
    y_values: tuple[float, ...]
    x_values: tuple[float, ...]
    wraps: bool = False  # x is a whole circle of longitude: its last column neighbours its first

    @property
    def is_series(self) -> bool:
        return self.y_dim is None

    @property
    def file_dims(self) -> tuple[str, ...]:
        """The spatial dims as the file has them: (y, x), or (x,) for a series."""
        return (self.x_dim,) if self.y_dim is None else (self.y_dim, self.x_dim)

    def to_file(self, a: np.ndarray) -> np.ndarray:
        """An array whose last two axes are (H, W) in the file's spatial layout: a series
        loses its dummy y axis (..., 1, W) -> (..., W); a grid is returned as it is."""
        return a[..., 0, :] if self.y_dim is None else a

    def describe(self) -> dict[str, Any]:
        return {"time_dim": self.time_dim, "y_dim": self.y_dim, "x_dim": self.x_dim,
                "extra_dims": list(self.extra_dims), "shape": list(self.shape),
                "y_first_last": [self.y_values[0], self.y_values[-1]],
                "x_first_last": [self.x_values[0], self.x_values[-1]]}


@dataclass
class Cube:
    """Variables on one grid, as a lazy (time, channel, y, x) float32 array plus masks.

    A channel is a variable, or one level of a variable with extra dims (level, member).
    `variables` are the imputed ones; the `covariates`' channels follow theirs, context only."""

    ds: xr.Dataset
    variables: list[str]
    channels: list[str]
    channel_sel: list[tuple[str, dict[str, int]]]  # (variable, isel of its extra dims)
    units: list[str]
    grid: Grid
    valid: np.ndarray  # (H, W) bool: cells that may be filled (False = land / outside static mask)
    static_mask_var: str | None
    data: dsa.Array  # (T, C, H, W) float32, NaN where missing
    memory: np.ndarray | None = None  # the values, once `load` has read them
    covariates: tuple[str, ...] = ()  # variables seen as context only: never filled, hidden nor scored

    @property
    def context_only(self) -> np.ndarray:
        """(C,) bool: the channels of covariates."""
        return np.array([v in self.covariates for v, _ in self.channel_sel], bool)

    @property
    def n_targets(self) -> int:
        """How many channels are imputed (they come first)."""
        return int((~self.context_only).sum())

    def static_mask_line(self) -> str | None:
        """The log line that says which static mask is used and what it excludes."""
        if self.static_mask_var is None:
            return None
        out = int((~self.valid).sum())
        return (f"static mask: '{self.static_mask_var}' excludes {out} of {self.valid.size} grid cells "
                f"({100 * out / max(self.valid.size, 1):.1f} %), which are never filled (--static-mask names another)")

    def read(self, t: slice, y: slice, x: slice) -> np.ndarray:
        if self.memory is not None:  # loaded: plain numpy slicing (a dask compute costs ~4 ms)
            return self.memory[t, :, y, x].copy()
        return np.asarray(self.data[t, :, y, x].compute())  # under the caller's scheduler (synchronous in a region)

    def observed(self, values: np.ndarray, y: slice = slice(None), x: slice = slice(None)) -> np.ndarray:
        """The observation mask M of a block of values: finite and inside the static mask."""
        return np.isfinite(values) & self.valid[y, x][None, None]

    def in_memory(self, values: np.ndarray, y: slice = slice(None), x: slice = slice(None)) -> "Cube":
        """`values` (T', C, h, w), the cells [y, x] of this cube's grid, as an in-memory cube of
        their own (its tiles index them from 0)."""
        grid = replace(self.grid, shape=values.shape[:1] + values.shape[2:])
        return replace(self, data=dsa.from_array(values, chunks=-1), memory=values, valid=self.valid[y, x],
                       grid=grid)

    def wrapped(self, p: int) -> "Cube":
        """This cube with its last `p` columns put before its first and its first `p` after its
        last (lazily, or in memory when it is loaded): on a grid that wraps around in
        longitude, windows of the wider cube cross the east-west edge as they cross any other
        meridian. The wider cube does not wrap itself."""
        T, H, W = self.grid.shape
        grid = replace(self.grid, shape=(T, H, W + 2 * p), wraps=False)
        return replace(self, data=wrap_columns(self.data, p), valid=wrap_columns(self.valid, p), grid=grid,
                       memory=None if self.memory is None else wrap_columns(self.memory, p))

    def load(self) -> "Cube":
        """Read the whole cube into memory when it is small enough; else stay lazy."""
        if self.data.nbytes <= IN_MEMORY_LIMIT:
            self.memory = np.asarray(compute(self.data)[0])
            self.data = dsa.from_array(self.memory, chunks=-1)
        return self
