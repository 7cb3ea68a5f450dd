"""report: an evaluation -> a Markdown report with PNG figures in a folder.

Figures: maps of truth / input / filled / error / spread for a few time steps (the first
variable's first channel; a time x station image for series), RMSE by method for every
variable, and a reliability diagram (cell coverage against nominal level) when there are
samples. Matplotlib with the non-interactive Agg backend; nothing is shown on screen."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from impute_cli.evaluation.scores import block_words
from impute_cli.io.cube import Cube

MODEL_NAME = "impute-cli"


@dataclass
class Evaluation:
    """The arrays behind the report, for figures: (T, C, H, W) truth, gappy input, hidden mask,
    each method's estimate, and the samples' per-cell spread when there are samples."""

    cube: Cube
    truth: np.ndarray
    gappy: np.ndarray
    hidden: np.ndarray
    estimates: dict[str, np.ndarray]
    spread: np.ndarray | None


def _plt():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def pick_times(hidden: np.ndarray, n: int = 3) -> list[int]:
    """Up to n time steps spread over the record, each the one with most hidden cells in its third."""
    T = hidden.shape[0]
    per_t = hidden.reshape(T, -1).sum(1)
    picks = []
    for part in np.array_split(np.arange(T), min(n, T)):
        if len(part) and per_t[part].max() > 0:
            picks.append(int(part[np.argmax(per_t[part])]))
    return picks


def maps_figure(ev: Evaluation, report: dict[str, Any], path: Path) -> None:
    plt = _plt()
    c = 0
    v = ev.cube.variables[0]
    ranking = report["variables"][v]["ranking"]
    best_base = next((m for m in ranking if m != MODEL_NAME), None)
    valid = ev.cube.valid
    truth = np.where(valid[None], ev.truth[:, c], np.nan)
    hid = ev.hidden[:, c]
    cols = [("truth", truth), ("input (hidden cells removed)", ev.gappy[:, c]),
            (f"{MODEL_NAME} filled", ev.estimates[MODEL_NAME][:, c])]
    errs = [(f"{MODEL_NAME} error", np.where(hid, ev.estimates[MODEL_NAME][:, c] - ev.truth[:, c], np.nan))]
    if best_base:
        errs.append((f"{best_base} error", np.where(hid, ev.estimates[best_base][:, c] - ev.truth[:, c], np.nan)))
    spread = [("sample spread (std)", ev.spread[:, c])] if ev.spread is not None else []
    lo, hi = np.nanpercentile(truth, [1, 99])
    emax = max(float(np.nanpercentile(np.abs(e), 99)) if np.isfinite(e).any() else 1.0 for _, e in errs) or 1.0
    panels = cols + errs + spread
    if ev.cube.grid.is_series:  # (time, station): one image of the whole record per panel
        times: list[Any] = [slice(None)]
    else:
        times = pick_times(hid)
    H, W = truth.shape[1:]
    equal = not ev.cube.grid.is_series and 0.2 < H / W < 5  # maps keep the grid's shape
    ph = 2.6 * H / W if equal else 2.3
    fig, axes = plt.subplots(len(times), len(panels), figsize=(2.6 * len(panels), ph * len(times) + 0.9),
                             squeeze=False, constrained_layout=True)
    tname = ev.cube.grid.time_dim
    tvals = ev.cube.ds[tname].values if tname in ev.cube.ds.variables else np.arange(truth.shape[0])
    for i, t in enumerate(times):
        for j, (title, arr) in enumerate(panels):
            ax = axes[i, j]
            img = arr[:, 0, :].T if ev.cube.grid.is_series else arr[t]
            if "error" in title:
                kw = dict(cmap="RdBu_r", vmin=-emax, vmax=emax)
            elif "spread" in title:
                kw = dict(cmap="viridis", vmin=0)
            else:
                kw = dict(cmap="viridis", vmin=lo, vmax=hi)
            im = ax.imshow(img, origin="lower" if _ascending(ev) else "upper", aspect="equal" if equal else "auto",
                           interpolation="nearest", **kw)
            ax.set_xticks([]); ax.set_yticks([])
            if i == 0:
                ax.set_title(title, fontsize=8)
            if j == 0:
                ax.set_ylabel("stations x time" if isinstance(t, slice) else str(tvals[t])[:16], fontsize=7)
            if i == len(times) - 1 and ("error" in title or "spread" in title or j == 0):
                fig.colorbar(im, ax=ax, orientation="horizontal", fraction=0.08, pad=0.04).ax.tick_params(labelsize=6)
    fig.suptitle(f"{v} ({report['variables'][v]['units']}), {report['holdout']['pattern']} holdout", fontsize=9)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _ascending(ev: Evaluation) -> bool:
    y = ev.cube.grid.y_values
    return len(y) < 2 or y[-1] >= y[0]


def rmse_figure(report: dict[str, Any], path: Path) -> None:
    plt = _plt()
    vs = list(report["variables"])
    fig, axes = plt.subplots(1, len(vs), figsize=(4.2 * len(vs), 0.35 * max(len(r["ranking"]) for r in report["variables"].values()) + 1.2),
                             squeeze=False, constrained_layout=True)
    for ax, v in zip(axes[0], vs):
        r = report["variables"][v]
        names = r["ranking"][::-1]
        vals = [r["methods"][m]["rmse"] for m in names]
        ax.barh(names, vals, color=["tab:red" if m == MODEL_NAME else "tab:gray" for m in names])
        ax.set_xlabel(f"RMSE on hidden cells ({r['units']})", fontsize=8)
        ax.set_title(v, fontsize=9)
        ax.tick_params(labelsize=7)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def reliability_figure(report: dict[str, Any], path: Path) -> bool:
    curves = {v: r["methods"][MODEL_NAME]["reliability"] for v, r in report["variables"].items()
              if "reliability" in r["methods"][MODEL_NAME]}
    if not curves:
        return False
    plt = _plt()
    fig, ax = plt.subplots(figsize=(3.6, 3.4), constrained_layout=True)
    ax.plot([0, 1], [0, 1], color="k", lw=0.8, ls="--", label="perfect")
    for v, pts in curves.items():
        a = np.array(pts)
        ax.plot(a[:, 0], a[:, 1], marker="o", ms=3, label=v)
    ax.set_xlabel("nominal level of the per-cell interval", fontsize=8)
    ax.set_ylabel("fraction of hidden cells inside", fontsize=8)
    ax.set_xlim(0, 1); ax.set_ylim(0, 1)
    ax.legend(fontsize=7)
    ax.tick_params(labelsize=7)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def coverage_note(entry: dict[str, Any], dash: str = "–") -> str:
    """' (90 % interval 91.9–92.9)' for a coverage entry with its `cell_coverage_interval`, else ''."""
    ci = entry.get("cell_coverage_interval")
    return f" (90 % interval {100 * ci[0]:.1f}{dash}{100 * ci[1]:.1f})" if ci else ""


def markdown(report: dict[str, Any], figures: list[tuple[str, str]]) -> str:
    h, m = report["holdout"], report["model"]
    out = [f"# impute-cli evaluation: {Path(report['data']).name}", "",
           f"Command: `{report['command']}`", "",
           f"**Holdout:** `{h['pattern']}`, {h['cells_hidden']} observed cells hidden "
           f"({100 * h['fraction_hidden']:.1f} % of the observed cells, requested {100 * h['fraction_requested']:g} %; "
           f"{100 * h['observed_after']:.1f} % of fillable cells left observed; seed {h['seed']}). "
           "Every method sees the same input and is scored on the same hidden cells only.", "",
           f"**Model:** {m.get('model')}" + (f"; training {m['train_seconds']} s" if "train_seconds" in m else "")
           + f"; imputation {m.get('impute_seconds')} s.", ""]
    if m.get("note"):
        out += [f"> Note: {m['note']}", ""]
    for v, r in report["variables"].items():
        out += [f"## {v} ({r['units']}), {r['cells']} hidden cells", "",
                "| rank | method | RMSE | MAE | bias | corr | seconds |", "|---|---|---|---|---|---|---|"]
        for i, name in enumerate(r["ranking"], 1):
            s = r["methods"][name]
            bold = "**" if name == MODEL_NAME else ""
            out.append(f"| {i} | {bold}{name}{bold} | {s['rmse']:.4g} | {s['mae']:.4g} | {s['bias']:.3g} | "
                       f"{s['corr']:.4f} | {s['seconds']:.1f} |")
        if (iv := r.get("ratio_interval")) is not None:
            out += ["", f"{MODEL_NAME} against the best other method, {r['best_baseline']}: RMSE ratio "
                    f"{r['rmse_vs_best_baseline']:.3f}, {100 * iv['level']:g} % interval {iv['low']:.3f}–{iv['high']:.3f} "
                    f"(a bootstrap of {iv['blocks']} blocks of {block_words(iv)}). An interval that contains 1 is a tie on these cells."]
        s = r["methods"][MODEL_NAME]
        if "crps" in s:
            out += ["", f"{MODEL_NAME} with {s['samples']} samples: CRPS {s['crps']:.4g}, spread (RMS deviation "
                    f"of the samples from the estimate) {s['mean_std']:.4g}.", "",
                    "| level | cells covered | mean interval width | time-step regions covered |", "|---|---|---|---|"]
            if (k := s.get("calibrated")) is not None:
                out.append(f"| {k['level']:g}, calibrated as `impute` writes it (factor {k['factor']:.3g}) | "
                           f"{100 * k['cell_coverage']:.1f} %{coverage_note(k)} | {k['mean_width']:.4g} | – |")
            for lv, c in s["levels"].items():
                out.append(f"| {lv} | {100 * c['cell_coverage']:.1f} %{coverage_note(c)} | {c['mean_width']:.4g} | "
                           f"{100 * c['region_coverage']:.1f} % of {c['regions']} |")
        out.append("")
    for name, why in report["skipped"].items():
        out += [f"Skipped **{name}**: {why}", ""]
    for title, fname in figures:
        out += [f"## {title}", "", f"![{title}]({fname})", ""]
    out += ["Methods: climatology = per-cell temporal mean; temporal_linear = linear interpolation in time; "
            "laplace = Laplace/Poisson fill per time step (CDO fillmiss-like); telea, ns_inpaint = OpenCV "
            "inpainting per time step; eof_dineof = DINEOF-style EOF reconstruction with cross-validated modes; "
            "gp_kriging = Gaussian-process regression in space per time step with one fitted Matérn covariance; "
            "st_kriging = the same in space and time: each step's gaps kriged from the observed cells of the"
            " steps around it too, with a fitted separable covariance.", ""]
    return "\n".join(out)


def write_report(report: dict[str, Any], ev: Evaluation, folder: Path) -> Path:
    """report.md and its figures in `folder` (created; files replaced)."""
    folder.mkdir(parents=True, exist_ok=True)
    figures = [("Maps: truth, input, filled, error, spread", "maps.png"), ("Error by method", "rmse_by_method.png")]
    maps_figure(ev, report, folder / "maps.png")
    rmse_figure(report, folder / "rmse_by_method.png")
    if reliability_figure(report, folder / "reliability.png"):
        figures.append(("Reliability of the per-cell intervals", "reliability.png"))
    tmp = folder / ".report.md.tmp"
    tmp.write_text(markdown(report, figures))
    tmp.replace(folder / "report.md")
    return folder / "report.md"
