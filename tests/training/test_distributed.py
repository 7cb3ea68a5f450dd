"""torchrun: `train` under `torchrun --nproc-per-node 2` (gloo, CPU) trains one model
with DDP, rank 0 alone writes it, a resume under torchrun ends where an uninterrupted run
does, and the model imputes. Real processes; a few seconds each."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import yaml

from conftest import check_filled_output, listing, open_any, run_cli
from impute_cli.checkpoint import load_state
from impute_cli.io.dataset import open_cube
from impute_cli.io.stats import compute_stats
from impute_cli.errors import ImputeError
from impute_cli.training.distributed import Ranks
from impute_cli.testing import tiny_cube_dataset, tiny_preset_yaml, write_cube
from impute_cli.options import TrainOptions
from impute_cli.training.train import step_seed, train_model

pytestmark = pytest.mark.skipif(not dist.is_available() or os.name != "posix",
                                reason="needs torch.distributed (gloo) and POSIX processes")


def torchrun(cwd: Path, *args: object) -> subprocess.CompletedProcess:
    """`torchrun --nproc-per-node 2 --standalone -m impute_cli.cli ARGS --device cpu --quiet`."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    for k in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(k, None)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--standalone",
           "-m", "impute_cli.cli", *map(str, args), "--device", "cpu", "--quiet"]
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=180)


def weights(model: Path) -> dict[str, torch.Tensor]:
    return torch.load(model / "weights.pt", map_location="cpu", weights_only=True)


@pytest.fixture
def cube(tmp_path):
    ds = tiny_cube_dataset(12, 16, 16, "cloud", 0.6, seed=8)
    return ds, write_cube(ds, tmp_path / "cube.nc")


def test_torchrun_trains_one_model_resumes_and_imputes(cube, tmp_path):
    ds, path = cube
    preset = tiny_preset_yaml(tmp_path / "p.yaml", train={"steps": 4, "checkpoint_every": 2, "batch_size": 4})
    model = tmp_path / "m"
    res = torchrun(tmp_path, "train", path, "--preset", preset, "--out", model)
    assert res.returncode == 0, res.stderr
    assert listing(tmp_path) == ["cube.nc", "m", "p.yaml"], "another folder was written"
    assert listing(model) == ["checkpoint.pt", "model.yaml", "weights.pt"]
    assert res.stderr.count("model written to") == 1, "only rank 0 talks"
    card = yaml.safe_load((model / "model.yaml").read_text())
    assert card["training"]["world_size"] == 2 and card["training"]["steps"] == 4
    # the ranks' shares of the streaming pass add up to the one-process statistics
    stats = compute_stats(open_cube(path))
    assert card["normalisation"]["mean"] == pytest.approx(list(stats.mean), rel=1e-9)
    assert card["normalisation"]["std"] == pytest.approx(list(stats.std), rel=1e-9)

    res = torchrun(tmp_path, "train", path, "--preset", preset, "--out", model, "--resume", "--steps", 7)
    assert res.returncode == 0, res.stderr
    assert res.stderr.count("resuming from step 4 of 7") == 1, res.stderr
    card = yaml.safe_load((model / "model.yaml").read_text())
    assert card["training"]["steps"] == 7 and card["training"]["world_size"] == 2
    assert load_state(model / "checkpoint.pt")["step"] == 7
    assert listing(model) == ["checkpoint.pt", "model.yaml", "weights.pt"]

    whole = tmp_path / "whole"  # the same 7 steps without a stop
    res = torchrun(tmp_path, "train", path, "--preset", preset, "--out", whole, "--steps", 7)
    assert res.returncode == 0, res.stderr
    a, b = weights(model), weights(whole)
    assert all(torch.equal(a[k], b[k]) for k in a), "the resumed run differs from the uninterrupted one"

    out = tmp_path / "filled.nc"
    run_cli("impute", path, out, "--model", model, "--device", "cpu", "--quiet")
    check_filled_output(ds, open_any(out), ["sst"])


def test_bad_input_under_torchrun_is_one_line_per_rank(tmp_path):
    res = torchrun(tmp_path, "train", tmp_path / "missing.nc", "--out", tmp_path / "m")
    assert res.returncode != 0
    errors = [ln for ln in res.stderr.splitlines() if ln.startswith("impute-cli: error:")]
    assert errors and all("does not exist" in ln for ln in errors) and len(errors) <= 2
    frames = [ln for ln in res.stderr.splitlines() if ln.strip().startswith('File "')]
    assert not [f for f in frames if "impute_cli" in f], "a traceback through impute-cli (torchrun's own is fine)"
    assert not (tmp_path / "m").exists()


def test_a_plain_run_has_no_process_group(cube, tmp_path, monkeypatch):
    for k in ("WORLD_SIZE", "RANK", "LOCAL_RANK"):
        monkeypatch.delenv(k, raising=False)
    preset = tiny_preset_yaml(tmp_path / "p.yaml", train={"steps": 1})
    train_model(cube[1], TrainOptions(preset=str(preset), out=tmp_path / "m", device="cpu", progress=False,
                                      log=lambda s: None))
    assert not dist.is_initialized()
    assert yaml.safe_load((tmp_path / "m" / "model.yaml").read_text())["training"]["world_size"] == 1


def test_step_seeds():
    one = Ranks()
    assert step_seed(3, 5, one) == [3, 5], "one process keeps the seeds it always had"
    two = [Ranks(rank=r, world_size=2) for r in (0, 1)]
    assert step_seed(3, 5, two[0]) != step_seed(3, 5, two[1])


@pytest.mark.parametrize("env, fragment", [
    ({"WORLD_SIZE": "2", "RANK": "0", "LOCAL_RANK": "0"}, "MASTER_ADDR is not set"),
    ({"WORLD_SIZE": "2", "RANK": "x", "LOCAL_RANK": "0"}, "not numbers"),
    ({"WORLD_SIZE": "2", "RANK": "2", "LOCAL_RANK": "0"}, "RANK must be in"),
])
def test_a_broken_torchrun_environment_is_one_line(monkeypatch, env, fragment):
    for k in ("MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(k, raising=False)
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    with pytest.raises(ImputeError, match=fragment) as e:
        Ranks.from_env(torch.device("cpu"))
    assert "\n" not in str(e.value)
    assert not dist.is_initialized()
