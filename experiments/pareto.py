"""Sweep the IGS tolerance alone: the forgetting–utility trade-off it controls.

    python -m experiments.pareto --scenario digits-class --workdir runs/pareto \\
        [--tolerances -0.05,-0.01,0,0.01,0.05] [--seeds 3] [--method igs]

Reuses (or trains) the scenario's original and retrained models under ``workdir``,
runs the method at each tolerance for each seed, and writes ``pareto.json``,
``pareto.md`` and ``pareto.png`` (UA vs TA, one point per tolerance, mean ± std).
"""

from __future__ import annotations

import argparse
import json
import pathlib

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from tqdm.auto import tqdm  # noqa: E402

from experiments import configs  # noqa: E402
from experiments.cli import main_guard  # noqa: E402
from experiments.compare import _trained  # noqa: E402
from experiments.scenarios import get_scenario  # noqa: E402
from jaxunlearn import data as data_lib  # noqa: E402
from jaxunlearn import metrics as metrics_lib  # noqa: E402
from jaxunlearn.config import ConfigError, override  # noqa: E402
from jaxunlearn.methods import make_config  # noqa: E402
from jaxunlearn.unlearning import evaluate_unlearning, unlearn  # noqa: E402


def sweep(scenario_name, workdir, tolerances, *, seeds=3, method="igs", overrides=(),
          pretrain_overrides=(), data_dir=None, progress=True) -> dict:
  scenario = get_scenario(scenario_name)
  out_dir = pathlib.Path(workdir) / scenario_name
  out_dir.mkdir(parents=True, exist_ok=True)
  pre = override(configs.get_pretrain_config(scenario.pretrain_config), list(pretrain_overrides))
  dataset = data_lib.load_dataset(pre.dataset, data_dir)
  forget_set = data_lib.make_forget_set(dataset, scenario.forget, seed=0)
  original = _trained(out_dir / "original", pre, data_dir=data_dir, progress=progress)
  retrained = _trained(out_dir / "retrain", pre, forget=scenario.forget, retrain=True,
                       data_dir=data_dir, progress=progress)
  reference = evaluate_unlearning(retrained.fm, retrained.params, retrained.model_state,
                                  dataset, forget_set)
  rows = []
  jobs = [(t, s) for t in tolerances for s in range(seeds)]
  per_tol: dict = {}
  for tol, seed in tqdm(jobs, desc=f"{method} tolerance sweep", disable=not progress):
    cfg = override(make_config(method, scenario.unlearn, seed=seed, tolerance=tol),
                   list(overrides))
    res = unlearn(cfg, original.fm, original.params, original.model_state, dataset, forget_set,
                  progress=False)
    ev = evaluate_unlearning(original.fm, res.params, res.model_state, dataset, forget_set,
                             seed=seed)
    ev["AvgGap"] = metrics_lib.avg_gap(ev, reference)
    ev["retain_loss_rise"] = float(res.history["retain_loss"][-1] - res.history["retain_loss"][0])
    per_tol.setdefault(tol, []).append(ev)
  for tol, evs in per_tol.items():
    row = {"tolerance": tol}
    for key in ("UA", "RA", "TA", "MIA", "AvgGap", "retain_loss_rise"):
      row[key] = list(metrics_lib.mean_std([e[key] for e in evs]))
    rows.append(row)
  result = {"scenario": scenario_name, "method": method, "seeds": seeds, "retrain": reference,
            "rows": rows}
  (out_dir / "pareto.json").write_text(json.dumps(result, indent=1))
  lines = [f"### {method} tolerance sweep on {scenario_name} ({seeds} seeds)", "",
           "| tolerance ε | UA | RA | TA | MIA | Avg. Gap ↓ | L_r rise over the run |",
           "|---|---|---|---|---|---|---|"]
  lines += [f"| {r['tolerance']:g} | " + " | ".join(
      metrics_lib.format_mean_std(*r[k]) for k in ("UA", "RA", "TA", "MIA", "AvgGap")) +
      f" | {r['retain_loss_rise'][0]:.3f} |" for r in rows]
  (out_dir / "pareto.md").write_text("\n".join(lines) + "\n")
  fig, ax = plt.subplots(figsize=(6, 4.5))
  ax.errorbar([r["UA"][0] for r in rows], [r["TA"][0] for r in rows],
              xerr=[r["UA"][1] for r in rows], yerr=[r["TA"][1] for r in rows], fmt="o-",
              label=f"{method}, tolerance ε")
  for r in rows:
    ax.annotate(f"ε={r['tolerance']:g}", (r["UA"][0], r["TA"][0]), fontsize=8)
  ax.scatter(reference["UA"], reference["TA"], marker="*", s=160, color="black", label="retrain")
  ax.set_xlabel("UA (%)")
  ax.set_ylabel("TA (%)")
  ax.set_title(f"{scenario_name}: tolerance sweep")
  ax.grid(alpha=0.3)
  ax.legend()
  fig.tight_layout()
  fig.savefig(out_dir / "pareto.png", dpi=120)
  plt.close(fig)
  return result


def _floats(text):
  try:
    return [float(x) for x in text.split(",") if x.strip()]
  except ValueError:
    raise ConfigError(f"--tolerances must be comma-separated numbers, got {text!r}")


@main_guard
def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--scenario", default="digits-class")
  p.add_argument("--workdir", required=True)
  p.add_argument("--tolerances", default="-0.05,-0.01,0,0.01,0.05")
  p.add_argument("--seeds", type=int, default=3)
  p.add_argument("--method", default="igs", choices=["igs", "explicit"])
  p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
  p.add_argument("--pretrain-set", action="append", default=[], metavar="KEY=VALUE")
  p.add_argument("--data-dir")
  p.add_argument("--no-progress", action="store_true")
  args = p.parse_args(argv)
  result = sweep(args.scenario, args.workdir, _floats(args.tolerances), seeds=args.seeds,
                 method=args.method, overrides=args.set, pretrain_overrides=args.pretrain_set,
                 data_dir=args.data_dir, progress=not args.no_progress)
  print((pathlib.Path(args.workdir) / args.scenario / "pareto.md").read_text())
  return result


if __name__ == "__main__":
  main()
