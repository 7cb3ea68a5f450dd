"""evaluate: holdout patterns, scores, the end-to-end command (table, --json, --report, --keep),
agreement with the independent ../shared/tools/holdout.py, and its bad inputs."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from conftest import DATA_DIR, assert_one_error_line, open_any, real_file, run_cli
from impute_cli.errors import ImputeError
from impute_cli.masks.holdout import HOLDOUTS, make_holdout
from impute_cli.evaluation.scores import (BLOCK, block_index, block_words, crps_ensemble, point_scores, ratio_interval,
                                          sample_scores)
from impute_cli.synthetic import gap_mask
from impute_cli.testing import land_mask, tiny_cube_dataset, write_cube

SHAPE = (24, 30, 40)


def _observed(pattern: str = "cloud") -> tuple[np.ndarray, np.ndarray]:
    valid = ~land_mask(*SHAPE[1:])
    return gap_mask(SHAPE, pattern, 0.6, seed=3) & valid[None], valid


# --- holdout patterns --------------------------------------------------------------------------

@pytest.mark.parametrize("pattern", HOLDOUTS)
@pytest.mark.parametrize("fraction", [0.2, 0.5, 0.8])
def test_holdout_hides_the_fraction_of_observed_cells_only(pattern, fraction):
    obs, valid = _observed()
    h = make_holdout(obs, valid, pattern, fraction, seed=1)
    assert not (h.hidden & ~obs).any(), "a hidden cell was not observed"
    assert not (h.hidden & ~valid[None]).any(), "a land cell was hidden"
    assert abs(h.hidden.sum() / obs.sum() - fraction) < 0.01
    assert h.fraction_hidden == pytest.approx(h.hidden.sum() / obs.sum())


def test_holdout_is_reproducible_and_changes_with_the_seed():
    obs, valid = _observed()
    a = make_holdout(obs, valid, "cloud", 0.3, seed=5).hidden
    assert np.array_equal(a, make_holdout(obs, valid, "cloud", 0.3, seed=5).hidden)
    assert not np.array_equal(a, make_holdout(obs, valid, "cloud", 0.3, seed=6).hidden)


def test_station_holdout_hides_whole_series():
    obs = np.ones(SHAPE, bool)
    h = make_holdout(obs, np.ones(SHAPE[1:], bool), "station", 0.25, seed=0).hidden
    per_cell = h.sum(0)
    assert set(np.unique(per_cell)) <= {0, SHAPE[0]}, "a station was hidden only part of the time"


def test_block_holdout_hides_rectangles_lasting_several_steps():
    obs = np.ones(SHAPE, bool)
    h = make_holdout(obs, np.ones(SHAPE[1:], bool), "block", 0.3, seed=0).hidden
    # neighbouring cells share their state far more often than for pixels
    same = (h[:, 1:] == h[:, :-1]).mean()
    assert same > 0.9
    assert (h[1:] == h[:-1]).mean() > 0.7


@pytest.mark.parametrize("fraction", [0.05, 0.3, 0.6])
def test_cloud_and_empirical_holdouts_are_clustered(fraction):
    """Also when the donors' gaps are much larger than the fraction needs: clouds shrink from
    their edges, they are never thinned to scattered pixels."""
    obs, valid = _observed("cloud")
    for pattern in ("cloud", "empirical"):
        h = make_holdout(obs, valid, pattern, fraction, seed=0).hidden
        both = obs[:, 1:] & obs[:, :-1]
        p_neighbour = (h[:, 1:] & h[:, :-1] & both).sum() / max((h[:, 1:] & both).sum(), 1)
        assert p_neighbour > 0.7, (pattern, p_neighbour)  # pixel holdout: about 0.3


def test_empirical_holdout_borrows_gaps_of_other_time_steps():
    obs, valid = _observed("cloud")
    h = make_holdout(obs, valid, "empirical", 0.1, seed=0).hidden
    missing_somewhere = (~obs).any(0)
    assert (h & missing_somewhere[None]).sum() / h.sum() > 0.95


def test_empirical_holdout_on_station_series_borrows_outages_in_time():
    """On a (time, station) series the empirical holdout hides outages (runs in time at one
    station, borrowed from another station), as the series' own gaps are, not one-step holes:
    the hidden cells lie in runs of missing steps as long as the real outages or longer."""
    from impute_cli.evaluation.gp import gap_mask
    obs = gap_mask((600, 1, 16), "series", 0.6, seed=0)
    valid = np.ones((1, 16), bool)

    def run_at(miss):  # (T, S) -> length of the missing run each cell lies in
        out = np.zeros(miss.shape, int)
        for s_ in range(miss.shape[1]):
            edges = np.flatnonzero(np.diff(np.r_[0, miss[:, s_].astype(int), 0]))
            for a0, b0 in zip(edges[::2], edges[1::2]):
                out[a0:b0, s_] = b0 - a0
        return out

    real = run_at(~obs[:, 0])[~obs[:, 0]].mean()
    for seed in (0, 1):
        h = make_holdout(obs, valid, "empirical", 0.2, seed=seed).hidden[:, 0]
        assert abs(h.sum() / obs.sum() - 0.2) < 0.01
        assert run_at(h | ~obs[:, 0])[h].mean() >= real, "as long as the real outages"
        frames = make_holdout(obs, valid, "empirical", 0.2, seed=seed, outages=False).hidden[:, 0]
        assert run_at(frames | ~obs[:, 0])[frames].mean() < 0.5 * real, "borrowing time steps: short holes"
    with pytest.raises(ImputeError, match="no station of this file has one"):
        make_holdout(np.ones((50, 1, 16), bool), valid, "empirical", 0.2)


def test_holdout_errors():
    obs, valid = _observed()
    for f in (0.0, 1.0, -0.1, 1.5):
        with pytest.raises(ImputeError, match="--fraction must lie strictly between 0 and 1"):
            make_holdout(obs, valid, "pixel", f)
    with pytest.raises(ImputeError, match="leaves nothing observed"):
        make_holdout(obs, valid, "pixel", 0.99999)
    with pytest.raises(ImputeError, match="no partly observed time step"):
        make_holdout(np.ones(SHAPE, bool), valid, "empirical", 0.2)
    with pytest.raises(ImputeError, match="hides no cell"):
        make_holdout(obs, valid, "pixel", 1e-7)


# --- scores --------------------------------------------------------------------------------------

def test_crps_matches_its_definition():
    rng = np.random.default_rng(0)
    s, y = rng.normal(size=(7, 50)), rng.normal(size=50)
    brute = np.abs(s - y).mean(0) - 0.5 * np.abs(s[:, None] - s[None]).mean((0, 1))
    assert crps_ensemble(s, y) == pytest.approx(brute.mean(), rel=1e-12)
    # a point ensemble: CRPS = MAE
    assert crps_ensemble(np.repeat(y[None] + 1.0, 4, 0), y) == pytest.approx(1.0)


def test_point_scores():
    t = np.array([1.0, 2.0, 3.0, 4.0])
    s = point_scores(t + 0.5, t)
    assert s["rmse"] == pytest.approx(0.5) and s["bias"] == pytest.approx(0.5) and s["corr"] == pytest.approx(1.0)
    assert np.isnan(point_scores(np.array([1.0, np.nan]), np.array([1.0, 2.0]))["rmse"]), "a NaN must count as a miss"


def test_the_ratio_interval_brackets_the_ratio_and_widens_when_errors_come_in_blocks():
    rng = np.random.default_rng(0)
    hidden = rng.random((20, 64, 64)) < 0.4
    where = np.argwhere(hidden)
    blocks = block_index(where)
    n = len(where)
    other = rng.normal(size=n)
    ratio = lambda e: float(np.sqrt(np.mean(e**2) / np.mean(other**2)))  # noqa: E731
    iid = 0.8 * rng.normal(size=n)
    a = ratio_interval(iid, other, blocks, seed=1)
    assert a["low"] < ratio(iid) < a["high"] < 1, "a model 20 % better on every cell is not a tie"
    assert a == ratio_interval(iid, other, blocks, seed=1), "the same seed gives the same interval"
    assert a["blocks"] == 20 * (64 // BLOCK) ** 2 and a["block_steps"] == 1
    # the same per-cell spread, but one error per block (a cloud, a front): far fewer independent
    # errors, so a wider interval
    _, block = np.unique((where[:, 0] * 4 + where[:, 1] // BLOCK) * 4 + where[:, 2] // BLOCK, return_inverse=True)
    blocky = 0.8 * rng.normal(size=block.max() + 1)[block]
    b = ratio_interval(blocky, other, blocks, seed=1)
    assert b["high"] - b["low"] > 3 * (a["high"] - a["low"])
    same = ratio_interval(other, other, blocks)
    assert same["low"] == same["high"] == pytest.approx(1.0)
    assert ratio_interval(np.where(np.arange(n) == 5, np.nan, iid), other, blocks) is None, "a missing estimate"
    assert ratio_interval(iid[:0], other[:0], blocks) is None


def test_station_series_are_resampled_in_runs_of_time_steps():
    """On a (time, station) series a block is BLOCK time steps by BLOCK stations: an outage at a
    station lasts many steps, so one-step blocks would count its errors as independent."""
    rng = np.random.default_rng(0)
    hidden = rng.random((200, 1, 40)) < 0.3
    where = np.argwhere(hidden)
    grid, series = block_index(where), block_index(where, series=True)
    assert grid.steps == 1 and series.steps == BLOCK
    assert series.index.max() + 1 == -(-200 // BLOCK) * -(-40 // BLOCK)
    same_block = series.index[:, None] == series.index[None, :]
    t, x = where[:, 0], where[:, 2]
    assert np.array_equal(same_block, (t[:, None] // BLOCK == t[None] // BLOCK)
                          & (x[:, None] // BLOCK == x[None] // BLOCK))
    err, other = rng.normal(size=len(where)), rng.normal(size=len(where))
    iv = ratio_interval(err, other, series)
    assert block_words(iv) == f"{BLOCK} time steps × {BLOCK} stations"
    assert block_words(ratio_interval(err, other, grid)) == f"1 time step × {BLOCK} × {BLOCK} cells"


def test_sample_scores_of_a_calibrated_ensemble_cover_their_level():
    rng = np.random.default_rng(1)
    n, B = 4000, 64
    centre = np.zeros(n)
    truth = rng.normal(size=n)
    samples = rng.normal(size=(B, n))
    region = np.repeat(np.arange(200), n // 200)
    s = sample_scores(samples, centre, truth, region, (0.5, 0.9))
    assert abs(s["levels"]["0.9"]["cell_coverage"] - 0.9) < 0.03
    assert abs(s["levels"]["0.5"]["cell_coverage"] - 0.5) < 0.04
    assert abs(s["levels"]["0.9"]["region_coverage"] - 0.9) < 0.08
    too_narrow = sample_scores(0.3 * samples, centre, truth, region, (0.9,))
    assert too_narrow["levels"]["0.9"]["cell_coverage"] < 0.5
    # with the cells' places, each coverage gets its block-bootstrap interval
    where = np.stack([region, np.arange(n) % 20 // 4, np.arange(n) % 20 % 4], 1)  # 200 steps of 5 x 4 cells
    s = sample_scores(samples, centre, truth, region, (0.5, 0.9), block_index(where))
    for lv in ("0.5", "0.9"):
        lo, hi = s["levels"][lv]["cell_coverage_interval"]
        assert lo < s["levels"][lv]["cell_coverage"] < hi and hi - lo < 0.06
    assert "cell_coverage_interval" not in too_narrow["levels"]["0.9"], "no places, no interval"
    # the intervals as impute writes them: the level's half-widths times the calibration factor
    same = sample_scores(samples, centre, truth, region, (0.9,), block_index(where),
                         calibrated=(0.9, 1.0))["calibrated"]
    assert same["cell_coverage"] == s["levels"]["0.9"]["cell_coverage"]
    assert same["cell_coverage_interval"] == s["levels"]["0.9"]["cell_coverage_interval"]
    widened = sample_scores(0.3 * samples, centre, truth, region, (0.9,), block_index(where),
                            calibrated=(0.9, 1 / 0.3))
    assert widened["calibrated"]["cell_coverage"] == pytest.approx(s["levels"]["0.9"]["cell_coverage"], abs=1e-3)
    assert widened["calibrated"]["mean_width"] == pytest.approx(s["levels"]["0.9"]["mean_width"], rel=1e-6)


# --- the command -----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def land_cube(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("evaluate")
    return write_cube(tiny_cube_dataset(12, 16, 20, "cloud", 0.7, seed=4, with_land=True), d / "cube.nc")


def test_evaluate_end_to_end(land_cube, tiny_preset, tmp_path):
    before = land_cube.read_bytes()
    res = run_cli("evaluate", land_cube, "--preset", tiny_preset, "--holdout", "cloud", "--fraction", 0.3,
                  "--samples", 4, "--json", "--report", tmp_path / "rep", "--keep", tmp_path / "keep",
                  "--device", "cpu", "--quiet")
    assert land_cube.read_bytes() == before, "evaluate modified its input"
    rep = json.loads(res.stdout, parse_constant=lambda c: pytest.fail(f"non-strict JSON constant {c}"))
    v = rep["variables"]["sst"]
    assert v["ranking"][0] in v["methods"] and "impute-cli" in v["ranking"]
    assert set(v["methods"]) >= {"impute-cli", "climatology", "temporal_linear", "laplace", "spline", "telea", "ns_inpaint",
                                 "eof_dineof", "gp_kriging"}
    for m, s in v["methods"].items():
        assert s["nan_left"] == 0, m
        assert s["cells"] == v["cells"] == rep["holdout"]["cells_hidden"]
    model = v["methods"]["impute-cli"]
    assert model["samples"] == 4 and model["crps"] > 0
    assert set(model["levels"]) == {"0.5", "0.9"}
    for c in model["levels"].values():
        lo, hi = c["cell_coverage_interval"]
        assert 0 <= lo <= c["cell_coverage"] <= hi <= 1
    # the 90 % intervals calibrated as impute --samples writes them by default
    cal = model["calibrated"]
    assert cal["level"] == 0.9 and cal["factor"] > 0 and cal["mean_width"] > 0
    assert 0 <= cal["cell_coverage_interval"][0] <= cal["cell_coverage"] <= cal["cell_coverage_interval"][1] <= 1
    assert rep["holdout"]["fraction_hidden"] == pytest.approx(0.3, abs=0.01)
    # the report folder: Markdown naming its figures, and the figures as PNG
    md = (tmp_path / "rep" / "report.md").read_text()
    for png in ("maps.png", "rmse_by_method.png", "reliability.png"):
        assert f"({png})" in md
        assert (tmp_path / "rep" / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "| 1 |" in md
    # the model against the best other method: the ratio inside its bootstrap interval
    best = next(m for m in v["ranking"] if m != "impute-cli")
    iv = v["ratio_interval"]
    assert v["best_baseline"] == best
    assert v["rmse_vs_best_baseline"] == pytest.approx(model["rmse"] / v["methods"][best]["rmse"], abs=1e-4)
    assert iv["low"] <= v["rmse_vs_best_baseline"] <= iv["high"] and iv["level"] == 0.9 and iv["blocks"] > 1
    assert f"against the best other method, {best}" in md
    assert "calibrated as `impute` writes it" in md
    # the kept files: the filled output keeps every observed cell of the held-out input
    gappy, truth, filled = (open_any(tmp_path / "keep" / f) for f in ("gappy.nc", "truth.nc", "filled.nc"))
    assert (tmp_path / "keep" / "model" / "model.yaml").is_file() and rep["model"]["kept_model"]
    obs = np.isfinite(gappy["sst"].values)
    assert np.array_equal(filled["sst_filled"].values[obs], gappy["sst"].values[obs])
    hidden = ~truth["observed"].values & np.isfinite(truth["sst"].values)
    assert hidden.sum() == rep["holdout"]["cells_hidden"]
    err = filled["sst_filled"].values[hidden] - truth["sst"].values[hidden]
    assert np.sqrt(np.mean(err**2)) == pytest.approx(model["rmse"], rel=1e-5)


def test_evaluate_table_on_the_terminal(land_cube, tiny_preset):
    res = run_cli("evaluate", land_cube, "--preset", tiny_preset, "--holdout", "pixel", "--fraction", 0.2,
                  "--baseline", "laplace", "--baseline", "climatology", "--device", "cpu", "--quiet")
    lines = res.stdout.splitlines()
    assert "pixel holdout" in lines[0]
    ranked = [ln.split()[1] for ln in lines if ln.strip()[:2].strip().isdigit()]
    assert sorted(ranked) == ["climatology", "impute-cli", "laplace"]
    ratio = next(ln for ln in lines if "RMSE ratio" in ln)
    assert ratio.split()[0] == "impute-cli" and "90 % interval" in ratio and "blocks" in ratio


def test_evaluate_agrees_with_the_independent_holdout_tool(land_cube, tiny_preset, tmp_path):
    tool = DATA_DIR.parent / "tools" / "holdout.py"
    if not tool.is_file():
        pytest.skip("../shared/tools/holdout.py not available")
    res = run_cli("evaluate", land_cube, "--preset", tiny_preset, "--holdout", "block", "--fraction", 0.3,
                  "--baseline", "temporal_linear", "--keep", tmp_path / "keep", "--json", "--device", "cpu", "--quiet")
    ours = json.loads(res.stdout)["variables"]["sst"]["methods"]
    spec = importlib.util.spec_from_file_location("shared_holdout", tool)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    theirs = mod.score(str(tmp_path / "keep"), str(tmp_path / "keep" / "filled.nc"), "sst")
    assert theirs["observed_preserved"] and theirs["tool_nan_in_gaps"] == 0
    assert theirs["rmse"]["tool"] == pytest.approx(ours["impute-cli"]["rmse"], rel=1e-5)
    assert theirs["rmse"]["temporal_linear"] == pytest.approx(ours["temporal_linear"]["rmse"], rel=1e-4)


def test_evaluate_with_a_model_trained_on_the_same_file_says_so(sst_model):
    res = run_cli("evaluate", sst_model.cube, "--model", sst_model.model, "--baseline", "laplace",
                  "--json", "--device", "cpu", "--quiet")
    rep = json.loads(res.stdout)
    assert "optimistic" in rep["model"]["note"]
    # --context-ratio reaches the model's imputation (and only it: the baselines score the same)
    dense = json.loads(run_cli("evaluate", sst_model.cube, "--model", sst_model.model, "--baseline", "laplace",
                               "--context-ratio", 1, "--json", "--device", "cpu", "--quiet").stdout)
    a, b = rep["variables"]["sst"]["methods"], dense["variables"]["sst"]["methods"]
    assert a["laplace"]["rmse"] == b["laplace"]["rmse"] and a["impute-cli"]["rmse"] != b["impute-cli"]["rmse"]


def test_evaluate_on_a_real_cloudy_file(tiny_preset, tmp_path):
    path = real_file("alboranSST_small.nc")
    res = run_cli("evaluate", path, "--preset", tiny_preset, "--holdout", "empirical", "--fraction", 0.2,
                  "--baseline", "laplace", "--json", "--device", "cpu", "--quiet")
    rep = json.loads(res.stdout)
    v = rep["variables"]["SST"]
    assert v["methods"]["impute-cli"]["nan_left"] == 0
    assert v["units"] and v["cells"] > 1000


@pytest.mark.parametrize("args, fragments", [
    (["--fraction", "0"], ["--fraction must lie strictly between 0 and 1"]),
    (["--fraction", "1.2"], ["--fraction must lie strictly between 0 and 1"]),
    (["--fraction", "0.999999"], ["leaves nothing observed", "lower --fraction"]),
    (["--samples", "4", "--level", "1.5"], ["--level must be strictly between 0 and 1"]),
    (["--samples", "1"], ["--samples must be at least 2"]),
    (["--baseline", "magic"], ["unknown --baseline 'magic'"]),
    (["--context-ratio", "0"], ["--context-ratio must be in (0, 1]"]),
])
def test_evaluate_bad_options(land_cube, tiny_preset, args, fragments):
    res = run_cli("evaluate", land_cube, "--preset", tiny_preset, *args, "--quiet", expect_ok=False)
    assert_one_error_line(res, *fragments)


def test_evaluate_empirical_on_complete_data(tmp_path, tiny_preset):
    cube = write_cube(tiny_cube_dataset(8, 16, 16, "none"), tmp_path / "complete.nc")
    res = run_cli("evaluate", cube, "--holdout", "empirical", "--preset", tiny_preset, "--quiet", expect_ok=False)
    assert_one_error_line(res, "no partly observed time step", "--holdout cloud")


def test_evaluate_with_a_model_for_other_variables(sst_model, tmp_path):
    ds = tiny_cube_dataset(12, 16, 16, "cloud", 0.6, var="chl")
    cube = write_cube(ds, tmp_path / "chl.nc")
    res = run_cli("evaluate", cube, "--model", sst_model.model, "--quiet", expect_ok=False)
    assert_one_error_line(res, "trained on sst")


def test_evaluate_station_holdout_on_series(tiny_preset, tmp_path):
    from impute_cli.testing import tiny_series_dataset
    cube = write_cube(tiny_series_dataset(T=48, S=12), tmp_path / "series.nc")
    res = run_cli("evaluate", cube, "--preset", tiny_preset, "--holdout", "station", "--fraction", 0.25,
                  "--baseline", "temporal_linear", "--report", tmp_path / "rep", "--json", "--device", "cpu",
                  "--quiet")
    rep = json.loads(res.stdout)
    v = rep["variables"]["tas"]
    assert v["methods"]["impute-cli"]["nan_left"] == 0 and v["cells"] > 0
    assert (tmp_path / "rep" / "maps.png").is_file()


def test_evaluate_scores_each_variable_of_a_multilevel_cube(tiny_preset, tmp_path):
    ds = tiny_cube_dataset(12, 16, 16, "cloud", 0.7, nvars=2, level_dim=True, var=["t", "q"])
    cube = write_cube(ds, tmp_path / "multi.zarr")
    res = run_cli("evaluate", cube, "--preset", tiny_preset, "--holdout", "block", "--fraction", 0.3,
                  "--baseline", "laplace", "--baseline", "eof_dineof", "--samples", 3, "--json", "--device", "cpu",
                  "--quiet")
    rep = json.loads(res.stdout)
    assert set(rep["variables"]) == {"t", "q"}
    for v in ("t", "q"):
        r = rep["variables"][v]
        assert sorted(r["ranking"]) == ["eof_dineof", "impute-cli", "laplace"]
        assert r["cells"] > 0 and r["methods"]["impute-cli"]["samples"] == 3
        # regions are per time step, over both levels of the variable
        assert r["methods"]["impute-cli"]["levels"]["0.9"]["regions"] <= 12


def test_the_kept_model_scores_the_same_holdout_again(land_cube, tiny_preset, tmp_path):
    """--keep keeps the model trained on the held-out cube; --model with it, the same holdout and
    seed, scores the same cells with the same model: same RMSE, and no 'optimistic' note."""
    first = json.loads(run_cli("evaluate", land_cube, "--preset", tiny_preset, "--holdout", "cloud", "--fraction",
                               0.3, "--baseline", "laplace", "--keep", tmp_path / "k", "--json", "--device", "cpu",
                               "--quiet").stdout)
    again = json.loads(run_cli("evaluate", land_cube, "--model", tmp_path / "k" / "model", "--holdout", "cloud",
                               "--fraction", 0.3, "--baseline", "laplace", "--json", "--device", "cpu",
                               "--quiet").stdout)
    assert "note" not in again["model"]
    a, b = (r["variables"]["sst"]["methods"]["impute-cli"]["rmse"] for r in (first, again))
    assert b == pytest.approx(a, rel=1e-6)
    # the kept model names the kept held-out cube as its training data (what `distill` reads), not
    # a file of the run's temporary folder
    card = yaml.safe_load((tmp_path / "k" / "model" / "model.yaml").read_text())
    assert Path(card["training"]["data"]) == (tmp_path / "k" / "gappy.nc").resolve()
