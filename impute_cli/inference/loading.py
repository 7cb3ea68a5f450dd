"""loading: a model folder + a file -> the model and the cube it imputes: the model's variables
and static mask unless the user names others, and a refusal when the model was trained on
other variables, units, grid spacing or axis direction."""

from __future__ import annotations

import xarray as xr

from impute_cli.checkpoint import ModelCard, load_model
from impute_cli.errors import ImputeError
from impute_cli.io.cube import Cube
from impute_cli.io.dataset import open_cube
from impute_cli.model.denoiser import Denoiser


GRID_SPACING_TOLERANCE = 0.01


def check_compatible(card: ModelCard, cube: Cube) -> None:
    """Refuse a model trained on other variables, units or grid spacing."""
    if (card.grid.get("y_dim") is None) != cube.grid.is_series:
        def kind(series: bool) -> str:
            return "a station/feature series (time x station)" if series else "a lat/lon grid"
        raise ImputeError(f"the model was trained on {kind(card.grid.get('y_dim') is None)} but this file is "
                          f"{kind(cube.grid.is_series)}; train a model on this file")
    if card.channels != cube.channels:
        fix = ("pass " + " ".join(f"--var {v}" for v in card.variables)) if all(v in cube.ds for v in card.variables) \
            else "use a model trained on these variables, or leave out --model to train one"
        raise ImputeError(f"the model was trained on {', '.join(card.channels)} but this file gives "
                          f"{', '.join(cube.channels)}; {fix}")
    for c, (u_model, u_here) in enumerate(zip(card.units, cube.units)):
        if u_model != u_here:
            raise ImputeError(f"'{cube.channels[c]}' is in '{u_here}' here but the model was trained on "
                              f"'{u_model}'; convert the units or train a model on this file")
    g = card.grid
    for dim, vals, first_last, n in (("y", cube.grid.y_values, g["y_first_last"], g["shape"][1]),
                                     ("x", cube.grid.x_values, g["x_first_last"], g["shape"][2])):
        if n < 2 or len(vals) < 2:
            continue
        d_model = (first_last[1] - first_last[0]) / (n - 1)
        d_here = (vals[-1] - vals[0]) / (len(vals) - 1)
        if abs(abs(d_here) - abs(d_model)) <= GRID_SPACING_TOLERANCE * abs(d_model) and d_here * d_model < 0:
            raise ImputeError(f"the {dim} axis runs the other way here than in the model's training grid "
                              f"(step {d_here:g} vs {d_model:g}); flip it (e.g. cdo invertlat) or train a model on this file")
        if abs(d_here - d_model) > GRID_SPACING_TOLERANCE * abs(d_model):
            raise ImputeError(f"grid spacing along {dim} is {d_here:g} here but {d_model:g} in the model's "
                              "training grid; regrid the file or train a model on it")


def open_for_model(path: str, ds: xr.Dataset, model: str | None, variables: list[str] | None,
                   static_mask: str | None, covariates: list[str] | None = None
                   ) -> tuple[tuple[ModelCard, Denoiser] | None, Cube]:
    """The model named by `model` (None: none yet) and the lazy cube of `path` it imputes: the
    model's variables, covariates and static mask unless the user names others (then they must
    match)."""
    if not model:
        return None, open_cube(path, variables, static_mask, ds=ds, covariates=covariates)
    card, den = load_model(model)
    if covariates and list(dict.fromkeys(covariates)) != card.covariates:
        raise ImputeError(f"the model was trained with covariates {', '.join(card.covariates) or '(none)'}, not "
                          f"{', '.join(covariates)}; leave out --covariate to use the model's")
    if absent := [v for v in card.covariates if v not in ds.data_vars]:
        raise ImputeError(f"the model takes '{absent[0]}' as a covariate but this file has no such variable; "
                          "add it to the file (cdo merge) or train a model without it")
    variables = variables or (card.variables if set(card.variables) <= set(ds.data_vars) else None)
    cube = open_cube(path, variables, static_mask or card.static_mask_var, ds=ds, covariates=card.covariates)
    check_compatible(card, cube)
    return (card, den), cube
