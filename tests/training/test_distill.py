"""The distilled sampler: `distill` adds a student to a model folder, `impute --samples` draws
with it (one network call a sample), `--sampler full` still gives the multi-step sampler's
samples, and the student's samples keep the output contract and are reproducible."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch
import yaml

from impute_cli.checkpoint import STUDENT, build_denoiser, load_model
from impute_cli.inference.student import student_windows
from impute_cli.training.distill import energy_score
from tests.conftest import assert_one_error_line, check_filled_output, open_any, run_cli

CPU = ("--device", "cpu", "--quiet")


@pytest.fixture(scope="module")
def distilled(sst_model, tmp_path_factory):
    """A copy of the session's tiny model with a student of a few steps."""
    m = tmp_path_factory.mktemp("distilled") / "model"
    shutil.copytree(sst_model.model, m)
    run_cli("distill", m, "--steps", 3, *CPU)
    return m


def test_distill_writes_the_student_and_says_so_in_the_card(distilled):
    assert (distilled / STUDENT).is_file()
    card = yaml.safe_load((distilled / "model.yaml").read_text())
    st = card["student"]
    assert st["network_calls"] == 1 and st["steps"] == 3 and st["teacher"]["solver"] in ("ddim", "dpm2m")
    assert np.isfinite(st["final_energy_score"])
    # by default half the model's width, trained afresh
    assert st["network"] == {"base_channels": 4}
    _, den = load_model(distilled)
    assert den.student_weights is not None
    assert set(den.student_weights) == set(den.net.state_dict())  # the same layers, fewer channels
    teacher = sum(v.numel() for v in den.net.state_dict().values())
    assert sum(v.numel() for v in den.student_weights.values()) < teacher / 2


def test_a_student_of_the_models_width_starts_as_its_copy(sst_model, tmp_path):
    m = tmp_path / "copy"
    shutil.copytree(sst_model.model, m)
    run_cli("distill", m, "--steps", 2, "--width", 8, *CPU)
    card, den = load_model(m)
    assert "network" not in card.student and card.student["lr"] == 2e-4
    # fine-tuned from the teacher: its weights moved, a little
    moved = [float((den.student_weights[k] - v).abs().max()) for k, v in den.net.state_dict().items()]
    assert 0 < max(moved) < 0.1


def test_impute_draws_with_the_student_and_full_with_the_teacher(distilled, sst_model, tmp_path):
    outs = {}
    for sampler in ("auto", "full"):
        out = tmp_path / f"{sampler}.nc"
        run_cli("impute", sst_model.cube, out, "--model", distilled, "--samples", 3, "--sampler", sampler,
                "--no-calibrate", *CPU)
        outs[sampler] = open_any(out)
        check_filled_output(sst_model.ds, outs[sampler], ["sst"])
    auto, full = outs["auto"], outs["full"]
    assert "sampler=student" in auto.attrs["impute_cli_sampler"]
    assert "distilled sampler" in auto["sst_std"].attrs["comment"]
    assert "sampler=student" not in full.attrs["impute_cli_sampler"]
    gaps = np.isnan(sst_model.ds["sst"].values)
    s_auto, s_full = auto["sst_std"].values[gaps], full["sst_std"].values[gaps]
    assert np.isfinite(s_auto).all() and (s_auto > 0).any()
    assert not np.allclose(s_auto, s_full)
    # the point estimate does not depend on where the samples come from
    np.testing.assert_array_equal(auto["sst_filled"].values, full["sst_filled"].values)


def test_impute_points_to_distill_only_where_the_solver_draws_by_default(distilled, sst_model, tmp_path):
    said = {}
    for name, model, sampler in (("plain", sst_model.model, "auto"), ("student", distilled, "auto"),
                                 ("full", distilled, "full")):
        r = run_cli("impute", sst_model.cube, tmp_path / f"{name}.nc", "--model", model, "--samples", 2,
                    "--sampler", sampler, "--no-calibrate", "--device", "cpu")
        said[name] = r.stderr
    assert "the 2 samples come from the multi-step solver, 7 network calls each" in said["plain"]
    assert f"'impute-cli distill {sst_model.model.resolve()}'" in said["plain"]
    # a model with a student draws with it; asking for the solver by name needs no advice
    assert "impute-cli distill" not in said["student"] and "impute-cli distill" not in said["full"]


def test_student_samples_are_reproducible(distilled, sst_model, tmp_path):
    a, b = tmp_path / "a.nc", tmp_path / "b.nc"
    for out in (a, b):
        run_cli("impute", sst_model.cube, out, "--model", distilled, "--samples", 2, "--save-samples", *CPU)
    da, db = open_any(a), open_any(b)
    np.testing.assert_array_equal(da["sst_sample"].values, db["sst_sample"].values)
    np.testing.assert_array_equal(da["sst_upper"].values, db["sst_upper"].values)


def test_a_second_distill_needs_overwrite(distilled, tmp_path):
    m = tmp_path / "m"
    shutil.copytree(distilled, m)
    before = (m / STUDENT).read_bytes()
    res = run_cli("distill", m, "--steps", 1, *CPU, expect_ok=False)
    assert_one_error_line(res, "already has a distilled sampler", "--overwrite")
    assert (m / STUDENT).read_bytes() == before


def test_student_windows_do_not_depend_on_the_batching(distilled):
    card, den = load_model(distilled)
    st = build_denoiser(card, student=True).eval()
    st.net.load_state_dict(den.student_weights)
    g = torch.Generator().manual_seed(0)
    B, Fr, C, h, w = 3, card.window[0], 1, 16, 16
    x = torch.randn((B, Fr, C, h, w), generator=g)
    M = torch.rand((B, Fr, C, h, w), generator=g) > 0.5
    valid = torch.ones((B, h, w), dtype=torch.bool)
    sums = (torch.zeros((B, C, h, w)), torch.zeros((B, C, h, w)))

    def draw(batch: int) -> torch.Tensor:
        gens = [torch.Generator().manual_seed(10 + i) for i in range(B)]
        return student_windows(st, x, M, valid, delta=1e-3, generators=gens, samples=2, batch_size=batch, sums=sums)

    one, many = draw(2), draw(64)
    torch.testing.assert_close(one, many)
    known = M[:, None].expand_as(one)
    assert torch.equal(one[known], x[:, None].expand_as(one)[known])  # the known cells exactly
    assert (one[:, 0] != one[:, 1])[~M].any()  # members differ where they fill


def test_energy_score_prefers_the_right_distribution():
    g = torch.Generator().manual_seed(0)
    shape = (64, 2, 1, 8, 8)
    fill = torch.ones(shape, dtype=torch.bool)
    y = torch.randn(shape, generator=g)
    right = energy_score(torch.randn(shape, generator=g), torch.randn(shape, generator=g), y, fill)
    narrow = energy_score(0.3 * torch.randn(shape, generator=g), 0.3 * torch.randn(shape, generator=g), y, fill)
    shifted = energy_score(torch.randn(shape, generator=g) + 1, torch.randn(shape, generator=g) + 1, y, fill)
    assert right < narrow and right < shifted
    # a frame with nothing to fill does not count
    fill[0, 1] = False
    s1, s2 = torch.randn(shape, generator=g), torch.randn(shape, generator=g)
    s1[0, 1] += 100
    assert energy_score(s1, s2, y, fill) < 10


def test_energy_score_is_per_frame():
    """The norm runs over one frame's cells: a student too narrow in one frame and too wide in
    the next is told apart from the right one (over a whole window the two nearly cancel: 0.018
    apart, against 0.13 per frame), and one frame's few cells are not diluted by another's many."""
    g = torch.Generator().manual_seed(1)
    shape = (256, 4, 1, 6, 6)
    fill = torch.ones(shape, dtype=torch.bool)
    y = torch.randn(shape, generator=g)
    right = energy_score(torch.randn(shape, generator=g), torch.randn(shape, generator=g), y, fill)
    # a draw narrow in one frame and wide in the next: per window the spread averages out, per frame it does not
    scale = torch.tensor([0.2, 1.8, 0.2, 1.8]).view(1, 4, 1, 1, 1)
    uneven = energy_score(scale * torch.randn(shape, generator=g), scale * torch.randn(shape, generator=g), y, fill)
    assert uneven > right + 0.08
    # a frame with one cell to fill weighs as much as a frame with 36
    fill[:, 0] = False
    fill[:, 0, 0, 0, 0] = True
    s1, s2 = torch.randn(shape, generator=g), torch.randn(shape, generator=g)
    s1[:, 0, 0, 0, 0] += 10
    s2[:, 0, 0, 0, 0] += 10
    assert energy_score(s1, s2, y, fill) > right + 1.5


def test_progress_comes_a_bar_a_phase_and_the_log_says_which_steps_are_slower(sst_model, tmp_path, monkeypatch):
    """The steps that run the solver cost several times the others: one bar a phase keeps each
    bar's rate and time left true."""
    import impute_cli.training.distill as distill
    from impute_cli.options import DistillOptions
    from impute_cli.progress import LogBar
    bars = []

    def record(total, desc, unit="it", enabled=True, initial=0, leave=True):
        bars.append(LogBar(total, desc, unit, initial, disable=True))
        return bars[-1]
    monkeypatch.setattr(distill, "progress_bar", record)
    m = tmp_path / "m"
    shutil.copytree(sst_model.model, m)
    said = []
    distill.distill_model(m, DistillOptions(steps=5, device="cpu", log=said.append))
    assert [(b.desc, b.total, b.n) for b in bars] == [("distill, point estimate", 2, 2), ("distill, samples", 3, 3)]
    assert "2 steps learning the model's point estimate, then 3 fitting its solver's samples " \
        "(each runs the solver, 7 network calls: slower steps)" in said[0]


def test_an_interrupted_distillation_resumes_to_the_same_student(sst_model, tmp_path, monkeypatch):
    """Ctrl-C keeps the last checkpoint and says how to go on; --resume then ends with the bits
    an uninterrupted run writes, and a plain rerun does not throw the finished steps away."""
    import impute_cli.training.distill as distill
    from impute_cli.checkpoint import DISTILL_STATE
    from impute_cli.options import DistillOptions
    whole, cut = tmp_path / "whole", tmp_path / "cut"
    for m in (whole, cut):
        shutil.copytree(sst_model.model, m)
    distill.distill_model(whole, DistillOptions(steps=6, device="cpu", progress=False, log=lambda s: None))
    real, calls = distill.sample_batch, []

    def stop_at_step_4(*a, **k):
        calls.append(1)
        if len(calls) == 5:
            raise KeyboardInterrupt
        return real(*a, **k)
    monkeypatch.setattr(distill, "sample_batch", stop_at_step_4)
    monkeypatch.setattr(distill, "CHECKPOINT_EVERY", 2)
    res = run_cli("distill", cut, "--steps", 6, *CPU, expect_ok=False)
    assert res.exit_code == 130
    assert res.stderr.strip().splitlines()[-1] == "impute-cli: error: interrupted; continue from the last checkpoint with the same command and --resume"
    assert (cut / DISTILL_STATE).is_file() and not (cut / STUDENT).exists()
    assert yaml.safe_load((cut / "model.yaml").read_text())["student"] is None
    monkeypatch.setattr(distill, "sample_batch", real)
    assert_one_error_line(run_cli("distill", cut, "--steps", 6, *CPU, expect_ok=False),
                          "holds an unfinished distillation", "--resume")
    assert_one_error_line(run_cli("distill", cut, "--steps", 6, "--width", 8, "--resume", *CPU, expect_ok=False),
                          "continues the distillation as it began", "width 4 (now the model's own)")
    (cut / f".{DISTILL_STATE}.x1.tmp").write_bytes(b"cut short by a kill")
    res = run_cli("distill", cut, "--resume", "--device", "cpu")  # --steps: the run's own
    assert "resuming from step 4 of 6" in res.stderr
    assert (cut / STUDENT).read_bytes() == (whole / STUDENT).read_bytes()
    assert not (cut / DISTILL_STATE).exists() and not list(cut.glob(".*.tmp"))
    done = [yaml.safe_load((m / "model.yaml").read_text())["student"] for m in (whole, cut)]
    assert done[0]["final_energy_score"] == done[1]["final_energy_score"] and done[1]["steps"] == 6
    assert_one_error_line(run_cli("distill", cut, "--resume", *CPU, expect_ok=False), "nothing to resume")


def test_the_python_function_distils_too(distilled, tmp_path):
    import impute_cli
    m = tmp_path / "m"
    shutil.copytree(distilled, m)
    model = impute_cli.distill(m, steps=1, overwrite=True, device="cpu")
    assert model.card.student["steps"] == 1


def test_windows_without_gaps_get_cells_hidden_like_training():
    from impute_cli.masks.context_query import ContextSampler
    from impute_cli.training.distill import known_cells
    g = torch.Generator().manual_seed(0)
    B, Fr, C, h, w = 2, 4, 1, 8, 8
    x = torch.randn((B, Fr, C, h, w), generator=g)
    valid = torch.ones((B, h, w), dtype=torch.bool)
    M = torch.ones((B, Fr, C, h, w), dtype=torch.bool)
    M[1] = torch.rand((Fr, C, h, w), generator=g) > 0.5  # window 1 has gaps of its own
    S, N = (x * M).sum(1), M.float().sum(1)
    known, S2, N2 = known_cells(M, valid, x, S, N, ContextSampler("pixel", [4, 8]), 0.7, g)
    hidden = M & ~known
    assert hidden[0].any() and not hidden[1].any()  # only the gap-free window loses cells
    assert (known <= M).all()
    torch.testing.assert_close(S2, S - (x * hidden).sum(1))  # hidden values leave the climatology input
    torch.testing.assert_close(N2, N - hidden.float().sum(1))


def test_width_is_checked_before_any_work(sst_model, tmp_path):
    from impute_cli.checkpoint import load_card
    from impute_cli.errors import ImputeError
    from impute_cli.training.distill import student_width
    card = load_card(sst_model.model)
    assert student_width(card, None) == 4 and student_width(card, 8) is None and student_width(card, 16) == 16
    with pytest.raises(ImputeError, match="at least 4"):
        student_width(card, 2)
    import dataclasses
    dit = dataclasses.replace(card, preset=dataclasses.replace(
        card.preset, network=dataclasses.replace(card.preset.network, arch="dit")))
    assert student_width(dit, None) is None  # a DiT's student is a copy of its network
    with pytest.raises(ImputeError, match="U-Net"):
        student_width(dit, 4)
    res = run_cli("distill", sst_model.model, "--width", 2, *CPU, expect_ok=False)
    assert res.exit_code == 2  # typer's range check: one line, nothing written
