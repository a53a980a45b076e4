"""IGS variants on the loop a user writes: does the paper's update hold utility, and what does.

    python -m experiments.igs_variants --workdir runs/igs_variants [--classes 0,2,5,7,9]
        [--seeds 3] [--variants paper,anchored]

The loop of a typical user (and of our `digits-class` scenario): SGD 0.01 with momentum
0.9, 100 steps of 64 retain + 16 forget rows, forget one class of digits with random
wrong labels. Every variant runs on every class × seed from the same original model; the
table reports the test-accuracy drop on the kept classes against the original (mean and
worst run), forgetting (UA), and the Avg. Gap to the model retrained without that class.
Resumable: finished runs are reused.
"""

from __future__ import annotations

import math
import pathlib

import numpy as np

from experiments.cli import main_guard, parser
from experiments.jobs import Job, prepare_scenario, run_jobs
from experiments.scenarios import Scenario
from jaxunlearn import metrics as metrics_lib
from jaxunlearn.engine.methods import IGSConfig
from jaxunlearn.engine.records import check_workdir, write_json_atomic
from jaxunlearn.errors import ConfigError

# The keys a variant of implicit.VARIANTS sets (signal and λ_0 are the same in both).
_VARIANT_KEYS = ("reference", "normalize_weights", "log_losses", "tolerance")
_VARIANT_KEYS += ("dual_optimizer", "dual_lr", "dual_weight_decay")


def _variant(name: str) -> dict:
  hparams = IGSConfig.variant(name)
  return {k: getattr(hparams, k) for k in _VARIANT_KEYS}


_PAPER, _ANCHORED = _variant("paper"), _variant("anchored")

# name -> config overrides of the igs method (every IGS key set, so a variant does not
# depend on the registry's defaults).
VARIANTS = {
  "paper": _PAPER,
  "paper, jvp signal": {**_PAPER, "signal": "jvp"},
  "paper, dual lr 0.1, no decay": {**_PAPER, "dual_lr": 0.1, "dual_weight_decay": 0.0},
  "paper, normalised weights": {**_PAPER, "normalize_weights": True},
  "paper, warm start λ0 = 1": {**_PAPER, "init_multiplier": 1.0},
  "anchored": _ANCHORED,
  "anchored, weights (λ, 1)": {**_ANCHORED, "normalize_weights": False},
  "anchored, log losses": {**_ANCHORED, "log_losses": True},
  "anchored, dual Adam lr 1": {**_ANCHORED, "dual_optimizer": "adam", "dual_lr": 1.0},
}


def _slug(name: str) -> str:
  return "".join(c if c.isalnum() else "_" for c in name).strip("_")


def _summary(variant: str, rs: list) -> dict:
  """One variant's runs over classes and seeds: TA drops, collapses, UA and Avg. Gap."""
  ok = [r for r in rs if math.isfinite(r["TA"])]  # a diverged run has NaN metrics
  drops = [r["TA_drop"] for r in ok] or [math.nan]
  gaps = [r["AvgGap"] for r in ok if math.isfinite(r["AvgGap"])]
  return {
    "runs": len(rs),
    "diverged": len(rs) - len(ok),
    "TA_drop_mean": float(np.mean(drops)),
    "TA_drop_max": float(np.max(drops)),
    # a diverged run has lost everything
    "runs_losing_over_1.5": int(sum(d > 1.5 for d in drops)) + len(rs) - len(ok),
    "UA_min": float(np.min([r["UA"] for r in ok])) if ok else math.nan,
    "UA_mean": float(np.mean([r["UA"] for r in ok])) if ok else math.nan,
    "AvgGap": list(metrics_lib.mean_std(gaps)) if gaps else [math.nan, math.nan],
    "config": VARIANTS[variant],
  }


def run(
  workdir,
  *,
  classes=(0, 2, 5, 7, 9),
  seeds=3,
  variants=None,
  steps=100,
  data_dir=None,
  pretrain_overrides=(),
  progress=True,
) -> dict:
  variants = list(variants or VARIANTS)
  for v in variants:
    if v not in VARIANTS:
      raise ConfigError(f"unknown variant {v!r}; valid: {', '.join(VARIANTS)}")
  rows = {v: [] for v in variants}
  for c in classes:
    # A user's own loop: every step 64 retain + 16 forget rows, plain SGD with momentum.
    loop = {"steps": steps, "layout": "split", "weight_decay": 0.0}
    scenario = Scenario(f"digits-class{c}", "digits-mlp", f"class:{c}", loop)
    ctx = prepare_scenario(
      scenario,
      workdir,
      pretrain_overrides=pretrain_overrides,
      data_dir=data_dir,
      progress=progress,
    )
    names = [v for v in variants for _ in range(seeds)]
    jobs = [
      Job("igs", s, tuple(sorted(VARIANTS[v].items())), label=_slug(v))
      for v in variants
      for s in range(seeds)
    ]
    records = run_jobs(ctx, jobs, progress=progress, desc=f"class {c}")
    ta0 = ctx.reference["original"]["TA"]
    for v, job, r in zip(names, jobs, records):
      m = r["metrics"]
      rows[v].append(
        {
          "class": c,
          "seed": job.seed,
          "UA": m["UA"],
          "TA": m["TA"],
          "TA_drop": ta0 - m["TA"],
          "RA": m["RA"],
          "AvgGap": r["AvgGap"],
          "final_multiplier": r["history"]["multiplier"][-1],
        }
      )
  summary = {v: _summary(v, rs) for v, rs in rows.items()}
  result = {
    "classes": list(classes),
    "seeds": seeds,
    "steps": steps,
    "summary": summary,
    "runs": rows,
  }
  out = pathlib.Path(workdir)
  write_json_atomic(out / "igs_variants.json", result)
  (out / "igs_variants.md").write_text(variants_table(result))
  return result


def variants_table(result: dict) -> str:
  """The study's table (markdown), from its ``igs_variants.json``."""
  classes, seeds, steps = result["classes"], result["seeds"], result["steps"]
  lines = [
    f"### IGS variants: forget one digits class ({', '.join(map(str, classes))}) × "
    f"{seeds} seeds, {steps} steps of SGD 0.01 (momentum 0.9), 64 retain + 16 forget rows",
    "",
    "TA drop: test accuracy on the kept classes, original minus unlearned (points; lower is "
    "better; over the runs that did not diverge). UA: 100 − forget accuracy. Avg. Gap to the "
    "model retrained without the class. A diverged run (non-finite outputs) counts as losing.",
    "",
    "| variant | TA drop mean | TA drop worst | runs losing > 1.5 | diverged | UA min | UA mean "
    "| Avg. Gap |",
    "|---|---|---|---|---|---|---|---|",
  ]
  for v, s in result["summary"].items():
    lines.append(
      f"| {v} | {s['TA_drop_mean']:.2f} | {s['TA_drop_max']:.2f} | "
      f"{s['runs_losing_over_1.5']}/{s['runs']} | {s['diverged']} | {s['UA_min']:.1f} | "
      f"{s['UA_mean']:.1f} | "
      f"{metrics_lib.format_mean_std(*s['AvgGap'])} |"
    )
  return "\n".join(lines) + "\n"


def _ints(text):
  try:
    return [int(x) for x in text.split(",") if x.strip()]
  except ValueError as e:
    raise ConfigError(f"--classes must be comma-separated integers, got {text!r}") from e


def build_parser():
  p = parser(__doc__)
  p.add_argument("--workdir", required=True, help="where models, runs and the table go")
  p.add_argument(
    "--classes", default="0,2,5,7,9", help="comma-separated digits classes to forget, one by one"
  )
  p.add_argument("--seeds", type=int, default=3, help="unlearning seeds per class")
  p.add_argument(
    "--variants", help="semicolon-separated subset of: " + "; ".join(VARIANTS) + "; unset: all"
  )
  p.add_argument("--steps", type=int, default=100, help="unlearning steps per run")
  p.add_argument(
    "--data-dir",
    help="dataset directory; unset: $JAXUNLEARN_DATA_DIR or ~/.cache/jaxunlearn/datasets",
  )
  p.add_argument("--no-progress", action="store_true", help="hide the progress bars")
  return p


def parse_args(argv=None):
  return build_parser().parse_args(argv)


@main_guard
def main(argv=None):
  args = parse_args(argv)
  if args.seeds < 1:
    raise ConfigError(f"--seeds must be ≥ 1, got {args.seeds}")
  workdir = check_workdir(args.workdir)
  variants = [v.strip() for v in args.variants.split(";")] if args.variants else None
  run(
    workdir,
    classes=_ints(args.classes),
    seeds=args.seeds,
    variants=variants,
    steps=args.steps,
    data_dir=args.data_dir,
    progress=not args.no_progress,
  )
  print((workdir / "igs_variants.md").read_text())


if __name__ == "__main__":
  main()
