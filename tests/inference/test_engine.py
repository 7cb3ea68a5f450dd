"""The engine on a local Dask cluster when a region fails: one line naming what happened, and no
task of the computation still running once the error reaches the caller (so the caller can
remove its temporary output and nothing recreates it)."""

from __future__ import annotations

import os
import time

import dask
import pytest

from impute_cli.inference.engine import compute_engine
from impute_cli.errors import ImputeError

NAME = "impute-region-test"


def _fail(path: str) -> int:
    for _ in range(150):  # once the writing task has started (so that there is a task to stop)
        if os.path.exists(path):
            break
        time.sleep(0.1)
    raise ValueError("boom in region")


WRITES = 300  # 0.2 s apart: a minute, far longer than stopping the cluster takes (a few seconds)


def _keep_writing(path: str) -> int:
    for _ in range(WRITES):  # like a store task writing chunks into the temporary output
        with open(path, "a") as f:
            f.write("x")
        time.sleep(0.2)
    return 1


def _die(x: int) -> int:
    os._exit(1)


def _run(tasks: list, workers: int = 2) -> None:
    with compute_engine(None, workers, len(tasks), NAME, False, lambda m: None) as run:
        run(dask.delayed(list)(tasks))


def test_region_error_is_one_line_and_the_cluster_is_stopped(tmp_path):
    out = tmp_path / "chunks.txt"
    sizes = []
    with pytest.raises(ImputeError) as e:
        with compute_engine(None, 2, 2, NAME, False, lambda m: None) as run:
            try:
                run(dask.delayed(list)([dask.delayed(_fail)(str(out)), dask.delayed(_keep_writing)(str(out))]))
            finally:  # where write_atomic removes its temporary output, inside the engine
                assert out.is_file(), "the writing task never started: nothing was there to stop"
                sizes.append(out.stat().st_size)
                time.sleep(2)  # the writing task would still be writing, had it not been stopped
                sizes.append(out.stat().st_size)
    msg = str(e.value)
    assert "\n" not in msg and "ValueError: boom in region" in msg
    assert sizes[0] < WRITES, "the writing task ran to its end: the test did not see it stopped"
    assert sizes[0] == sizes[1]


def test_dead_worker_is_one_line(tmp_path):
    with dask.config.set({"distributed.scheduler.allowed-failures": 0}):
        with pytest.raises(ImputeError) as e:
            _run([dask.delayed(_die)(1)], workers=1)
    msg = str(e.value)
    assert "\n" not in msg and "worker died" in msg and "--region-mb" in msg
