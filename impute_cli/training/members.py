"""members: a trained model folder on a short record -> the same folder holding further models of
the next training seeds, whose estimates imputation averages with its own (`inference.fill`).

On a record of at most SHORT_RECORD_WINDOWS windows in time, a model depends on its training
seed far more than on a longer one: the seed draws its starting weights, its training windows
and its validation slice, and on a record this short the slice is a few borrowed gap layouts,
which decide the blend's weights. Models of three seeds scored 6-11 % apart on such records
and under 1 % apart on longer ones, and the mean of their estimates was better than a single
model of any seed on average (docs/choices.md). So a short record trains the preset's
`train.short_record_members` models (seeds S, S + 1, ...), `train --members N` any record N.
Each further model is trained as `train --seed S+m` would train it, with its own validation
slice and blend, in a temporary folder inside the first model's; its weights are then kept as
member-<m>.pt and its blend, validation and training summary in the card's `members`."""

from __future__ import annotations

import dataclasses
import os
import shutil
from pathlib import Path
from typing import Callable

from impute_cli.checkpoint import ModelCard, load_card, save_card
from impute_cli.config import Preset
from impute_cli.options import TrainOptions
from impute_cli.training.distributed import Ranks
from impute_cli.training.validation import summary_line

SHORT_RECORD_WINDOWS = 2  # a record of at most this many windows in time is short
MEMBER = "member-{}.pt"


def members_for(preset: Preset, steps_in_time: int, requested: int | None = None) -> int:
    """How many models a record of `steps_in_time` time steps trains: `requested` (train
    --members) when given, else the preset's train.short_record_members on a short record, else 1."""
    if requested is not None:
        return requested
    return preset.train.short_record_members if steps_in_time <= SHORT_RECORD_WINDOWS * preset.window.frames else 1


def add_members(out: Path, opts: TrainOptions, ranks: Ranks, train_one: Callable[[TrainOptions], Path]) -> Path:
    """Train the further models of the folder `out` (see the module's docstring) with
    `train_one(options)`, and record them in its card. Returns `out`."""
    card = load_card(out)
    steps_in_time = int(card.grid["shape"][0])
    k = members_for(card.preset, steps_in_time, opts.members)
    if k <= 1:
        return out
    log = opts.log if ranks.main else _silent
    seed = card.preset.train.seed
    if opts.members is None:
        log(f"a short record ({steps_in_time} time steps, at most {SHORT_RECORD_WINDOWS} windows of "
            f"{card.preset.window.frames}): {k} models of training seeds {seed}-{seed + k - 1} are trained and their "
            "estimates averaged, as a model of a record this short depends on its seed (--members 1 trains one)")
    entries = []
    for m in range(1, k):
        tmp = out / f".member-{m}"
        if ranks.main:
            shutil.rmtree(tmp, ignore_errors=True)  # left by an interrupted run
        ranks.barrier()
        log(f"training model {m + 1} of {k} (seed {seed + m})")
        train_one(dataclasses.replace(opts, out=tmp, overwrite=True, resume=False, seed=seed + m, members=1,
                                      fingerprint=None, log=_silent))
        member = load_card(tmp)
        if ranks.main:
            os.replace(tmp / "weights.pt", out / MEMBER.format(m))
            shutil.rmtree(tmp)
        entries.append({"weights": MEMBER.format(m), "seed": seed + m, "normalisation": member.normalisation,
                        "mask_strategy": member.mask_strategy, "blend": member.blend,
                        "validation": member.validation, "training": member.training})
        log(f"model {m + 1} of {k}: " + (summary_line(member.validation) if member.validation else
                                          f"{member.training['steps']} steps, {member.training['seconds']:.0f} s"))
    if ranks.main:
        card.members = entries
        save_card(out, card)
    ranks.barrier()  # the folder is whole before any rank returns
    return out


def model_line(card: ModelCard) -> str:
    """What `impute` says of a model it uses: its validation line, and its further models'
    ratios when it has some."""
    line = summary_line(card.validation) if card.validation else "no validation slice"
    if card.members:
        ratios = [f"{m['validation']['ratio']:.3f}" for m in card.members if (m.get("validation") or {}).get("ratio")]
        line += (f"; the first of {1 + len(card.members)} models averaged"
                 + (f" (the others' ratios {', '.join(ratios)})" if ratios else ""))
    return line


def _silent(_msg: str) -> None:
    """The further models' own lines: the first model's have said the same."""
