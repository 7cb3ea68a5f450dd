"""student: samples of windows from a distilled sampler, one network call per sample.

The student (made by `impute-cli distill`, see training.distill) is the model's network with
the same inputs as the single-step estimate at t = δ -- the known cells of the window as context,
every one of them ([CQ] eq. 9-10 with M_ctx = M) -- plus white noise z in the cells it fills,
where the network otherwise sees zeros (`Denoiser.forward`'s `noise`). It returns a sample of
those cells; the known cells are put back, as the multi-step sampler's last step does. Each
window's members draw z from the window's own generator, so, as with `solver.sample_windows`, a
window's samples do not depend on how windows are batched, and cells an earlier overlapping
window sampled (`fixed`) are known cells with each member's own values."""

from __future__ import annotations

import torch

from impute_cli.device import autocast
from impute_cli.model.batches import context_climatology
from impute_cli.model.denoiser import Denoiser


def student_call(student: Denoiser, xk: torch.Tensor, known: torch.Tensor, valid: torch.Tensor,
                 clim: torch.Tensor, z: torch.Tensor, delta: float, group: int = 1) -> torch.Tensor:
    """One sample per row: (b, F, C, h, w) known values `xk` where `known`, noise `z` elsewhere ->
    the sample, the known cells exactly as given. `group`: the rows come in groups of that many
    members of one window (their first guess is then filled once where they share it). No
    autocast or no_grad here: the caller's."""
    t = torch.full((len(xk),), delta, device=xk.device)
    a = student.schedule.alpha(t)[:, None, None, None, None]
    # the known cells as the single-step estimate sees them at t = δ (eq. 9 without its noise)
    x = student(a * xk, known, valid, t, clim, noise=z, group=group).float()
    return torch.where(known, xk, x)


@torch.no_grad()
def student_windows(student: Denoiser, x_obs: torch.Tensor, M: torch.Tensor, valid: torch.Tensor, *,
                    delta: float, generators: list[torch.Generator], samples: int, batch_size: int,
                    sums: tuple[torch.Tensor, torch.Tensor], fixed: torch.Tensor | None = None,
                    fixed_values: torch.Tensor | None = None) -> torch.Tensor:
    """`samples` samples of each of B windows, (B, N, F, C, h, w), normalised units; the
    arguments as `solver.sample_windows`'s."""
    dev = x_obs.device
    B, Fr, C, h, w = x_obs.shape
    N = samples
    per_call = max(1, batch_size // N)  # whole windows per network call
    out = []
    for j in range(0, B, per_call):
        gens = generators[j:j + per_call]
        own = torch.arange(j, j + len(gens), device=dev).repeat_interleave(N)  # member k: window j + k // N
        z = torch.cat([torch.randn((N, Fr, C, h, w), generator=g) for g in gens]).to(dev)
        Mb = M[own]
        known, xk = Mb.clone(), x_obs[own].clone()
        if fixed is not None and fixed_values is not None:
            fx = fixed[own]
            known |= fx
            xk = torch.where(fx, fixed_values[j:j + len(gens)].reshape(len(own), Fr, C, h, w).to(dev), xk)
        clim = context_climatology(sums[0][own], sums[1][own], xk, Mb, Mb)
        with autocast(dev, inference=True):
            out.append(student_call(student, xk, known, valid[own], clim, z, delta, group=N).cpu())
    return torch.cat(out).reshape(B, N, Fr, C, h, w)
