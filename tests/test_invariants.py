"""The invariants of every command, checked command by command on a land-masked cube:

- every input (data file, model folder, result file) is byte-identical afterwards;
- outputs: observed cells bit for bit, no NaN left in a fillable gap, flags consistent;
- the output folder holds only the finished outputs (no temporary names left);
- running again onto an existing output is refused in one line, leaving it untouched, unless
  --overwrite."""

from __future__ import annotations

import os

import hashlib
from pathlib import Path

import pytest

from conftest import assert_one_error_line, check_filled_output, open_any, run_cli
from impute_cli.testing import land_mask, tiny_cube_dataset, write_cube

CPU = ("--device", "cpu", "--quiet")


def digest(path: Path) -> str:
    """md5 over a file, or over every file of a folder (names and bytes)."""
    h = hashlib.md5()
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    for p in files:
        h.update(str(p.relative_to(path.parent)).encode())
        h.update(p.read_bytes())
    return h.hexdigest()


@pytest.fixture(scope="module")
def setup(tmp_path_factory, tiny_preset):
    d = tmp_path_factory.mktemp("invariants")
    ds = tiny_cube_dataset(12, 16, 16, "cloud", 0.6, seed=2, with_land=True)
    cube = write_cube(ds, d / "cube.nc")
    run_cli("train", cube, "--preset", tiny_preset, "--out", d / "model", "--steps", 10, *CPU)
    run_cli("impute", cube, d / "samples.nc", "--model", d / "model", "--samples", 4, "--save-samples", *CPU)
    return d, ds, cube, d / "model", d / "samples.nc"


def commands(setup, out: Path, tiny_preset) -> dict[str, tuple[list, list[Path]]]:
    """name -> (arguments, inputs that must not change)."""
    d, ds, cube, model, samples = setup
    return {
        "train": (["train", cube, "--preset", tiny_preset, "--out", out, "--steps", 4], [cube]),
        "impute": (["impute", cube, out, "--model", model], [cube, model]),
        "impute --samples": (["impute", cube, out, "--model", model, "--samples", 3], [cube, model]),
        "impute (no model)": (["impute", cube, out, "--preset", tiny_preset, "--train-steps", 4], [cube]),
        "confidence": (["confidence", samples, out, "--level", 0.8, "--truth", cube], [samples, cube]),
        "evaluate": (["evaluate", cube, "--preset", tiny_preset, "--train-steps", 4, "--baseline", "laplace",
                      "--report", out], [cube]),
    }


NAMES = ["train", "impute", "impute --samples", "impute (no model)", "confidence", "evaluate"]


@pytest.mark.parametrize("name", NAMES)
def test_invariants_of_every_command(setup, tiny_preset, tmp_path, name):
    d, ds, cube, model, samples = setup
    suffix = "" if name in ("train", "evaluate") else ".nc"
    out = tmp_path / f"out{suffix}"
    args, inputs = commands(setup, out, tiny_preset)[name]
    before = {p: digest(p) for p in inputs}
    run_cli(*args, *CPU)
    assert {p: digest(p) for p in inputs} == before, "an input was modified"
    store = Path(os.environ["IMPUTE_CLI_MODELS"])  # where impute keeps the model it trains
    left = sorted(p.name for p in tmp_path.iterdir() if p != store)
    assert left == [out.name], "something besides the output was left"
    if name == "impute (no model)":  # one finished model kept in the store, and nothing else
        kept = list(store.iterdir())
        assert len(kept) == 1 and sorted(p.name for p in kept[0].iterdir()) == ["model.yaml", "weights.pt"]
    if name.startswith("impute") or name == "confidence":
        src = open_any(samples) if name == "confidence" else ds
        check_filled_output(ds if name != "confidence" else src[list(ds.data_vars)], open_any(out), ["sst"],
                            valid=~land_mask(16, 16))
    # again without --overwrite: refused in one line, the output untouched
    first = digest(out)
    res = run_cli(*args, *CPU, expect_ok=False)
    assert_one_error_line(res, "--overwrite")
    assert digest(out) == first
    assert {p: digest(p) for p in inputs} == before
