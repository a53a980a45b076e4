"""Compare IGS with every baseline on one scenario, over seeds, under the same budget.

    python -m experiments.compare --scenario digits-class --workdir runs/compare [--seeds 3]
    python -m experiments.compare --workdir runs/compare       # the default offline pair

Trains (or reuses) the original and the retrained model, runs every method for each
seed (completed runs are reused, so a killed comparison resumes where it stopped), and
writes ``results.md``, ``results.csv``, ``results.json`` and plots into
``workdir/<scenario>/``.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import math
import os
import pathlib
import time

import numpy as np

from tqdm.auto import tqdm

from experiments import configs, plots
from experiments.cli import main_guard
from experiments.scenarios import DEFAULT_SCENARIOS, SCENARIOS, get_scenario
from jaxunlearn import data as data_lib
from jaxunlearn import metrics as metrics_lib
from jaxunlearn.config import ConfigError, override
from jaxunlearn.methods import METHODS, get_method, make_config
from jaxunlearn.pretraining import load_trained, train
from jaxunlearn.unlearning import evaluate_unlearning, unlearn

KEYS = ("UA", "RA", "TA", "MIA")


def _write_json_atomic(path: pathlib.Path, obj) -> None:
  tmp = path.with_suffix(".tmp")
  tmp.write_text(json.dumps(obj, indent=1))
  os.replace(tmp, path)  # a killed run never leaves a half-written result


def _trained(workdir, config, *, forget=None, retrain=False, data_dir=None, progress=True):
  """Trains once; afterwards (or after a kill) reuses/resumes the run in ``workdir``."""
  if not (workdir / "metrics.json").exists():
    resume = (workdir / "checkpoints").exists()
    train(config, workdir, forget_spec=forget, retrain=retrain, resume=resume,
          data_dir=data_dir, progress=progress)
  return load_trained(workdir)


def forget_target(method_name: str, cfg) -> str:
  """What the forget objective pushes towards, for the table."""
  m = get_method(method_name)
  if m.name in ("ga", "graddiff"):
    return "GA (true labels)"
  if m.name == "npo":
    return "NPO (true labels)"
  if m.name in ("ft", "l1sparse"):
    return "— (retain only)"
  if m.name == "scrub":
    return "teacher KL"
  if m.shape != "single" or m.name == "linear":
    if cfg.forget_objective == "ga":
      return "GA (true labels)"
  return "RL " + ("wrong classes" if cfg.forget_labels == "random_wrong" else "all classes")


def run_scenario(name: str, workdir, *, seeds: int = 3, methods=None, overrides=(),
                 pretrain_overrides=(), data_dir=None, progress: bool = True,
                 sweeps: bool | int = True) -> dict:
  scenario = get_scenario(name)
  methods = list(methods or METHODS)
  for m in methods:
    get_method(m)
  if seeds <= 0:
    raise ConfigError(f"--seeds must be ≥ 1, got {seeds}")
  out_dir = pathlib.Path(workdir) / name
  out_dir.mkdir(parents=True, exist_ok=True)
  (out_dir / "runs").mkdir(exist_ok=True)
  pre = override(configs.get_pretrain_config(scenario.pretrain_config), list(pretrain_overrides))
  dataset = data_lib.load_dataset(pre.dataset, data_dir)
  forget_set = data_lib.make_forget_set(dataset, scenario.forget, seed=0)

  start = time.perf_counter()
  original = _trained(out_dir / "original", pre, data_dir=data_dir, progress=progress)
  retrained = _trained(out_dir / "retrain", pre, forget=scenario.forget, retrain=True,
                       data_dir=data_dir, progress=progress)
  reference = {"original": evaluate_unlearning(original.fm, original.params,
                                               original.model_state, dataset, forget_set),
               "retrain": evaluate_unlearning(retrained.fm, retrained.params,
                                              retrained.model_state, dataset, forget_set)}
  retrain_seconds = json.loads((out_dir / "retrain" / "metrics.json").read_text())["seconds"]

  jobs = [(m, seed, {}) for m in methods for seed in range(seeds)]
  if sweeps:  # True: every value; an int n: the first n values of each sweep
    for m, (key, values) in scenario.sweeps.items():
      if m in methods:
        values = values if sweeps is True else values[:int(sweeps)]
        jobs += [(m, 0, {key: v}) for v in values]
  runs = []
  for method, seed, extra in tqdm(jobs, desc=name, unit="run", disable=not progress):
    tag = "-".join(f"{k}={v}" for k, v in extra.items())
    path = out_dir / "runs" / (f"{method}-s{seed}" + (f"-{tag}" if tag else "") + ".json")
    if path.exists():
      runs.append(json.loads(path.read_text()))
      continue
    cfg = override(make_config(method, scenario.unlearn, seed=seed), list(overrides))
    cfg = dataclasses.replace(cfg, **extra)
    res = unlearn(cfg, original.fm, original.params, original.model_state, dataset, forget_set,
                  progress=False)
    ev = evaluate_unlearning(original.fm, res.params, res.model_state, dataset, forget_set,
                             seed=seed)
    record = {"method": method, "seed": seed, "sweep": extra, "metrics": ev,
              "AvgGap": (metrics_lib.avg_gap(ev, reference["retrain"])
                         if not ev.get("diverged") else float("nan")),
              "seconds": res.seconds, "compile_seconds": res.compile_seconds,
              "forget_target": forget_target(method, cfg), "config": cfg.to_dict(),
              "skipped_steps": int(res.history["skipped"].sum()),
              "history": {k: v.tolist() for k, v in res.history.items()
                          if k in ("retain_loss", "forget_loss", "multiplier",
                                   "retain_decrease")}}
    _write_json_atomic(path, record)
    runs.append(record)

  summary = summarize([r for r in runs if not r["sweep"]])
  results = {"scenario": name, "description": scenario.description, "forget": scenario.forget,
             "dataset": dataset.name, "model": pre.model, "seeds": seeds,
             "forget_size": int(len(forget_set.forget_idx)),
             "reference": reference, "retrain_seconds": retrain_seconds,
             "summary": summary, "runs": runs,
             "wall_seconds": time.perf_counter() - start}
  _write_json_atomic(out_dir / "results.json", results)
  write_tables(results, out_dir)
  plots.write_all(results, out_dir)
  return results


def summarize(runs) -> dict:
  """method -> {metric: [mean, std]} over seeds, plus its forget target."""
  by_method: dict = {}
  for r in runs:
    by_method.setdefault(r["method"], []).append(r)
  summary = {}
  for method, rs in by_method.items():
    entry = {"forget_target": rs[0]["forget_target"], "n": len(rs),
             "diverged": sum(bool(r["metrics"].get("diverged")) for r in rs)}
    for key in KEYS:
      entry[key] = list(_mean_std([r["metrics"][key] for r in rs]))
    entry["AvgGap"] = list(_mean_std([r["AvgGap"] for r in rs]))
    # Run time without the one-off jit compile (the first step), which the cache shares
    # across seeds and would otherwise dominate the spread.
    # Median over seeds: the first seed also pays one-off warm-up beyond the compile.
    entry["seconds"] = [float(np.median([r["seconds"] - r["compile_seconds"] for r in rs])), 0.0]
    summary[method] = entry
  return summary


def _mean_std(values):
  finite = [v for v in values if v is not None and math.isfinite(v)]
  if not finite:
    return float("nan"), float("nan")
  return metrics_lib.mean_std(finite)


def _fmt(ms, digits=2):
  mean, std = ms
  return "diverged" if not math.isfinite(mean) else metrics_lib.format_mean_std(mean, std, digits)


def write_tables(results: dict, out_dir: pathlib.Path) -> None:
  ref = results["reference"]
  summary = results["summary"]
  gaps = {m: s["AvgGap"][0] for m, s in summary.items() if math.isfinite(s["AvgGap"][0])}
  best = min(gaps, key=gaps.get) if gaps else None
  lines = [f"### {results['scenario']}: {results['description']}", "",
           f"{results['dataset']}, {results['model']}, forget set {results['forget']} "
           f"({results['forget_size']} examples), {results['seeds']} seeds (mean ± std). "
           "UA, MIA: closer to retrain is better; RA, TA: higher; Avg. Gap (mean |Δ| to "
           "retrain over UA, RA, TA, MIA): lower. Time: median over seeds of the unlearning wall "
           "time without the jit compile (retrain: its full training).", "",
           "| Method | Forget target | UA | RA | TA | MIA | Avg. Gap ↓ | Time (s) |",
           "|---|---|---|---|---|---|---|---|"]
  for label, m in (("Original", ref["original"]), ("Retrain", ref["retrain"])):
    t = f"{results['retrain_seconds']:.1f}" if label == "Retrain" else "—"
    lines.append(f"| {label} | — | " + " | ".join(f"{m[k]:.2f}" for k in KEYS) +
                 f" | {metrics_lib.avg_gap(m, ref['retrain']):.2f} | {t} |")
  for method, s in summary.items():
    name = f"**{method}**" if method == best else method
    gap = _fmt(s["AvgGap"])
    gap = f"**{gap}**" if method == best else gap
    note = f" ({s['diverged']}/{s['n']} diverged)" if s["diverged"] else ""
    lines.append(f"| {name}{note} | {s['forget_target']} | " +
                 " | ".join(_fmt(s[k]) for k in KEYS) + f" | {gap} | {s['seconds'][0]:.2f} |")
  (out_dir / "results.md").write_text("\n".join(lines) + "\n")
  with (out_dir / "results.csv").open("w", newline="") as f:
    w = csv.writer(f)
    w.writerow(["method", "forget_target"] + [f"{k}_{s}" for k in KEYS + ("AvgGap",)
                                              for s in ("mean", "std")] + ["seconds_median"])
    for label, m in (("original", ref["original"]), ("retrain", ref["retrain"])):
      w.writerow([label, ""] + sum([[m[k], 0.0] for k in KEYS], []) +
                 [metrics_lib.avg_gap(m, ref["retrain"]), 0.0,
                  results["retrain_seconds"] if label == "retrain" else ""])
    for method, s in summary.items():
      w.writerow([method, s["forget_target"]] +
                 sum([list(s[k]) for k in KEYS + ("AvgGap",)], []) + [s["seconds"][0]])


def parse_args(argv=None):
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--scenario", action="append",
                 help=f"one of {', '.join(SCENARIOS)} (repeatable); default: "
                      f"{' and '.join(DEFAULT_SCENARIOS)}")
  p.add_argument("--workdir", required=True)
  p.add_argument("--seeds", type=int, default=3)
  p.add_argument("--methods", help="comma-separated subset of " + ", ".join(METHODS))
  p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                 help="unlearning config override for every method (e.g. steps=20)")
  p.add_argument("--pretrain-set", action="append", default=[], metavar="KEY=VALUE",
                 help="override of the original/retrain recipe (e.g. epochs=5)")
  p.add_argument("--no-sweeps", action="store_true", help="skip the tolerance curves")
  p.add_argument("--data-dir")
  p.add_argument("--no-progress", action="store_true")
  return p.parse_args(argv)


@main_guard
def main(argv=None):
  args = parse_args(argv)
  workdir = pathlib.Path(args.workdir)
  if workdir.exists() and not workdir.is_dir():
    raise ConfigError(f"workdir {workdir} is a file, not a directory")
  methods = args.methods.split(",") if args.methods else None
  start = time.perf_counter()
  for name in args.scenario or DEFAULT_SCENARIOS:
    results = run_scenario(name, workdir, seeds=args.seeds, methods=methods,
                           overrides=args.set, pretrain_overrides=args.pretrain_set,
                           data_dir=args.data_dir,
                           progress=not args.no_progress, sweeps=not args.no_sweeps)
    print((workdir / name / "results.md").read_text())
    print(f"[{name}: {results['wall_seconds']:.0f} s; files in {workdir / name}]")
  print(f"total {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
  main()
