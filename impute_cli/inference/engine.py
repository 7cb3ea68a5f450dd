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
import os
import time
from typing import Any, Callable, Iterator

import dask
from dask.callbacks import Callback

from impute_cli.errors import ImputeError, OptionError, first_line
from impute_cli.progress import progress_bar

REGION_KEY = "impute-region"  # the name of every region task (keys are (name-token, index))
CONNECT_TIMEOUT = "20s"  # to reach a --scheduler
STOP_WAIT_S = 60.0  # after a failure, how long to wait for a shared cluster's running tasks to end


def check_scheduler_options(opts: Any) -> None:
    if opts.scheduler and opts.workers:
        raise OptionError("give --scheduler ADDRESS (a running Dask cluster) or --workers N (a local one), not both")
    if opts.workers is not None and opts.workers < 1:
        raise OptionError(f"--workers must be at least 1, got {opts.workers}")
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:  # K copies would each write the whole output
        raise ImputeError("impute does not run under torchrun (that is for train); run it as one process, "
                          "with --workers N or --scheduler ADDRESS to spread the regions")


class _RegionBar(Callback):
    """A tqdm bar over the region tasks of a local (synchronous) computation."""

    def __init__(self, name: str, bar: Any) -> None:
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
                   progress: bool, log: Callable[[str], None],
                   torch_threads: int = 1) -> Iterator[Callable[[Any], None]]:
    """Yields `run(store)`: computes a dask collection (the writer's store) on the chosen engine,
    with a progress bar over the `n_regions` region tasks named `name`."""
    def new_bar() -> Any:
        return progress_bar(n_regions, "impute regions", "region", enabled=progress)
    if not scheduler and not workers:
        def run_local(store: Any) -> None:
            with dask.config.set(scheduler="synchronous"), new_bar() as bar, _RegionBar(name, bar):
                dask.compute(store)
        yield run_local
        return

    try:
        from distributed import Client, LocalCluster
    except ImportError:  # pragma: no cover - distributed is a dependency
        raise OptionError("--scheduler and --workers need dask's 'distributed' package; pip install distributed") from None
    cluster = client = None
    try:
        try:
            if workers:
                cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                                       dashboard_address=None, silence_logs=50)
                client = Client(cluster)
            else:
                client = Client(scheduler, timeout=CONNECT_TIMEOUT)
            n = len(client.scheduler_info().get("workers", {}))
        except Exception as e:  # OSError, TimeoutError, ValueError, and whatever a cluster's start raises
            if scheduler:
                raise ImputeError(f"cannot start or reach the Dask scheduler at '{scheduler}' ({first_line(e)}); "
                                  "check the address (e.g. tcp://host:8786) or run without --scheduler") from None
            raise ImputeError(f"cannot start or reach a local cluster of {workers} workers ({first_line(e)}); "
                              "try fewer --workers, or run without --workers") from None
        log(f"running {n_regions} region{'s' * (n_regions != 1)} on {n} Dask workers ({client.scheduler.address})")
        if workers:
            _warn_oversubscribed(workers, torch_threads, log)

        def run_distributed(store: Any) -> None:
            fut = client.compute(store)
            try:
                with new_bar() as bar:
                    while not fut.done():
                        done = client.run_on_scheduler(_regions_done, name)
                        bar.update(max(0, min(done, n_regions) - bar.n))
                        time.sleep(0.5)
                    fut.result()  # raises a region's error here
                    bar.update(n_regions - bar.n)
            except BaseException as e:
                # Stop the computation before the caller removes its temporary output: a
                # worker still running a task could otherwise write into it afterwards.
                _stop(client, cluster, fut, store)
                if isinstance(e, ImputeError) or not isinstance(e, Exception):  # e.g. Ctrl-C
                    raise
                raise _region_error(e) from None
        yield run_distributed
    finally:
        if client is not None:
            client.close()
        if cluster is not None:
            cluster.close()


def _warn_oversubscribed(workers: int, threads: int, log: Callable[[str], None]) -> None:
    """Every worker runs torch with the planning process's thread count (see
    impute.region_outputs); say so when the workers then ask for more threads than there are cores."""
    cores = os.cpu_count() or 1
    if workers * threads > cores:
        log(f"note: {workers} workers x {threads} torch threads each is more than the {cores} cores here; "
            f"for speed set OMP_NUM_THREADS={max(1, cores // workers)} (the output then equals a "
            "single-process run with the same OMP_NUM_THREADS)")


def _region_error(e: Exception) -> ImputeError:
    """A failed region as one line: a dead worker (most often out of memory) or the task's error."""
    first = first_line(e)
    if type(e).__name__ == "KilledWorker":
        return ImputeError(f"a Dask worker died while running a region ({first}); most often it ran out of "
                           "memory: use a smaller --region-mb or --samples, or give the workers more memory")
    if isinstance(e, MemoryError):
        return ImputeError("a Dask worker ran out of memory; use a smaller --region-mb or --samples")
    return ImputeError(f"a region failed on a Dask worker ({type(e).__name__}: {first}); "
                       "check that the workers run this impute-cli version and can read the input")


def _executing(names: set[str], dask_worker=None) -> int:  # noqa: ANN001 (runs on each worker)
    """How many tasks of this computation the worker is running now."""
    def name(key: Any) -> str:
        return str(key[0] if isinstance(key, tuple) else key)
    return sum(name(ts.key) in names for ts in dask_worker.state.executing)


def _stop(client: Any, cluster: Any, fut: Any, store: Any, wait_s: float = STOP_WAIT_S) -> None:
    """Cancel the computation and make sure no worker still runs a task of it: a local cluster
    is shut down (its workers are ours); on a shared cluster, wait until the running tasks end."""
    with contextlib.suppress(Exception):
        client.cancel(fut, force=True)
    if cluster is not None:
        with contextlib.suppress(Exception):
            client.close()
            cluster.close()
        return
    names = {str(n) for n in store.__dask_graph__().layers}
    deadline = time.monotonic() + wait_s
    with contextlib.suppress(Exception):
        while time.monotonic() < deadline and sum(client.run(_executing, names).values()):
            time.sleep(0.5)
