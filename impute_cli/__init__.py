"""impute-cli: fill gaps in gridded scientific data with a diffusion model trained on the
incomplete data itself.

The data flow, by subpackage:

    io           file on disk -> lazy Cube (dataset, cube, stats); tiles and regions (tiling);
                 output variables -> file (writer)
    masks        observed cells -> observation masks, gap statistics, the context/query masks
                 of training and imputation (context_query), evaluation holdouts
    model        tiles -> normalised batches; the backbones (unet, dit), the denoiser around them
    training     a Cube -> a model folder (train, loss, distributed)
    inference    a model + a Cube -> point estimate and samples (fill, ensemble, solver),
                 run region by region (engine), orchestrated by `impute`
    uncertainty  samples -> intervals, joint regions, calibration (confidence)
    evaluation   a Cube with hidden cells -> scores of the model and classical baselines

with `cli` (the commands), `options`, `config` (presets), `checkpoint` (model folders),
`errors`, `device`, `demo`, `synthetic` and `testing` around them.

Papers cited in docstrings: [CQ] Zhou et al., "Incomplete Data, Complete Dynamics: A Diffusion
Approach" (context/query training, the point estimate, the multi-step sampler); [UQ] "Diffusion
Transformers for Imputation" (arXiv 2510.02216; confidence regions). docs/method.md explains
both in the project's words."""

from impute_cli.version import __version__

# The Python API (see `api`): impute_cli.train, distill, impute, evaluate, load_model, Model, and the
# `ds.impute` accessor. Loaded on first use, so that the command line does not wait for xarray
# and torch; a program that imports impute_cli (not the impute-cli command) gets the accessor
# registered right away.
_API = ("train", "distill", "impute", "evaluate", "load_model", "Model", "ImputeAccessor")


def __getattr__(name: str):  # noqa: ANN202 - module attribute hook (PEP 562)
    if name in _API:
        from impute_cli import api
        return getattr(api, name)
    raise AttributeError(f"module 'impute_cli' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_API])


def _register_accessor() -> None:
    import os
    import sys
    if os.path.basename(sys.argv[0] if sys.argv else "") not in ("impute-cli", "impute-cli.exe"):
        from impute_cli import api  # noqa: F401 - registers ds.impute


_register_accessor()
