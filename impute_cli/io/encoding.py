"""encoding: how the output's variables are stored on disk.

Copied input variables keep the input's encoding (dtype, packing, fill value, compression,
chunking) where the output format takes it. New variables are compressed (zlib with shuffle,
`--compress` level) in chunks of a few time steps; `V_filled` of a packed variable (int16 with
`scale_factor`/`add_offset`) is packed the same way, since the data's precision is the
packing's, and observed cells then keep their packed integers bit for bit. Uncertainty
variables of packed data are float32 (the packing's precision needs no more)."""

from __future__ import annotations

from typing import Any, Callable

import numpy as np
import xarray as xr

from impute_cli.errors import OptionError

ZARR_ENCODING_KEYS = {"dtype", "scale_factor", "add_offset", "_FillValue", "units", "calendar"}
NETCDF_DROP_KEYS = {"chunks", "preferred_chunks", "compressors", "filters", "serializer", "shards"}
NETCDF_COMPRESSION_KEYS = {"zlib", "complevel", "shuffle", "chunksizes"}
DEFAULT_COMPRESS = 1  # zlib level: most of the gain of level 9 at a fraction of its time
CHUNK_CELLS = 1 << 18  # about 1 MB of float32 per chunk of a new variable


def check_compress(level: int) -> None:
    if not 0 <= level <= 9:
        raise OptionError(f"--compress must be a zlib level from 0 (none) to 9, got {level}")


def packing(src: xr.DataArray) -> dict[str, Any] | None:
    """The input's integer packing of a variable (dtype, scale_factor, add_offset, fill), or
    None when it is stored as floats."""
    enc = src.encoding
    dt = np.dtype(enc["dtype"]) if "dtype" in enc else None
    if dt is None or dt.kind not in "iu" or not ({"scale_factor", "add_offset"} & set(enc)):
        return None
    fill = enc.get("_FillValue", enc.get("missing_value"))
    info = np.iinfo(dt)
    if fill is None or np.ndim(fill) or not info.min <= int(fill) <= info.max:
        fill = info.min  # a code no packed value uses (values are clipped to the rest)
    return {"dtype": dt, "scale_factor": float(enc.get("scale_factor", 1.0)),
            "add_offset": float(enc.get("add_offset", 0.0)), "_FillValue": dt.type(fill)}


def value_bounds(src: xr.DataArray) -> tuple[float, float] | None:
    """The values a variable may hold, in data units: the CF `valid_min`, `valid_max` or
    `valid_range` of the input and the range its packing holds; None where neither limits it.
    On a packed variable an attribute of the packed (integer) type is in packed codes and one of
    a floating type in data units (netCDF-Java's rule: such an attribute cannot be a code).
    Attributes that are not numbers, or bounds in the wrong order, are ignored. Imputed values
    and samples are kept inside: a non-negative quantity (water vapour, precipitation) stays
    non-negative when its input says so (e.g. `ncatted -a valid_min,tcw,o,d,0 in.nc in0.nc`)."""
    pack = packing(src)

    def values(name: str, n: int) -> list[float] | None:
        raw = np.asarray(src.attrs.get(name, []))
        if raw.dtype.kind not in "iuf" or raw.size != n:
            return None
        coded = pack is not None and raw.dtype.kind in "iu"
        return [pack["add_offset"] + pack["scale_factor"] * float(k) if coded else float(k) for k in raw.ravel()]

    lo, hi = -np.inf, np.inf
    if (both := values("valid_range", 2)) is not None:
        lo, hi = min(both), max(both)  # a negative scale_factor reverses packed codes
    else:
        lo, hi = ((values("valid_min", 1) or [-np.inf])[0], (values("valid_max", 1) or [np.inf])[0])
        if pack is not None and lo > hi:  # both packed codes under a negative scale_factor
            lo, hi = hi, lo
    if not lo <= hi:
        lo, hi = -np.inf, np.inf
    if pack is not None:
        p_lo, p_hi = packed_range(pack)
        lo, hi = max(lo, p_lo), min(hi, p_hi)
    return None if (lo, hi) == (-np.inf, np.inf) else (float(lo), float(hi))


def clipper(src: xr.DataArray | None) -> Callable[[np.ndarray], np.ndarray]:
    """A function that keeps values inside `value_bounds(src)`; the identity (no copy, no pass
    over the data) where nothing bounds them or there is no source variable."""
    bounds = value_bounds(src) if src is not None else None
    if bounds is None:
        return lambda a: a
    return lambda a: np.clip(a, *bounds)


def packed_range(pack: dict[str, Any]) -> tuple[float, float]:
    """The values a packing can hold, its fill code left out: (low, high) in data units."""
    info = np.iinfo(pack["dtype"])
    lo, hi = info.min, info.max
    fill = int(pack["_FillValue"])
    lo, hi = (lo + 1, hi) if fill == lo else (lo, hi - 1) if fill == hi else (lo, hi)
    a, b = (pack["add_offset"] + pack["scale_factor"] * k for k in (lo, hi))
    return min(a, b), max(a, b)


def chunks(sizes: tuple[int, ...], time_axis: int | None) -> tuple[int, ...]:
    """Chunks of a new variable: whole in every dim but time (and sample: one a chunk), a
    number of time steps that gives about CHUNK_CELLS cells."""
    out = list(sizes)
    if time_axis is None:
        return tuple(out)
    per_step = int(np.prod([s for i, s in enumerate(sizes) if i > time_axis])) or 1
    for i in range(time_axis):  # dims left of time (the samples): one at a time
        out[i] = 1
    out[time_axis] = int(max(1, min(sizes[time_axis], CHUNK_CELLS // per_step)))
    return tuple(out)


def new_encoding(dtype: np.dtype, pack: dict[str, Any] | None, compress: int,
                 chunksizes: tuple[int, ...]) -> dict[str, Any]:
    """Encoding of a variable impute adds: packed like its source or its float dtype with a NaN
    fill (the int8 flags: no fill), zlib at `compress` with shuffle (none at 0)."""
    if pack is not None:
        enc: dict[str, Any] = dict(pack)
    elif np.dtype(dtype).kind == "f":
        enc = {"_FillValue": np.array(np.nan, dtype=dtype), "dtype": np.dtype(dtype)}
    else:
        enc = {"_FillValue": None, "dtype": np.dtype(dtype)}
    if compress > 0:
        enc.update(zlib=True, complevel=int(compress), shuffle=True, chunksizes=chunksizes)
    return enc


def for_format(ds: xr.Dataset, fmt: str) -> None:
    """Keep each variable's on-disk encoding (packing, fill value, compression) where the
    format takes it. A `missing_value` that conflicts with `_FillValue` (xarray decodes both to
    NaN) keeps the file's `missing_value` and drops the NaN `_FillValue` xarray added. Zarr
    keeps packing and fill only (its own default compressor applies)."""
    for v in ds.variables.values():
        enc = dict(v.encoding)
        fill, miss = enc.get("_FillValue"), enc.get("missing_value")
        if fill is None or (miss is not None and not np.array_equal(fill, miss, equal_nan=True)):
            enc["_FillValue"] = None  # add no fill value the input did not have
        if fmt == "zarr":
            enc = {k: val for k, val in enc.items() if k in ZARR_ENCODING_KEYS}
        else:
            enc = {k: val for k, val in enc.items() if k not in NETCDF_DROP_KEYS}
            if enc.get("chunksizes") is not None and len(enc["chunksizes"]) != v.ndim:
                enc.pop("chunksizes")
        v.encoding = enc
