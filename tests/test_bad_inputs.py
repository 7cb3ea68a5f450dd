"""The table of bad inputs: each case is made here, refused with one line naming the
problem and a non-zero exit, leaves nothing written, and its message is listed in docs/cli.md's
error table. Add a case by adding a row."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
import yaml

from conftest import PROJECT_ROOT, assert_one_error_line, run_cli
from impute_cli.testing import tiny_cube_dataset, write_cube

CPU = ("--device", "cpu", "--quiet")


def _cube(d: Path, name: str = "in.nc", **kw) -> Path:
    return write_cube(tiny_cube_dataset(12, 16, 16, "cloud", 0.6, seed=4, **kw), d / name)


def _edit(d: Path, fn: Callable) -> Path:
    ds = tiny_cube_dataset(12, 16, 16, "cloud", 0.6, seed=4)
    return write_cube(fn(ds), d / "in.nc")


def _coord(name: str, how: str) -> Callable:
    def fn(ds):
        v = ds[name].values.copy()
        if how == "repeat":
            v[4] = v[3]
        else:
            v[[3, 4]] = v[[4, 3]]
        return ds.assign_coords({name: v})
    return fn


def _with(ds, var: str, values) -> object:
    ds = ds.copy(deep=True)
    ds[var].values[...] = values
    return ds


def _model_card(model: Path, d: Path, change: Callable) -> Path:
    import shutil
    m = d / "m"
    shutil.copytree(model, m)
    card = yaml.safe_load((m / "model.yaml").read_text())
    change(card)
    (m / "model.yaml").write_text(yaml.safe_dump(card))
    return m


def _truncate(p: Path, frac: float = 0.5) -> Path:
    b = p.read_bytes()
    p.write_bytes(b[: int(len(b) * frac)])
    return p


def _classic(d: Path) -> Path:
    p = d / "in.nc"
    tiny_cube_dataset(12, 16, 16, "cloud", 0.6, seed=4).to_netcdf(p, format="NETCDF3_CLASSIC")
    return p


def _corrupt_header(d: Path) -> Path:
    p = _classic(d)
    b = bytearray(p.read_bytes())
    b[12] = 0x7A
    p.write_bytes(bytes(b))
    return p


# case id -> (make the command's arguments from (tmp dir, trained model), fragment of the message)
CASES: dict[str, tuple[Callable[[Path, Path], list], str]] = {
    "missing file": (lambda d, m: ["impute", d / "nope.nc", d / "o.nc", "--model", m], "does not exist"),
    "not NetCDF (random bytes)": (lambda d, m: ["impute", _bytes(d), d / "o.nc", "--model", m], "cannot read"),
    "text file named .nc": (lambda d, m: ["impute", _text(d), d / "o.nc", "--model", m], "cannot read"),
    "truncated classic file": (lambda d, m: ["impute", _truncate(_classic(d), 0.8), d / "o.nc", "--model", m],
                               "is truncated"),
    "corrupt classic header": (lambda d, m: ["impute", _corrupt_header(d), d / "o.nc", "--model", m],
                               "header is corrupt"),
    "folder that is not Zarr": (lambda d, m: ["impute", _folder(d), d / "o.nc", "--model", m],
                                "is a folder but not a Zarr store"),
    "zero-length time dim": (lambda d, m: ["impute", _edit(d, lambda ds: ds.isel(time=slice(0, 0))), d / "o.nc",
                                           "--model", m], "zero-length"),
    "unknown variable": (lambda d, m: ["impute", _cube(d), d / "o.nc", "--model", m, "--var", "tos"],
                         "is not in the file"),
    "non-numeric variable": (lambda d, m: ["impute", _edit(d, lambda ds: ds.assign(sst=ds["sst"].astype(str))),
                                           d / "o.nc", "--var", "sst"], "is not numeric"),
    "all-NaN variable": (lambda d, m: ["train", _edit(d, lambda ds: _with(ds, "sst", np.nan)), "--out", d / "m2"],
                         "has no observed value"),
    "all-NaN variable, given a model": (lambda d, m: ["impute", _edit(d, lambda ds: _with(ds, "sst", np.nan)),
                                                      d / "o.nc", "--model", m], "nothing to fill it from"),
    "Inf values": (lambda d, m: ["impute", _edit(d, lambda ds: _with_inf(ds)), d / "o.nc", "--model", m],
                   "infinite values"),
    "repeated time": (lambda d, m: ["impute", _edit(d, _coord("time", "repeat")), d / "o.nc", "--model", m],
                      "repeats the value"),
    "time out of order": (lambda d, m: ["impute", _edit(d, _coord("time", "swap")), d / "o.nc", "--model", m],
                          "is not increasing"),
    "latitude out of order": (lambda d, m: ["impute", _edit(d, _coord("lat", "swap")), d / "o.nc", "--model", m],
                              "is not monotonic"),
    "covariate also imputed": (lambda d, m: ["train", _cube(d), "--var", "sst", "--covariate", "sst", "--out", d / "m2"],
                               "is named both with --var and --covariate"),
    "covariate on another grid": (lambda d, m: ["train", _edit(d, lambda ds: ds.assign(
        zonal=(("time", "lat"), np.ones((12, 16), "float32")))), "--covariate", "zonal", "--out", d / "m2"],
                                  "is not on the grid of"),
    "covariate the model does not take": (lambda d, m: ["impute", _cube(d), d / "o.nc", "--model", m,
                                                        "--covariate", "sst_analysis"],
                                          "the model was trained with covariates"),
    "damaged covariates in the card": (lambda d, m: ["impute", _cube(d), d / "o.nc", "--model",
                                                     _model_card(m, d, lambda c: c.update(covariates="sst"))],
                                       "has a damaged 'covariates' entry"),
    "model for other variables": (lambda d, m: ["impute", _cube(d, var="chl"), d / "o.nc", "--model", m],
                                  "the model was trained on"),
    "model for other units": (lambda d, m: ["impute", _cube(d, units="K"), d / "o.nc", "--model", m],
                              "but the model was trained on"),
    "model for another grid": (lambda d, m: ["impute", _cube(d, spacing=0.5), d / "o.nc", "--model", m],
                               "grid spacing along"),
    "model card of another version": (lambda d, m: ["impute", _cube(d), d / "o.nc", "--model",
                                                    _model_card(m, d, lambda c: c.update(format="impute-cli-model/0"))],
                                      "train the model again with this version"),
    "model card with a Python object tag": (lambda d, m: ["impute", _cube(d), d / "o.nc", "--model", _evil_card(m, d)],
                                            "is not valid YAML; train the model again"),
    "model of anomalies, file without times of day": (
        lambda d, m: ["impute", _cube(d), d / "o.nc", "--model",
                      _model_card(m, d, lambda c: c["normalisation"].update(daily_cycle={"harmonics": 2}))],
        "the model fills anomalies from a daily cycle, but this file's time coordinate holds only 1 time(s) of day"),
    "truncated weights": (lambda d, m: ["impute", _cube(d), d / "o.nc", "--model", _weights_cut(m, d)],
                          "not a readable"),
    "unknown preset key": (lambda d, m: ["train", _cube(d), "--preset", _preset(d, {"trian": {}}), "--out", d / "m2"],
                           "unknown key"),
    "preset with a Python object tag": (lambda d, m: ["train", _cube(d), "--preset", _evil_preset(d), "--out",
                                                      d / "m2"], "is not valid YAML"),
    "preset not found": (lambda d, m: ["train", _cube(d), "--preset", "no-such-preset", "--out", d / "m2"],
                         "not found"),
    "--compress out of range": (lambda d, m: ["impute", _cube(d), d / "o.nc", "--model", m, "--compress", 12],
                                "--compress must be a zlib level from 0"),
    "--zarr-format 4": (lambda d, m: ["impute", _cube(d), d / "o.zarr", "--model", m, "--zarr-format", 4],
                        "Invalid value for '--zarr-format'"),
    "--samples 0": (lambda d, m: ["impute", _cube(d), d / "o.nc", "--model", m, "--samples", 0],
                    "--samples must be at least 1"),
    "--quantiles out of order": (lambda d, m: ["impute", _cube(d), d / "o.nc", "--model", m, "--samples", 2,
                                               "--quantiles", "0.9,0.1"], "--quantiles must satisfy"),
    "--level outside (0, 1)": (lambda d, m: ["evaluate", _cube(d), "--model", m, "--samples", 2, "--level", 1.5],
                               "--level must be strictly between 0 and 1"),
    "--fraction outside (0, 1)": (lambda d, m: ["evaluate", _cube(d), "--model", m, "--fraction", 1.5],
                                  "--fraction must lie strictly between 0 and 1"),
    "evaluate --solver without --samples": (lambda d, m: ["evaluate", _cube(d), "--model", m, "--solver", "ddim"],
                                            "--sampler, --sampler-steps, --solver, --recentre and --level are for sampling"),
    "impute --sampler without --samples": (lambda d, m: ["impute", _cube(d), d / "o.nc", "--model", m, "--sampler",
                                                         "full"], "--save-samples, --sampler, --sampler-steps"),
    "absent CUDA device (impute)": (lambda d, m: ["impute", _cube(d), d / "o.nc", "--model", m, "--device", "cuda:7"],
                                    "asked for but"),
    "absent CUDA device (evaluate)": (lambda d, m: ["evaluate", _cube(d), "--model", m, "--device", "cuda:7"],
                                      "asked for but"),
    "unknown device (train)": (lambda d, m: ["train", _cube(d), "--out", d / "m2", "--device", "tpu9"],
                               "is not known"),
    "--sampler student, model without one": (lambda d, m: ["impute", _cube(d), d / "o.nc", "--model", m, "--samples", 2,
                                                            "--sampler", "student"], "has no distilled sampler, which --sampler student asks for"),
    "distill: training data gone": (lambda d, m: ["distill", _model_card(m, d, lambda c: c["training"].update(
        data=str(d / "gone.nc")))], "is not at hand; give the data it was trained on"),
    "distill --data missing": (lambda d, m: ["distill", m, "--data", d / "nope.nc"],
                               "' does not exist; give the file the model was trained on"),
    "output exists": (lambda d, m: ["impute", _cube(d), _existing(d), "--model", m], "already exists"),
    "--overwrite of a folder that is not a Zarr store": (lambda d, m: ["impute", _cube(d), _user_folder(d), "--model", m,
                                                                        "--overwrite"], "is a folder that is not a Zarr store"),
    "output of unknown format": (lambda d, m: ["impute", _cube(d), d / "o.csv", "--model", m], "must end in .nc"),
    "unknown option": (lambda d, m: ["impute", _cube(d), d / "o.nc", "--bogus"], "No such option"),
    "value out of an option's range": (lambda d, m: ["train", _cube(d), "--steps", 0], "Invalid value for '--steps'"),
}


def _bytes(d: Path) -> Path:
    p = d / "in.nc"
    p.write_bytes(np.random.default_rng(1).bytes(4096))
    return p


def _text(d: Path) -> Path:
    p = d / "in.nc"
    p.write_text("time,lat,lon,sst\n0,30,-40,18.2\n")
    return p


def _folder(d: Path) -> Path:
    p = d / "in.nc"
    p.mkdir()
    return p


def _with_inf(ds):
    ds = ds.copy(deep=True)
    ds["sst"].values[0, 0, 0] = np.inf
    return ds


def _weights_cut(model: Path, d: Path) -> Path:
    m = _model_card(model, d, lambda c: None)
    _truncate(m / "weights.pt")
    return m


def _preset(d: Path, extra: dict) -> Path:
    p = d / "bad.yaml"
    p.write_text(yaml.safe_dump({"description": "x", **extra}))
    return p


def _evil_preset(d: Path) -> Path:
    """YAML that would run code if loaded unsafely; the test also checks nothing ran."""
    p = d / "evil.yaml"
    p.write_text(f"description: !!python/object/apply:os.system ['touch {d / 'PWNED'}']\n")
    return p


def _evil_card(model: Path, d: Path) -> Path:
    m = _model_card(model, d, lambda c: None)
    card = m / "model.yaml"
    card.write_text(card.read_text() + f"evil: !!python/object/apply:os.system ['touch {d / 'PWNED'}']\n")
    return m


def _existing(d: Path) -> Path:
    p = d / "o.nc"
    p.write_bytes(b"keep me")
    return p


def _user_folder(d: Path) -> Path:
    """A folder of the user's that happens to be named like a Zarr output."""
    (d / "precious.zarr").mkdir()
    (d / "precious.zarr" / "notes.txt").write_text("mine")
    return d / "precious.zarr"


def test_the_table_has_at_least_twenty_cases():
    assert len(CASES) >= 20


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_is_refused_in_one_line(case, sst_model, tmp_path):
    make, fragment = CASES[case]
    work = tmp_path / "w"
    work.mkdir()
    args = make(work, sst_model.model)
    before = {p: p.read_bytes() for p in work.rglob("*") if p.is_file()}
    res = run_cli(args[0], *CPU, *args[1:], expect_ok=False)  # the case's own --device comes last and wins
    line = assert_one_error_line(res, fragment)
    # 2 for a bad command line (an option, a preset name), 1 for bad data or a refused model
    usage = (line.startswith("impute-cli: error: --") or "--help')" in line  # click's own usage errors
             or "preset '" in line and "not found" in line)
    assert res.exit_code == (2 if usage else 1), f"{case}: exit {res.exit_code}"
    after = {p: p.read_bytes() for p in work.rglob("*") if p.is_file()}
    assert not (work / "PWNED").exists(), "code from a configuration file ran"
    assert after == before, f"{case}: files were written or changed"


def test_every_message_is_in_the_docs_error_table():
    doc = (PROJECT_ROOT / "docs" / "cli.md").read_text()
    section = doc[doc.index("## Errors"):]
    missing = [f"{case}: {frag!r}" for case, (_, frag) in CASES.items()
               if re.sub(r"\s+", " ", frag) not in re.sub(r"\s+", " ", section)]
    assert not missing, "add these messages to the error table of docs/cli.md:\n" + "\n".join(missing)
