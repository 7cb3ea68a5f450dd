"""checkpoint: a model is a folder -- `weights.pt` (a plain state dict, loaded with
weights_only=True, so no pickled code ever runs), `model.yaml` (the self-describing card:
resolved config, variables, normalisation, grid, mask strategy, package version, training
summary), and while training `checkpoint.pt` for --resume. `model.yaml` is written last: a
folder without it is an unfinished training."""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
import yaml

from impute_cli.version import __version__
from impute_cli.config import Preset, from_dict, models_home
from impute_cli.model.denoiser import Denoiser, VPSchedule, in_channels
from impute_cli.errors import ImputeError
from impute_cli.model.backbones import build_network

CARD = "model.yaml"
WEIGHTS = "weights.pt"
STUDENT = "student.pt"  # the distilled sampler's weights (training.distill), when the card's `student` says so
TRAIN_STATE = "checkpoint.pt"
DISTILL_STATE = "distill_checkpoint.pt"  # an unfinished distillation, for distill --resume
FORMAT = "impute-cli-model/1"
# what a card records as its training data when the Python API trained it on an in-memory Dataset
# (the library read it from a temporary file, gone when the process ends)
IN_MEMORY_DATA = "an in-memory xarray.Dataset (Python API)"


def atomic_write_bytes(path: Path, write: Any) -> None:
    """Write through `write(tmp_path)` to a temporary name beside `path`, then rename. The file
    gets the permissions a plain open would give (0666 less the umask), not mkstemp's 0600, so
    that a group sharing a model store can read it."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(Path(tmp))
        mask = os.umask(0)
        os.umask(mask)
        os.chmod(tmp, 0o666 & ~mask)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def remove_cut_writes(folder: Path, name: str = "*") -> None:
    """Delete the temporary files of `atomic_write_bytes` (for files named `name`) that a kill
    left in `folder` mid-write; a resumed run calls it before writing there again."""
    for stale in folder.glob(f".{name}.*.tmp"):
        stale.unlink(missing_ok=True)


def save_state(path: Path, state: dict[str, Any]) -> None:
    """torch.save through an open file, not a path: torch then names the archive's records by a
    fixed name rather than after the (random) temporary file, so equal tensors give equal bytes."""
    def write(p: Path) -> None:
        with open(p, "wb") as f:
            torch.save(state, f)
    atomic_write_bytes(path, write)


def load_state(path: Path) -> dict[str, Any]:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise ImputeError(f"'{path}' is not a readable impute-cli checkpoint ({type(e).__name__}); "
                          "it may be truncated: delete it and train again") from None


@dataclass
class ModelCard:
    preset: Preset
    variables: list[str]
    channels: list[str]
    units: list[str]
    grid: dict[str, Any]
    window: list[int]
    normalisation: dict[str, Any]
    mask_strategy: dict[str, Any]
    training: dict[str, Any]
    static_mask_var: str | None = None
    # variables the model sees as context only (their channels follow the imputed ones'); they
    # must be in every file it imputes
    covariates: list[str] = field(default_factory=list)
    # the held-out error measured while training (training.validation); None: trained without
    validation: dict[str, Any] | None = None
    # the network's estimate blended with classical fills, fitted on the validation slice
    # (inference.blend: partners, distance band edges, weights); None: the network alone
    blend: dict[str, Any] | None = None
    # set when `impute` trained it for the model store (see store.fingerprint); None otherwise
    fingerprint: str | None = None
    # the distilled sampler in student.pt (training.distill: how it was made, how good); None: none
    student: dict[str, Any] | None = None
    # further models of the same data and preset, of training seeds seed + 1, seed + 2, ...
    # (training.members): per model its weights file, seed, normalisation, context density
    # (mask_strategy), blend, validation and training summary; imputation averages their
    # estimates with this one's. None: this model alone
    members: list[dict[str, Any]] | None = None
    package_version: str = __version__
    format: str = FORMAT

    def to_dict(self) -> dict[str, Any]:
        d = dict(self.__dict__)
        d["preset"] = self.preset.to_dict()
        if not self.covariates:  # a card without covariates reads as before they existed
            del d["covariates"]
        if self.members is None:  # nor one of a single model
            del d["members"]
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any], where: str) -> "ModelCard":
        if d.get("format") != FORMAT:
            raise ImputeError(f"{where} is not an impute-cli model card of format {FORMAT} "
                              f"(found {d.get('format')!r}); train the model again with this version")
        fields_ = set(cls.__dataclass_fields__)
        unknown = set(d) - fields_
        if unknown:
            raise ImputeError(f"{where} has unknown key(s) {', '.join(sorted(unknown))}")
        d = dict(d)
        d["preset"] = from_dict(Preset, d["preset"], f"{where} preset")
        if not (isinstance(d.get("covariates", []), list) and all(isinstance(v, str) for v in d.get("covariates", []))):
            raise ImputeError(f"{where} has a damaged 'covariates' entry (a list of variable names); train the model again")
        members = d.get("members")
        if members is not None and not (isinstance(members, list) and all(
                isinstance(m, dict) and isinstance(m.get("weights"), str) and isinstance(m.get("seed"), int)
                and isinstance(m.get("normalisation"), dict) and isinstance(m.get("mask_strategy"), dict)
                for m in members)):
            raise ImputeError(f"{where} has a damaged 'members' entry (a list of models with their weights files); "
                              "train the model again")
        try:
            return cls(**d)
        except TypeError as e:
            raise ImputeError(f"{where} is incomplete ({e}); train the model again") from None


def resolve_model_dir(name_or_path: str) -> Path:
    """A model folder by path, or by name under $IMPUTE_CLI_MODELS or ./models."""
    p = Path(name_or_path)
    for cand in (p, models_home() / name_or_path):
        if (cand / CARD).exists():
            return cand
        if cand.is_dir() and (cand / TRAIN_STATE).exists():
            raise ImputeError(f"model '{cand}' has not finished training (no {CARD}); "
                              f"finish it with: impute-cli train DATA --out {cand} --resume")
    raise ImputeError(f"model '{name_or_path}' not found (no {CARD} in it); give a model folder "
                      f"written by 'impute-cli train' or a name under {models_home()}/")


def build_denoiser(card: ModelCard, student: bool = False) -> Denoiser:
    """The card's network, untrained; `student`: the distilled sampler's, whose card entry may
    narrow it (`student.network`: the NetworkConfig fields it changes, training.distill)."""
    f = card.window[0]
    c = len(card.channels)
    nc = card.preset.network
    if student and card.student and card.student.get("network"):
        nc = replace(nc, **card.student["network"])
    net = build_network(in_channels(f, c, nc.climatology_input, nc.prefill_input), f * c, nc, f, c)
    return Denoiser(net, VPSchedule(card.preset.diffusion), nc.climatology_input, nc.prefill_input,
                    nc.prefill_residual, nc.prefill_sweeps, nc.prefill_time_sweeps)


def save_model(out_dir: Path, card: ModelCard, weights: dict[str, torch.Tensor]) -> None:
    save_state(out_dir / WEIGHTS, weights)
    save_card(out_dir, card)


def save_card(out_dir: Path, card: ModelCard) -> None:
    text = yaml.safe_dump(card.to_dict(), sort_keys=False)
    atomic_write_bytes(out_dir / CARD, lambda p: p.write_text(text))


def load_card(model_dir: str | Path) -> ModelCard:
    """A model's card, without its weights."""
    d = resolve_model_dir(str(model_dir))
    try:
        raw = yaml.safe_load((d / CARD).read_text())
    except yaml.YAMLError:
        raise ImputeError(f"{d / CARD} is not valid YAML; train the model again") from None
    return ModelCard.from_dict(raw or {}, str(d / CARD))


def card_summary(model_dir: str | Path) -> dict[str, Any]:
    """What a script wants to know of a model: where, on what, how trained, how good."""
    d = resolve_model_dir(str(model_dir))
    card = load_card(d)
    t = card.training
    size = sum(f.stat().st_size for f in d.rglob("*") if f.is_file())
    return {"model": str(d), "variables": card.variables, "covariates": card.covariates, "grid": card.grid,
            "window": card.window,
            "preset": card.preset.name, "steps": t.get("steps"),
            "seconds": t.get("seconds") if not card.members or t.get("seconds") is None else  # all the models'
            round(t["seconds"] + sum(m.get("training", {}).get("seconds", 0) for m in card.members), 1),
            "final_loss": t.get("final_loss"), "data": t.get("data"),
            "finished": card.members[-1].get("training", {}).get("finished") if card.members else t.get("finished"),
            "bytes": size, "members": 1 + len(card.members or []), "validation": {k: v for k, v in (card.validation or {}).items() if k != "curve"} or None}


def member_card(card: ModelCard, member: dict[str, Any]) -> ModelCard:
    """The card of one of a folder's further models (`members`): the folder's, with the model's
    own seed, normalisation, context density, blend, validation and training summary."""
    preset = replace(card.preset, train=replace(card.preset.train, seed=member["seed"]))
    return replace(card, preset=preset, normalisation=member["normalisation"], mask_strategy=member["mask_strategy"],
                   blend=member.get("blend"), validation=member.get("validation"),
                   training=member.get("training") or {}, members=None, student=None)


def _network(card: ModelCard, weights: Path, d: Path) -> Denoiser:
    den = build_denoiser(card)
    try:
        den.net.load_state_dict(load_state(weights))
    except RuntimeError:
        raise ImputeError(f"weights in {d} do not match its card; train the model again") from None
    return den.eval()


def load_model(model_dir: str | Path) -> tuple[ModelCard, Denoiser]:
    d = resolve_model_dir(str(model_dir))
    card = load_card(d)
    den = _network(card, d / WEIGHTS, d)
    if card.student is not None:  # kept beside the network for `impute --samples` (inference.student)
        den.student_weights = load_state(d / STUDENT)
    for m in card.members or []:  # the further models, beside the network (inference.fill averages their estimates)
        mc = member_card(card, m)
        den.members.append((mc, _network(mc, d / m["weights"], d)))
    return card, den
