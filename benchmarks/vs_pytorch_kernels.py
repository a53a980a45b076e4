"""Where JAX's steps lose to PyTorch's on CPU: the kernels inside them, side by side.

:mod:`benchmarks.vs_pytorch` times whole steps. This times the matmuls and convolutions
those steps are made of, at the same shapes (batch 256, CIFAR-shaped 32×32×3 input, the
MLP (256, 256), the strided CNN and the pooled CNN's layers), each framework's own
kernel on the same arrays, interleaved in one process (the two frameworks alternate
first place each round, so load drift hits both):

* ``dense``: a forward ``x @ W`` and the weight gradient ``xᵀ @ dy`` of the MLP's layers
  (XLA's CPU dot against PyTorch's ``torch.mm``, MKL/oneDNN sgemm);
* ``conv fwd`` / ``conv dx`` / ``conv dW``: a layer's forward convolution, its input
  gradient and its kernel gradient; JAX: XLA's convolution (NHWC) and, for the kernel
  gradient, also ours (:mod:`jaxunlearn.nn.conv`, what our CNNs use on CPU); PyTorch:
  ``F.conv2d`` and ``torch.nn.grad.conv2d_input`` / ``conv2d_weight`` (NCHW, oneDNN).

GFLOP/s = 2·(multiply-adds) / time. Ratio = JAX time / PyTorch time (below 1: JAX faster).
``torch`` is an optional extra (``pip install -e '.[vs-pytorch]'``).
"""

from __future__ import annotations

import argparse

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks import harness
from benchmarks.vs_pytorch import omp_wait_policy, require_torch
from experiments.cli import HelpFormatter
from jaxunlearn.engine.records import machine_info
from jaxunlearn.nn import conv as conv_lib

BATCH = 256

# (name, input rows, in features, out features): the MLP (256, 256) on 32×32×3.
DENSE = (("mlp hidden0", 3072, 256), ("mlp hidden1", 256, 256))
# (name, H, W, C_in, C_out, stride): the CNNs' layers on 32×32×3, 3×3 kernels, padding 1.
CONVS = (
  ("cnn conv0", 32, 32, 3, 32, 2),
  ("cnn conv1", 16, 16, 32, 64, 2),
  ("pooled-cnn conv0", 32, 32, 3, 32, 1),
  ("pooled-cnn conv1", 16, 16, 32, 64, 1),
)


def cases(batch: int = BATCH, seed: int = 0) -> list[dict]:
  """Every (kernel, shape) with its JAX and PyTorch callables and FLOP count.

  Each case: ``name``, ``op``, ``flops``, ``jax`` (a dict label -> zero-argument callable
  returning a JAX array) and ``torch`` (a zero-argument callable).
  """
  rng = np.random.default_rng(seed)
  out = []
  for name, fin, fout in DENSE:
    out += _dense_cases(name, fin, fout, batch, rng)
  for name, h, w, cin, cout, stride in CONVS:
    out += _conv_cases(name, h, w, cin, cout, stride, batch, rng)
  return out


def _normal(rng, *shape):
  return rng.standard_normal(shape, dtype=np.float32)


def _dense_cases(name, fin, fout, batch, rng) -> list[dict]:
  torch = require_torch()
  x, w, dy = _normal(rng, batch, fin), _normal(rng, fin, fout), _normal(rng, batch, fout)
  jx, jw, jdy = map(jnp.asarray, (x, w, dy))
  tx, tw, tdy = map(torch.from_numpy, (x, w, dy))
  fwd = jax.jit(jnp.dot)
  # the weight gradient as autodiff writes it: contract the batch axis of x and dy
  dw = jax.jit(lambda x, dy: jax.lax.dot_general(x, dy, (((0,), (0,)), ((), ()))))
  flops = 2 * batch * fin * fout
  return [
    dict(name=name, op="dense fwd", flops=flops, jax={"xla": lambda: fwd(jx, jw)},
         torch=lambda: torch.mm(tx, tw)),
    dict(name=name, op="dense dW", flops=flops, jax={"xla": lambda: dw(jx, jdy)},
         torch=lambda: torch.mm(tx.t(), tdy)),
  ]  # fmt: skip


def _conv_cases(name, h, w, cin, cout, stride, batch, rng) -> list[dict]:
  torch = require_torch()
  ho, wo = (h - 1) // stride + 1, (w - 1) // stride + 1
  x, k, g = (
    _normal(rng, batch, h, w, cin),
    _normal(rng, 3, 3, cin, cout),
    _normal(rng, batch, ho, wo, cout),
  )
  jx, jk, jg = map(jnp.asarray, (x, k, g))
  tx = torch.from_numpy(x.transpose(0, 3, 1, 2).copy())
  tk = torch.from_numpy(k.transpose(3, 2, 0, 1).copy())
  tg = torch.from_numpy(g.transpose(0, 3, 1, 2).copy())
  strides, pads = (stride, stride), ((1, 1), (1, 1))

  def xla(x, k):
    return jax.lax.conv_general_dilated(x, k, strides, pads, dimension_numbers=conv_lib._NHWC)

  def ours(x, k):
    return conv_lib.conv2d(x, k, strides, pads)

  def vjp(f, wrt):
    return jax.jit(lambda x, k, g: jax.vjp(f, x, k)[1](g)[wrt])

  fwd, dx, dw_xla, dw_ours = jax.jit(xla), vjp(xla, 0), vjp(xla, 1), vjp(ours, 1)
  flops = 2 * batch * ho * wo * cout * cin * 9
  grad = torch.nn.grad
  out = [
    dict(name=name, op="conv fwd", flops=flops, jax={"xla": lambda: fwd(jx, jk)},
         torch=lambda: torch.nn.functional.conv2d(tx, tk, stride=stride, padding=1)),
    dict(name=name, op="conv dW", flops=flops,
         jax={"xla": lambda: dw_xla(jx, jk, jg), "ours": lambda: dw_ours(jx, jk, jg)},
         torch=lambda: grad.conv2d_weight(tx, tk.shape, tg, stride=stride, padding=1)),
  ]  # fmt: skip
  if cin > 3:  # a first layer's input gradient is never computed (the input is data)
    out.insert(1, dict(name=name, op="conv dx", flops=flops, jax={"xla": lambda: dx(jx, jk, jg)},
                       torch=lambda: grad.conv2d_input(tx.shape, tk, tg, stride=stride,
                                                       padding=1)))  # fmt: skip
  return out


def check(case: dict, atol: float = 2e-2) -> None:
  """Both frameworks compute the same numbers (a relative check on the largest entry)."""
  want = case["torch"]().numpy()
  if want.ndim == 4:  # NCHW / OIHW -> NHWC / HWIO
    want = want.transpose(0, 2, 3, 1) if case["op"] != "conv dW" else want.transpose(2, 3, 1, 0)
  for label, f in case["jax"].items():
    got = np.asarray(f())
    err = np.abs(got - want).max() / max(np.abs(want).max(), 1e-12)
    if err > atol:
      raise AssertionError(f"{case['name']} {case['op']} ({label}): relative error {err:.2e}")


def run(rounds: int = 30, warmup: int = 3, batch: int = BATCH, seed: int = 0) -> dict:
  torch = require_torch()
  rows = []
  for case in cases(batch, seed):
    check(case)
    fns = {f"jax {k}": f for k, f in case["jax"].items()} | {"torch": case["torch"]}
    ms = {k: t["median_ms"] for k, t in harness.interleaved(fns, (), rounds, warmup).items()}
    row = {"name": case["name"], "op": case["op"], "gflop": case["flops"] / 1e9,
           "torch_ms": ms["torch"]}  # fmt: skip
    for label in case["jax"]:
      row[f"jax_{label}_ms"] = ms[f"jax {label}"]
      row[f"ratio_{label}"] = ms[f"jax {label}"] / ms["torch"]
    rows.append(row)
  return {
    "benchmark": "vs_pytorch_kernels",
    "batch_size": batch,
    "rounds": rounds,
    "torch": torch.__version__,
    "torch_threads": torch.get_num_threads(),
    "omp_wait_policy": omp_wait_policy(),
    "rows": rows,
    "machine": machine_info(),
  }


def markdown(report: dict) -> str:
  lines = [
    f"Kernels of the vs-PyTorch steps: JAX {report['machine']['versions']['jax']} against "
    f"PyTorch {report['torch']} ({report['torch_threads']} threads, OpenMP wait policy "
    f"{report.get('omp_wait_policy', 'unset')}), batch "
    f"{report['batch_size']}, median of {report['rounds']} interleaved calls; GFLOP/s = "
    "2·multiply-adds / time; ratio = JAX / PyTorch time (below 1: JAX faster). `ours`: "
    "jaxunlearn.nn.conv's kernel gradient (what our CNNs use on CPU).",
    "",
    "| layer | kernel | GFLOP | PyTorch ms (GFLOP/s) | XLA ms (GFLOP/s) | XLA / PyTorch "
    "| ours ms | ours / PyTorch |",
    "|---|---|---:|---:|---:|---:|---:|---:|",
  ]
  for r in report["rows"]:
    rate = lambda t, gflop=r["gflop"]: gflop / (t / 1e3)
    ours = f"{r['jax_ours_ms']:.2f} | {r['ratio_ours']:.2f}×" if "jax_ours_ms" in r else "– | –"
    lines.append(
      f"| {r['name']} | {r['op']} | {r['gflop']:.3f} | {r['torch_ms']:.2f} "
      f"({rate(r['torch_ms']):.0f}) | {r['jax_xla_ms']:.2f} ({rate(r['jax_xla_ms']):.0f}) | "
      f"{r['ratio_xla']:.2f}× | {ours} |"
    )
  return "\n".join(lines) + "\n"


def build_parser():
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0], formatter_class=HelpFormatter)
  p.add_argument("--rounds", type=int, default=30, help="timed interleaved calls per kernel")
  p.add_argument("--warmup", type=int, default=3, help="untimed calls first")
  p.add_argument("--batch-size", type=int, default=BATCH, help="rows per batch")
  p.add_argument("--quick", action="store_true", help="batch 32, 3 rounds")
  p.add_argument("--out", default="results/vs_pytorch_kernels.json", help="JSON output path")
  return p


def main(argv=None) -> dict:
  args = build_parser().parse_args(argv)
  jax.config.update("jax_platforms", "cpu")
  if args.quick:
    report = run(rounds=3, warmup=1, batch=32)
  else:
    report = run(args.rounds, args.warmup, args.batch_size)
  print(harness.write_report(args.out, report, markdown))
  return report


if __name__ == "__main__":
  main()
