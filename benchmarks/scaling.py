r"""Data-parallel scaling: throughput of the unlearning step against the number of devices.

For each device count N (default 1, 2, 4, 8) the jitted unlearning step of
:mod:`jaxunlearn.unlearning_steps` runs data-parallel through :mod:`jaxunlearn.parallel`:
the batch (``--n-retain`` retain + ``--n-forget`` forget examples, both divisible by every
N) split across a one-axis mesh of N devices, params and optimiser state (λ included)
replicated. A run without any mesh (plain single-device jit) is measured beside them.

* **throughput** — examples per second of one step, from the median wall time of
  ``--steps`` timed calls after ``--warmup`` untimed ones (the first also compiles; its
  time is reported apart). Each call ends in ``block_until_ready``. Batches are placed
  on the devices beforehand, so this times the step, not the host-to-device copy. The
  timed calls of all device counts are interleaved (round after round, order rotating),
  so load that drifts on a shared machine hits every count alike;
* **agreement** — every setting runs the same steps on the same batches from the same
  start; the largest |Δθ| of its final parameters against the no-mesh run shows that
  splitting the batch changes the result only by float rounding.

On a CPU-only machine the N devices are *forced host devices*
(``XLA_FLAGS=--xla_force_host_platform_device_count=8``; the script re-runs itself with
the flag when fewer devices are visible). They all share the same few cores, so the
numbers show that the data-parallel step is correct and what its partitioning and
communication overhead costs — not a speedup. Real scaling needs real devices (several
GPUs or TPU cores, or several hosts, see :mod:`jaxunlearn.parallel`).

Data are synthetic (random normal inputs, random labels); the model is randomly
initialised: cost does not depend on the values.

    python -m benchmarks.scaling                  # strided CNN, CIFAR-shaped, IGS
    python -m benchmarks.scaling --quick          # small MLP on 8×8×1 (seconds)
    python -m benchmarks.scaling --methods igs,explicit --devices 1,2,4,8

Writes ``--out`` (JSON, default ``results/scaling.json``) and a markdown table beside it
(``results/scaling.md``), both with the machine they came from.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import statistics
import subprocess
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks import synthetic
from experiments.cli import HelpFormatter
from jaxunlearn.engine import parallel
from jaxunlearn.engine.methods import build_transformation, get_method, make_config
from jaxunlearn.engine.records import machine_info
from jaxunlearn.engine.steps import make_unlearn_step
from jaxunlearn.nn import models

_CHILD_ENV = "JAXUNLEARN_SCALING_CHILD"
NOTE = (
  "Forced host devices on a CPU share the same cores: these numbers show that the "
  "data-parallel step is correct and what its partitioning/communication overhead "
  "costs, not a speedup. Real scaling needs real devices."
)


def _batches(cfg, input_shape, num_classes, count, seed):
  rng = np.random.default_rng(seed)
  return [
    synthetic.unlearning_batch(rng, cfg.n_retain, cfg.n_forget, input_shape, num_classes)
    for _ in range(count)
  ]


class _Setting:
  """One device count (or no mesh): its step, state and pre-placed batches."""

  def __init__(self, n, fm, params, model_state, step, tx, host_batches):
    self.n = n
    opt_state = tx.init(params)
    if n is None:
      self.step = step
      self.state = jax.device_put((params, model_state, opt_state))
      self.batches = [jax.device_put(b) for b in host_batches]
      self.index = [jnp.asarray(t, jnp.int32) for t in range(len(host_batches))]
    else:
      mesh = parallel.make_mesh(n)
      self.step = parallel.data_parallel(step, mesh)
      self.state = parallel.replicate((params, model_state, opt_state), mesh)
      self.batches = [parallel.shard_batch(b, mesh) for b in host_batches]
      self.index = [
        parallel.replicate(jnp.asarray(t, jnp.int32), mesh) for t in range(len(host_batches))
      ]
    self.teacher = self.state[:2]
    self.calls = 0
    self.times: list[float] = []
    self.first_call_s = None

  def call(self) -> float:
    k = self.calls % len(self.batches)
    t = time.perf_counter()
    p, s, o, logs = self.step(*self.state, self.batches[k], self.teacher, self.index[k])
    jax.block_until_ready((p, s, o, logs))
    dt = time.perf_counter() - t
    self.state = (p, s, o)
    self.calls += 1
    return dt


def measure(method: str, config: dict, device_counts, progress=True) -> dict:
  cfg = make_config(
    method,
    steps=1000,
    n_retain=config["n_retain"],
    n_forget=config["n_forget"],
    learning_rate=config["lr"],
    layout="split",  # the synthetic batches below are split ones
  )
  m = get_method(method)
  tx = build_transformation(cfg)
  model_kwargs = {"hidden": (256, 256)} if config["model"] == "mlp" else {}
  module = models.create_model(
    config["model"],
    num_classes=config["num_classes"],
    input_shape=tuple(config["input_shape"]),
    seed=config["seed"],
    **model_kwargs,
  )
  fm, params, model_state = models.functional(module)
  step = make_unlearn_step(fm, m, cfg, tx)
  host_batches = _batches(cfg, config["input_shape"], config["num_classes"], 4, config["seed"])
  settings = [
    _Setting(n, fm, params, model_state, step, tx, host_batches) for n in (None, *device_counts)
  ]
  for s in settings:  # compile + warm-up, one setting at a time
    s.first_call_s = s.call()
    for _ in range(config["warmup"] - 1):
      s.call()
  for r in range(config["steps"]):  # timed, interleaved, order rotating
    for s in settings[r % len(settings) :] + settings[: r % len(settings)]:
      s.times.append(s.call())
  base = settings[0]
  examples = cfg.n_retain + cfg.n_forget
  rows = []
  for s in settings:
    med = statistics.median(s.times)
    diff = max(
      float(np.max(np.abs(np.asarray(a) - np.asarray(b))))
      for a, b in zip(jax.tree.leaves(s.state[0]), jax.tree.leaves(base.state[0]))
    )
    rows.append(
      {
        "devices": s.n,
        "per_device_batch": None if s.n is None else examples // s.n,
        "median_ms": 1e3 * med,
        "min_ms": 1e3 * min(s.times),
        "max_ms": 1e3 * max(s.times),
        "examples_per_s": examples / med,
        "first_call_s": s.first_call_s,
        "max_abs_param_diff_vs_no_mesh": diff,
        "steps_run": s.calls,
      }
    )
    if progress:
      print(
        f"  {method} devices={s.n}: {1e3 * med:.2f} ms/step, {examples / med:.0f} examples/s",
        file=sys.stderr,
      )
  one = next((r for r in rows if r["devices"] == 1), None)
  for r in rows:
    r["throughput_vs_1_device"] = r["examples_per_s"] / one["examples_per_s"] if one else None
  return {"method": method, "examples_per_step": examples, "rows": rows}


def markdown(report: dict) -> str:
  mach, cfg = report["machine"], report["config"]
  lines = [
    "# Data-parallel scaling of the unlearning step",
    "",
    f"Machine: backend `{mach['backend']}`, device `{mach['device_kind']}` "
    f"(×{mach['device_count']}), {mach['cpu_count']} CPUs "
    f"({mach['affinity_cpus']} usable), {mach['platform']}; jax "
    f"{mach['versions']['jax']}; XLA_FLAGS `{mach['xla_flags']}`; {mach['date_utc']}.",
    "",
    f"Model `{cfg['model']}` on synthetic {tuple(cfg['input_shape'])} inputs, "
    f"{cfg['n_retain']} retain + {cfg['n_forget']} forget examples per step, batch "
    f"split across the devices, params/optimiser state replicated; median of "
    f"{cfg['steps']} timed steps after {cfg['warmup']} warm-up steps (interleaved "
    f"across device counts); total run {report['total_seconds']:.0f} s.",
    "",
    f"**Note.** {report['note']}",
    "",
  ]
  if report.get("skipped_device_counts"):
    lines += [f"Skipped (not enough devices): {report['skipped_device_counts']}.", ""]
  for res in report["results"]:
    lines += [
      f"## {res['method']}",
      "",
      "| devices | per-device batch | median step (ms) | examples/s | vs 1 device "
      "| first call (s) | max abs Δθ vs no mesh |",
      "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in res["rows"]:
      name = "no mesh" if r["devices"] is None else str(r["devices"])
      pdb = "—" if r["per_device_batch"] is None else str(r["per_device_batch"])
      vs = "—" if r["throughput_vs_1_device"] is None else f"{r['throughput_vs_1_device']:.2f}×"
      lines.append(
        f"| {name} | {pdb} | {r['median_ms']:.2f} | {r['examples_per_s']:.0f} | "
        f"{vs} | {r['first_call_s']:.2f} | {r['max_abs_param_diff_vs_no_mesh']:.1e} |"
      )
    lines.append("")
  return "\n".join(lines)


def _csv(kind=str):
  return lambda s: tuple(kind(x) for x in s.split(",") if x)


def build_parser():
  p = argparse.ArgumentParser(
    prog=f"python -m {__spec__.name}",
    description=__doc__.split("\n")[0],
    formatter_class=HelpFormatter,
  )
  p.add_argument("--quick", action="store_true", help="small MLP on 8×8×1, few steps")
  p.add_argument(
    "--devices",
    type=_csv(int),
    default=(1, 2, 4, 8),
    help="comma-separated device counts to measure",
  )
  p.add_argument(
    "--methods", type=_csv(), default=("igs",), help="comma-separated unlearning methods"
  )
  p.add_argument("--model", default=None, help="mlp | cnn | resnet18; unset: cnn, mlp with --quick")
  p.add_argument(
    "--input-shape", type=_csv(int), default=None, help="H,W,C; unset: 32,32,3, 8,8,1 with --quick"
  )
  p.add_argument("--num-classes", type=int, default=10, help="classes of the synthetic labels")
  p.add_argument(
    "--n-retain",
    type=int,
    default=None,
    help="retain examples per step; unset: 256, 64 with --quick",
  )
  p.add_argument(
    "--n-forget",
    type=int,
    default=None,
    help="forget examples per step; unset: 64, 16 with --quick",
  )
  p.add_argument(
    "--steps", type=int, default=None, help="timed steps per setting; unset: 20, 5 with --quick"
  )
  p.add_argument(
    "--warmup",
    type=int,
    default=None,
    help="untimed steps per setting, the first compiling (at least 1); unset: 3, 2 with --quick",
  )
  p.add_argument("--lr", type=float, default=1e-3, help="learning rate of the unlearning step")
  p.add_argument("--seed", type=int, default=0, help="seed of the model and the synthetic data")
  p.add_argument(
    "--out", default="results/scaling.json", help="JSON file to write (markdown beside it)"
  )
  p.add_argument("--md", default=None, help="markdown path; unset: --out with .md")
  p.add_argument(
    "--no-progress", action="store_true", help="don't print each setting's timing on stderr"
  )
  return p


def parse_config(argv=None):
  p = build_parser()
  a = p.parse_args(argv)
  q = a.quick
  config = {
    "model": a.model or ("mlp" if q else "cnn"),
    "input_shape": list(a.input_shape or ((8, 8, 1) if q else (32, 32, 3))),
    "num_classes": a.num_classes,
    "n_retain": a.n_retain or (64 if q else 256),
    "n_forget": a.n_forget or (16 if q else 64),
    "steps": a.steps or (5 if q else 20),
    "warmup": max(1, a.warmup or (2 if q else 3)),
    "lr": a.lr,
    "seed": a.seed,
    "methods": list(a.methods),
    "devices": list(a.devices),
  }
  for n in config["devices"]:
    for key in ("n_retain", "n_forget"):
      if config[key] % n:
        p.error(f"--{key.replace('_', '-')} {config[key]} is not divisible by {n} devices")
  return config, a


def main(argv=None) -> dict:
  argv = list(sys.argv[1:] if argv is None else argv)
  config, a = parse_config(argv)
  needed = max(config["devices"])
  if (
    jax.device_count() < needed
    and jax.default_backend() == "cpu"
    and not os.environ.get(_CHILD_ENV)
  ):
    # The flag only works before JAX starts: run again in a fresh process that has it.
    flags = os.environ.get("XLA_FLAGS", "")
    env = {
      **os.environ,
      _CHILD_ENV: "1",
      "JAX_PLATFORMS": "cpu",
      "XLA_FLAGS": f"{flags} --xla_force_host_platform_device_count={needed}".strip(),
    }
    subprocess.run([sys.executable, "-m", "benchmarks.scaling", *argv], env=env, check=True)
    return json.loads(pathlib.Path(a.out).read_text())
  usable = [n for n in config["devices"] if n <= jax.device_count()]
  skipped = [n for n in config["devices"] if n > jax.device_count()]
  start = time.perf_counter()
  results = []
  for method in config["methods"]:
    results.append(measure(method, config, usable, progress=not a.no_progress))
  report = {
    "config": config,
    "machine": machine_info(),
    "note": NOTE,
    "skipped_device_counts": skipped,
    "results": results,
    "total_seconds": time.perf_counter() - start,
  }
  out = pathlib.Path(a.out)
  out.parent.mkdir(parents=True, exist_ok=True)
  out.write_text(json.dumps(report, indent=1))
  text = markdown(report)
  md_path = pathlib.Path(a.md) if a.md else out.with_suffix(".md")
  md_path.write_text(text)
  print(text)
  return report


if __name__ == "__main__":
  main()
