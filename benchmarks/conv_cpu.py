"""What XLA's CPU backend offers for our convolutional steps, against PyTorch on the same CPU.

    PYTHONPATH=/path/to/torch python -m benchmarks.conv_cpu --out docs/results/conv_cpu.json
    python -m benchmarks.conv_cpu --quick      # the strided CNN, three variants (< 2 min)

One child process per (model, variant), because XLA reads its flags when it starts: each
builds the model at the committed benchmark's size (batch 256 of CIFAR-shaped synthetic
rows, ResNet-18 at width 16) and times the plain step (one backward of the retain
cross-entropy, SGD: :mod:`benchmarks.twin_steps`) interleaved with its PyTorch twin
(:mod:`benchmarks.vs_pytorch`) when PyTorch is importable, then writes the parameters it
reached. Variants:

* ``xla``: XLA's own convolution and its gradients (``JAXUNLEARN_CONV=xla``);
* ``im2col``: our custom-JVP convolution (XLA's forward, the kernel gradient as one matmul
  per tap: :mod:`jaxunlearn.nn.conv`), the CPU default (``auto``);
* ``cols``: no convolution op: the forward as one matmul over the im2col patches, JAX's
  derivatives of it (``JAXUNLEARN_CONV=cols``);
* ``onednn``, ``onednn-custom-call``: XLA with oneDNN (``--xla_cpu_use_onednn``,
  ``--xla_cpu_experimental_onednn_custom_call``);
* ``xnnpack``, ``xnn-graph``: XLA with XNNPACK (``--xla_cpu_use_xnnpack``, and its greedy
  graph fusion ``--xla_cpu_experimental_xnn_graph_fusion_mode``);

each of the last four over XLA's own convolution. Every variant starts from the same
weights and batch; ``max_abs_param_diff`` is how far its parameters end from the ``xla``
variant's after the same steps (float rounding, or a different computation). A layer-level
part times one 3×3 convolution's ``value_and_grad`` in NHWC (ours) and NCHW (PyTorch's)
dimension order. Ratios are measured in one child, JAX and PyTorch alternating.
"""

from __future__ import annotations

import importlib.util
import json
import os
import pathlib
import subprocess
import sys
import tempfile

import numpy as np

from benchmarks import harness
from experiments.cli import parser
from jaxunlearn.engine.records import machine_info

VARIANTS = {
  "xla": ("xla", ""),
  "im2col": ("im2col", ""),
  "cols": ("cols", ""),
  "onednn": ("xla", "--xla_cpu_use_onednn=true"),
  "onednn-custom-call": ("xla", "--xla_cpu_experimental_onednn_custom_call=true"),
  "xnnpack": ("xla", "--xla_cpu_use_xnnpack=true"),
  "xnn-graph": (
    "xla",
    "--xla_cpu_use_xnnpack=true "
    "--xla_cpu_experimental_xnn_graph_fusion_mode=XNN_GRAPH_FUSION_MODE_GREEDY",
  ),
}
MODELS = ("cnn", "pooled-cnn", "resnet18")
INPUT, BATCH, RESNET_WIDTH = (32, 32, 3), 256, 16


def child(model: str, steps: int, warmup: int, params_out: str) -> dict:
  """Times the plain step of ``model`` here (this process's flags), with PyTorch if it imports."""
  import jax  # noqa: PLC0415

  from benchmarks import step_cost, twin_steps  # noqa: PLC0415

  fm, params, ms, _ = step_cost.build_model(model, INPUT, 10, 0, RESNET_WIDTH)
  batch = twin_steps.make_batch(0, "shared", BATCH, BATCH, INPUT, 10)
  tx, step = twin_steps.make_step("plain", twin_steps.Losses(fm, "shared"))
  compiled = step_cost.Compiled(step, tx, params, ms, batch)
  twin = torch_version = None
  if importlib.util.find_spec("torch") is not None:
    import torch  # noqa: PLC0415

    from benchmarks import vs_pytorch  # noqa: PLC0415

    twin = vs_pytorch.torch_step(
      "plain", vs_pytorch.torch_model(model, params, ms), "shared", batch
    )
    torch_version = torch.__version__
  # JAX and PyTorch alternate (harness.interleaved), so load drift hits both alike.
  timed = harness.interleaved(
    {"jax": compiled, **({"torch": twin} if twin else {})}, rounds=steps, warmup=warmup
  )
  flat = [np.asarray(x) for x in jax.tree.leaves(compiled.carry[0])]
  np.savez(params_out, *flat)
  jax_ms = timed["jax"]["median_ms"]
  torch_ms = timed["torch"]["median_ms"] if twin else None
  return {
    "jax_ms": jax_ms,
    "torch_ms": torch_ms,
    "ratio": jax_ms / torch_ms if torch_ms else None,
    "compile_s": compiled.result["compile_s"],
    "torch": torch_version,
  }


def layer_child(steps: int, batch: int = BATCH) -> dict:
  """One 3×3 stride-1 convolution (32×32, 32→64 channels): value_and_grad in NHWC and in
  NCHW dimension order, XLA's convolution."""
  import jax  # noqa: PLC0415
  import jax.numpy as jnp  # noqa: PLC0415

  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.normal(size=(batch, 32, 32, 32)), jnp.float32)
  w = jnp.asarray(rng.normal(size=(3, 3, 32, 64)) * 0.05, jnp.float32)
  fns = {}
  for name, dims, xx, ww in (
    ("NHWC", ("NHWC", "HWIO", "NHWC"), x, w),
    ("NCHW", ("NCHW", "OIHW", "NCHW"), x.transpose(0, 3, 1, 2), w.transpose(3, 2, 0, 1)),
  ):

    def loss(xx, ww, dims=dims):
      y = jax.lax.conv_general_dilated(xx, ww, (1, 1), "SAME", dimension_numbers=dims)
      return jnp.mean(y**2)

    f = jax.jit(jax.value_and_grad(loss, argnums=(0, 1)))
    fns[name] = lambda f=f, xx=xx, ww=ww: f(xx, ww)
  timed = harness.interleaved(fns, rounds=steps, warmup=1)
  return {name: t["median_ms"] for name, t in timed.items()}


def _spawn(args: list[str], conv: str, flags: str) -> dict:
  env = {**os.environ, "JAXUNLEARN_CONV": conv, "XLA_FLAGS": flags, "JAX_PLATFORMS": "cpu"}
  proc = subprocess.run(
    [sys.executable, "-m", "benchmarks.conv_cpu", *args],
    capture_output=True, text=True, env=env, timeout=1800,
  )  # fmt: skip
  if proc.returncode != 0:
    return {"error": (proc.stderr.strip().splitlines() or ["no output"])[-1][:300]}
  return json.loads(proc.stdout.strip().splitlines()[-1])


def run(
  models=MODELS, variants=tuple(VARIANTS), steps: int = 10, warmup: int = 2, layer_batch=BATCH
) -> dict:
  rows = []
  with tempfile.TemporaryDirectory() as tmp:
    for model in models:
      reached = {}
      for variant in variants:
        conv, flags = VARIANTS[variant]
        path = str(pathlib.Path(tmp) / f"{model}-{variant}.npz")
        args = [
          "--child",
          model,
          "--steps",
          str(steps),
          "--warmup",
          str(warmup),
          "--params-out",
          path,
        ]
        r = _spawn(args, conv, flags)
        if "error" not in r:
          reached[variant] = np.load(path)
        base = reached.get("xla")
        if base is not None and variant in reached:
          mine = reached[variant]
          r["max_abs_param_diff"] = max(
            float(np.max(np.abs(mine[k] - base[k]))) for k in base.files
          )
        rows.append({"model": model, "variant": variant, "flags": flags, "conv": conv, **r})
    layer = _spawn(["--layer", "--steps", str(steps), "--layer-batch", str(layer_batch)], "xla", "")
  return {
    "benchmark": "conv_cpu",
    "batch_size": BATCH,
    "resnet_width": RESNET_WIDTH,
    "steps": steps,
    "rows": rows,
    "layer_ms": layer,
    "layer_batch": layer_batch,
    "machine": machine_info(),
  }


def markdown(report: dict) -> str:
  torch = next((r["torch"] for r in report["rows"] if r.get("torch")), None)
  lines = [
    f"Plain step (batch {report['batch_size']}, ResNet-18 width {report['resnet_width']}), "
    f"median of {report['steps']} steps interleaved with PyTorch {torch or '(not installed)'} "
    "on the same CPU; ratio = JAX / PyTorch; Δ params = largest difference from the `xla` "
    "variant's parameters after the same steps.",
    "",
    "| model | variant | JAX ms | PyTorch ms | JAX / PyTorch | compile s | Δ params |",
    "|---|---|---:|---:|---:|---:|---:|",
  ]
  fmt = lambda v, spec: "–" if v is None else format(v, spec)
  for r in report["rows"]:
    if "error" in r:
      lines.append(f"| {r['model']} | {r['variant']} | error: {r['error'][:80]} | | | | |")
      continue
    lines.append(
      f"| {r['model']} | {r['variant']} | {r['jax_ms']:.1f} | {fmt(r['torch_ms'], '.1f')} | "
      f"{fmt(r['ratio'], '.2f')} | {r['compile_s']:.1f} | "
      f"{fmt(r.get('max_abs_param_diff'), '.1e')} |"
    )
  layer = report.get("layer_ms", {})
  if "NHWC" in layer:
    lines += [
      "",
      f"One 3×3 convolution's value_and_grad (32×32, 32→64, batch {report['layer_batch']}, "
      f"XLA): NHWC {layer['NHWC']:.1f} ms, NCHW {layer['NCHW']:.1f} ms.",
    ]
  return "\n".join(lines) + "\n"


def build_parser():
  p = parser(__doc__)
  p.add_argument("--models", default=",".join(MODELS), help=f"comma list of {', '.join(MODELS)}")
  p.add_argument("--variants", default=",".join(VARIANTS), help=f"of {', '.join(VARIANTS)}")
  p.add_argument("--steps", type=int, default=10, help="timed steps (each framework)")
  p.add_argument("--warmup", type=int, default=2, help="untimed steps first")
  p.add_argument("--quick", action="store_true", help="strided CNN; xla, im2col, onednn")
  p.add_argument("--out", default="results/conv_cpu.json", help="JSON (markdown beside it)")
  p.add_argument("--child", help="(internal) time one model in this process")
  p.add_argument("--layer", action="store_true", help="(internal) the layer-level timing")
  p.add_argument("--params-out", help="(internal) where the child writes its parameters")
  p.add_argument("--layer-batch", type=int, default=BATCH, help="batch of the layer-level part")
  return p


def main(argv=None) -> dict:
  args = build_parser().parse_args(argv)
  if args.child:
    print(json.dumps(child(args.child, args.steps, args.warmup, args.params_out)))
    return {}
  if args.layer:
    print(json.dumps(layer_child(args.steps, args.layer_batch)))
    return {}
  models, variants = args.models.split(","), args.variants.split(",")
  if args.quick:
    models, variants = ["cnn"], ["xla", "im2col", "onednn"]
  for v in variants:
    if v not in VARIANTS:
      raise SystemExit(f"unknown variant {v!r}; choose from {', '.join(VARIANTS)}")
  if "xla" in variants:  # the reference of Δ params comes first
    variants = ["xla", *[v for v in variants if v != "xla"]]
  report = run(models, variants, args.steps, args.warmup, args.layer_batch)
  print(harness.write_report(args.out, report, markdown))
  return report


if __name__ == "__main__":
  main()
