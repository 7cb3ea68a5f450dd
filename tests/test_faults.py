"""Faults from outside: `train` killed with SIGKILL at several points resumes from its
last checkpoint and ends with the steps asked for; `impute` killed mid-run leaves nothing under
the output's name. Real processes, real signals."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from impute_cli.testing import tiny_cube_dataset, tiny_preset_yaml, write_cube

pytestmark = pytest.mark.skipif(os.name != "posix", reason="SIGKILL is POSIX")
STEPS = 300


def cli(*args: object) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "IMPUTE_CLI_MODELS": os.environ.get("IMPUTE_CLI_MODELS", "")}
    return subprocess.Popen([sys.executable, "-m", "impute_cli.cli", *map(str, args), "--device", "cpu", "--quiet"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)


def wait_for(path: Path, proc: subprocess.Popen, timeout: float = 60) -> bool:
    """True once `path` exists (the process still running), False if the process ended first."""
    t0 = time.time()
    while time.time() - t0 < timeout:
        if path.exists():
            return True
        if proc.poll() is not None:
            return False
        time.sleep(0.02)
    raise TimeoutError(path)


def test_train_killed_at_several_points_resumes_to_the_full_steps(tmp_path):
    cube = write_cube(tiny_cube_dataset(12, 16, 16, "cloud", 0.7, seed=3), tmp_path / "cube.nc")
    preset = tiny_preset_yaml(tmp_path / "p.yaml", train={"steps": STEPS, "checkpoint_every": 10, "batch_size": 2})
    model = tmp_path / "m"
    kills = 0
    for delay in (0.0, 0.3, 0.7):  # after the first checkpoint of each run, a little later each time
        proc = cli("train", cube, "--preset", preset, "--out", model, *(["--resume"] if kills else []))
        ck = model / "checkpoint.pt"
        before = ck.stat().st_mtime_ns if ck.exists() else None
        while proc.poll() is None and (not ck.exists() or ck.stat().st_mtime_ns == before):
            time.sleep(0.02)
        time.sleep(delay)
        if proc.poll() is not None:
            break  # finished before the kill: nothing more to test at this point
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        kills += 1
        assert not (model / "model.yaml").exists(), "a killed training must not look finished"
    assert kills >= 2, "training ended before it could be killed; raise STEPS"
    proc = cli("train", cube, "--preset", preset, "--out", model, "--resume")
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err.decode()
    card = yaml.safe_load((model / "model.yaml").read_text())
    assert card["training"]["steps"] == STEPS
    assert not [p.name for p in model.iterdir() if p.name.endswith(".tmp")], "temporary files left in the model"


def test_impute_killed_mid_run_leaves_no_output(tmp_path):
    cube = write_cube(tiny_cube_dataset(48, 32, 32, "cloud", 0.5, seed=1), tmp_path / "cube.nc")
    preset = tiny_preset_yaml(tmp_path / "p.yaml", train={"steps": 20})
    out = tmp_path / "out" / "filled.nc"
    out.parent.mkdir()
    proc = cli("impute", cube, out, "--preset", preset, "--samples", 16, "--steps", 50)
    time.sleep(4.0)  # inside training or sampling
    assert proc.poll() is None, proc.stderr.read().decode()
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not out.exists(), "a killed impute left a file under the output's name"
    assert not any(p.suffix == ".nc" for p in out.parent.rglob("*") if not p.name.startswith(".")), \
        "a file that looks like an output was left"


def test_impute_terminated_while_writing_removes_its_temporary_output(tmp_path):
    """SIGTERM (a batch system's time limit) while regions are being written: exit 130, one
    line, and nothing at all left beside the output, not even the hidden temporary folder."""
    cube = write_cube(tiny_cube_dataset(96, 32, 32, "cloud", 0.5, seed=2), tmp_path / "cube.nc")
    preset = tiny_preset_yaml(tmp_path / "p.yaml", train={"steps": 5})
    out = tmp_path / "out" / "filled.zarr"
    out.parent.mkdir()
    proc = cli("impute", cube, out, "--preset", preset, "--samples", 8, "--steps", 30, "--region-mb", 1)
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:  # until the first region is on disk
        if any(p.name.startswith(".filled.zarr.") for p in out.parent.iterdir()):
            break
        time.sleep(0.05)
    assert proc.poll() is None, proc.stderr.read().decode()
    time.sleep(0.5)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err.decode()
    assert err.decode().strip().splitlines()[-1].startswith("impute-cli: error: interrupted")
    assert list(out.parent.iterdir()) == []


def test_resume_removes_a_temporary_file_left_by_a_kill(tmp_path):
    """SIGKILL while a checkpoint is being written leaves '.checkpoint.pt.XXXX.tmp' (the rename
    never happened); the resumed training removes it."""
    from conftest import run_cli
    cube = write_cube(tiny_cube_dataset(12, 16, 16, "cloud", 0.7, seed=3), tmp_path / "cube.nc")
    preset = tiny_preset_yaml(tmp_path / "p.yaml", train={"steps": 4, "checkpoint_every": 2, "batch_size": 2})
    model = tmp_path / "m"
    run_cli("train", cube, "--preset", preset, "--out", model, "--device", "cpu", "--quiet")
    stale = model / ".checkpoint.pt.k1ll3d.tmp"
    stale.write_bytes(b"half a checkpoint")
    run_cli("train", cube, "--preset", preset, "--out", model, "--resume", "--steps", 6, "--device", "cpu", "--quiet")
    assert not stale.exists()
