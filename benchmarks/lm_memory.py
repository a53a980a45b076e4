"""Memory and time of a language model's unlearning step: every parameter vs a trainable
subset (``trainable=``, :func:`jaxunlearn.transforms.frozen_except`).

For each method and model size, the engine's compiled step (the ``answers`` layout, Adam)
with every parameter trainable and with the last block and the final norm only: XLA's
memory analysis of the compiled program (arguments + outputs + temporaries,
:func:`jaxunlearn.engine.memory.program_bytes`; its temporaries alone, where the frozen
weights' gradients would live) and the step's median time, measured interleaved in one
run (:mod:`benchmarks.harness`).

    python -m benchmarks.lm_memory [--quick] [--out docs/results/lm_memory.json]
"""

from __future__ import annotations

import argparse

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks import harness
from experiments import tofu
from jaxunlearn.data import tofu as tdata
from jaxunlearn.engine import memory
from jaxunlearn.engine.layouts import LAYOUTS
from jaxunlearn.engine.records import machine_info
from jaxunlearn.engine.unlearning import _cached_step, program_config
from jaxunlearn.nn.transformer import SIZES
from jaxunlearn.transforms import frozen_except

METHODS = ("npo", "igs", "explicit")


def _last_block(size: str) -> str:
  return f"blocks.{SIZES[size][2] - 1},norm"


def measure(size: str, methods=METHODS, rounds: int = 5) -> dict:
  ds = tdata.make_dataset(authors=20, facts=10, world=10)
  forget = tdata.forget_split(ds, 10)
  fm, params, state = tofu.build_lm(ds, size, 0)
  scenario = tofu.TofuScenario(n_retain=32, n_forget=8)
  batch = LAYOUTS["answers"].batch(ds, forget, 0, tofu.unlearn_config(scenario, "ga", 20, 0), 32, 8)
  batch = {k: jnp.asarray(v) for k, v in batch.items()}
  n_params = int(sum(np.size(x) for x in jax.tree.leaves(params)))
  out = {"size": size, "parameters": n_params, "methods": {}}
  for method in methods:
    row, fns = {}, {}
    for name, trainable in (("all", ""), ("last block", _last_block(size))):
      cfg = tofu.unlearn_config(scenario, method, 20, 0).replace(trainable=trainable)
      tx_of, step = _cached_step(fm, program_config(cfg), tofu._adam(1e-3))
      values = {k: jnp.asarray(v, jnp.float32) for k, v in cfg.traced_values().items()}
      args = (
        values,
        params,
        state,
        tx_of(cfg).init(params),
        batch,
        (params, state),
        jnp.asarray(0),
      )
      compiled = step.lower(*args).compile()
      stats = compiled.memory_analysis()
      trained = _trained(params, trainable)
      row[name] = {
        "trainable_parameters": int(trained),
        "program_bytes": memory.program_bytes(compiled),
        "temp_bytes": int(stats.temp_size_in_bytes) if stats else 0,
      }
      fns[name] = lambda compiled=compiled, args=args: compiled(*args)
    for name, t in harness.interleaved(fns, rounds=rounds).items():
      row[name]["median_ms"] = t["median_ms"]
    out["methods"][method] = row
  return out


def _trained(params, trainable: str) -> int:
  """How many parameters ``trainable`` (dotted prefixes; "" all) lets a run change: those
  :func:`~jaxunlearn.transforms.frozen_except` passes an update through for."""
  if not trainable:
    return int(sum(np.size(x) for x in jax.tree.leaves(params)))
  tx = frozen_except(trainable.split(","))
  passed, _ = tx.update(jax.tree.map(jnp.ones_like, params), tx.init(params))
  return int(sum(np.sum(np.asarray(x)) for x in jax.tree.leaves(passed)))


def to_markdown(report: dict) -> str:
  lines = [
    "| size | method | trained | parameters | program MiB | temporaries MiB | step ms |",
    "|---|---|---|---:|---:|---:|---:|",
  ]
  for r in report["results"]:
    for method, row in r["methods"].items():
      for name, m in row.items():
        lines.append(
          f"| {r['size']} ({r['parameters'] / 1e6:.2f} M) | {method} | {name} | "
          f"{m['trainable_parameters']:,} | {m['program_bytes'] / 2**20:.1f} | "
          f"{m['temp_bytes'] / 2**20:.1f} | {m['median_ms']:.1f} |"
        )
  return "\n".join(lines) + "\n"


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--quick", action="store_true", help="the tiny size, one method, 2 rounds")
  p.add_argument("--out", default="docs/results/lm_memory.json")
  args = p.parse_args(argv)
  if args.quick:
    results = [measure("tiny", ("npo",), rounds=2)]
  else:
    results = [measure(size) for size in ("small", "base")]
  report = {"results": results, "machine": machine_info()}
  print(harness.write_report(args.out, report, to_markdown))


if __name__ == "__main__":
  main()
