"""device: CUDA when available (bf16 autocast), else CPU (bf16 inference where the CPU has it);
`--device` overrides. CPU threads:
the cores this process may use, or `--threads`."""

from __future__ import annotations

import contextlib
import os

import torch

from impute_cli.errors import ImputeError, OptionError


def pick_device(name: str = "auto") -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(name)
    except RuntimeError:
        raise ImputeError(f"device '{name}' is not known; use auto, cpu, cuda or cuda:N") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ImputeError(f"device '{name}' asked for but CUDA is not available here; use --device cpu")
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise ImputeError(f"device '{name}' asked for but this machine has {torch.cuda.device_count()} CUDA "
                          f"device(s); use cuda:0 to cuda:{torch.cuda.device_count() - 1}")
    return dev


def native_bf16() -> bool:
    """Whether this CPU computes bf16 in hardware (AVX512-BF16 or AMX); elsewhere torch
    emulates it, slower than float32."""
    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(getattr(torch.cpu, name, lambda: False)() for name in checks)


def autocast(device: torch.device, inference: bool = False, train: bool = False) -> contextlib.AbstractContextManager:
    """Mixed precision (bf16) on CUDA. On a CPU with native bf16, for inference and for `train`'s
    steps: the network's forward pass runs 1.9x faster in bf16 there and a training step 1.27x
    (its backward pass gains little), at the same accuracy on the defaults' rows (docs/choices.md);
    distillation keeps float32. Elsewhere full precision."""
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    if (inference or train) and native_bf16():
        return torch.autocast("cpu", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def use_threads(threads: int | None = None) -> int:
    """Set torch's CPU threads: `threads`, or by default OMP_NUM_THREADS when set (torchrun sets
    it per process), else the cores this process may use (its CPU affinity, which batch systems
    and `taskset` restrict). Returns the count."""
    if threads is None:
        env = os.environ.get("OMP_NUM_THREADS", "")
        if env.isdigit() and int(env) > 0:
            threads = int(env)
        elif hasattr(os, "sched_getaffinity"):  # Linux
            threads = len(os.sched_getaffinity(0))
        else:
            threads = os.cpu_count() or 1
    if threads < 1:
        raise OptionError(f"--threads must be at least 1, got {threads}")
    torch.set_num_threads(threads)
    return threads
