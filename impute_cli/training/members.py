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
import itertools
import os
import shutil
from pathlib import Path
from typing import Callable

from impute_cli.checkpoint import TRAIN_STATE, ModelCard, load_card, save_card
from impute_cli.config import Preset
from impute_cli.errors import ImputeError, Interrupted
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


def train_folder(opts: TrainOptions, preset: Preset, data: tuple[list[str], int], ranks: Ranks,
                 first: Callable[[TrainOptions, tuple[str, ...]], Path],
                 further: Callable[[TrainOptions], Path]) -> Path:
    """The model folder `opts.out`: its first model trained by `first(opts, lines)` (which says the
    lines once the data are checked: how many models the folder holds), then its further models
    by `further(options)` (`add_members`). `data`: the file's channels and time steps. Under
    --resume a first model already written is kept (with --steps beyond its steps it trains on,
    and the further models are trained again to those steps). Interrupted before the first
    checkpoint, a folder this run made is removed and the message says to start again, since
    there is nothing to resume."""
    out, log = Path(str(opts.out)), opts.log if ranks.main else _silent
    if opts.resume and (card := finished(out, opts)) is not None:
        if card.channels != data[0] or int(card.grid["shape"][0]) != data[1]:
            raise ImputeError(f"the model in {out} was trained on other data ({', '.join(card.channels)}, "
                              f"{card.grid['shape'][0]} time steps); resume on the same file (and --var)")
        alone = members_for(card.preset, data[1], opts.members) <= 1
        log(f"{out} holds a finished model ({card.training.get('steps')} steps)"
            + ("; nothing to resume (--steps N trains on)" if alone else ""))
    else:
        made = not out.exists()
        try:
            first(opts, announce(preset, data[1], opts))
        except KeyboardInterrupt:
            if (out / TRAIN_STATE).exists():
                raise
            if ranks.main and made and out.is_dir() and not any(out.iterdir()):
                out.rmdir()  # made by this run, with nothing in it yet
            raise Interrupted("interrupted before the first checkpoint: this run kept nothing; run the same "
                              "command again (without --resume)") from None
    return add_members(out, opts, ranks, further)


def announce(preset: Preset, steps_in_time: int, opts: TrainOptions) -> tuple[str, ...]:
    """What to say before the first model trains: that the folder will hold several models, and why."""
    k, seed = members_for(preset, steps_in_time, opts.members), preset.train.seed
    if k <= 1:
        return ()
    why = () if opts.members is not None else (
        f"a short record ({steps_in_time} time steps, at most {SHORT_RECORD_WINDOWS} windows of "
        f"{preset.window.frames}): {k} models of training seeds {seed}-{seed + k - 1} are trained and their "
        "estimates averaged, as a model of a record this short depends on its seed (train --members 1 trains one)",)
    return (*why, f"training model 1 of {k} (seed {seed})")


def finished(out: Path, opts: TrainOptions) -> ModelCard | None:
    """The card of the model `train --resume` finds finished in `out` (its first model written, and
    no --steps beyond the steps it ran, early stops included), whose further models alone are left
    to train; else None."""
    if not (out / "model.yaml").exists():
        return None
    card = load_card(out)
    return card if opts.steps is None or opts.steps <= int(card.training.get("steps", 0)) else None


def add_members(out: Path, opts: TrainOptions, ranks: Ranks, train_one: Callable[[TrainOptions], Path]) -> Path:
    """Train the further models of the folder `out` (see the module's docstring) with
    `train_one(options)`, and record them in its card, each as soon as it is trained, so that
    `--resume` after an interruption keeps them and trains the rest. Returns `out`."""
    card = load_card(out)
    steps_in_time = int(card.grid["shape"][0])
    k = members_for(card.preset, steps_in_time, opts.members)
    log = opts.log if ranks.main else _silent
    kept = list(itertools.takewhile(lambda m: (out / m["weights"]).exists(), card.members or [])) \
        if opts.resume else []  # the models 2, 3, ... written in turn, up to the first one missing
    if k <= 1 or len(kept) >= k - 1:
        if opts.resume and card.members is not None and len(card.members) != max(k - 1, 0):
            card.members = kept[:k - 1] or None  # fewer --members than the folder holds
            if ranks.main:
                save_card(out, card)
            ranks.barrier()
        if opts.resume and k > 1:
            log(f"{out} holds all {k} models; nothing left to train (--steps N trains on)")
        return out
    if kept:
        log(f"{1 + len(kept)} of the {k} models are kept; training the others")
    seed = card.preset.train.seed
    entries = kept[:k - 1]
    for m in range(1 + len(entries), k):
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
        if ranks.main:  # recorded at once: an interruption keeps the models trained so far
            card.members = entries
            save_card(out, card)
        ranks.barrier()
    log(f"the {k} models are written to {out}")
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
