"""One prepared run for an accelerator: what each method's step costs on ResNet-18 at CIFAR
size, how fast the audit's populations train and unlearn, and JAX against PyTorch where a
CUDA PyTorch is installed.

    python -m benchmarks.gpu --out results/gpu.json             # one GPU: under 10 minutes
    python -m benchmarks.gpu --tiny --out /tmp/gpu_tiny.json    # the same code, tiny, on CPU

Four parts, each with its own wall time in the report, and each skipped with its reason
rather than a number where it cannot run (no CUDA PyTorch; or ``--budget-seconds`` spent,
so a slow machine still writes what it measured):

1. ``step_cost``: :mod:`benchmarks.step_cost` on ResNet-18 (base width 64, BatchNorm in
   train mode, batch 256 of synthetic 32×32×3 rows), every method and IGS variant of the
   engine (``step_cost.EVERY_METHOD``: the surgery and multi-objective steps and the
   standard baselines) in the paper's mixed layout: time, XLA's memory analysis and the
   ratio to the plain step.
2. ``populations``: :func:`jaxunlearn.engine.population.train_population` of the strided
   CNN on synthetic CIFAR-shaped rows (models per second, compile included and apart) and
   :func:`~jaxunlearn.engine.population.unlearn_population` of anchored IGS from one of
   them (runs per second): the throughput an audit of hundreds of models needs.
3. ``vs_pytorch``: :mod:`benchmarks.vs_pytorch`'s twin steps on the device of each
   framework (JAX's default backend; PyTorch on ``cuda`` when it has one, else on the CPU
   only when JAX is on the CPU too), ratios measured in one run.
4. ``llama``: :mod:`benchmarks.lm_memory` on a Llama-3.2-1B-shaped decoder (its
   ``config.json``'s sizes, random weights, bfloat16; 32 retain and 8 forget rows of 256
   tokens), NPO and IGS with every parameter, the last block and LoRA r8 trained:
   XLA's memory figures and the step's time.

Data are synthetic (the costs do not depend on the values). ``--tiny`` shrinks every size
(ResNet width 4, batch 16, five methods, three models, a few steps) so the script's code
runs on a 2-core CPU in a few minutes (compiling ResNet-18 steps dominates): a test of
the script, not a measurement to commit.
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings

import jax
import numpy as np

from benchmarks import harness, step_cost
from experiments.cli import HelpFormatter
from jaxunlearn import data as data_lib
from jaxunlearn.engine import population, training
from jaxunlearn.engine.config import TrainConfig
from jaxunlearn.engine.methods import make_config
from jaxunlearn.engine.records import machine_info

SIZES = {
  # one GPU: step cost = 20 compiles of a ResNet-18 step; populations of 64 models
  "full": dict(
    model="resnet18", batch=256, resnet_width=64, steps=20, warmup=3, models=64, rows=10_000,
    epochs=2, population_model="cnn",
    unlearn_runs=64, unlearn_steps=100, torch_models=("mlp", "cnn", "resnet18"),
    methods=step_cost.EVERY_METHOD,
    llama="1b", llama_tokens=256, llama_methods=("npo", "igs"), llama_dtype="bfloat16",
  ),
  "tiny": dict(
    model="resnet18", batch=16, resnet_width=4, steps=2, warmup=1, models=3, rows=256, epochs=2,
    population_model="cnn",
    unlearn_runs=3, unlearn_steps=4, torch_models=("mlp",),
    methods=("plain", "igs-reevaluate", "explicit", "npo", "salun"),
    llama="tiny", llama_tokens=16, llama_methods=("npo",), llama_dtype="float32",
  ),
}  # fmt: skip
INPUT, CLASSES = (32, 32, 3), 10


def synthetic_dataset(rows: int, seed: int = 0) -> data_lib.Dataset:
  """CIFAR-shaped rows (normal pixels, uniform labels) with val and test splits."""
  rng = np.random.default_rng(seed)
  split = lambda n: (
    rng.normal(size=(n, *INPUT)).astype(np.float32),
    rng.integers(0, CLASSES, n).astype(np.int32),
  )
  x, y = split(rows)
  return data_lib.from_arrays(
    x, y, val=split(rows // 10), test=split(rows // 10), num_classes=CLASSES, name="synthetic"
  )


def step_cost_part(size: dict, progress: bool) -> dict:
  config = {
    "models": (size["model"],),
    "batch_sizes": (size["batch"],),
    "layouts": ("mixed",),
    "methods": size["methods"],
    "steps": size["steps"],
    "warmup": size["warmup"],
    "input_shape": INPUT,
    "num_classes": CLASSES,
    "forget_fraction": 1.0,
    "resnet_width": size["resnet_width"],
    "lr": 1e-3,
    "seed": 0,
  }
  with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message="Some donated buffers were not usable")
    report = step_cost.run(config, progress=progress)
  return {"report": report, "markdown": step_cost.markdown(report)}


def populations_part(size: dict, progress: bool) -> dict:
  ds = synthetic_dataset(size["rows"])
  recipe = TrainConfig(
    model=size["population_model"], epochs=size["epochs"], batch_size=128, learning_rate=0.05
  )
  seeds = range(size["models"])
  trained = population.train_population(recipe, ds, seeds, progress=progress, desc="train")
  forget = data_lib.make_forget_set(ds, "class:0")
  fm, _, _ = training.build_model(recipe, ds)
  params, state = trained.member(0)
  cfg = make_config("igs", steps=size["unlearn_steps"])
  runs = range(size["unlearn_runs"])
  unlearned = population.unlearn_population(cfg, fm, params, state, ds, forget, runs)
  rate = lambda n, pop: {
    "n": n,
    "seconds": pop.seconds,
    "compile_seconds": pop.compile_seconds,
    "per_second": n / pop.seconds,
    "per_second_after_compile": n / max(pop.seconds - pop.compile_seconds, 1e-9),
    "batch_mode": pop.batch_mode,
  }
  return {
    "train": {**rate(len(trained), trained), "epochs": recipe.epochs, "rows": size["rows"]},
    "unlearn": {**rate(len(unlearned), unlearned), "method": "igs", "steps": cfg.steps},
  }


def torch_device() -> tuple[str | None, str]:
  """``(device, why)``: where PyTorch's twin steps may run against JAX's backend."""
  try:
    import torch
  except ImportError:
    return None, "PyTorch is not installed (pip install -e '.[vs-pytorch]')"
  if jax.default_backend() == "cpu":
    return "cpu", f"PyTorch {torch.__version__} on the CPU, as JAX"
  if torch.cuda.is_available():
    return "cuda", f"PyTorch {torch.__version__} on {torch.cuda.get_device_name()}"
  return None, f"PyTorch {torch.__version__} has no CUDA here; JAX is on {jax.default_backend()}"


def vs_pytorch_part(size: dict, progress: bool) -> dict:
  del progress
  from benchmarks import vs_pytorch

  device, why = torch_device()
  if device is None:
    return {"skipped": why}
  report = vs_pytorch.run(
    size["torch_models"], ("shared",), size["steps"], size["warmup"], size["batch"],
    resnet_width=size["resnet_width"], device=device,
  )  # fmt: skip
  return {"device": why, "report": report, "markdown": vs_pytorch.markdown(report)}


def llama_part(size: dict, progress: bool) -> dict:
  """:mod:`benchmarks.lm_memory` on a Llama-3.2-1B-shaped decoder (random weights in
  ``llama_dtype``, rows of ``llama_tokens`` tokens): every parameter, the last block, LoRA r8."""
  del progress
  import jax.numpy as jnp
  from flax import nnx

  from benchmarks import lm_memory
  from jaxunlearn.nn.llama import Llama

  cfg = lm_memory.LLAMA_1B if size["llama"] == "1b" else lm_memory.TINY_LLAMA
  model = Llama(cfg, dtype=jnp.dtype(size["llama_dtype"]), rngs=nnx.Rngs(0))
  batch = lm_memory.token_batch(cfg.vocab_size, size["llama_tokens"])
  found = lm_memory.measure_model(model, batch, size["llama_methods"], rounds=3)
  report = {"results": [{"size": f"llama-{size['llama']} {size['llama_dtype']}", **found}]}
  return {"report": report, "markdown": lm_memory.to_markdown(report)}


PARTS = {
  "step_cost": step_cost_part,
  "populations": populations_part,
  "vs_pytorch": vs_pytorch_part,
  "llama": llama_part,
}


def run(size, parts=tuple(PARTS), budget_seconds: float = 540.0, progress=True) -> dict:
  """Runs ``parts`` in order while the budget lasts; each records its seconds. ``size``:
  a name of :data:`SIZES` or such a dict."""
  size_name, size = (size, SIZES[size]) if isinstance(size, str) else ("custom", size)
  start, out = time.perf_counter(), {}
  for name in parts:
    spent = time.perf_counter() - start
    if out and spent > budget_seconds:  # the first part always runs
      out[name] = {"skipped": f"the budget of {budget_seconds:.0f} s was spent ({spent:.0f} s)"}
      continue
    t = time.perf_counter()
    out[name] = PARTS[name](size, progress)
    out[name]["seconds"] = time.perf_counter() - t
  return {
    "benchmark": "gpu",
    "size": size_name,
    "sizes": size,
    "backend": jax.default_backend(),
    "devices": [str(d) for d in jax.devices()],
    "machine": machine_info(),
    "total_seconds": time.perf_counter() - start,
    "parts": out,
  }


def markdown(report: dict) -> str:
  lines = [
    f"# Accelerator run ({report['size']} size) on {report['backend']}: "
    f"{', '.join(report['devices'])}; {report['total_seconds']:.0f} s in all",
    "",
  ]
  for name, part in report["parts"].items():
    lines.append(f"## {name}")
    lines.append("")
    if "skipped" in part:
      lines += [f"Skipped: {part['skipped']}.", ""]
      continue
    if name == "populations":
      lines += [
        "| population | models | seconds (compile) | models/s | models/s after compile |",
        "|---|---:|---:|---:|---:|",
      ]
      for kind in ("train", "unlearn"):
        r = part[kind]
        lines.append(
          f"| {kind} | {r['n']} | {r['seconds']:.1f} ({r['compile_seconds']:.1f}) | "
          f"{r['per_second']:.2f} | {r['per_second_after_compile']:.2f} |"
        )
      lines.append("")
    else:
      lines += [part.get("device", ""), "", part["markdown"], ""]
    lines += [f"{part['seconds']:.0f} s.", ""]
  return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
  p = argparse.ArgumentParser(
    prog="python -m benchmarks.gpu", description=__doc__.splitlines()[0],
    formatter_class=HelpFormatter,
  )  # fmt: skip
  p.add_argument("--tiny", action="store_true", help="tiny sizes: the script's smoke run on CPU")
  p.add_argument(
    "--parts", default=",".join(PARTS), help=f"comma list of {', '.join(PARTS)} (in this order)"
  )
  p.add_argument(
    "--budget-seconds", type=float, default=540.0,
    help="start no part after this many seconds (the first always runs; what ran is written)",
  )  # fmt: skip
  p.add_argument("--out", default="results/gpu.json", help="JSON file (markdown beside it)")
  p.add_argument("--no-progress", action="store_true", help="no progress bars on stderr")
  return p


def main(argv=None) -> dict:
  p = build_parser()
  args = p.parse_args(argv)
  parts = tuple(s for s in args.parts.split(",") if s)
  if unknown := sorted(set(parts) - set(PARTS)):
    p.error(f"unknown part(s) {', '.join(unknown)}; choose from {', '.join(PARTS)}")
  if not args.tiny and jax.default_backend() == "cpu":
    print(
      "benchmarks.gpu: JAX sees no accelerator; the full sizes take hours on a CPU "
      "(pass --tiny for the smoke run)", file=sys.stderr,
    )  # fmt: skip
  report = run("tiny" if args.tiny else "full", parts, args.budget_seconds, not args.no_progress)
  print(harness.write_report(args.out, report, markdown))
  return report


if __name__ == "__main__":
  main()
