"""Sweep the IGS tolerance alone: the forgetting–utility trade-off it controls.

    python -m experiments.pareto --scenario digits-class --workdir runs/pareto \\
        [--tolerances -0.05,-0.01,0,0.01,0.05] [--seeds 3] [--method igs]

Reuses (or trains) the scenario's original and retrained models under ``workdir``,
runs the method at each tolerance for each seed, and writes ``pareto.json``,
``pareto.md`` and ``pareto.png`` (UA vs TA, one point per tolerance, mean ± std).
"""

from __future__ import annotations

import pathlib

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from experiments.cli import main_guard, parser  # noqa: E402
from experiments.jobs import Job, prepare_scenario, run_jobs  # noqa: E402
from experiments.scenarios import SCENARIOS  # noqa: E402
from jaxunlearn import metrics as metrics_lib  # noqa: E402
from jaxunlearn.engine.records import write_json_atomic  # noqa: E402
from jaxunlearn.errors import ConfigError  # noqa: E402


def sweep(
  scenario_name,
  workdir,
  tolerances,
  *,
  seeds=3,
  method="igs",
  overrides=(),
  pretrain_overrides=(),
  data_dir=None,
  progress=True,
) -> dict:
  """Runs ``method`` at each tolerance for each seed (resumable: finished runs are reused,
  and shared with ``experiments.compare`` on the same workdir) and writes the sweep."""
  ctx = prepare_scenario(
    scenario_name,
    workdir,
    pretrain_overrides=pretrain_overrides,
    data_dir=data_dir,
    progress=progress,
  )
  out_dir, reference = ctx.out_dir, ctx.reference["retrain"]
  jobs = [Job(method, s, (("tolerance", t),)) for t in tolerances for s in range(seeds)]
  records = run_jobs(
    ctx, jobs, overrides=overrides, progress=progress, desc=f"{method} tolerance sweep"
  )
  per_tol: dict = {}
  for job, r in zip(jobs, records):
    ev = dict(r["metrics"], AvgGap=r["AvgGap"])
    loss = r["history"]["retain_loss"]
    ev["retain_loss_rise"] = float(loss[-1] - loss[0])
    per_tol.setdefault(dict(job.sweep)["tolerance"], []).append(ev)
  rows = []
  for tol, evs in per_tol.items():
    row = {"tolerance": tol}
    for key in ("UA", "RA", "TA", "MIA", "AvgGap", "retain_loss_rise"):
      row[key] = list(metrics_lib.mean_std([e[key] for e in evs]))
    rows.append(row)
  result = {
    "scenario": scenario_name,
    "method": method,
    "seeds": seeds,
    "retrain": reference,
    "rows": rows,
  }
  write_json_atomic(out_dir / "pareto.json", result)
  (out_dir / "pareto.md").write_text(_table(result))
  _figure(result, out_dir / "pareto.png")
  return result


def _table(result: dict) -> str:
  """The sweep as markdown: mean ± std of each metric per tolerance."""
  method, scenario_name, seeds, rows = (result[k] for k in ("method", "scenario", "seeds", "rows"))
  lines = [
    f"### {method} tolerance sweep on {scenario_name} ({seeds} seeds)",
    "",
    "| tolerance ε | UA | RA | TA | MIA | Avg. Gap ↓ | L_r rise over the run |",
    "|---|---|---|---|---|---|---|",
  ]
  lines += [
    f"| {r['tolerance']:g} | "
    + " | ".join(metrics_lib.format_mean_std(*r[k]) for k in ("UA", "RA", "TA", "MIA", "AvgGap"))
    + f" | {r['retain_loss_rise'][0]:.3f} |"
    for r in rows
  ]
  return "\n".join(lines) + "\n"


def _figure(result: dict, path) -> None:
  """UA against TA per tolerance (error bars: std over seeds), the retrained model a star."""
  method, scenario_name, rows = result["method"], result["scenario"], result["rows"]
  reference = result["retrain"]
  fig, ax = plt.subplots(figsize=(6, 4.5))
  ax.errorbar(
    [r["UA"][0] for r in rows],
    [r["TA"][0] for r in rows],
    xerr=[r["UA"][1] for r in rows],
    yerr=[r["TA"][1] for r in rows],
    fmt="o-",
    label=f"{method}, tolerance ε",
  )
  for r in rows:
    ax.annotate(f"ε={r['tolerance']:g}", (r["UA"][0], r["TA"][0]), fontsize=8)
  ax.scatter(reference["UA"], reference["TA"], marker="*", s=160, color="black", label="retrain")
  ax.set_xlabel("UA (%)")
  ax.set_ylabel("TA (%)")
  ax.set_title(f"{scenario_name}: tolerance sweep")
  ax.grid(alpha=0.3)
  ax.legend()
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  plt.close(fig)


def _floats(text):
  try:
    return [float(x) for x in text.split(",") if x.strip()]
  except ValueError as e:
    raise ConfigError(f"--tolerances must be comma-separated numbers, got {text!r}") from e


def build_parser():
  p = parser(__doc__)
  p.add_argument(
    "--scenario", default="digits-class", help=f"scenario: one of {', '.join(SCENARIOS)}"
  )
  p.add_argument(
    "--workdir",
    required=True,
    help="where models, runs and the sweep go (shared with experiments.compare)",
  )
  p.add_argument(
    "--tolerances", default="-0.05,-0.01,0,0.01,0.05", help="comma-separated tolerances ε to run"
  )
  p.add_argument("--seeds", type=int, default=3, help="unlearning seeds per tolerance")
  p.add_argument(
    "--method", default="igs", choices=["igs", "explicit"], help="method whose tolerance is swept"
  )
  p.add_argument(
    "--set",
    action="append",
    default=[],
    metavar="KEY=VALUE",
    help="override any unlearning config key (repeatable), e.g. steps=20",
  )
  p.add_argument(
    "--pretrain-set",
    action="append",
    default=[],
    metavar="KEY=VALUE",
    help="override any config key of the original/retrain recipe (repeatable), e.g. epochs=5",
  )
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
  result = sweep(
    args.scenario,
    args.workdir,
    _floats(args.tolerances),
    seeds=args.seeds,
    method=args.method,
    overrides=args.set,
    pretrain_overrides=args.pretrain_set,
    data_dir=args.data_dir,
    progress=not args.no_progress,
  )
  print((pathlib.Path(args.workdir) / args.scenario / "pareto.md").read_text())
  return result


if __name__ == "__main__":
  main()
