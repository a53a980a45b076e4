"""Plots of a comparison: the UA–TA trade-off, λ trajectories, retain loss over steps."""

from __future__ import annotations

import math
import pathlib

import matplotlib

matplotlib.use("Agg")  # files only, no display needed
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from experiments.jobs import is_main_run  # noqa: E402


def _seed0(results, method):
  for r in results["runs"]:
    if r["method"] == method and r["seed"] == 0 and is_main_run(r):
      return r
  return None


def ua_ta(results, path):
  """UA (x) vs TA (y) per method, mean ± std; IGS/explicit/PDU sweeps as curves.

  Left: every method. Right: zoom on the neighbourhood of the retrained model, where the
  methods that forget end up.
  """
  fig, axes = plt.subplots(1, 2, figsize=(13, 5.5))
  cmap = plt.get_cmap("tab20")
  sweeps = {}
  for r in results["runs"]:
    if r["sweep"] and not r.get("label") and math.isfinite(r["metrics"]["UA"]):
      ((key, value),) = r["sweep"].items()
      sweeps.setdefault((r["method"], key), []).append(
        (value, r["metrics"]["UA"], r["metrics"]["TA"])
      )
  retrain = results["reference"]["retrain"]
  near = [
    (s["UA"][0], s["TA"][0])
    for s in results["summary"].values()
    if math.isfinite(s["UA"][0]) and abs(s["UA"][0] - retrain["UA"]) <= 10
  ]
  near += [(p[1], p[2]) for pts in sweeps.values() for p in pts if abs(p[1] - retrain["UA"]) <= 10]
  near.append((retrain["UA"], retrain["TA"]))
  for ax, zoom in zip(axes, (False, True)):
    for i, (method, s) in enumerate(results["summary"].items()):
      if not math.isfinite(s["UA"][0]):
        continue
      ax.errorbar(
        s["UA"][0],
        s["TA"][0],
        xerr=s["UA"][1],
        yerr=s["TA"][1],
        fmt="o",
        color=cmap(i % 20),
        label=method,
        capsize=2,
      )
    for name, marker in (("original", "s"), ("retrain", "*")):
      m = results["reference"][name]
      ax.scatter(m["UA"], m["TA"], marker=marker, s=160, color="black", zorder=5, label=name)
    for (method, key), pts in sorted(sweeps.items()):
      pts.sort()
      ax.plot(
        [p[1] for p in pts], [p[2] for p in pts], "--", alpha=0.7, label=f"{method} over {key}"
      )
      if zoom:
        for v, x, y in pts:
          ax.annotate(f"{v:g}", (x, y), fontsize=7, alpha=0.8)
    ax.set_xlabel("UA: 100 − forget-set accuracy (%)  [target: retrain]")
    ax.set_ylabel("TA: test accuracy (%)  [higher is better]")
    ax.grid(alpha=0.3)
    if zoom:
      xs, ys = [p[0] for p in near], [p[1] for p in near]
      ax.set_xlim(min(xs) - 1.5, max(xs) + 1.5)
      ax.set_ylim(min(ys) - 1.5, max(ys) + 1.0)
      ax.set_title("zoom near retrain (error bars: std over seeds)")
    else:
      ax.set_title(f"{results['scenario']}: forgetting vs utility")
      ax.legend(fontsize=7, ncol=2, loc="best")
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)


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


def write_all(results, out_dir) -> list[pathlib.Path]:
  out_dir = pathlib.Path(out_dir)
  paths = [out_dir / "ua_ta.png", out_dir / "multiplier.png", out_dir / "retain_loss.png"]
  for fn, path in zip((ua_ta, multiplier, retain_loss), paths):
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
