"""Experiment throughput: unlearning runs per minute, one at a time against seeds batched.

    python -m benchmarks.throughput                 # digits-class, every method, 5 seeds
    python -m benchmarks.throughput --quick         # 4 methods, 3 seeds (< 2 min, 2 cores)

Both modes run the same jobs of one comparison scenario in this process, from the same
original model (trained once, before the clock starts): ``sequential`` runs every
(method, seed) alone; ``batched`` runs a method's seeds as one vmapped program
(:func:`jaxunlearn.engine.unlearning.unlearn_batch`, what ``experiments.compare`` does by
default). Each mode's wall time covers everything a comparison does per run — compiling,
the steps, evaluating (MIA included), writing the record. Reported per mode:

* ``runs_per_minute``;
* ``step_time_share`` (0–1): the time inside unlearning steps (each run's loop minus its
  first, compiling step) over the wall time;
* ``compile_share``: the first steps' time over the wall time.

The persistent compilation cache is not enabled here (only the commands turn it on), so
both modes compile what they run; the two modes share no compiled step (a vmapped step
is another program), and the original's evaluation is compiled before the clock starts.
Writes ``--out`` (JSON) and a markdown table beside it.
"""

from __future__ import annotations

import argparse
import dataclasses
import pathlib
import shutil
import tempfile
import time

from experiments.jobs import Job, prepare_scenario, run_jobs
from jaxunlearn.engine.methods import METHODS
from jaxunlearn.engine.records import machine_info, write_json_atomic

QUICK = {"methods": ("igs", "explicit", "ft", "rl"), "seeds": 3}
MODES = ("sequential", "batched")


def measure(ctx, jobs, batched: bool) -> dict:
  """Runs ``jobs`` in a fresh runs folder; returns the mode's figures."""
  runs_dir = pathlib.Path(tempfile.mkdtemp(prefix="throughput-"))
  (runs_dir / "runs").mkdir()
  local = dataclasses.replace(ctx, out_dir=runs_dir)
  start = time.perf_counter()
  records = run_jobs(local, jobs, progress=False, batched=batched)
  wall = time.perf_counter() - start
  shutil.rmtree(runs_dir, ignore_errors=True)
  # A batched record's seconds and compile_seconds are its shares of the group's.
  loop = sum(r["seconds"] for r in records)
  compile_ = sum(r["compile_seconds"] for r in records)
  return {
    "runs": len(records),
    "wall_seconds": wall,
    "runs_per_minute": 60 * len(records) / wall,
    "step_time_share": max(0.0, loop - compile_) / wall,
    "compile_share": compile_ / wall,
  }


def run(scenario: str, methods, seeds: int, workdir) -> dict:
  ctx = prepare_scenario(scenario, workdir, progress=False)
  jobs = [Job(m, seed) for m in methods for seed in range(seeds)]
  out = {"benchmark": "throughput", "scenario": scenario, "methods": list(methods)}
  out["seeds"] = seeds
  for mode in MODES:
    out[mode] = measure(ctx, jobs, batched=mode == "batched")
  out["speedup"] = out["batched"]["runs_per_minute"] / out["sequential"]["runs_per_minute"]
  out["machine"] = machine_info()
  return out


def markdown(report: dict) -> str:
  lines = [
    f"Throughput of `{report['scenario']}`: {len(report['methods'])} methods × "
    f"{report['seeds']} seeds, every run compiled, evaluated and stored.",
    "",
    "| mode | runs | wall s | runs / min | step-time share | compile share |",
    "|---|---:|---:|---:|---:|---:|",
  ]
  for mode in MODES:
    r = report[mode]
    lines.append(
      f"| {mode} | {r['runs']} | {r['wall_seconds']:.1f} | {r['runs_per_minute']:.1f} | "
      f"{r['step_time_share']:.2f} | {r['compile_share']:.2f} |"
    )
  lines.append("")
  lines.append(f"Batched / sequential runs per minute: **{report['speedup']:.2f}×**.")
  m = report["machine"]
  lines.append(f"Machine: {m['processor']}, {m['affinity_cpus']} CPUs, JAX {m['versions']['jax']}.")
  return "\n".join(lines) + "\n"


def build_parser():
  p = argparse.ArgumentParser(
    description=__doc__.splitlines()[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
  )
  p.add_argument("--scenario", default="digits-class", help="the comparison scenario")
  p.add_argument("--methods", help="comma-separated methods; unset: all (quick: 4)")
  p.add_argument("--seeds", type=int, help="seeds per method; unset: 5 (quick: 3)")
  p.add_argument("--quick", action="store_true", help="4 methods × 3 seeds (< 2 min)")
  p.add_argument("--workdir", help="where the original/retrain models go; unset: a temp dir")
  p.add_argument("--out", default="results/throughput.json", help="JSON output path")
  return p


def main(argv=None) -> dict:
  args = build_parser().parse_args(argv)
  methods = (
    args.methods.split(",") if args.methods else (QUICK["methods"] if args.quick else METHODS)
  )
  seeds = args.seeds or (QUICK["seeds"] if args.quick else 5)
  workdir = args.workdir or tempfile.mkdtemp(prefix="throughput-models-")
  report = run(args.scenario, tuple(methods), seeds, workdir)
  out = pathlib.Path(args.out)
  out.parent.mkdir(parents=True, exist_ok=True)
  write_json_atomic(out, report, indent=2)
  out.with_suffix(".md").write_text(markdown(report))
  print(markdown(report))
  return report


if __name__ == "__main__":
  main()
