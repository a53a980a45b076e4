"""Memory and time of a language model's unlearning step: every parameter, a trainable
subset (``trainable=``, :func:`jaxunlearn.transforms.frozen_except`) and LoRA adapters
(:func:`jaxunlearn.nn.lora.with_lora`), for the same model.

For each method and model size, a Llama-family decoder (:mod:`jaxunlearn.nn.llama`,
shaped as :data:`jaxunlearn.nn.transformer.SIZES`: width, heads, layers; MLP 4 × width)
and the engine's compiled step (the ``answers`` layout, Adam) three ways: every
parameter trained; the last block and the final norm only; rank-8 adapters (alpha 16)
on the seven projections, every other weight frozen. Reported: XLA's memory analysis of
the compiled program (arguments + outputs + temporaries,
:func:`jaxunlearn.engine.memory.program_bytes`), its temporaries alone (where the
trained weights' gradients live), the optimiser state's bytes, and the step's median
time, all three measured interleaved in one run (:mod:`benchmarks.harness`).

    python -m benchmarks.lm_memory [--quick] [--out docs/results/lm_memory.json]
"""

from __future__ import annotations

import argparse

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from benchmarks import harness
from experiments import tofu
from jaxunlearn import objectives
from jaxunlearn.data import tofu as tdata
from jaxunlearn.engine import memory
from jaxunlearn.engine.layouts import LAYOUTS
from jaxunlearn.engine.records import machine_info
from jaxunlearn.engine.unlearning import _cached_step, program_config
from jaxunlearn.nn.llama import Llama, LlamaConfig
from jaxunlearn.nn.lora import with_lora
from jaxunlearn.nn.transformer import SIZES, functional_lm
from jaxunlearn.transforms import frozen_except

METHODS = ("npo", "igs", "explicit")
LORA_RANK, LORA_ALPHA = 8, 16.0


def llama(vocab: int, size: str, seed: int = 0) -> Llama:
  """A random Llama-family decoder with the width, heads and layers of ``SIZES[size]``."""
  width, heads, layers = SIZES[size]
  cfg = LlamaConfig(vocab, width, 4 * width, layers, heads)
  return Llama(cfg, rngs=nnx.Rngs(seed))


def variants(model: Llama) -> dict:
  """``{name: (module, trainable)}``: the same weights trained three ways."""
  last = f"layers.{model.config.num_hidden_layers - 1},norm"
  adapted = with_lora(model, rank=LORA_RANK, alpha=LORA_ALPHA, rngs=nnx.Rngs(1))
  return {"all": (model, ""), "last block": (model, last), f"LoRA r{LORA_RANK}": (adapted, "")}


# Llama-3.2-1B's shape (its config.json): what the accelerator script (benchmarks.gpu)
# measures with random weights in bfloat16, at TOFU's batch (32 retain + 8 forget rows).
LLAMA_1B = LlamaConfig(
  vocab_size=128_256, hidden_size=2048, intermediate_size=8192, num_hidden_layers=16,
  num_attention_heads=32, num_key_value_heads=8, head_dim=64, rms_norm_eps=1e-5,
  rope_theta=500_000.0, rope_type="llama3", rope_scaling=(32.0, 1.0, 4.0, 8192),
  tie_word_embeddings=True,
)  # fmt: skip
# The smoke runs' decoder (--quick here, --tiny in benchmarks.gpu): the same programs,
# so a test of one finds the other's in the compile cache.
TINY_LLAMA = LlamaConfig(256, 32, 64, 1, 4, 2)
SCENARIO = tofu.TofuScenario(n_retain=32, n_forget=8)


def measure(size: str, methods=METHODS, rounds: int = 5) -> dict:
  """The three ways on the ``size`` Llama and a batch of the generated TOFU-style set."""
  ds = tdata.make_dataset(authors=20, facts=10, world=10)
  forget = tdata.forget_split(ds, 10)
  cfg = tofu.unlearn_config(SCENARIO, "ga", 20, 0)
  batch = LAYOUTS["answers"].batch(ds, forget, 0, cfg, SCENARIO.n_retain, SCENARIO.n_forget)
  batch = {k: jnp.asarray(v) for k, v in batch.items()}
  return {"size": size, **measure_model(llama(len(ds.tokenizer), size), batch, methods, rounds)}


def token_batch(vocab: int, length: int, seed: int = 0) -> dict:
  """A batch of the ``answers`` layout with random tokens (the cost does not depend on
  them): each row ``<bos> question <ans> answer``, the separator in the middle."""
  rows = {"retain_tokens": SCENARIO.n_retain, "forget_tokens": SCENARIO.n_forget}
  rows["forget_idk"] = SCENARIO.n_forget
  keys = jax.random.split(jax.random.key(seed), len(rows))
  batch = {}
  for key, (name, n) in zip(keys, rows.items()):
    tokens = jax.random.randint(key, (n, length), 4, vocab, jnp.int32)
    batch[name] = tokens.at[:, 0].set(tdata.BOS_ID).at[:, length // 2].set(tdata.ANS_ID)
  return batch


def measure_model(model, batch: dict, methods=METHODS, rounds: int = 5) -> dict:
  """Every method's step on ``model`` (an NNX Llama) and ``batch``, the three ways of
  :func:`variants`: XLA's memory figures and the median step time, interleaved."""
  out = {"parameters": _count(nnx.state(model, nnx.Param)), "methods": {}}
  for method in methods:
    row, fns = {}, {}
    for name, (module, trainable) in variants(model).items():
      fm, params, state = functional_lm(module, objectives.answer_losses)
      cfg = tofu.unlearn_config(SCENARIO, method, 20, 0).replace(trainable=trainable)
      tx_of, step = _cached_step(fm, program_config(cfg), tofu._adam(1e-3))
      values = {k: jnp.asarray(v, jnp.float32) for k, v in cfg.traced_values().items()}
      opt_state = tx_of(cfg).init(params)
      args = (values, params, state, opt_state, batch, (params, state), jnp.asarray(0))
      compiled = step.lower(*args).compile()
      stats = compiled.memory_analysis()
      row[name] = {
        "trainable_parameters": _trained(params, trainable),
        "program_bytes": memory.program_bytes(compiled),
        "temp_bytes": int(stats.temp_size_in_bytes) if stats else 0,
        "optimizer_bytes": int(sum(np.asarray(x).nbytes for x in jax.tree.leaves(opt_state))),
      }
      fns[name] = lambda compiled=compiled, args=args: compiled(*args)
    for name, t in harness.interleaved(fns, rounds=rounds).items():
      row[name]["median_ms"] = t["median_ms"]
    out["methods"][method] = row
  return out


def _count(tree) -> int:
  return int(sum(np.size(x) for x in jax.tree.leaves(tree)))


def _trained(params, trainable: str) -> int:
  """How many parameters ``trainable`` (dotted prefixes; "" all) lets a run change: those
  :func:`~jaxunlearn.transforms.frozen_except` passes an update through for."""
  if not trainable:
    return _count(params)
  tx = frozen_except(trainable.split(","))
  passed, _ = tx.update(jax.tree.map(jnp.ones_like, params), tx.init(params))
  return int(sum(np.sum(np.asarray(x)) for x in jax.tree.leaves(passed)))


def to_markdown(report: dict) -> str:
  """One row per (size, method, variant); the last two columns are ratios to the same
  method's every-parameter step, measured in the same run."""
  lines = [
    "| size | method | trained | parameters | program MiB | program vs all | temporaries MiB "
    "| optimiser MiB | temporaries + optimiser vs all | step ms | step vs all |",
    "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
  ]
  for r in report["results"]:
    for method, row in r["methods"].items():
      full = row["all"]
      for name, m in row.items():
        held = (m["temp_bytes"] + m["optimizer_bytes"]) / (
          full["temp_bytes"] + full["optimizer_bytes"]
        )
        lines.append(
          f"| {r['size']} ({r['parameters'] / 1e6:.2f} M) | {method} | {name} | "
          f"{m['trainable_parameters']:,} | {m['program_bytes'] / 2**20:.1f} | "
          f"{m['program_bytes'] / full['program_bytes']:.2f} | {m['temp_bytes'] / 2**20:.1f} | "
          f"{m['optimizer_bytes'] / 2**20:.2f} | {held:.2f} | "
          f"{m['median_ms']:.1f} | {m['median_ms'] / full['median_ms']:.2f} |"
        )
  return "\n".join(lines) + "\n"


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--quick", action="store_true", help="a tiny Llama, random tokens, NPO only")
  p.add_argument("--out", default="docs/results/lm_memory.json")
  args = p.parse_args(argv)
  if args.quick:  # random tokens through the tiny Llama
    model = Llama(TINY_LLAMA, rngs=nnx.Rngs(0))
    found = measure_model(model, token_batch(TINY_LLAMA.vocab_size, 16), ("npo",), rounds=3)
    results = [{"size": "llama-tiny float32", **found}]
  else:
    results = [measure(size) for size in ("small", "base")]
  report = {"results": results, "machine": machine_info()}
  print(harness.write_report(args.out, report, to_markdown))


if __name__ == "__main__":
  main()
