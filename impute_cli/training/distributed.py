"""distributed: the processes of a `torchrun` job, and what passes between them while training.

`torchrun --nproc-per-node K` starts K copies of the command with WORLD_SIZE, RANK and
LOCAL_RANK (and MASTER_ADDR/PORT) in the environment. `Ranks.from_env` turns them into a
process group -- NCCL when the device is CUDA (each rank on cuda:LOCAL_RANK), gloo on CPU --
and into nothing at all outside torchrun (WORLD_SIZE unset or 1): a plain run has no process
group and every collective below is then a no-op, so the training code has one path."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import numpy as np
import torch

from impute_cli.errors import ImputeError

ENV_VARS = ("WORLD_SIZE", "RANK", "LOCAL_RANK")


@dataclass
class Ranks:
    """This process's place in the job: rank 0 of 1 outside torchrun."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    owns_group: bool = False  # this object started the process group, so it ends it

    @property
    def main(self) -> bool:
        """Rank 0: the one that writes the model folder and talks to the user."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @classmethod
    def from_env(cls, device: torch.device) -> "Ranks":
        """The job described by torchrun's environment, its process group started; `device`
        is the device asked for (a CUDA device becomes this rank's cuda:LOCAL_RANK)."""
        env = {k: os.environ.get(k) for k in ENV_VARS}
        if env["WORLD_SIZE"] in (None, "", "1"):
            return cls(device=device)
        try:
            world, rank, local = (int(env[k] or "") for k in ENV_VARS)
        except ValueError:
            raise ImputeError(f"torchrun's environment is incomplete or not numbers ({_show(env)}); "
                              "start several processes with torchrun --nproc-per-node K") from None
        if not 0 <= rank < world or local < 0:
            raise ImputeError(f"RANK must be in [0, WORLD_SIZE) ({_show(env)}); start the job with torchrun")
        import torch.distributed as dist
        if not dist.is_available():
            raise ImputeError("this torch build has no torch.distributed; train in one process (without torchrun)")
        if device.type == "cuda":
            if local >= torch.cuda.device_count():
                raise ImputeError(f"LOCAL_RANK {local} but only {torch.cuda.device_count()} CUDA device(s) here; "
                                  "use --nproc-per-node at most the number of GPUs")
            device = torch.device("cuda", local)
            torch.cuda.set_device(device)
        owns = not dist.is_initialized()  # a caller's own group is used, and left to it to end
        if owns:
            for k in ("MASTER_ADDR", "MASTER_PORT"):
                if not os.environ.get(k):
                    raise ImputeError(f"WORLD_SIZE is {world} but {k} is not set; start the job with torchrun")
            dist.init_process_group("nccl" if device.type == "cuda" else "gloo", rank=rank, world_size=world)
        return cls(rank, world, local, device, owns)

    def barrier(self) -> None:
        """Wait for every rank (a no-op in one process)."""
        if self.distributed:
            import torch.distributed as dist
            if self.device.type == "cuda":
                dist.barrier(device_ids=[self.device.index])
            else:
                dist.barrier()

    def sum(self, a: np.ndarray) -> np.ndarray:
        """The element-wise sum of `a` over the ranks, the same bits on every rank (the
        all-reduced result is broadcast from rank 0, whatever the backend's reduction order)."""
        if not self.distributed:
            return a
        import torch.distributed as dist
        t = torch.from_numpy(np.ascontiguousarray(a)).to(self.device)
        dist.all_reduce(t)
        dist.broadcast(t, 0)
        return t.cpu().numpy().reshape(a.shape)

    def mean(self, x: float) -> float:
        """The mean of a number over the ranks."""
        if not self.distributed:
            return x
        return float(self.sum(np.array([x], "float64"))[0]) / self.world_size

    def close(self) -> None:
        """End the process group this object started (none outside torchrun)."""
        if self.owns_group:
            import torch.distributed as dist
            if dist.is_initialized():
                dist.destroy_process_group()
            self.owns_group = False


def _show(env: dict[str, str | None]) -> str:
    return ", ".join(f"{k}={v if v is not None else 'unset'}" for k, v in env.items())
