"""Experiment throughput: unlearning runs per minute, one at a time against batched.

    python -m benchmarks.throughput --out docs/results/throughput_cpu.json
    python -m benchmarks.throughput --quick    # digits-class, 4 methods, 3 seeds (< 2 min)

Every mode runs the same jobs — those of the default comparison (``python -m
experiments.compare``: both default scenarios, every method × 5 seeds, plus the
scenarios' sweeps) — in a fresh runs folder, from the same original models (trained
once, before the clock starts):

* ``sequential``: every run alone (``compare --sequential``);
* ``batched``: the runs that share a compiled program — a method's seeds and the sweep
  points that differ only in numeric hyperparameters — as one vmapped program
  (:func:`jaxunlearn.engine.unlearning.run_batch`, what ``compare`` does by default),
  with a cold compilation cache;
* ``batched_warm``: the same with JAX's persistent compilation cache already filled by an
  identical earlier process, as for a rerun with other seeds, other numeric
  hyperparameters, or another forget set of the same size. It runs in a child process
  (``--compile-cache``), started twice: the first fills the cache, the second is measured.

Each mode's wall time covers everything a comparison does per run — compiling, the
steps, evaluating (MIA included), writing the record. Reported per mode:
``runs_per_minute``; ``step_time_share`` (0–1): the time inside unlearning steps (each
batch's loop minus its compile and first step) over the wall time; ``compile_share``: the
compiles and first steps over the wall time. Writes ``--out`` (JSON) and a markdown table
beside it, with a breakdown of each mode's wall time (:func:`breakdown`: the steps, the
first steps that hold each program's compile, evaluation with the MIA, the rest, and
JAX's compile events across them).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile
import time

import jax

from benchmarks import harness
from experiments.cli import HelpFormatter
from experiments.compare import scenario_jobs
from experiments.jobs import prepare_scenario, run_jobs
from experiments.scenarios import DEFAULT_SCENARIOS
from jaxunlearn.engine.methods import METHODS
from jaxunlearn.engine.records import machine_info

QUICK = {"scenarios": ("digits-class",), "methods": ("igs", "explicit", "ft", "rl"), "seeds": 3}
MODES = ("sequential", "batched", "batched_warm")
_LOCAL_MODES = MODES[:2]


# JAX's own compile events (jax._src.dispatch): tracing to a jaxpr, lowering, XLA's compile.
COMPILE_EVENTS = {
  "/jax/core/compile/jaxpr_trace_duration": "trace",
  "/jax/core/compile/jaxpr_to_mlir_module_duration": "lower",
  "/jax/core/compile/backend_compile_duration": "xla",
}


CACHE_HIT_EVENT = "/jax/compilation_cache/cache_hits"


class CompileLog:
  """JAX's compile events while active (``with``): seconds of each kind, the programs
  compiled (each ``xla`` event is one program, from the persistent cache or not) and how
  many of them the persistent cache served."""

  def __init__(self):
    self.seconds = dict.fromkeys(COMPILE_EVENTS.values(), 0.0)
    self.programs = self.from_cache = 0

  def _duration(self, event: str, duration: float, **kwargs) -> None:
    kind = COMPILE_EVENTS.get(event)
    if kind is not None:
      self.seconds[kind] += duration
      self.programs += kind == "xla"

  def _event(self, event: str, **kwargs) -> None:
    self.from_cache += event == CACHE_HIT_EVENT

  def __enter__(self):
    jax.monitoring.register_event_duration_secs_listener(self._duration)
    jax.monitoring.register_event_listener(self._event)
    return self

  def __exit__(self, *exc):
    jax.monitoring.unregister_event_duration_listener(self._duration)
    jax.monitoring.unregister_event_listener(self._event)


def measure(contexts, jobs_of, batched: bool) -> dict:
  """Runs every scenario's jobs in a fresh runs folder; returns the mode's figures."""
  records, wall = [], 0.0
  with CompileLog() as compiles:
    for ctx in contexts:
      runs_dir = pathlib.Path(tempfile.mkdtemp(prefix="throughput-"))
      (runs_dir / "runs").mkdir()
      local = dataclasses.replace(ctx, out_dir=runs_dir)
      start = time.perf_counter()
      records += run_jobs(local, jobs_of(ctx), progress=False, batched=batched)
      wall += time.perf_counter() - start
      shutil.rmtree(runs_dir, ignore_errors=True)
  # A batched record's seconds and compile_seconds are its shares of its batch's.
  loop = sum(r["seconds"] for r in records)
  compile_ = sum(r["compile_seconds"] for r in records)
  evaluation = sum(r["eval_seconds"] for r in records)
  return {
    "runs": len(records),
    "wall_seconds": wall,
    "runs_per_minute": 60 * len(records) / wall,
    "step_time_share": max(0.0, loop - compile_) / wall,
    "compile_share": compile_ / wall,
    "largest_batch": max(r.get("batched_with", 1) for r in records),
    "breakdown": breakdown(wall, loop, compile_, evaluation, compiles),
  }


def breakdown(wall, loop, first_steps, evaluation, compiles: CompileLog) -> dict:
  """Where a mode's wall time went, in seconds: ``steps`` (the unlearning loops after
  their first step), ``first_steps`` (each program's compile and first step),
  ``evaluation`` (the metrics and the MIA, their compiles included) and ``other`` (the
  rest: building configs and batches' programs, writing records); and, across all of
  them, what JAX spent compiling (``trace``, ``lower``, ``xla``: XLA's compile or the
  persistent cache's read), the ``programs`` compiled and how many of them came
  ``programs_from_cache``."""
  steps = max(0.0, loop - first_steps)
  return {
    "steps": steps,
    "first_steps": first_steps,
    "evaluation": evaluation,
    "other": max(0.0, wall - loop - evaluation),
    "compile": dict(compiles.seconds),
    "programs": compiles.programs,
    "programs_from_cache": compiles.from_cache,
  }


def run(scenarios, methods, seeds: int, workdir, modes=MODES, sweeps=True) -> dict:
  contexts = [prepare_scenario(s, workdir, progress=False) for s in scenarios]
  jobs_of = lambda ctx: scenario_jobs(ctx.scenario, methods, seeds, sweeps=sweeps)
  out = {
    "benchmark": "throughput",
    "scenarios": list(scenarios),
    "methods": list(methods),
    "seeds": seeds,
    "sweeps": bool(sweeps),
  }
  for mode in modes:
    if mode in _LOCAL_MODES:
      out[mode] = measure(contexts, jobs_of, batched=mode == "batched")
    else:
      out[mode] = warm(scenarios, methods, seeds, workdir, sweeps)
  if "sequential" in out and "batched" in out:
    out["speedup"] = out["batched"]["runs_per_minute"] / out["sequential"]["runs_per_minute"]
  out["machine"] = machine_info()
  return out


def warm(scenarios, methods, seeds, workdir, sweeps) -> dict:
  """``batched`` in a child process whose compilation cache an identical child filled."""
  cache = tempfile.mkdtemp(prefix="throughput-cache-")
  args = [
    sys.executable, "-m", "benchmarks.throughput", "--modes", "batched",
    "--scenarios", ",".join(scenarios), "--methods", ",".join(methods),
    "--seeds", str(seeds), "--workdir", str(workdir), "--compile-cache", cache,
  ]  # fmt: skip
  if not sweeps:
    args.append("--no-sweeps")
  figures = None
  for _ in range(2):  # fill, then measure
    with tempfile.TemporaryDirectory() as tmp:
      out = pathlib.Path(tmp) / "child.json"
      subprocess.run([*args, "--out", str(out)], check=True, capture_output=True, env=os.environ)
      figures = json.loads(out.read_text())["batched"]
  shutil.rmtree(cache, ignore_errors=True)
  return figures


def markdown(report: dict) -> str:
  lines = [
    f"Throughput of the comparison `{' + '.join(report['scenarios'])}`: "
    f"{len(report['methods'])} methods × {report['seeds']} seeds"
    + (" and the scenarios' sweeps" if report.get("sweeps") else "")
    + ", every run compiled, evaluated and stored.",
    "",
    "| mode | runs | largest batch | wall s | runs / min | step-time share | compile share |",
    "|---|---:|---:|---:|---:|---:|---:|",
  ]
  for mode in MODES:
    if mode in report:
      r = report[mode]
      lines.append(
        f"| {mode} | {r['runs']} | {r.get('largest_batch', 1)} | {r['wall_seconds']:.1f} | "
        f"{r['runs_per_minute']:.1f} | {r['step_time_share']:.2f} | {r['compile_share']:.2f} |"
      )
  lines += _breakdown_table(report)
  if "speedup" in report:
    lines.append(f"Batched / sequential runs per minute: **{report['speedup']:.2f}×**.")
  m = report["machine"]
  lines.append(f"Machine: {m['processor']}, {m['affinity_cpus']} CPUs, JAX {m['versions']['jax']}.")
  return "\n".join(lines) + "\n"


def _breakdown_table(report: dict) -> list[str]:
  """Where each mode's wall time went (:func:`breakdown`), as shares of it."""
  modes = [m for m in MODES if "breakdown" in report.get(m, {})]
  if not modes:
    return [""]
  lines = [
    "",
    "Where the wall time went (share of each mode's wall time; JAX's compile time is "
    "counted across all of them):",
    "",
    "| mode | steps | first steps | evaluation (MIA incl.) | other | JAX compiling "
    "(trace + lower + XLA) | programs (from cache) |",
    "|---|---:|---:|---:|---:|---:|---:|",
  ]
  for mode in modes:
    b, wall = report[mode]["breakdown"], report[mode]["wall_seconds"]
    jax_compile = sum(b["compile"].values())
    lines.append(
      f"| {mode} | {b['steps'] / wall:.2f} | {b['first_steps'] / wall:.2f} | "
      f"{b['evaluation'] / wall:.2f} | {b['other'] / wall:.2f} | {jax_compile / wall:.2f} | "
      f"{b['programs']} ({b.get('programs_from_cache', 0)}) |"
    )
  return [*lines, ""]


def _csv(text):
  return tuple(x for x in text.split(",") if x)


def build_parser():
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0], formatter_class=HelpFormatter)
  p.add_argument(
    "--scenarios", type=_csv, help="comma-separated scenarios; unset: the default comparison's"
  )
  p.add_argument("--methods", type=_csv, help="comma-separated methods; unset: all (quick: 4)")
  p.add_argument("--seeds", type=int, help="seeds per method; unset: 5 (quick: 3)")
  p.add_argument("--quick", action="store_true", help="digits-class, 4 methods × 3 seeds")
  p.add_argument("--modes", type=_csv, default=MODES, help=f"comma-separated, of {MODES}")
  p.add_argument("--no-sweeps", action="store_true", help="leave out the scenarios' sweeps")
  p.add_argument("--workdir", help="where the original/retrain models go; unset: a temp dir")
  p.add_argument("--compile-cache", help="enable JAX's persistent compilation cache here")
  p.add_argument("--out", default="results/throughput.json", help="JSON output path")
  return p


def main(argv=None) -> dict:
  args = build_parser().parse_args(argv)
  unknown = set(args.modes) - set(MODES)
  if unknown:
    raise SystemExit(f"unknown mode {sorted(unknown)[0]!r}; valid: {', '.join(MODES)}")
  if args.compile_cache:
    os.environ["JAXUNLEARN_COMPILE_CACHE"] = args.compile_cache
    from experiments.cli import enable_compile_cache  # noqa: PLC0415

    enable_compile_cache()
  scenarios = args.scenarios or (QUICK["scenarios"] if args.quick else DEFAULT_SCENARIOS)
  methods = args.methods or (QUICK["methods"] if args.quick else tuple(METHODS))
  seeds = args.seeds or (QUICK["seeds"] if args.quick else 5)
  workdir = args.workdir or tempfile.mkdtemp(prefix="throughput-models-")
  report = run(scenarios, methods, seeds, workdir, args.modes, sweeps=not args.no_sweeps)
  print(harness.write_report(args.out, report, markdown))
  return report


if __name__ == "__main__":
  main()
