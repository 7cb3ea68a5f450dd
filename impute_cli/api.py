"""api: the Python interface, for notebooks and scripts. The CLI's commands call the same
library functions (`train_model`, `impute_file`, `evaluate_file`), so both give the same
results for the same options.

    import impute_cli
    model = impute_cli.train("sst.nc", preset="quick")          # -> Model
    filled = impute_cli.impute(ds, model=model, samples=32)      # -> xarray.Dataset
    scores = impute_cli.evaluate("sst.nc", holdout="cloud")      # -> dict
    filled = ds.impute.fill(samples=32)                          # the accessor, same thing

`data` is a path (NetCDF or Zarr) or an `xarray.Dataset`. A Dataset is written to a temporary
NetCDF file first (chunk by chunk when it is lazy), since the library reads files region by
region. `impute` returns the Dataset the CLI writes (the input's variables, `V_filled`,
`V_imputed_flag`, and with samples `V_std`, `V_lower`, `V_upper`): opened lazily from `out`
when `out` is given, else from a temporary file removed when the process ends, or loaded into
memory when the input was an in-memory Dataset."""

from __future__ import annotations

import atexit
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import xarray as xr

from impute_cli.checkpoint import IN_MEMORY_DATA, ModelCard, card_summary, load_card, resolve_model_dir, save_card
from impute_cli.errors import ImputeError
from impute_cli.evaluation.evaluate import evaluate_file, to_json
from impute_cli.inference.impute import impute_file
from impute_cli.options import DistillOptions, EvaluateOptions, ImputeOptions, TrainOptions
from impute_cli.training.distill import distill_model
from impute_cli.training.train import train_model



@dataclass(frozen=True)
class Model:
    """A trained model folder and its card: variables, grid, preset, training, validation."""

    path: Path
    card: ModelCard

    @property
    def variables(self) -> list[str]:
        return list(self.card.variables)

    @property
    def covariates(self) -> list[str]:
        """Variables the model sees as context only; every file it imputes must have them."""
        return list(self.card.covariates)

    @property
    def grid(self) -> dict[str, Any]:
        return dict(self.card.grid)

    @property
    def preset(self) -> str:
        return self.card.preset.name

    @property
    def training(self) -> dict[str, Any]:
        return dict(self.card.training)

    @property
    def validation(self) -> dict[str, Any] | None:
        return self.card.validation

    def summary(self) -> dict[str, Any]:
        """What `impute-cli models --json` shows of it."""
        return card_summary(self.path)

    def __str__(self) -> str:
        return str(self.path)


def _quiet(_msg: str) -> None:
    pass


SCRATCH_PREFIX = "impute-cli-api-"


def _scratch() -> Path:
    d = Path(tempfile.mkdtemp(prefix=SCRATCH_PREFIX))
    atexit.register(shutil.rmtree, d, ignore_errors=True)
    return d


def _as_path(data: Any, scratch: Callable[[], Path]) -> tuple[Path, bool]:
    """A path to read `data` from, and whether it was an in-memory Dataset."""
    if isinstance(data, xr.Dataset):
        path = scratch() / "input.nc"
        try:
            data.to_netcdf(path)
        except (ValueError, TypeError) as e:
            raise ImputeError(f"cannot write this Dataset to NetCDF for impute-cli ({e}); "
                              "fix its encoding or save it yourself and pass the path") from None
        lazy = any(v.chunks is not None for v in data.data_vars.values())
        return path, not lazy
    if isinstance(data, (str, Path)):
        return Path(data), False
    raise ImputeError(f"data must be a path (NetCDF or Zarr) or an xarray.Dataset, got {type(data).__name__}")


def _relabel(model_dir: str | Path | None) -> None:
    """A model trained here on an in-memory Dataset records that as its training data, not the
    temporary file the Dataset was written to (gone when the process ends), so that `distill` and
    `evaluate` later say what it was trained on."""
    if not model_dir or not Path(model_dir).is_dir():
        return
    card = load_card(model_dir)
    trainings = [card.training] + [m["training"] for m in card.members or [] if m.get("training")]
    scratch = [t for t in trainings if Path(str(t.get("data", ""))).parent.name.startswith(SCRATCH_PREFIX)]
    for t in scratch:  # the first model and its further models of other seeds (short records)
        t["data"] = IN_MEMORY_DATA
    if scratch:
        save_card(Path(model_dir), card)


def _model_path(model: Any) -> str | None:
    return None if model is None else str(model.path if isinstance(model, Model) else model)


def load_model(path_or_name: str | Path) -> Model:
    """A model folder, or a name in the model store (models/ or $IMPUTE_CLI_MODELS)."""
    d = resolve_model_dir(str(path_or_name))
    return Model(d, load_card(d))


def train(data: Any, *, preset: str = "auto", mask_pattern: str | None = None, out: str | Path | None = None,
          steps: int | None = None, overwrite: bool = False, progress: bool = False,
          log: Callable[[str], None] | None = None, **options: Any) -> Model:
    """Train a model on the observed cells of `data` and return it. `out` defaults to the model
    store (models/<data>-<preset>); other keywords are `TrainOptions` fields (variables,
    static_mask, seed, validation, patience, device, threads, ...)."""
    path, _ = _as_path(data, _scratch)
    if out is None and isinstance(data, xr.Dataset):
        raise ImputeError("give out=FOLDER when training on an in-memory Dataset (it has no file name to name the model by)")
    opts = TrainOptions(preset=preset, mask_pattern=mask_pattern, out=Path(out) if out else None, steps=steps,
                        overwrite=overwrite, progress=progress, log=log or _quiet, **options)
    model_dir = train_model(path, opts)
    _relabel(model_dir)
    return load_model(model_dir)


def distill(model: Any, *, data: Any = None, steps: int | None = None, overwrite: bool = False, progress: bool = False,
            log: Callable[[str], None] | None = None, **options: Any) -> Model:
    """Give a model its distilled sampler (`impute-cli distill`) and return the model. `data`:
    the file to draw windows from (default: the one it was trained on); other keywords are
    `DistillOptions` fields (seed, width, batch_size, lr, resume, device, threads)."""
    path = None if data is None else str(_as_path(data, _scratch)[0])
    opts = DistillOptions(data=path, steps=steps, overwrite=overwrite, progress=progress, log=log or _quiet, **options)
    return load_model(distill_model(_model_path(model), opts))


def impute(data: Any, model: Any = None, *, samples: int = 0, seed: int = 0, out: str | Path | None = None,
           overwrite: bool = False, progress: bool = False, log: Callable[[str], None] | None = None,
           **options: Any) -> xr.Dataset:
    """Fill the gaps of `data` and return the output Dataset. Without `model`, the model store's
    model for this data is used or one is trained and kept (as `impute IN OUT` does). Other
    keywords are `ImputeOptions` fields (ensemble, calibrate, quantiles, variables, ...)."""
    path, in_memory = _as_path(data, _scratch)
    target = Path(out) if out is not None else _scratch() / "output.nc"
    opts = ImputeOptions(model=_model_path(model), samples=samples or None, seed=seed, overwrite=overwrite or out is None,
                         progress=progress, log=log or _quiet, history="impute_cli.impute (Python API)", **options)
    report = impute_file(path, target, opts)
    if model is None:  # a model trained now for the store, on this Dataset perhaps
        _relabel(report.get("model"))
    if target.suffix == ".zarr":
        ds = xr.open_zarr(target)
    else:
        ds = xr.open_dataset(target, chunks={})
    return ds.load() if in_memory else ds


def evaluate(data: Any, *, model: Any = None, holdout: str = "cloud", fraction: float = 0.2, seed: int = 0,
             progress: bool = False, log: Callable[[str], None] | None = None, **options: Any) -> dict[str, Any]:
    """Hide observed cells of `data`, fill them with the model and the classical methods, and
    return the scores (the CLI's `evaluate --json` report). Without `model`, a model is trained
    on the held-out data only. Other keywords are `EvaluateOptions` fields."""
    path, _ = _as_path(data, _scratch)
    opts = EvaluateOptions(model=_model_path(model), holdout=holdout, fraction=fraction, seed=seed, progress=progress,
                           log=log or _quiet, command="impute_cli.evaluate (Python API)", **options)
    report, _ = evaluate_file(path, opts)
    return to_json(report)


@xr.register_dataset_accessor("impute")
class ImputeAccessor:
    """`ds.impute.fill(model=None, samples=0, **options)`: `impute_cli.impute(ds, ...)`."""

    def __init__(self, ds: xr.Dataset) -> None:
        self._ds = ds

    def fill(self, model: Any = None, *, samples: int = 0, **options: Any) -> xr.Dataset:
        return impute(self._ds, model, samples=samples, **options)

    def evaluate(self, **options: Any) -> dict[str, Any]:
        return evaluate(self._ds, **options)
