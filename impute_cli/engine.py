"""engine: where the regions of an imputation are computed.

- By default, in this process, one region at a time (Dask's synchronous scheduler), so peak
  memory is one region's working set however large the cube; torch uses the machine's cores
  inside each region.
- `--workers N`: a local Dask cluster of N worker processes (one thread each); `--scheduler
  ADDRESS`: the workers of a running Dask cluster (they must see the input and output paths).
  Each worker receives the job (model weights, cube-wide figures) once and keeps the network
  it builds for every region it runs.

The regions, their seeds and the code that fills them are the same whichever engine runs
them, so the output is the same too (test_scale checks it byte for byte)."""

from __future__ import annotations

import contextlib
import sys
import time
from typing import Any, Callable, Iterator

import dask
from dask.callbacks import Callback
from tqdm import tqdm

from .errors import ImputeError

REGION_KEY = "impute-region"  # the name of every region task (keys are (name-token, index))
CONNECT_TIMEOUT = "20s"  # to reach a --scheduler


def check_scheduler_options(opts: Any) -> None:
    if opts.scheduler and opts.workers:
        raise ImputeError("give --scheduler ADDRESS (a running Dask cluster) or --workers N (a local one), not both")
    if opts.workers is not None and opts.workers < 1:
        raise ImputeError(f"--workers must be at least 1, got {opts.workers}")


class _RegionBar(Callback):
    """A tqdm bar over the region tasks of a local (synchronous) computation."""

    def __init__(self, name: str, bar: tqdm) -> None:
        super().__init__()
        self.name, self.bar = name, bar

    def _posttask(self, key, result, dsk, state, worker_id) -> None:  # noqa: ANN001 (dask's signature)
        if isinstance(key, tuple) and key[0] == self.name:
            self.bar.update(1)


def _regions_done(name: str, dask_scheduler=None) -> int:  # noqa: ANN001 (runs on the scheduler)
    group = dask_scheduler.task_groups.get(name)
    if group is None:
        return 0
    return sum(group.states.get(s, 0) for s in ("memory", "released", "forgotten"))


@contextlib.contextmanager
def compute_engine(scheduler: str | None, workers: int | None, n_regions: int, name: str,
                   progress: bool, log: Callable[[str], None]) -> Iterator[Callable[[Any], None]]:
    """Yields `run(store)`: computes a dask collection (the writer's store) on the chosen engine,
    with a progress bar over the `n_regions` region tasks named `name`."""
    bar_args = dict(total=n_regions, desc="impute regions", file=sys.stderr, disable=not progress,
                    dynamic_ncols=True)
    if not scheduler and not workers:
        def run_local(store: Any) -> None:
            with dask.config.set(scheduler="synchronous"), tqdm(**bar_args) as bar, _RegionBar(name, bar):
                dask.compute(store)
        yield run_local
        return

    try:
        from distributed import Client, LocalCluster
    except ImportError:  # pragma: no cover - distributed is a dependency
        raise ImputeError("--scheduler and --workers need dask's 'distributed' package; pip install distributed") from None
    cluster = None
    try:
        if workers:
            cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                                   dashboard_address=None, silence_logs=50)
            client = Client(cluster)
        else:
            client = Client(scheduler, timeout=CONNECT_TIMEOUT)
    except (OSError, TimeoutError, ValueError) as e:
        if cluster is not None:
            cluster.close()
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        where = f"the Dask scheduler at '{scheduler}'" if scheduler else f"a local cluster of {workers} workers"
        raise ImputeError(f"cannot start or reach {where} ({first}); check the address "
                          "(e.g. tcp://host:8786) or run without --scheduler") from None
    n = len(client.scheduler_info().get("workers", {}))
    log(f"running {n_regions} regions on {n} Dask workers ({client.scheduler.address})")

    def run_distributed(store: Any) -> None:
        fut = client.compute(store)
        with tqdm(**bar_args) as bar:
            while not fut.done():
                done = client.run_on_scheduler(_regions_done, name)
                bar.update(max(0, min(done, n_regions) - bar.n))
                time.sleep(0.5)
            fut.result()  # raises a region's error here
            bar.update(n_regions - bar.n)
    try:
        yield run_distributed
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
