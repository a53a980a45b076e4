r"""Time of a convolution's ``value_and_grad``: XLA's own rule against the im2col kernel gradient.

docs/design.md §3: on CPU, XLA's weight gradient of stride-1 3x3 convolutions is very
slow. :mod:`jaxunlearn.conv` forms the kernel gradient as matmuls instead. This benchmark
times, in one process and interleaved (round after round, each implementation once per
round, order rotating, median over rounds), one jitted ``value_and_grad`` with respect to
both input and kernel of ``0.5 * sum(conv(x, w)**2)`` for

* ``xla`` -- ``lax.conv_general_dilated`` differentiated by JAX (XLA transposed convs);
* ``taps`` -- :func:`jaxunlearn.conv.conv2d` with ``kernel_grad="taps"`` (the default: one
  matmul per kernel tap over shifted views of the input, no patch matrix);
* ``matmul`` -- :func:`jaxunlearn.conv.conv2d` with ``kernel_grad="matmul"`` (one matmul
  over the im2col patch matrix),

on ResNet-18 layer shapes (3x3, stride 1) and the stride-2 shapes of the strided CNN, plus
whole-model steps (value_and_grad of the cross-entropy w.r.t. the parameters) of the
strided CNN and ResNet-18 with each implementation (``xla`` vs ``im2col`` =
:mod:`jaxunlearn.conv`'s switch). Each row also gives the largest relative difference of
the gradients from the ``xla`` ones and XLA's compiled temporary memory.

    python -m benchmarks.conv_grad            # layers at batch 128, models (a few minutes, CPU)
    python -m benchmarks.conv_grad --quick    # tiny, seconds (CI structure check)

Writes ``--out`` (default ``results/conv_grad.json``) and a markdown table beside it.
"""

from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

from benchmarks import harness
from experiments.cli import HelpFormatter
from jaxunlearn.engine.records import machine_info
from jaxunlearn.nn import conv
from jaxunlearn.nn import models as models_lib

# (name, H, W, Cin, Cout, kernel, stride)
LAYERS = (
  ("resnet 32x32x64", 32, 32, 64, 64, 3, 1),
  ("resnet 16x16x128", 16, 16, 128, 128, 3, 1),
  ("resnet 8x8x256", 8, 8, 256, 256, 3, 1),
  ("resnet 4x4x512", 4, 4, 512, 512, 3, 1),
  ("cnn 32x32x3->32 s2", 32, 32, 3, 32, 3, 2),
  ("cnn 16x16x32->64 s2", 16, 16, 32, 64, 3, 2),
  ("cnn 28x28x1->32 s2", 28, 28, 1, 32, 3, 2),
  ("cnn 14x14x32->64 s2", 14, 14, 32, 64, 3, 2),
)
# --sweep: stride-1 3x3 layers over map sizes and channel counts (where ours wins or loses).
SWEEP_LAYERS = tuple(
  (f"{hw}x{hw}x{cin}->{cout}", hw, hw, cin, cout, 3, 1)
  for hw in (32, 16, 8, 4)
  for cin in (16, 32, 64, 128)
  for cout in (cin, 2 * cin)
  if hw * hw * cin * cout <= 32 * 32 * 64 * 128
)
QUICK_LAYERS = (("quick 8x8x4 s1", 8, 8, 4, 8, 3, 1), ("quick 8x8x4 s2", 8, 8, 4, 8, 3, 2))


def _rel_err(a, b) -> float:
  num = max(float(jnp.max(jnp.abs(x - y))) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))
  den = max(float(jnp.max(jnp.abs(y))) for y in jax.tree.leaves(b))
  return num / max(den, 1e-30)


def _temp_bytes(f, *args) -> int | None:
  try:
    return int(f.lower(*args).compile().memory_analysis().temp_size_in_bytes)
  except Exception:  # pylint: disable=broad-except
    return None


def bench_layer(spec, batch: int, rounds: int, warmup: int) -> dict:
  name, h, w, cin, cout, k, s = spec
  pad = ((k // 2, k // 2),) * 2
  kx, kw = jax.random.split(jax.random.key(0))
  x = jax.random.normal(kx, (batch, h, w, cin), jnp.float32)
  wt = jax.random.normal(kw, (k, k, cin, cout), jnp.float32) / np.sqrt(k * k * cin)

  def loss(conv_fn):
    return lambda x, w: 0.5 * jnp.sum(conv_fn(x, w) ** 2)

  fns = {
    "xla": jax.jit(
      jax.value_and_grad(
        loss(
          lambda x, w: jax.lax.conv_general_dilated(
            x, w, (s, s), pad, dimension_numbers=("NHWC", "HWIO", "NHWC")
          )
        ),
        (0, 1),
      )
    ),
    "taps": jax.jit(
      jax.value_and_grad(
        loss(lambda x, w: conv.conv2d(x, w, (s, s), pad, kernel_grad="taps")), (0, 1)
      )
    ),
    "matmul": jax.jit(
      jax.value_and_grad(
        loss(lambda x, w: conv.conv2d(x, w, (s, s), pad, kernel_grad="matmul")), (0, 1)
      )
    ),
  }
  ref = fns["xla"](x, wt)
  errors = {k: _rel_err(f(x, wt)[1], ref[1]) for k, f in fns.items()}
  timing = harness.interleaved(fns, (x, wt), rounds, warmup)
  return {
    "name": name,
    "kind": "layer",
    "shape": [batch, h, w, cin, cout, k, s],
    "timing": timing,
    "grad_rel_err": errors,
    "temp_bytes": {k: _temp_bytes(f, x, wt) for k, f in fns.items()},
    "ratio": {k: timing[k]["median_ms"] / timing["xla"]["median_ms"] for k in fns},
  }


def bench_model(name: str, batch: int, rounds: int, warmup: int, input_shape, **kwargs) -> dict:
  x = jax.random.normal(jax.random.key(1), (batch, *input_shape), jnp.float32)
  y = jnp.arange(batch) % 10

  built = {}
  for impl in ("xla", "im2col"):
    with conv.implementation(impl):  # the layers keep it when built (same seed, same params)
      model = models_lib.create_model(
        name, num_classes=10, input_shape=input_shape, seed=0, **kwargs
      )
    built[impl] = models_lib.functional(model)
  params = built["xla"][1]

  def make(fm, _, state):
    def loss(p):
      logits, _ = fm.apply(p, state, x, train=True)
      return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()

    f = jax.jit(jax.value_and_grad(loss))
    f.lower(params)
    jax.block_until_ready(f(params))
    return f

  fns = {impl: make(*model) for impl, model in built.items()}
  ref = fns["xla"](params)
  errors = {k: _rel_err(f(params)[1], ref[1]) for k, f in fns.items()}
  timing = harness.interleaved(fns, (params,), rounds, warmup)
  label = f"{name} {'x'.join(map(str, input_shape))}" + "".join(
    f" {k}={v}" for k, v in kwargs.items()
  )
  return {
    "name": label,
    "kind": "model",
    "shape": [batch, *input_shape],
    "timing": timing,
    "grad_rel_err": errors,
    "ratio": {k: timing[k]["median_ms"] / timing["xla"]["median_ms"] for k in fns},
  }


def to_markdown(report: dict) -> str:
  m = report["machine"]
  lines = [
    "# Convolution value_and_grad: XLA vs im2col kernel gradient",
    "",
    f"Machine: {m['backend']} ({m['device_kind']}), {m['affinity_cpus']} usable CPUs, "
    f"{m['platform']}; jax {m['versions']['jax']}. Median of {report['config']['rounds']} "
    "interleaved rounds. ratio = time / xla time (< 1: faster). err = max |g - g_xla| / "
    "max |g_xla| over input and kernel gradients.",
    "",
    "| shape (batch) | xla ms | taps ms | matmul ms | taps/xla | matmul/xla | max err |",
    "|---|---:|---:|---:|---:|---:|---:|",
  ]
  for r in report["rows"]:
    if r["kind"] != "layer":
      continue
    t, q = r["timing"], r["ratio"]
    lines.append(
      f"| {r['name']} ({r['shape'][0]}) | {t['xla']['median_ms']:.1f} | "
      f"{t['taps']['median_ms']:.1f} | {t['matmul']['median_ms']:.1f} | {q['taps']:.2f} | "
      f"{q['matmul']:.2f} | {max(r['grad_rel_err'].values()):.1e} |"
    )
  models = [r for r in report["rows"] if r["kind"] == "model"]
  if models:
    lines += [
      "",
      "Whole model, value_and_grad of the cross-entropy w.r.t. the parameters "
      "(`jaxunlearn.nn.conv` switch: xla vs im2col):",
      "",
      "| model (batch) | xla ms | im2col ms | im2col/xla | max err |",
      "|---|---:|---:|---:|---:|",
    ]
    for r in models:
      t = r["timing"]
      lines.append(
        f"| {r['name']} ({r['shape'][0]}) | {t['xla']['median_ms']:.1f} | "
        f"{t['im2col']['median_ms']:.1f} | {r['ratio']['im2col']:.2f} | "
        f"{max(r['grad_rel_err'].values()):.1e} |"
      )
  return "\n".join(lines) + "\n"


def build_parser():
  p = argparse.ArgumentParser(
    prog=f"python -m {__spec__.name}",
    description=__doc__.split("\n")[0],
    formatter_class=HelpFormatter,
  )
  p.add_argument("--quick", action="store_true", help="tiny shapes, 2 rounds (seconds)")
  p.add_argument(
    "--batch", type=int, default=128, help="batch of the layers and the CNN (not with --quick)"
  )
  p.add_argument(
    "--rounds", type=int, default=5, help="timed rounds, median over them (not with --quick)"
  )
  p.add_argument(
    "--warmup", type=int, default=1, help="untimed rounds before the timed ones (not with --quick)"
  )
  p.add_argument("--no-models", action="store_true", help="layer shapes only")
  p.add_argument(
    "--sweep", action="store_true", help="a grid of stride-1 layers instead of the named ones"
  )
  p.add_argument(
    "--resnet-batch",
    type=int,
    default=16,
    help="batch of the full-width ResNet-18 step (seconds a step on CPU)",
  )
  p.add_argument(
    "--out", default="results/conv_grad.json", help="JSON file to write (markdown table beside it)"
  )
  return p


def parse_args(argv=None):
  return build_parser().parse_args(argv)


def main(argv=None) -> dict:
  args = parse_args(argv)
  t0 = time.perf_counter()
  if args.quick:
    layers, batch, rounds, warmup = QUICK_LAYERS, 4, 2, 1
    model_specs = [
      ("cnn", 4, (8, 8, 1), dict(channels=(4, 8), hidden=16)),
      ("resnet18", 4, (8, 8, 3), dict(width=2, stage_sizes=(1, 1))),
    ]
  else:
    layers = SWEEP_LAYERS if args.sweep else LAYERS
    batch, rounds, warmup = args.batch, args.rounds, args.warmup
    model_specs = [
      ("cnn", args.batch, (32, 32, 3), {}),
      ("pooled-cnn", args.batch, (32, 32, 3), {}),
      ("resnet18", args.batch, (32, 32, 3), {"width": 16}),
      ("resnet18", args.resnet_batch, (32, 32, 3), {}),
    ]
  if args.no_models:
    model_specs = []
  rows = []
  for spec in layers:
    rows.append(bench_layer(spec, batch, rounds, warmup))
    print(
      rows[-1]["name"],
      {k: round(v["median_ms"], 1) for k, v in rows[-1]["timing"].items()},
      flush=True,
    )
  for name, b, shape, kw in model_specs:
    rows.append(bench_model(name, b, rounds, warmup, shape, **kw))
    print(
      rows[-1]["name"],
      {k: round(v["median_ms"], 1) for k, v in rows[-1]["timing"].items()},
      flush=True,
    )
  report = {
    "machine": machine_info(),
    "config": {
      "quick": args.quick,
      "batch": batch,
      "rounds": rounds,
      "warmup": warmup,
      "kernel_grad_default": conv.KERNEL_GRAD,
    },
    "rows": rows,
    "total_seconds": time.perf_counter() - t0,
  }
  harness.write_report(args.out, report, to_markdown)
  return report


if __name__ == "__main__":
  main()
