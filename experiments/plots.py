"""Plots of a comparison: each method's gap to the retrained model, the UA–TA trade-off,
λ trajectories, retain loss over steps, and the cross-scenario ranks."""

from __future__ import annotations

import math
import pathlib

import matplotlib

matplotlib.use("Agg")  # files only, no display needed
import matplotlib.pyplot as plt  # noqa: E402
import matplotlib.ticker  # noqa: E402
import numpy as np  # noqa: E402

from experiments.jobs import is_main_run  # noqa: E402
from jaxunlearn import metrics as metrics_lib  # noqa: E402

HIGHLIGHT = "igs"  # the method the figures single out
HIGHLIGHT_COLOUR = "tab:red"
OTHER_COLOUR = "tab:blue"


def _seed0(results, method):
  for r in results["runs"]:
    if r["method"] == method and r["seed"] == 0 and is_main_run(r):
      return r
  return None


def _finite(x) -> bool:
  return x is not None and math.isfinite(x)


def _gap_interval(results, method) -> tuple[float, float]:
  """The Avg. Gap's 95 % interval over seeds: the one the summary stores, else computed
  from the method's main runs."""
  ci = results["summary"][method].get("AvgGap_ci95")
  if ci and all(_finite(v) for v in ci):
    return float(ci[0]), float(ci[1])
  gaps = [
    r["AvgGap"]
    for r in results.get("runs", [])
    if r["method"] == method and is_main_run(r) and _finite(r["AvgGap"])
  ]
  return metrics_lib.ci95(gaps) if gaps else (math.nan, math.nan)


def _bold_highlight(labels) -> None:
  for label in labels:
    if label.get_text() == HIGHLIGHT:
      label.set_fontweight("bold")
      label.set_color(HIGHLIGHT_COLOUR)


def _dot(ax, x, y, methods) -> None:
  """One point per method; the highlighted method as a larger red diamond."""
  x, y = np.asarray(x, float), np.asarray(y, float)
  hi = np.array([m == HIGHLIGHT for m in methods], bool)
  ax.scatter(x[~hi], y[~hi], s=30, color=OTHER_COLOUR, zorder=3)
  if hi.any():
    ax.scatter(x[hi], y[hi], s=70, marker="D", color=HIGHLIGHT_COLOUR, zorder=4)


def _symlog_x(ax) -> None:
  """A symlog x axis (linear within ±1) with plain tick labels and room at both ends."""
  ax.set_xscale("symlog", linthresh=1.0)
  ax.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:g}"))
  ax.margins(x=0.08)


def gap_overview_figure(results) -> plt.Figure:
  """The main figure: each method's distance to the retrained model.

  Left: Avg. Gap per method (mean and 95 % interval over seeds), best at the top, on a
  symlog axis (0 = the retrained model). Right: one small panel per metric (UA, RA, TA,
  MIA) with the signed gap method − retrain (mean ± std over seeds) in the same order.
  Methods without a finite gap (diverged on every seed) are named in a note below.
  """
  summary = results["summary"]
  retrain = results["reference"]["retrain"]
  finite = [m for m, s in summary.items() if _finite(s["AvgGap"][0])]
  order = sorted(finite, key=lambda m: summary[m]["AvgGap"][0])
  failed = [m for m in summary if m not in finite]
  partial = [m for m in order if summary[m].get("diverged")]
  n = len(order)
  keys = metrics_lib.METRIC_KEYS
  fig, axes = plt.subplots(
    1,
    1 + len(keys),
    sharey=True,
    figsize=(14, 2.2 + 0.3 * max(n, 4)),
    gridspec_kw={"width_ratios": [2.4] + [1] * len(keys)},
    squeeze=False,
  )
  main, small = axes[0][0], axes[0][1:]
  y = np.arange(n)
  colours = [HIGHLIGHT_COLOUR if m == HIGHLIGHT else OTHER_COLOUR for m in order]
  ci = np.array([_gap_interval(results, m) for m in order], float).reshape(n, 2)
  mean = np.array([summary[m]["AvgGap"][0] for m in order], float)
  main.hlines(y, ci[:, 0], ci[:, 1], colors=colours, lw=2, alpha=0.7)
  _dot(main, mean, y, order)
  main.axvline(0, color="black", ls="--", lw=1)
  main.text(
    0, 0.01, " retrain", transform=main.get_xaxis_transform(), ha="left", va="bottom", fontsize=8
  )
  _symlog_x(main)
  main.set_yticks(y, labels=order)
  main.set_ylim(n - 0.4, -0.6)  # best at the top
  _bold_highlight(main.get_yticklabels())
  main.set_xlabel("Avg. Gap: mean |method − retrain| over UA, RA, TA, MIA (% points, symlog)")
  main.set_title("Avg. Gap to retrain, mean and 95 % CI over seeds\nlower is better; 0 = retrain")
  main.grid(axis="x", alpha=0.3)
  for ax, key in zip(small, keys):
    ms = np.array([summary[m][key] for m in order], float).reshape(n, 2) - [retrain[key], 0.0]
    _signed_gap_panel(ax, key, ms, y, order, colours)
  notes = _divergence_notes(summary, failed, partial)
  seeds = results.get("seeds")
  fig.suptitle(
    f"{results['scenario']}: how far each method lands from the retrained model"
    + (f" ({seeds} seeds)" if seeds else "")
    + "\nleft: Avg. Gap; right: the signed gap per metric; lower |gap| is better"
  )
  fig.tight_layout(rect=(0, 0.04 * len(notes), 1, 1))
  for i, note in enumerate(notes):
    fig.text(0.01, 0.01 + 0.035 * i, note, fontsize=8, ha="left", va="bottom")
  return fig


def _signed_gap_panel(ax, key, ms, y, order, colours) -> None:
  """One metric's panel: method − retrain, mean ± std (rows ``ms``), finite rows only."""
  ok = np.isfinite(ms[:, 0])
  lo, hi = ms[:, 0] - np.nan_to_num(ms[:, 1]), ms[:, 0] + np.nan_to_num(ms[:, 1])
  ax.hlines(y[ok], lo[ok], hi[ok], colors=np.array(colours)[ok], lw=2, alpha=0.7)
  _dot(ax, ms[ok, 0], y[ok], [m for m, k in zip(order, ok) if k])
  ax.axvline(0, color="black", ls="--", lw=1)
  _symlog_x(ax)
  ax.set_title(f"{key} − retrain", fontsize=10)
  ax.set_xlabel("mean ± std (% points)", fontsize=8)
  ax.tick_params(axis="x", labelsize=7)
  ax.grid(axis="x", alpha=0.3)


def _divergence_notes(summary, failed, partial) -> list[str]:
  notes = []
  if failed:
    notes.append("not shown, no finite gap (diverged on every seed): " + ", ".join(failed))
  if partial:
    notes.append(
      "some seeds diverged (mean over the rest): "
      + ", ".join(f"{m} ({summary[m]['diverged']}/{summary[m]['n']})" for m in partial)
    )
  return notes


def gap_overview(results, path) -> pathlib.Path:
  """Saves :func:`gap_overview_figure` to ``path``."""
  fig = gap_overview_figure(results)
  fig.savefig(path, dpi=110)
  plt.close(fig)
  return pathlib.Path(path)


# Where a sweep value's label goes, relative to its point (offset points), in turn.
_OFFSETS = ((5, 4), (5, -11), (-22, 4), (-22, -11))


def _drop_overlapping(fig, texts) -> None:
  """Removes each text whose box overlaps one kept before it (in the given order)."""
  renderer = fig.canvas.get_renderer()
  kept = []
  for t in texts:
    box = t.get_window_extent(renderer).expanded(1.1, 1.2)
    if any(box.overlaps(k) for k in kept):
      t.remove()
    else:
      kept.append(box)


def _sweep_points(results) -> dict:
  """``{(method, key): [(value, UA, TA), ...]}`` of the finite runs of each sweep."""
  sweeps = {}
  for r in results["runs"]:
    if r["sweep"] and not r.get("label") and math.isfinite(r["metrics"]["UA"]):
      ((key, value),) = r["sweep"].items()
      sweeps.setdefault((r["method"], key), []).append(
        (value, r["metrics"]["UA"], r["metrics"]["TA"])
      )
  return sweeps


def _zoom_limits(results, sweeps) -> tuple:
  """``(xlim, ylim)`` around the points within 10 UA points of the retrained model."""
  retrain = results["reference"]["retrain"]
  near = [
    (s["UA"][0], s["TA"][0])
    for s in results["summary"].values()
    if math.isfinite(s["UA"][0]) and abs(s["UA"][0] - retrain["UA"]) <= 10
  ]
  near += [(p[1], p[2]) for pts in sweeps.values() for p in pts if abs(p[1] - retrain["UA"]) <= 10]
  near.append((retrain["UA"], retrain["TA"]))
  xs, ys = [p[0] for p in near], [p[1] for p in near]
  return (min(xs) - 1.5, max(xs) + 1.5), (min(ys) - 1.5, max(ys) + 1.0)


def ua_ta_figure(results) -> plt.Figure:
  """UA (x) vs TA (y) per method, mean ± std; IGS/explicit/PDU sweeps as curves.

  Left: every method. Right: zoom on the neighbourhood of the retrained model, where the
  methods that forget end up, with the sweep values written beside their points (those
  that would cover another label are left out).
  """
  fig, axes = plt.subplots(1, 2, figsize=(14, 5.5))
  cmap = plt.get_cmap("tab20")
  sweeps = _sweep_points(results)
  xlim, ylim = _zoom_limits(results, sweeps)
  labels = []
  for ax, zoom in zip(axes, (False, True)):
    for i, (method, s) in enumerate(results["summary"].items()):
      if not math.isfinite(s["UA"][0]):
        continue
      ax.errorbar(
        s["UA"][0],
        s["TA"][0],
        xerr=s["UA"][1],
        yerr=s["TA"][1],
        fmt="D" if method == HIGHLIGHT else "o",
        color=cmap(i % 20),
        label=method,
        capsize=2,
      )
    for name, marker in (("original", "s"), ("retrain", "*")):
      m = results["reference"][name]
      ax.scatter(m["UA"], m["TA"], marker=marker, s=160, color="black", zorder=5, label=name)
    for (method, key), pts in sorted(sweeps.items()):
      pts.sort()
      (line,) = ax.plot(
        [p[1] for p in pts], [p[2] for p in pts], "--", alpha=0.7, label=f"{method} over {key}"
      )
      if zoom:
        inside = [p for p in pts if xlim[0] <= p[1] <= xlim[1] and ylim[0] <= p[2] <= ylim[1]]
        for v, x, y in inside:
          labels.append(
            ax.annotate(
              f"{v:g}",
              (x, y),
              xytext=_OFFSETS[len(labels) % len(_OFFSETS)],
              textcoords="offset points",
              fontsize=7,
              color=line.get_color(),
            )
          )
    ax.set_xlabel("UA: 100 − forget-set accuracy (%)  [target: retrain]")
    ax.set_ylabel("TA: test accuracy (%)  [higher is better]")
    ax.grid(alpha=0.3)
    if zoom:
      ax.set_xlim(*xlim)
      ax.set_ylim(*ylim)
      ax.set_title("zoom near retrain (error bars: std over seeds; numbers: sweep values)")
      ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0)
    else:
      ax.set_title(f"{results['scenario']}: forgetting vs utility")
  fig.tight_layout()
  _drop_overlapping(fig, labels)
  return fig


def ua_ta(results, path) -> pathlib.Path:
  """Saves :func:`ua_ta_figure` to ``path``."""
  fig = ua_ta_figure(results)
  fig.savefig(path, dpi=110)
  plt.close(fig)
  return pathlib.Path(path)


def multiplier(results, path):
  """λ over steps for the methods that keep one (seed 0)."""
  fig, ax = plt.subplots(figsize=(7, 4))
  for method in results["summary"]:
    r = _seed0(results, method)
    if r and "multiplier" in r["history"]:
      ax.plot(r["history"]["multiplier"], label=method)
  ax.set_xlabel("step")
  ax.set_ylabel("λ (dual variable / closed-form multiplier)")
  ax.set_yscale("symlog", linthresh=1e-2)
  ax.set_title(f"{results['scenario']}: multiplier trajectories (seed 0)")
  ax.grid(alpha=0.3)
  ax.legend()
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  plt.close(fig)


def retain_loss(results, path):
  """Retain loss on each step's batch for every method (seed 0)."""
  fig, ax = plt.subplots(figsize=(7.5, 4.5))
  cmap = plt.get_cmap("tab20")
  for i, method in enumerate(results["summary"]):
    r = _seed0(results, method)
    if r and "retain_loss" in r["history"]:
      y = np.asarray(r["history"]["retain_loss"], float)
      ax.plot(y, label=method, color=cmap(i % 20), lw=1)
  ax.set_yscale("log")
  ax.set_xlabel("step")
  ax.set_ylabel("retain loss L_r on the batch")
  ax.set_title(f"{results['scenario']}: retain loss during unlearning (seed 0)")
  ax.grid(alpha=0.3)
  ax.legend(fontsize=7, ncol=3)
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  plt.close(fig)


def rank_heatmap_figure(summary: dict) -> plt.Figure:
  """The cross-scenario ranks (what ``experiments.compare.rank_summary`` returns) as a
  heat map: one row a method, sorted by mean rank (best at the top), one column a
  scenario and a last column the mean rank; each cell written out."""
  scenarios = list(summary["scenarios"])
  mean = summary["mean_rank"]
  rows = sorted(mean, key=mean.get)
  cols = [*scenarios, "mean"]
  data = np.array(
    [[summary["ranks"][m].get(s, math.nan) for s in scenarios] + [mean[m]] for m in rows], float
  ).reshape(len(rows), len(cols))
  fig, ax = plt.subplots(figsize=(2.8 + 1.3 * len(cols), 1.8 + 0.34 * len(rows)))
  im = ax.imshow(
    np.ma.masked_invalid(data), cmap="RdYlGn_r", vmin=1, vmax=max(len(rows), 2), aspect="auto"
  )
  for i in range(len(rows)):
    for j in range(len(cols)):
      v = data[i, j]
      if not math.isfinite(v):
        text, colour = "—", "black"
      else:
        text = f"{v:.1f}" if j == len(scenarios) else f"{int(v)}"
        r, g, b, _ = im.cmap(im.norm(v))
        colour = "white" if 0.299 * r + 0.587 * g + 0.114 * b < 0.5 else "black"
      weight = "bold" if rows[i] == HIGHLIGHT else "normal"
      ax.text(j, i, text, ha="center", va="center", fontsize=8, color=colour, fontweight=weight)
  ax.axvline(len(scenarios) - 0.5, color="white", lw=4)
  ax.set_xticks(range(len(cols)), labels=cols, rotation=30, ha="right")
  ax.set_yticks(range(len(rows)), labels=rows)
  _bold_highlight(ax.get_yticklabels())
  ax.tick_params(length=0)
  fig.colorbar(im, ax=ax, label="rank (1 = closest to retrain)", shrink=0.8)
  ax.set_title("Rank by Avg. Gap in each scenario (lower is better)\nrows sorted by mean rank")
  fig.tight_layout()
  return fig


def rank_heatmap(summary: dict, path) -> pathlib.Path:
  """Saves :func:`rank_heatmap_figure` to ``path``."""
  fig = rank_heatmap_figure(summary)
  fig.savefig(path, dpi=110)
  plt.close(fig)
  return pathlib.Path(path)


def write_all(results, out_dir) -> list[pathlib.Path]:
  """Writes every figure of one scenario into ``out_dir``; the main one comes first."""
  out_dir = pathlib.Path(out_dir)
  figures = {
    "gap_overview.png": gap_overview,
    "ua_ta.png": ua_ta,
    "multiplier.png": multiplier,
    "retain_loss.png": retain_loss,
  }
  paths = [out_dir / name for name in figures]
  for fn, path in zip(figures.values(), paths):
    fn(results, path)
  return paths


def run_history(history: dict, path, title: str) -> pathlib.Path:
  """One run: the retain and forget losses on each step's batch, and λ when the method
  keeps one (what ``experiments.unlearn`` writes beside its metrics)."""
  panels = [("retain_loss", "retain loss L_r"), ("forget_loss", "forget loss L_f")]
  if "multiplier" in history:
    panels.append(("multiplier", "λ"))
  fig, axes = plt.subplots(1, len(panels), figsize=(4 * len(panels), 3.4), squeeze=False)
  for ax, (key, label) in zip(axes[0], panels):
    ax.plot(np.asarray(history[key], float), lw=1)
    ax.set_xlabel("step")
    ax.set_ylabel(label)
    ax.grid(alpha=0.3)
  fig.suptitle(title)
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)
  return pathlib.Path(path)
