"""store: the model store, where `impute` keeps the models it trains and finds them again.

A model trained by `impute IN OUT` without `--model` goes to `models/<data>-<preset>` (or under
`$IMPUTE_CLI_MODELS`), with a fingerprint in its card: a hash of the variables, the grid, the
training settings and the data's content (the per-cell sums, counts and sums of squares of
the observed values, which one streaming pass gives). The next `impute` on the same data with
the same settings finds that model by its fingerprint and uses it instead of training again.
`train` records the same fingerprint when its model goes to the store with settings `impute`
can ask for (preset, mask pattern, steps, seed), so `train DATA` then `impute DATA OUT` trains once.
`impute-cli models` lists the store; `models show NAME` prints a card; `models rm NAME`."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from impute_cli.checkpoint import CARD, card_summary, load_card, resolve_model_dir
from impute_cli.config import Preset, load_preset, models_home
from impute_cli.errors import ImputeError
from impute_cli.io.cube import Cube
from impute_cli.io.dataset import open_cube
from impute_cli.io.stats import Summary, summarise
from impute_cli.options import TrainOptions


def fingerprint(cube: Cube, summary: Summary, settings: dict[str, Any]) -> str:
    """sha256 of what a trained model depends on: variables, grid, settings, content."""
    h = hashlib.sha256()
    preset = load_preset(settings["preset"]).to_dict()
    meta = {"variables": cube.variables, "channels": cube.channels, "shape": list(cube.grid.shape),
            "static_mask": cube.static_mask_var, "settings": settings, "preset": preset}
    h.update(json.dumps(meta, sort_keys=True, default=str).encode())
    for a in (summary.S, summary.N, summary.s2, summary.valid):
        h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()


def settings(preset: str, mask_pattern: str | None, steps: int | None, seed: int) -> dict[str, Any]:
    """The training settings a fingerprint covers: those `impute` without --model trains with."""
    return {"preset": preset, "mask_pattern": mask_pattern, "steps": steps, "seed": seed}


def training_fingerprint(data: str | Path, opts: TrainOptions, preset: Preset, out: Path) -> str | None:
    """The fingerprint of a training by `train` (`fingerprint`, as `impute` computes it) when its
    model goes to the store and is the one `impute` without --model would train: the same preset,
    mask pattern, steps and seed, and no other training option changed. Else None (the card
    records none, and `impute` trains its own). Costs one streaming pass over DATA."""
    if out.resolve().parent != models_home().resolve():
        return None
    if (opts.context_ratio, opts.query, opts.query_ratio, opts.patience, opts.members) != (None,) * 5 \
            or opts.block_sizes or not opts.validation:
        return None
    cube = open_cube(data, opts.variables, opts.static_mask, covariates=opts.covariates)
    cube.load()  # as `impute` reads it: the same sums to the bit
    # the seed: --seed's, else the preset's, as `impute --seed S` trains with S
    return fingerprint(cube, summarise(cube), settings(opts.preset, opts.mask_pattern, opts.steps, preset.train.seed))


def find(fp: str, home: Path | None = None) -> Path | None:
    """The stored model with this fingerprint, if any."""
    home = home or models_home()
    if not home.is_dir():
        return None
    for card in sorted(home.glob(f"*/{CARD}")):
        try:
            if (yaml.safe_load(card.read_text()) or {}).get("fingerprint") == fp:
                return card.parent
        except (OSError, yaml.YAMLError):
            continue
    return None


def named(data: str | Path, preset: str, home: Path | None = None) -> Path:
    """The store's folder named for this data and preset, <data>-<preset> (as `train` names it)."""
    return (home or models_home()) / f"{Path(str(data).rstrip('/')).stem}-{Path(preset).stem}"


def place(data: str | Path, preset: str, fp: str, home: Path | None = None) -> Path:
    """Where a new model for this data goes: <data>-<preset>, or with the fingerprint's start
    appended when that name holds a model of other data or settings (never overwritten)."""
    home = home or models_home()
    base = named(data, preset, home)
    if not base.exists():
        return base
    return home / f"{base.name}-{fp[:8]}"


def list_models(home: Path | None = None) -> list[dict[str, Any]]:
    """A summary of every model in the store (folders with a readable card)."""
    home = home or models_home()
    out = []
    for card in sorted(home.glob(f"*/{CARD}")) if home.is_dir() else []:
        try:
            s = card_summary(card.parent)
        except ImputeError:
            continue
        s["name"] = card.parent.name
        out.append(s)
    return out


def show(name: str) -> str:
    """A model's card as YAML text."""
    d = resolve_model_dir(name)
    load_card(d)  # refuses what is not a valid card
    return (d / CARD).read_text()


def remove(name: str, home: Path | None = None) -> Path:
    """Delete a model folder of the store (only there: a path elsewhere is refused)."""
    home = (home or models_home()).resolve()
    d = resolve_model_dir(name).resolve()
    if d.parent != home:
        raise ImputeError(f"'{name}' is not in the model store {home}; delete folders elsewhere yourself")
    shutil.rmtree(d)
    return d


def format_table(rows: list[dict[str, Any]]) -> str:
    """`impute-cli models` as a table."""
    if not rows:
        return f"no model in {models_home()}/ (impute without --model and train put them there)"
    lines = [f"{'name':<32} {'variables':<16} {'grid':<14} {'preset':<10} {'steps':>6} {'finished':<20} {'MB':>6}"]
    for r in rows:
        grid = "x".join(str(n) for n in (r["grid"].get("shape") or [])[1:])
        lines.append(f"{r['name']:<32} {','.join(r['variables']):<16} {grid:<14} {str(r['preset']):<10} "
                     f"{r['steps'] or 0:>6} {str(r['finished'] or ''):<20} {r['bytes'] / 2**20:>6.1f}")
    return "\n".join(lines)
