"""symmetry: the mirrors, transposes and time reversal a field's statistics may have ->
random ones applied to training windows (`augment_batch`, preset `train.augment`), and all of
them for the symmetric ensemble at imputation (`symmetries`, `move`, preset
`impute.symmetric`). One `move` does both, so training and imputation use the same maps."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import torch

from impute_cli.model.batches import TileBatch

Symmetry = tuple[bool, bool, bool, bool]  # flip rows, flip columns, transpose, reverse time


def symmetries(kinds: list[str], square: bool) -> list[Symmetry]:
    """The symmetries a model was trained under (preset `train.augment`): the mirrors (and, on
    a square window, transposes) for "flip", time reversal for "reverse_time". The identity
    comes first."""
    flips = [(fy, fx, tr) for tr in (False, True) for fy in (False, True) for fx in (False, True)
             if square or not tr] if "flip" in kinds else [(False, False, False)]
    times = (False, True) if "reverse_time" in kinds else (False,)
    return [(fy, fx, tr, rt) for rt in times for fy, fx, tr in flips]


def move(a: torch.Tensor, g: Symmetry, time_dim: int | None, inverse: bool = False) -> torch.Tensor:
    """a (..., h, w) under symmetry g (or its inverse): mirrors (and time reversal along
    `time_dim`, when the array has frames), then transpose."""
    fy, fx, tr, rt = g
    if inverse and tr:
        a = a.transpose(-1, -2)
    dims = [d for d, on in ((-2, fy), (-1, fx)) if on] + ([time_dim] if rt and time_dim is not None else [])
    if dims:
        a = a.flip(dims)
    if not inverse and tr:
        a = a.transpose(-1, -2)
    return a


def random_symmetry(kinds: list[str], square: bool, rng: np.random.Generator) -> Symmetry:
    """One symmetry of `kinds`, each of its parts with probability 1/2 (drawn in the order
    columns, rows, transpose when square, time)."""
    fx = fy = tr = rt = False
    if "flip" in kinds:
        fx = rng.random() < 0.5
        fy = rng.random() < 0.5
        tr = square and rng.random() < 0.5
    if "reverse_time" in kinds:
        rt = rng.random() < 0.5
    return fy, fx, tr, rt


def augment_batch(b: TileBatch, kinds: list[str], rng: np.random.Generator) -> TileBatch:
    """Each window of a training batch under a random symmetry of `kinds` (preset
    `train.augment`). Values, masks, land mask and climatology sums move together, so every
    invariant of the batch holds. A model trained on one short record otherwise learns that
    record's values by heart; these symmetries multiply the windows it sees by up to 16, and
    are only right for fields whose statistics do not change under them."""
    if not kinds:
        return b
    square = b.x_obs.shape[-1] == b.x_obs.shape[-2]
    xs, ms, vs, Ss, Ns = ([] for _ in range(5))
    for i in range(b.x_obs.shape[0]):
        g = random_symmetry(kinds, square, rng)
        xs.append(move(b.x_obs[i], g, 0).contiguous())  # frames are dim 0 of x_obs and M
        ms.append(move(b.M[i], g, 0).contiguous())
        vs.append(move(b.valid[i], g, None).contiguous())
        Ss.append(move(b.S[i], g, None).contiguous())
        Ns.append(move(b.N[i], g, None).contiguous())
    return replace(b, x_obs=torch.stack(xs), M=torch.stack(ms), valid=torch.stack(vs),
                   S=torch.stack(Ss), N=torch.stack(Ns))
