"""CPU threads: `--threads N` on every command, and the default (OMP_NUM_THREADS, else the
cores this process may use)."""

from __future__ import annotations

import os

import pytest
import torch
from conftest import assert_one_error_line, open_any, run_cli

from impute_cli.device import use_threads
from impute_cli.errors import ImputeError


@pytest.fixture
def restore_threads():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def test_threads_given_are_used(restore_threads):
    assert use_threads(1) == 1
    assert torch.get_num_threads() == 1


def test_default_is_omp_num_threads_when_set(restore_threads, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert use_threads(None) == 1


def test_default_is_the_cores_this_process_may_use(restore_threads, monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    assert use_threads(None) == len(os.sched_getaffinity(0))
    assert torch.get_num_threads() == len(os.sched_getaffinity(0))


def test_zero_threads_is_refused(restore_threads):
    with pytest.raises(ImputeError, match="--threads must be at least 1"):
        use_threads(0)


@pytest.mark.parametrize("command", ["train", "impute", "confidence", "evaluate", "demo"])
def test_every_command_takes_threads(command):
    res = run_cli(command, "--help")
    assert "--threads" in res.stdout


def test_threads_zero_on_the_command_line_is_one_line(sst_model, tmp_path):
    res = run_cli("impute", sst_model.cube, tmp_path / "o.nc", "--model", sst_model.model, "--threads", 0,
                  expect_ok=False)
    assert res.exit_code == 2
    assert_one_error_line(res, "--threads")
    assert not (tmp_path / "o.nc").exists()


def test_impute_with_one_thread_fills_the_gaps(sst_model, tmp_path, restore_threads):
    out = tmp_path / "o.nc"
    run_cli("impute", sst_model.cube, out, "--model", sst_model.model, "--threads", 1, "--device", "cpu", "--quiet")
    ds = open_any(out)
    assert int(ds["sst_filled"].isnull().sum()) < int(ds["sst"].isnull().sum())
    assert "--threads 1" in ds.attrs["history"]
