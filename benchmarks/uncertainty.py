"""Uncertainty benchmark: impute-cli samples and confidence regions on the Gaussian-process cube
of `gp_exact.py`, against its exact posterior (the physical limit, METHOD §6).

Each run: train a model on the gappy cube only, `impute --samples N --save-samples`, score the
point estimate against the exact posterior mean (`gp_exact.py score`: MSE / posterior-mean MSE),
and build 90 % cell intervals and time-step regions with `confidence --truth` raw and with
`--calibrate`, their coverage next to the exact posterior's (the oracle's).

    python benchmarks/uncertainty.py OUT                              # the runs pixel and block
    python benchmarks/uncertainty.py OUT --runs mixed_vs_pixel        # clustered test gaps
    python benchmarks/uncertainty.py OUT --runs block_st3_wide_aug    # the best block-gap model
    python benchmarks/uncertainty.py OUT --steps 10000 --runs long_minsnr   # the best pixel-gap model
    python benchmarks/uncertainty.py OUT --tag dpm2m6 --impute-args="--solver dpm2m --sampler-steps 6"
                                                               # the same models, another sampler

The RUNS table in this file lists every run; a model is trained once per (training cube,
settings, steps) and reused from OUT. `--arch-preset NAME` in a run means
benchmarks/presets/gp_NAME.yaml.
Time on 2 CPU cores: about 15 minutes for the default `pixel block` (4000 steps: training about
5 minutes a run); the space-time U-Net runs train for 20 minutes (st) to 1.5 hours
(block_st3_wide_aug; long_minsnr at --steps 10000), see benchmarks/RESULTS.md.
`--impute-args` adds impute options to every run (a solver and its steps); `--tag` names those
runs' folders apart, the models are shared. CRPS is the samples' against the hidden truth.
Writes OUT/cube-*/ (the gp_exact.py cubes), OUT/model-*/ (the models), OUT/<run>/samples.nc and
ci.nc, appends the full figures of each run as a JSON line to OUT/results.jsonl and prints one
Markdown row per run. Not part of the test suite."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import xarray as xr

from impute_cli.evaluation.scores import crps_ensemble

HERE = Path(__file__).resolve().parent

# A cube is "PATTERN[-sSEED][-tSTEPS]": the same process (seed 0, 512 steps by default), gaps of
# that pattern. "-t8192" cubes are a 16x longer gappy record of another realisation, to train on.
# run group -> [(name, training cube, test cube, train args, impute args)]
RUNS: dict[str, list[tuple[str, str, str, list[str], list[str]]]] = {
    "pixel": [("pixel", "pixel", "pixel", ["--mask-pattern", "pixel"], [])],
    "block": [("block", "block", "block", ["--mask-pattern", "block"], [])],
    # [UQ] Table 2: trained on scattered gaps, tested on clustered gaps of another realisation
    "mixed_vs_pixel": [("pixel-trained, block test", "pixel", "block-s1", ["--mask-pattern", "pixel"], []),
                       ("mixed-trained, block test", "pixel", "block-s1", ["--mask-pattern", "mixed"], [])],
    # the same test cubes, the model trained on a 16x longer gappy record of the process
    "long": [("pixel, trained on 8192 steps", "pixel-s100-t8192", "pixel", ["--mask-pattern", "pixel"], []),
             ("block, trained on 8192 steps", "block-s100-t8192", "block", ["--mask-pattern", "block"], [])],
    "omega": [("block, omega=t (literal eq. 28)", "block", "block", ["--mask-pattern", "block"], ["--omega", "t"])],
    "dit": [("block, DiT", "block", "block", ["--mask-pattern", "block", "--arch-preset", "dit"], [])],
    "st": [("pixel, space-time U-Net", "pixel", "pixel", ["--mask-pattern", "pixel", "--arch-preset", "st"], [])],
    # trained under the grid's symmetries (train.augment)
    "block_aug": [("block, U-Net + augment", "block", "block", ["--mask-pattern", "block", "--arch-preset", "aug"], [])],
    "st_aug": [("pixel, space-time U-Net + augment", "pixel", "pixel", ["--mask-pattern", "pixel", "--arch-preset", "st_aug"], [])],
    "block_st_aug": [("block, space-time U-Net + augment", "block", "block", ["--mask-pattern", "block", "--arch-preset", "st_aug"], [])],
    # a denser training context (ratio 0.85)
    "st_dense": [("pixel, space-time U-Net + augment, context 0.85", "pixel", "pixel", ["--mask-pattern", "pixel", "--arch-preset", "st_dense"], [])],
    # two blocks a level (more time mixing)
    "block_st2_aug": [("block, space-time U-Net, 2 blocks a level + augment", "block", "block", ["--mask-pattern", "block", "--arch-preset", "st2_aug"], [])],
    # three blocks a level, every observed cell as context at imputation (impute --context-ratio 1)
    "block_st3_aug": [("block, space-time U-Net, 3 blocks a level + augment, context ratio 1", "block", "block",
                       ["--mask-pattern", "block", "--arch-preset", "st3_aug"], ["--context-ratio", "1"])],
    # the same twice as wide (the best block-gap model); pixel gaps: the wide space-time U-Net,
    # every observed cell as context
    "block_st3_wide_aug": [("block, space-time U-Net, 32 features, 3 blocks a level + augment, context ratio 1", "block", "block",
                            ["--mask-pattern", "block", "--arch-preset", "st3_wide_aug"], ["--context-ratio", "1"])],
    "st_wide_aug": [("pixel, space-time U-Net, 32 features + augment, context ratio 1", "pixel", "pixel",
                     ["--mask-pattern", "pixel", "--arch-preset", "st_wide_aug"], ["--context-ratio", "1"])],
    # the wide one with the push-pull first guess as input (network.prefill_input; the preset
    # sets impute.context_ratio 1); measured at --steps 10000
    "st_wide_prefill_aug": [("pixel, space-time U-Net, 32 features, push-pull input + augment, context ratio 1", "pixel", "pixel",
                             ["--mask-pattern", "pixel", "--arch-preset", "st_wide_prefill_aug"], [])],
    # the same with the Min-SNR-5 loss weight (diffusion.min_snr_gamma); at --steps 10000 on the
    # 512-step cube it learns its training record (see RESULTS.md)
    "st_wide_prefill_minsnr_aug": [("pixel, space-time U-Net, 32 features, push-pull input + augment, Min-SNR-5 loss, "
                                    "context ratio 1", "pixel", "pixel",
                                    ["--mask-pattern", "pixel", "--arch-preset", "st_wide_prefill_minsnr_aug"], [])],
    # the same trained on the 16x longer gappy record (seed 100), where 10 000 steps visit each
    # window 16x less often; tested on the seed-0 cube (the best pixel-gap model, --steps 10000)
    "long_minsnr": [("pixel, trained on 8192 steps, space-time U-Net, 32 features, push-pull input + augment, "
                     "Min-SNR-5 loss, context ratio 1", "pixel-s100-t8192", "pixel",
                     ["--mask-pattern", "pixel", "--arch-preset", "st_wide_prefill_minsnr_aug"], [])],
}


def sh(*cmd: object, out: Path | None = None) -> str:
    res = subprocess.run([str(c) for c in cmd], capture_output=True, text=True)
    if res.returncode != 0:
        sys.exit(f"failed: {' '.join(map(str, cmd))}\n{res.stderr[-3000:]}")
    return res.stdout


def make_cube(root: Path, name: str, args: argparse.Namespace) -> Path:
    """Cube "PATTERN[-sSEED][-tSTEPS]" (seed 0 and 512 time steps by default)."""
    cube = root / f"cube-{name}"
    pattern, *rest = name.split("-")
    opts = {p[0]: int(p[1:]) for p in rest}
    if not (cube / "gappy.nc").exists():
        sh(sys.executable, HERE / "gp_exact.py", "make", cube, "--pattern", pattern, "--observed", args.observed,
           "--seed", opts.get("s", 0) + args.seed, "--T", opts.get("t", 512))
    return cube


def run_one(root: Path, name: str, train_cube: str, test_cube: str, train_args: list[str],
            impute_args: list[str], args: argparse.Namespace) -> dict:
    tr, cube = make_cube(root, train_cube, args), make_cube(root, test_cube, args)
    pattern = test_cube
    work = root / "".join(c if c.isalnum() or c in "-_." else "_" for c in name + (f"-{args.tag}" if args.tag else ""))
    impute_args = [*impute_args, *args.impute_args.split()]
    work.mkdir(exist_ok=True)
    # one model per (training cube, settings), shared by runs that differ only at imputation
    train_args = list(train_args)
    preset = args.preset
    if "--arch-preset" in train_args:
        i = train_args.index("--arch-preset")
        preset = str(HERE / "presets" / f"gp_{train_args[i + 1]}.yaml")
        del train_args[i:i + 2]
    slug = "_".join(a.strip("-").replace("/", "_") for a in train_args) + "-" + Path(preset).stem
    model, out = root / f"model-{train_cube}-{slug}-{args.steps}", work / "samples.nc"
    t0 = time.time()
    if not (model / "model.yaml").exists() or args.retrain:
        sh("impute-cli", "train", tr / "gappy.nc", "--out", model, "--steps", args.steps, "--overwrite",
           "--quiet", "--preset", preset, *train_args)
    t1 = time.time()
    sh("impute-cli", "impute", cube / "gappy.nc", out, "--model", model, "--samples", args.samples,
       "--save-samples", "--overwrite", "--quiet", *impute_args)
    t2 = time.time()
    score = json.loads(sh(sys.executable, HERE / "gp_exact.py", "score", cube, out, "--json"))
    conf = json.loads(sh("impute-cli", "confidence", out, work / "ci.nc", "--truth", cube / "truth.nc",
                         "--calibrate", "--level", "0.9", "--json", "--overwrite", "--quiet"))
    t3 = time.time()
    with xr.open_dataset(out) as o, xr.open_dataset(cube / "gappy.nc") as g, xr.open_dataset(cube / "truth.nc") as tr_:
        hidden = g.tas.isnull().values & tr_.tas.notnull().values
        crps = crps_ensemble(o.tas_sample.values[:, hidden], tr_.tas.values[hidden])
    v = conf["variables"]["tas"]
    row = {"run": name, "train_cube": train_cube, "cube": pattern, "preset": Path(preset).stem, "train": train_args, "impute": impute_args, "steps": args.steps,
           "samples": args.samples, "crps": crps, "mse_ratio": score["mse_ratio"], "mse": score["mse_tool"],
           "mse_oracle": score["mse_oracle"], "oracle_cell": score["cell_coverage_oracle"],
           "oracle_joint": score["joint_coverage_oracle"], "raw": v["raw"], "calibrated": v["calibrated"],
           "factors": v["calibration"], "seconds": {"train": t1 - t0, "impute": t2 - t1, "confidence": t3 - t2}}
    with open(root / "results.jsonl", "a") as f:
        f.write(json.dumps(row) + "\n")
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out", type=Path)
    ap.add_argument("--runs", nargs="+", default=["pixel", "block"], choices=sorted(RUNS))
    ap.add_argument("--steps", type=int, default=4000)
    ap.add_argument("--preset", default=str(HERE / "presets" / "gp.yaml"))
    ap.add_argument("--samples", type=int, default=32)
    ap.add_argument("--observed", type=float, default=0.5)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--retrain", action="store_true")
    ap.add_argument("--impute-args", default="", help="more impute options for every run, e.g. '--solver dpm2m --sampler-steps 6'")
    ap.add_argument("--tag", default="", help="suffix of the runs' folders (models are shared)")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    print("| run | test gaps | MSE / posterior MSE | 90 % cells raw / calibrated (oracle) | "
          "90 % regions raw / calibrated (oracle) | CRPS | train / impute s |")
    print("|---|---|---|---|---|---|---|")
    for key in args.runs:
        for name, train_cube, test_cube, tr, im in RUNS[key]:
            r = run_one(args.out, name, train_cube, test_cube, tr, im, args)
            print(f"| {name} | {test_cube} | {r['mse_ratio']:.2f} | {r['raw']['cell_coverage']:.1%} / "
                  f"{r['calibrated']['cell_coverage']:.1%} ({r['oracle_cell']:.1%}) | "
                  f"{r['raw']['region_coverage']:.1%} / {r['calibrated']['region_coverage']:.1%} "
                  f"({r['oracle_joint']:.1%}) | {r['crps']:.4f} | {r['seconds']['train']:.0f} / {r['seconds']['impute']:.0f} |",
                  flush=True)


if __name__ == "__main__":
    main()
