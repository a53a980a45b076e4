"""Compare IGS with every baseline on one scenario, over seeds, under the same budget.

    python -m experiments.compare --scenario digits-class --workdir runs/compare [--seeds 3]
    python -m experiments.compare --workdir runs/compare       # the default offline pair

Trains (or reuses) the original and the retrained model, runs every method for each
seed (completed runs are reused, so a killed comparison resumes where it stopped), and
writes ``results.md``, ``results.csv``, ``results.json`` and plots into
``workdir/<scenario>/``.
"""

from __future__ import annotations

import csv
import dataclasses
import math
import pathlib
import shlex
import sys
import time

import numpy as np

from experiments import ddpm, plots, report, results_schema, tofu, tuning
from experiments.cli import main_guard, parser
from experiments.jobs import Job, is_main_run, prepare_scenario, run_jobs
from experiments.scenarios import DEFAULT_SCENARIOS, SCENARIOS, get_scenario
from jaxunlearn import metrics as metrics_lib
from jaxunlearn.engine.methods import METHODS, config_from_dict, get_method
from jaxunlearn.engine.records import check_workdir, write_json_atomic
from jaxunlearn.errors import ConfigError

COLUMNS = metrics_lib.REPORTED_KEYS  # table columns; Avg. Gap is over METRIC_KEYS only


def run_scenario(
  name: str,
  workdir,
  *,
  seeds: int = 3,
  methods=None,
  overrides=(),
  pretrain_overrides=(),
  data_dir=None,
  progress: bool = True,
  sweeps: bool | int = True,
  tuned: bool = False,
  forget: str | None = None,
  batched: bool = True,
  command: str | None = None,
) -> dict:
  """Runs every method × seed (and the scenario's sweeps) and writes tables and plots.

  ``sweeps``: True for every sweep value, an int n for the first n of each, False for none.
  ``batched``: run a configuration's seeds as one vmapped program (the default; equal to
  one-at-a-time runs to float tolerance) or one at a time.
  ``forget``: a forget-set spec that replaces the scenario's; the results then go to
  ``<workdir>/<scenario>@<spec>/`` (the original model is retrained there too: one
  folder holds one forget set's runs and retrained model).
  ``command``: the command line that ran it, for ``report.md`` (None: called from Python).
  """
  scenario = with_forget(get_scenario(name), forget) if forget else get_scenario(name)
  name = scenario.name
  methods = list(methods or METHODS)
  for m in methods:
    get_method(m)
  if seeds <= 0:
    raise ConfigError(f"--seeds must be ≥ 1, got {seeds}")
  start = time.perf_counter()
  ctx = prepare_scenario(
    scenario, workdir, pretrain_overrides=pretrain_overrides, data_dir=data_dir, progress=progress
  )
  chosen, candidates = {}, {}
  if tuned:  # retrain-blind: seed 0, validation split (experiments.tuning)
    grids = {m: get_method(m).tuning_grid() for m in methods}
    tune_jobs = [
      Job(m, 0, tuple(sorted(point.items())), label=f"tune{i}")
      for m in methods
      for i, point in enumerate(grids[m])
    ]
    tune_runs = run_jobs(
      ctx, tune_jobs, overrides=overrides, progress=progress, desc=f"{name} tuning"
    )
    class_wise = bool(ctx.forget_set.forget_classes)
    for m in methods:
      runs_m = [r for j, r in zip(tune_jobs, tune_runs) if j.method == m]
      best = tuning.select(runs_m, ctx.reference["original"], class_wise)
      chosen[m] = grids[m][best]
      candidates[m] = [
        {"config": grids[m][i], "chosen": i == best}
        | {k: r["metrics"].get(k) for k in tuning.SELECTION_KEYS}
        for i, r in enumerate(runs_m)
      ]
  jobs = scenario_jobs(ctx.scenario, methods, seeds, sweeps=sweeps, chosen=chosen or None)
  runs = run_jobs(ctx, jobs, overrides=overrides, progress=progress, batched=batched)

  summary = summarize([r for r in runs if is_main_run(r)])
  results = {
    "schema": results_schema.SCHEMA,
    "metrics": list(COLUMNS),
    "scenario": name,
    "description": ctx.scenario.description,
    "forget": ctx.scenario.forget,
    "dataset": ctx.dataset.name,
    "model": ctx.pretrain.model,
    "seeds": seeds,
    "forget_size": int(len(ctx.forget_set.forget_idx)),
    "reference": ctx.reference,
    "retrain_seconds": ctx.retrain_seconds,
    "summary": summary,
    "tuned": chosen or None,
    "tuning": candidates or None,
    "runs": runs,
    "wall_seconds": time.perf_counter() - start,
  }
  write_json_atomic(ctx.out_dir / "results.json", results)
  write_tables(results, ctx.out_dir)
  plots.write_all(results, ctx.out_dir)
  report.write_report(results, ctx.out_dir, command=command, wall_seconds=results["wall_seconds"])
  return results


def scenario_jobs(scenario, methods, seeds: int, *, sweeps: bool | int = True, chosen=None):
  """The runs of one comparison: every method × seed (at its tuned configuration when
  ``chosen`` maps methods to one), then the scenario's sweeps (untuned only)."""
  jobs = [
    Job(m, seed, tuple(sorted(chosen[m].items())), label="tuned") if chosen else Job(m, seed)
    for m in methods
    for seed in range(seeds)
  ]
  if sweeps and not chosen:
    for m, (key, values) in scenario.sweeps.items():
      if m in methods:
        values = values if sweeps is True else values[: int(sweeps)]
        jobs += [Job(m, 0, ((key, v),)) for v in values]
  return jobs


def summarize(runs) -> dict:
  """method -> {metric: [mean, std]} over seeds, the Avg. Gap's 95 % interval, its forget
  target and run time."""
  by_method: dict = {}
  for r in runs:
    by_method.setdefault(r["method"], []).append(r)
  summary = {}
  for method, rs in by_method.items():
    same = get_method(method).same_as(config_from_dict(rs[0]["config"]))
    entry = {
      "same_as": list(same) if same else None,
      "forget_target": rs[0]["forget_target"],
      "n": len(rs),
      "diverged": sum(bool(r["metrics"].get("diverged")) for r in rs),
    }
    for key in COLUMNS:
      entry[key] = list(_mean_std([r["metrics"].get(key, float("nan")) for r in rs]))
    gaps = [r["AvgGap"] for r in rs]
    entry["AvgGap"] = list(_mean_std(gaps))
    finite = [g for g in gaps if g is not None and math.isfinite(g)]
    entry["AvgGap_ci95"] = list(metrics_lib.ci95(finite)) if finite else [math.nan, math.nan]
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
  """Writes ``results.md`` (:func:`results_table`) and ``results.csv`` into ``out_dir``."""
  (out_dir / "results.md").write_text(results_table(results))
  _write_csv(results, out_dir / "results.csv")


def results_table(results: dict) -> str:
  """A comparison's table (markdown): the original and retrained models, then every
  method's mean ± std over seeds, the best Avg. Gap in bold."""
  ref = results["reference"]
  summary = results["summary"]
  gaps = {m: s["AvgGap"][0] for m, s in summary.items() if math.isfinite(s["AvgGap"][0])}
  best = min(gaps, key=gaps.get) if gaps else None
  lines = [
    f"### {results['scenario']}: {results['description']}",
    "",
    f"{results['dataset']}, {results['model']}, forget set {results['forget']} "
    f"({results['forget_size']} examples), {results['seeds']} seeds (mean ± std). "
    "UA, MIA, Loss AUC: closer to retrain is better; RA, TA: higher; Avg. Gap (mean |Δ| "
    "to retrain over UA, RA, TA, MIA; Loss AUC is not in it, as in the literature): lower, "
    "with its 95 % interval over seeds. MIA: SalUn's confidence attack. Loss AUC: forget vs "
    "unseen examples of the same classes by loss (50 = indistinguishable). Time: median "
    "over seeds of the unlearning wall time without the jit compile (retrain: its full "
    "training).",
    "",
    "| Method | Forget target | UA | RA | TA | MIA | Loss AUC | Avg. Gap ↓ | 95 % CI | Time (s) |",
    "|---|---|---|---|---|---|---|---|---|---|",
  ]
  for label, m in (("Original", ref["original"]), ("Retrain", ref["retrain"])):
    t = f"{results['retrain_seconds']:.1f}" if label == "Retrain" else "—"
    lines.append(
      f"| {label} | — | "
      + " | ".join(f"{m[k]:.2f}" for k in COLUMNS)
      + f" | {metrics_lib.avg_gap(m, ref['retrain']):.2f} | — | {t} |"
    )
  for method, s in summary.items():
    name = f"**{method}**" if method == best else method
    gap = _fmt(s["AvgGap"])
    gap = f"**{gap}**" if method == best else gap
    lo, hi = s["AvgGap_ci95"]
    ci = f"[{lo:.2f}, {hi:.2f}]" if math.isfinite(lo) else "—"
    note = f" ({s['diverged']}/{s['n']} diverged)" if s["diverged"] else ""
    lines.append(
      f"| {name}{note} | {s['forget_target']} | "
      + " | ".join(_fmt(s[k]) for k in COLUMNS)
      + f" | {gap} | {ci} | {s['seconds'][0]:.2f} |"
    )
  same = [(m, *s["same_as"]) for m, s in summary.items() if s.get("same_as")]
  same = [(m, other, why) for m, other, why in same if other in summary]
  if same:  # identical rows by construction, said where a reader sees them
    lines.append("")
    lines += [f"{m} equals {other}: {why}." for m, other, why in same]
  return "\n".join(lines) + "\n"


def _write_csv(results: dict, path: pathlib.Path) -> None:
  ref, summary = results["reference"], results["summary"]
  with path.open("w", newline="") as f:
    w = csv.writer(f)
    w.writerow(
      ["method", "forget_target"]
      + [f"{k}_{s}" for k in (*COLUMNS, "AvgGap") for s in ("mean", "std")]
      + ["AvgGap_ci95_low", "AvgGap_ci95_high", "seconds_median"]
    )
    for label, m in (("original", ref["original"]), ("retrain", ref["retrain"])):
      gap = metrics_lib.avg_gap(m, ref["retrain"])
      w.writerow(
        [label, ""]
        + sum([[m[k], 0.0] for k in COLUMNS], [])
        + [gap, 0.0, gap, gap, results["retrain_seconds"] if label == "retrain" else ""]
      )
    for method, s in summary.items():
      w.writerow(
        [method, s["forget_target"]]
        + sum([list(s[k]) for k in (*COLUMNS, "AvgGap")], [])
        + [*s["AvgGap_ci95"], s["seconds"][0]]
      )


def rank_summary(all_results: list[dict]) -> dict:
  """Each method's rank by mean Avg. Gap in every scenario (1 = closest to retrain;
  diverged = last), and its mean rank across them."""
  methods = list(dict.fromkeys(m for r in all_results for m in r["summary"]))
  ranks: dict = {m: {} for m in methods}
  for r in all_results:
    gaps = {m: s["AvgGap"][0] for m, s in r["summary"].items()}
    order = sorted(gaps, key=lambda m: (not math.isfinite(gaps[m]), gaps[m]))
    for i, m in enumerate(order):
      ranks[m][r["scenario"]] = i + 1
  mean_rank = {m: float(np.mean(list(v.values()))) for m, v in ranks.items() if v}
  return {"scenarios": [r["scenario"] for r in all_results], "ranks": ranks, "mean_rank": mean_rank}


def write_rank_summary(summary: dict, path: pathlib.Path) -> None:
  path.write_text(rank_table(summary))


def rank_table(summary: dict) -> str:
  """:func:`rank_summary` as a markdown table, best mean rank first."""
  scen = summary["scenarios"]
  order = sorted(summary["mean_rank"], key=summary["mean_rank"].get)
  lines = [
    "### Rank by Avg. Gap in each scenario (1 = closest to retrain)",
    "",
    "| Method | " + " | ".join(scen) + " | mean rank ↓ |",
    "|---|" + "---|" * (len(scen) + 1),
  ]
  for m in order:
    cells = [str(summary["ranks"][m].get(s, "—")) for s in scen]
    lines.append(f"| {m} | " + " | ".join(cells) + f" | {summary['mean_rank'][m]:.1f} |")
  return "\n".join(lines) + "\n"


def with_forget(scenario, spec: str):
  """``scenario`` with the forget set ``spec``, named ``<scenario>@<spec>`` (path-safe).

  Examples:
    >>> from experiments.scenarios import get_scenario
    >>> with_forget(get_scenario("digits-class"), "class:3").name
    'digits-class@class-3'
  """
  slug = "".join(c if c.isalnum() or c in ".-" else "-" for c in spec)
  return dataclasses.replace(
    scenario,
    name=f"{scenario.name}@{slug}",
    forget=spec,
    description=f"{scenario.description} — forget set replaced by {spec}",
  )


def _overrides(p, flag: str, what: str, example: str) -> None:
  help_ = f"override {what} (repeatable), e.g. {example}"
  p.add_argument(flag, action="append", default=[], metavar="KEY=VALUE", help=help_)


def build_parser():
  p = parser(__doc__)
  p.add_argument(
    "--scenario",
    action="append",
    help=f"one of {', '.join([*SCENARIOS, *ddpm.SCENARIOS, *tofu.SCENARIOS])} (repeatable); "
    f"unset: {' and '.join(DEFAULT_SCENARIOS)}",
  )
  p.add_argument(
    "--workdir",
    required=True,
    help="where models, runs, results and plots go (one folder a scenario)",
  )
  p.add_argument("--seeds", type=int, default=5, help="unlearning seeds per method")
  p.add_argument(
    "--methods", help="comma-separated subset of " + ", ".join(METHODS) + "; unset: all"
  )
  _overrides(p, "--set", "any unlearning config key for every method", "steps=20")
  _overrides(p, "--pretrain-set", "any config key of the original/retrain recipe", "epochs=5")
  p.add_argument(
    "--forget",
    help="a forget-set spec (class:K, random:F, ids:PATH, rows:PATH) replacing each "
    "scenario's; results go to <workdir>/<scenario>@<spec>/",
  )
  p.add_argument("--no-sweeps", action="store_true", help="skip the tolerance curves")
  p.add_argument(
    "--workers",
    type=int,
    default=1,
    help="run the jobs in N processes, each pinned to its share of the CPUs; they claim "
    "jobs atomically (commands started by hand on one workdir cooperate the same way)",
  )
  p.add_argument(
    "--sequential",
    action="store_true",
    help="run seeds one at a time instead of as one vmapped program (results equal to "
    "float tolerance; see benchmarks/throughput.py for the speed difference)",
  )
  p.add_argument(
    "--tuned",
    action="store_true",
    help="tune every method first (the same budget each, retrain-blind, on the validation "
    "split; see experiments/tuning.py), then run the chosen configuration on every seed",
  )
  p.add_argument(
    "--data-dir",
    help="dataset directory; unset: $JAXUNLEARN_DATA_DIR or ~/.cache/jaxunlearn/datasets",
  )
  p.add_argument("--no-progress", action="store_true", help="hide the progress bars")
  tofu.add_files_arguments(p)
  return p


WORKER_CPUS_ENV = "JAXUNLEARN_WORKER_CPUS"


def pin_worker() -> None:
  """A worker pins itself to its CPUs before XLA starts its threads (they inherit it)."""
  import os  # noqa: PLC0415

  cpus = os.environ.get(WORKER_CPUS_ENV)
  if cpus and hasattr(os, "sched_setaffinity"):
    os.sched_setaffinity(0, {int(c) for c in cpus.split(",")})


def run_workers(
  n: int, argv: list[str], workdir: pathlib.Path, *, module: str = "experiments.compare"
) -> float:
  """Runs ``n`` worker processes of this same command (``python -m module``) on
  ``workdir`` and waits for them.

  Each worker is pinned to its share of this process's CPUs (its XLA thread budget) and
  takes the jobs no other process holds (``experiments.jobs.Claims``); their logs go to
  ``<workdir>/workers/``. Returns the wall time. A failed worker raises, naming its log.
  """
  import os  # noqa: PLC0415
  import subprocess  # noqa: PLC0415

  cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
  logs = workdir / "workers"
  logs.mkdir(parents=True, exist_ok=True)
  child_argv, skip = [], False
  for a in argv:
    if skip:
      skip = False
      continue
    if a == "--workers":
      skip = True
      continue
    if a.startswith("--workers="):
      continue
    child_argv.append(a)
  procs = []
  start = time.perf_counter()
  for k in range(n):
    share = cpus[k * len(cpus) // n : (k + 1) * len(cpus) // n] or cpus
    env = {**os.environ, WORKER_CPUS_ENV: ",".join(map(str, share))}
    with open(logs / f"worker-{k}.log", "w") as log:
      procs.append(
        subprocess.Popen(
          [sys.executable, "-m", module, *child_argv, "--no-progress"],
          stdout=log,
          stderr=subprocess.STDOUT,
          env=env,
        )
      )
    (logs / f"worker-{k}.pid").write_text(str(procs[-1].pid))
  codes = [p.wait() for p in procs]
  failed = [k for k, c in enumerate(codes) if c != 0]
  if failed:
    raise ConfigError(
      f"worker {failed[0]} exited with status {codes[failed[0]]}; see {logs}/worker-{failed[0]}.log"
    )
  return time.perf_counter() - start


@main_guard
def main(argv=None):
  pin_worker()
  p = build_parser()
  args = p.parse_args(argv)
  if tofu.run_files(p, args, args.methods.split(",") if args.methods else None):
    return
  if args.workers > 1:
    seconds = run_workers(args.workers, list(sys.argv[1:] if argv is None else argv),
                          check_workdir(args.workdir))  # fmt: skip
    print(f"[{args.workers} workers: {seconds:.0f} s; writing the tables]", file=sys.stderr)
  command = "python -m experiments.compare " + shlex.join(sys.argv[1:] if argv is None else argv)
  workdir = check_workdir(args.workdir)
  methods = args.methods.split(",") if args.methods else None
  start = time.perf_counter()
  all_results = []
  for name in args.scenario or DEFAULT_SCENARIOS:
    if name in ddpm.SCENARIOS:  # generative: samples judged by a classifier (experiments.ddpm)
      ddpm.run_experiment(
        workdir / name,
        args.forget or ddpm.SCENARIOS[name],
        args.seeds,
        methods,
        data_dir=args.data_dir,
      )
      print((workdir / name / "results.md").read_text())
      continue
    if name in tofu.SCENARIOS:  # a language model's answers (experiments.tofu)
      tofu.run(name, workdir, methods, say=lambda line: print(line, file=sys.stderr))
      print((workdir / name / "results.md").read_text())
      continue
    results = run_scenario(
      name,
      workdir,
      seeds=args.seeds,
      methods=methods,
      overrides=args.set,
      pretrain_overrides=args.pretrain_set,
      data_dir=args.data_dir,
      progress=not args.no_progress,
      sweeps=not args.no_sweeps,
      tuned=args.tuned,
      forget=args.forget,
      batched=not args.sequential,
      command=command,
    )
    folder = workdir / results["scenario"]
    print((folder / "results.md").read_text())
    print(f"[{results['scenario']}: {results['wall_seconds']:.0f} s; files in {folder}]")
    all_results.append(results)
  if len(all_results) > 1:
    summary = rank_summary(all_results)
    write_json_atomic(workdir / "ranks.json", summary)
    write_rank_summary(summary, workdir / "ranks.md")
    plots.rank_heatmap(summary, workdir / "ranks.png")
    report.write_overview(
      all_results, workdir, command=command, wall_seconds=time.perf_counter() - start
    )
    print((workdir / "ranks.md").read_text())
  print(f"total {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
  main()
