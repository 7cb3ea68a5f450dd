"""Does the validation stop training before the model learns its record? The curve.

    python benchmarks/learnt_record.py OUTDIR [--steps 10000] [--preset quick] [--threads 1]

A short Gaussian-process record (gp_exact.py's 512 x 16 x 16 pixel cube, seed 0) is trained on
with `train`'s validation on and a step budget far beyond what it needs. At every validation
check the EMA weights the check scored are kept beside the run, and afterwards each set is used
for the point estimate (`impute --model`) of two cubes, each scored against its exact posterior
(`gp_exact.py score`): the record the model trained on, and a fresh record of the same process
(seed 1) the model never saw. A record that is being learnt shows as the fresh-cube error rising
while the own-record error goes on falling; the validation should stop first.

Writes OUTDIR/own, OUTDIR/fresh (the cubes), OUTDIR/model (the trained model, its card with
the validation curve), OUTDIR/checks/<step>.pt and prints one Markdown table: per check, the
validation RMSE (the card's), MSE / exact posterior on the own record and on the fresh one, and
where `train` would stop, and which check it would keep, with 4 checks of patience and with its
default (`validation.default_patience`). About 15 minutes on one idle CPU core with the defaults."""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from pathlib import Path

import torch
import yaml

from impute_cli.options import TrainOptions
from impute_cli.training import validation
from impute_cli.training.train import train_model
from impute_cli.training.validation import default_patience

HERE = Path(__file__).resolve().parent


def _gp(*args: str) -> str:
    """Run gp_exact.py; its stdout."""
    return subprocess.run([sys.executable, str(HERE / "gp_exact.py"), *args], check=True,
                          capture_output=True, text=True).stdout


def keep_checks(folder: Path) -> None:
    """Make every validation check also save the EMA weights it scored to folder/<step>.pt."""
    folder.mkdir(parents=True, exist_ok=True)
    update = validation.Watch.update

    def update_and_keep(self: validation.Watch, step: int, res: dict, ema: torch.nn.Module) -> bool:
        torch.save({k: v.detach().cpu().clone() for k, v in ema.net.state_dict().items()}, folder / f"{step}.pt")
        return update(self, step, res, ema)

    validation.Watch.update = update_and_keep  # type: ignore[method-assign]


def score_check(model: Path, weights: Path, cube: Path, work: Path) -> float:
    """MSE / exact posterior of the point estimate of `cube` with the model's card and `weights`."""
    m = work / "m"
    shutil.rmtree(m, ignore_errors=True)
    shutil.copytree(model, m)
    shutil.copy(weights, m / "weights.pt")
    card = yaml.safe_load((m / "model.yaml").read_text())
    if card.pop("blend", None) is not None:  # the blend was fitted for the kept weights only
        (m / "model.yaml").write_text(yaml.safe_dump(card, sort_keys=False))
    out = work / "out.nc"
    subprocess.run(["impute-cli", "impute", str(cube / "gappy.nc"), str(out), "--model", str(m), "--overwrite",
                    "--quiet", "--threads", "1"], check=True, capture_output=True)
    return float(json.loads(_gp("score", str(cube), str(out), "--json"))["mse_ratio"])


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("outdir")
    ap.add_argument("--steps", type=int, default=10000)
    ap.add_argument("--preset", default="quick")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--patience", type=int, default=0,
                    help="0 (the default here): train every step, so the curve goes on past where `train`'s "
                         "default patience would stop; the table marks that stop (and the check it keeps)")
    args = ap.parse_args(argv)
    out = Path(args.outdir)
    out.mkdir(parents=True, exist_ok=True)
    for name, seed in (("own", "0"), ("fresh", "1")):
        if not (out / name / "gappy.nc").exists():
            _gp("make", str(out / name), "--pattern", "pixel", "--seed", seed)
    torch.set_num_threads(args.threads)
    keep_checks(out / "checks")
    model = train_model(out / "own" / "gappy.nc", TrainOptions(
        preset=args.preset, steps=args.steps, out=out / "model", overwrite=True, patience=args.patience,
        threads=args.threads, progress=False, log=lambda m: print(m, file=sys.stderr)))
    card = yaml.safe_load((model / "model.yaml").read_text())
    curve = card["validation"]["curve"]
    # where `train` would have stopped with 4 checks of patience and with its default, and the check kept
    marks: dict[int, list[str]] = {}
    for patience in sorted({4, default_patience(args.steps, card["preset"]["train"]["checkpoint_every"])}):
        best, bad, kept = None, 0, None
        for c in curve:
            r = sum(c["rmse"].values())
            best, bad, kept = (r, 0, c["step"]) if best is None or r < best else (best, bad + 1, kept)
            if bad >= patience:
                marks.setdefault(c["step"], []).append(f"patience {patience} stops")
                break
        marks.setdefault(kept, []).append(f"patience {patience} keeps")
    rows = ["| step | validation RMSE | MSE / posterior, own record | MSE / posterior, fresh record | |",
            "|---|---|---|---|---|"]
    for c in curve:
        s = c["step"]
        own = score_check(model, out / "checks" / f"{s}.pt", out / "own", out)
        fresh = score_check(model, out / "checks" / f"{s}.pt", out / "fresh", out)
        mark = "; ".join(marks.get(s, []))
        rows.append(f"| {s} | {', '.join(f'{v:.4f}' for v in c['rmse'].values())} | {own:.3f} | {fresh:.3f} | {mark} |")
        print(rows[-1], file=sys.stderr, flush=True)
    (out / "table.md").write_text("\n".join(rows) + "\n")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
