"""Error paths through the CLI: a non-zero exit, one line on stderr starting with
'impute-cli: error:', nothing on stdout, and no output or temporary file left behind."""

from __future__ import annotations

import hashlib
import tempfile

import numpy as np
import pytest

from conftest import assert_one_error_line, listing, open_any, run_cli
from impute_cli.testing import tiny_cube_dataset, write_cube

CPU = ("--device", "cpu", "--quiet")


@pytest.fixture
def outdir(tmp_path):
    d = tmp_path / "out"
    d.mkdir()
    return d


def md5(path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def impute_fails(sst_model, inp, out, *extra, fragments=()):
    res = run_cli("impute", inp, out, "--model", sst_model.model, *extra, *CPU, expect_ok=False)
    line = assert_one_error_line(res, *fragments)
    assert res.exit_code == (2 if line.startswith("impute-cli: error: --") else 1)  # command line / data
    return line


def test_missing_input_file(sst_model, tmp_path, outdir):
    impute_fails(sst_model, tmp_path / "nope.nc", outdir / "o.nc", fragments=("nope.nc", "does not exist"))
    assert listing(outdir) == []


def test_corrupt_input_file(sst_model, tmp_path, outdir):
    bad = tmp_path / "bad.nc"
    bad.write_bytes(np.random.default_rng(1).bytes(2048))
    impute_fails(sst_model, bad, outdir / "o.nc", fragments=("cannot read",))
    assert listing(outdir) == []


def test_unknown_var(sst_model, outdir):
    impute_fails(sst_model, sst_model.cube, outdir / "o.nc", "--var", "chl", fragments=("'chl'", "sst"))
    assert listing(outdir) == []


def test_output_exists_without_overwrite(sst_model, outdir):
    out = outdir / "o.nc"
    out.write_bytes(b"keep me")
    impute_fails(sst_model, sst_model.cube, out, fragments=("already exists", "--overwrite"))
    assert listing(outdir) == ["o.nc"] and out.read_bytes() == b"keep me"


def test_output_is_the_input(sst_model, tmp_path):
    inp = write_cube(sst_model.ds, tmp_path / "in.nc")
    before = md5(inp)
    impute_fails(sst_model, inp, inp, "--overwrite", fragments=("input path",))
    assert md5(inp) == before and listing(tmp_path) == ["in.nc"]


@pytest.mark.parametrize("name", ["o.txt", "o", "o.csv"])
def test_bad_output_extension(sst_model, outdir, name):
    impute_fails(sst_model, sst_model.cube, outdir / name, fragments=(".nc", ".zarr"))
    assert listing(outdir) == []


def test_output_folder_missing(sst_model, tmp_path):
    impute_fails(sst_model, sst_model.cube, tmp_path / "no" / "o.nc", fragments=("does not exist",))
    assert not (tmp_path / "no").exists()


@pytest.mark.parametrize("extra", [[], ["--samples", "3", "--save-samples"], ["--no-model"]])
def test_cube_without_gaps_is_copied_through(sst_model, tmp_path, outdir, extra):
    """No gap at all: a notice, exit 0, and the input written through (zero spread); without
    --model nothing is trained."""
    ds = tiny_cube_dataset(12, 16, 16, "none", 1.0, seed=4)
    inp = write_cube(ds, tmp_path / "full.nc")
    model = [] if extra == ["--no-model"] else ["--model", sst_model.model]
    args = [a for a in extra if a != "--no-model"]
    res = run_cli("impute", inp, outdir / "o.nc", *model, *args, *CPU)
    assert "no gap to fill" in res.stderr and "training" not in res.stderr
    out = open_any(outdir / "o.nc")
    assert np.array_equal(out["sst_filled"].values, ds["sst"].values)
    assert (out["sst_imputed_flag"].values == 0).all()
    assert "no gap to fill" in out["sst_filled"].attrs["comment"], "the comment does not say how gaps were filled"
    if args:
        assert (out["sst_std"].values == 0).all() and out.sizes["sample"] == 3


def test_model_trained_on_other_variables(sst_model, tmp_path, outdir):
    inp = write_cube(tiny_cube_dataset(12, 16, 16, "cloud", 0.6, var="chl"), tmp_path / "chl.nc")
    impute_fails(sst_model, inp, outdir / "o.nc", fragments=("trained on sst", "chl", "leave out --model"))
    assert listing(outdir) == []


def test_model_trained_on_other_units(sst_model, tmp_path, outdir):
    inp = write_cube(tiny_cube_dataset(12, 16, 16, "cloud", 0.6, units="K"), tmp_path / "k.nc")
    impute_fails(sst_model, inp, outdir / "o.nc", fragments=("'K'", "degC"))
    assert listing(outdir) == []


def test_model_on_a_grid_with_another_spacing(sst_model, tmp_path, outdir):
    inp = write_cube(tiny_cube_dataset(12, 16, 16, "cloud", 0.6, spacing=0.5), tmp_path / "coarse.nc")
    impute_fails(sst_model, inp, outdir / "o.nc", fragments=("grid spacing", "0.5", "0.25"))
    assert listing(outdir) == []


def test_file_shorter_than_the_model_window(sst_model, tmp_path, outdir):
    inp = write_cube(tiny_cube_dataset(2, 16, 16, "pixel", 0.6), tmp_path / "short.nc")
    impute_fails(sst_model, inp, outdir / "o.nc", fragments=("3 time steps", "has 2"))
    assert listing(outdir) == []


def test_model_not_found(sst_model, tmp_path, outdir):
    res = run_cli("impute", sst_model.cube, outdir / "o.nc", "--model", tmp_path / "nomodel", *CPU,
                  expect_ok=False)
    assert_one_error_line(res, "not found")
    assert listing(outdir) == []


def test_input_with_infinite_values_when_training(tmp_path, tiny_preset):
    ds = tiny_cube_dataset(12, 16, 16, "cloud", 0.6)
    ds["sst"][0, 0, 0] = np.inf
    inp = write_cube(ds, tmp_path / "inf.nc")
    res = run_cli("train", inp, "--preset", tiny_preset, "--out", tmp_path / "m", *CPU, expect_ok=False)
    assert_one_error_line(res, "infinite")


def test_input_with_infinite_values_when_imputing(sst_model, tmp_path, outdir):
    ds = sst_model.ds.copy(deep=True)
    ds["sst"][0, 0, 0] = np.inf
    inp = write_cube(ds, tmp_path / "inf.nc")
    impute_fails(sst_model, inp, outdir / "o.nc", fragments=("infinite",))


def test_resume_with_nothing_to_resume(sst_model, tmp_path):
    model = tmp_path / "m"
    res = run_cli("train", sst_model.cube, "--preset", sst_model.preset, "--out", model, "--resume", *CPU,
                  expect_ok=False)
    assert_one_error_line(res, "nothing to resume", "--resume")
    assert not model.exists()


def test_train_into_an_existing_model_needs_overwrite(sst_model, tmp_path):
    model = tmp_path / "m"
    model.mkdir()
    (model / "model.yaml").write_text("x: 1\n")
    res = run_cli("train", sst_model.cube, "--preset", sst_model.preset, "--out", model, *CPU, expect_ok=False)
    assert_one_error_line(res, "already holds a model", "--overwrite")
    assert listing(model) == ["model.yaml"]


def test_unknown_preset_train(sst_model, tmp_path):
    res = run_cli("train", sst_model.cube, "--preset", "nosuch", "--out", tmp_path / "m", *CPU, expect_ok=False)
    assert_one_error_line(res, "preset 'nosuch' not found", "quick")
    assert not (tmp_path / "m").exists()


def test_unknown_preset_impute_without_model(sst_model, outdir, tmp_path, monkeypatch):
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    res = run_cli("impute", sst_model.cube, outdir / "o.nc", "--preset", "nosuch", *CPU, expect_ok=False)
    # the 'training first' notice comes before the error: the error is the last line
    lines = res.stderr.strip().splitlines()
    assert res.exit_code == 2 and lines[-1].startswith("impute-cli: error: preset 'nosuch' not found")
    assert listing(outdir) == [] and listing(scratch) == []


def test_bad_preset_file_is_one_line(sst_model, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("train:\n  stpes: 3\n")
    res = run_cli("train", sst_model.cube, "--preset", bad, "--out", tmp_path / "m", *CPU, expect_ok=False)
    assert_one_error_line(res, "stpes")


def test_out_of_range_option(sst_model, tmp_path):
    res = run_cli("train", sst_model.cube, "--preset", sst_model.preset, "--out", tmp_path / "m",
                  "--context-ratio", "1.5", *CPU, expect_ok=False)
    assert_one_error_line(res, "--context-ratio must be in (0, 1]")  # the option's name, not the preset key's
    assert res.exit_code == 2
    assert not (tmp_path / "m").exists()


def test_empirical_on_gapless_data(tmp_path, tiny_preset):
    inp = write_cube(tiny_cube_dataset(12, 16, 16, "none", 1.0), tmp_path / "full.nc")
    res = run_cli("train", inp, "--preset", tiny_preset, "--out", tmp_path / "m", "--mask-pattern", "empirical",
                  *CPU, expect_ok=False)
    assert_one_error_line(res, "no gaps", "mixed")


def test_interrupted_impute_writes_nothing(sst_model, outdir, monkeypatch):
    import impute_cli.inference.impute as imp

    def interrupt(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(imp, "write_atomic", interrupt)
    res = run_cli("impute", sst_model.cube, outdir / "o.nc", "--model", sst_model.model, *CPU, expect_ok=False)
    assert res.exit_code == 130
    assert res.stderr.strip() == "impute-cli: error: interrupted; no output was written"
    assert listing(outdir) == []


def test_refused_training_leaves_no_model_folder(tmp_path, monkeypatch):
    """A file refused by train (all NaN) leaves no empty folder under models/."""
    import numpy as np
    from impute_cli.testing import tiny_cube_dataset, write_cube
    ds = tiny_cube_dataset(6, 16, 16, "pixel", 0.7)
    var = list(ds.data_vars)[0]
    ds[var] = ds[var] * np.nan
    inp = write_cube(ds, tmp_path / "allnan.nc")
    monkeypatch.chdir(tmp_path)
    res = run_cli("train", inp, "--quiet", "--device", "cpu", expect_ok=False)
    assert_one_error_line(res, "no observed value")
    assert not (tmp_path / "models").exists()


def test_overwrite_never_deletes_a_folder_that_is_not_a_model(tmp_path):
    from impute_cli.testing import tiny_cube_dataset, write_cube
    inp = write_cube(tiny_cube_dataset(6, 16, 16, "pixel", 0.7), tmp_path / "in.nc")
    precious = tmp_path / "project"
    precious.mkdir()
    (precious / "notes.txt").write_text("keep me")
    res = run_cli("train", inp, "--out", precious, "--overwrite", "--quiet", expect_ok=False)
    assert_one_error_line(res, "not an impute-cli model")
    assert (precious / "notes.txt").read_text() == "keep me"


def test_demo_into_a_file_is_an_error(tmp_path):
    target = tmp_path / "afile"
    target.write_text("x")
    res = run_cli("demo", target, expect_ok=False)
    assert_one_error_line(res, "is a file")
    assert target.read_text() == "x"


@pytest.mark.parametrize("args, fragment", [
    (["evaluate", "x.nc", "--holdout", "foo"], "--holdout"),
    (["evaluate"], "Missing argument"),
    (["impute", "x.nc"], "Missing argument 'OUT'"),
    (["train", "x.nc", "--steps", "0"], "--steps"),
    (["impute", "x.nc", "o.nc", "--bogus"], "No such option: --bogus"),
    (["confidence", "x.nc", "o.nc", "--level", "abc"], "--level"),
])
def test_usage_errors_are_one_line(args, fragment):
    res = run_cli(*args, expect_ok=False)
    assert res.exit_code == 2
    line = assert_one_error_line(res, fragment)
    assert "--help" in line


def _reordered(kind: str):
    ds = tiny_cube_dataset(12, 16, 16, "cloud", 0.6, seed=4)
    if kind == "lat repeated":
        lat = ds.lat.values.copy()
        lat[3] = lat[5]
        return ds.assign_coords(lat=lat)
    if kind == "lat out of order":
        lat = ds.lat.values.copy()
        lat[[3, 4]] = lat[[4, 3]]
        return ds.assign_coords(lat=lat)
    t = ds.time.values.copy()
    if kind == "time repeated":
        t[4] = t[3]
    else:  # time out of order
        t[[3, 4]] = t[[4, 3]]
    return ds.assign_coords(time=t)


@pytest.mark.parametrize("kind, fragments", [
    ("lat repeated", ("coordinate 'lat' repeats", "drop_duplicates")),
    ("lat out of order", ("coordinate 'lat' is not monotonic", "sortby('lat')")),
    ("time repeated", ("coordinate 'time' repeats", "drop_duplicates")),
    ("time out of order", ("coordinate 'time' is not increasing", "sorttimestamp")),
])
def test_unordered_or_repeated_coordinates(sst_model, tmp_path, outdir, kind, fragments):
    inp = write_cube(_reordered(kind), tmp_path / "bad.nc")
    impute_fails(sst_model, inp, outdir / "o.nc", fragments=fragments)
    assert listing(outdir) == []


def test_descending_latitude_is_not_refused(tmp_path, tiny_preset):
    ds = tiny_cube_dataset(12, 16, 16, "cloud", 0.6, seed=4).isel(lat=slice(None, None, -1))
    inp = write_cube(ds, tmp_path / "desc.nc")
    run_cli("impute", inp, tmp_path / "o.nc", "--preset", tiny_preset, "--train-steps", 3, *CPU)


def test_interrupted_demo_takes_back_what_it_made(tmp_path, monkeypatch):
    import impute_cli.demo as demo

    def interrupt(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(demo, "impute_file", interrupt)  # after the cube and the model are written
    res = run_cli("demo", tmp_path / "d", "--steps", 2, expect_ok=False)
    assert res.exit_code == 130 and "no output was written" in res.stderr
    assert not (tmp_path / "d").exists()


def test_interrupted_training_for_the_store_leaves_nothing_there(sst_model, tmp_path, tiny_preset, monkeypatch):
    import os

    import impute_cli.inference.impute as imp

    def interrupt(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(imp, "train_for", interrupt)
    res = run_cli("impute", sst_model.cube, tmp_path / "o.nc", "--preset", tiny_preset, *CPU, expect_ok=False)
    assert res.exit_code == 130
    assert listing(os.environ["IMPUTE_CLI_MODELS"]) == [] if os.path.isdir(os.environ["IMPUTE_CLI_MODELS"]) else True
    assert not (tmp_path / "o.nc").exists()
