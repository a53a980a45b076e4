"""The same unlearning steps in JAX and in PyTorch, timed side by side in one process.

    pip install -e '.[vs-pytorch]'          # torch, an optional extra (never a core dependency)
    python -m benchmarks.vs_pytorch --out docs/results/vs_pytorch_cpu.json
    python -m benchmarks.vs_pytorch --quick  # MLP only, shared layout (< 1 min)

Steps (SGD lr 1e-3, momentum 0.9; the unlearning steps with the protocol's weight decay
5e-4, as in ``benchmarks.step_cost``), written in PyTorch from the formulas as the
paper's code computes them:

* ``plain``: one backward of the retain cross-entropy, SGD;
* ``igs-paper``: one backward of S = λ·log L_r + log L_f, SGD, one more forward of L_r
  after the step, Adam (lr 1, L2 0.01) on λ with the observed decrease, λ ≥ 0;
* ``explicit``: the two gradients (``torch.autograd.grad`` twice), d = g_f +
  max(0, (−⟨g_r, g_f⟩ − ε)/(‖g_r‖² + δ))·g_r, clipped to norm 1, SGD.

Models: our MLP (256, 256) and strided CNN (32, 64 channels, a 128 dense layer) on
CIFAR-shaped synthetic batches (32×32×3, 10 classes), the same initial weights in both
frameworks, batch 256 (split: 256 retain + 256 forget rows; shared: one batch of 256).
Per step: the median of ``--steps`` interleaved rounds (JAX and PyTorch alternate, so load
drift hits both) after warm-up; JAX's compile is excluded. Ratio = JAX time / PyTorch time
(below 1: JAX faster). PyTorch uses every CPU thread it is allowed (``torch.get_num_threads``).
"""

from __future__ import annotations

import argparse
import pathlib
import statistics
import time

import jax
import numpy as np

from benchmarks import step_cost
from jaxunlearn.engine.records import machine_info, write_json_atomic

METHODS = ("plain", "igs-paper", "explicit")
MODELS = ("mlp", "cnn")
LAYOUTS = ("shared", "split")
INPUT = (32, 32, 3)


def _torch():
  try:
    import torch  # noqa: PLC0415
  except ImportError as e:  # one line naming the fix
    raise SystemExit("benchmarks.vs_pytorch needs torch: pip install -e '.[vs-pytorch]'") from e
  return torch


def torch_model(name: str, params):
  """The PyTorch twin of our model, its weights copied from the JAX ``params``."""
  torch = _torch()
  nn = torch.nn
  if name == "mlp":
    layers = [_make_flatten()()]  # the JAX MLP flattens NHWC
    names = sorted(k for k in params if k.startswith("hidden")) + ["head"]
    for i, k in enumerate(names):
      w = np.asarray(params[k]["kernel"])
      lin = nn.Linear(*w.shape)
      lin.weight.data = torch.tensor(w.T.copy())
      lin.bias.data = torch.tensor(np.asarray(params[k]["bias"]).copy())
      layers.append(lin)
      if i < len(names) - 1:
        layers.append(nn.ReLU())
    return nn.Sequential(*layers)
  convs = sorted(k for k in params if k.startswith("conv"))
  layers = []
  for k in convs:
    w = np.asarray(params[k]["kernel"])  # (kh, kw, cin, cout)
    conv = nn.Conv2d(w.shape[2], w.shape[3], 3, stride=2, padding=1)
    conv.weight.data = torch.tensor(w.transpose(3, 2, 0, 1).copy())
    conv.bias.data = torch.tensor(np.asarray(params[k]["bias"]).copy())
    layers += [conv, nn.ReLU()]
  # NHWC flatten order, as the JAX model flattens: permute before flattening.
  layers.append(_make_flatten()())
  for i, k in enumerate(("hidden", "head")):
    w = np.asarray(params[k]["kernel"])
    lin = nn.Linear(*w.shape)
    lin.weight.data = torch.tensor(w.T.copy())
    lin.bias.data = torch.tensor(np.asarray(params[k]["bias"]).copy())
    layers.append(lin)
    if i == 0:
      layers.append(nn.ReLU())
  return nn.Sequential(*layers)


def _make_flatten():
  torch = _torch()

  class NHWCFlatten(torch.nn.Module):
    def forward(self, x):
      return x.permute(0, 2, 3, 1).reshape(x.shape[0], -1)

  return NHWCFlatten


def torch_step(method: str, model, layout: str, batch: dict):
  """A PyTorch step closure for ``method`` (see the module docstring)."""
  torch = _torch()
  f = torch.nn.functional
  params = list(model.parameters())
  wd = 0.0 if method == "plain" else 5e-4
  opt = torch.optim.SGD(params, lr=1e-3, momentum=0.9, weight_decay=wd)
  lam = torch.zeros((), requires_grad=True)
  dual = torch.optim.Adam([lam], lr=1.0, weight_decay=0.01)
  nchw = lambda a: torch.tensor(np.asarray(a).transpose(0, 3, 1, 2).copy())
  if layout == "shared":
    x, y, y_f = nchw(batch["x"]), torch.tensor(np.asarray(batch["y"])).long(), None
    y_f = torch.tensor(np.asarray(batch["y_f"])).long()
  else:
    x_r, y = nchw(batch["x_r"]), torch.tensor(np.asarray(batch["y_r"])).long()
    x_f, y_f = nchw(batch["x_f"]), torch.tensor(np.asarray(batch["y_f"])).long()

  def losses():
    if layout == "shared":
      logits = model(x)
      return f.cross_entropy(logits, y), f.cross_entropy(logits, y_f)
    return f.cross_entropy(model(x_r), y), f.cross_entropy(model(x_f), y_f)

  def retain_only():
    return f.cross_entropy(model(x if layout == "shared" else x_r), y)

  if method == "plain":

    def step():
      opt.zero_grad(set_to_none=True)
      retain_only().backward()
      opt.step()

  elif method == "igs-paper":

    def step():
      opt.zero_grad(set_to_none=True)
      l_r, l_f = losses()
      (lam.detach() * torch.log(l_r) + torch.log(l_f)).backward()
      opt.step()
      with torch.no_grad():
        after = retain_only()
        u = torch.log(l_r.detach()) - torch.log(after)  # observed decrease + ε (ε = 0)
      dual.zero_grad(set_to_none=True)
      lam.grad = u.reshape(())
      dual.step()
      with torch.no_grad():
        lam.clamp_(min=0.0)

  else:

    def step():
      l_r, l_f = losses()
      g_r = torch.autograd.grad(l_r, params, retain_graph=True)
      g_f = torch.autograd.grad(l_f, params)
      dot = sum((a * b).sum() for a, b in zip(g_r, g_f))
      nr = sum((a * a).sum() for a in g_r)
      coef = torch.clamp(-dot / (nr + 1e-8), min=0.0)
      d = [b + coef * a for a, b in zip(g_r, g_f)]
      norm = torch.sqrt(sum((v * v).sum() for v in d))
      scale = torch.clamp(1.0 / (norm + 1e-6), max=1.0)
      for p, v in zip(params, d):
        p.grad = v * scale
      opt.step()

  return step


def run(models, layouts, steps: int, warmup: int, batch_size: int = 256, seed: int = 0) -> dict:
  torch = _torch()
  torch.manual_seed(seed)
  rows = []
  for name in models:
    fm, params, ms, _ = step_cost.build_model(name, INPUT, 10, seed, 8)
    for layout in layouts:
      batch = step_cost.make_batch(seed, layout, batch_size, batch_size, INPUT, 10)
      losses = step_cost.Losses(fm, layout)
      jax_steps, torch_steps = {}, {}
      for method in METHODS:
        tx, step = step_cost.make_step(method, losses)
        jax_steps[method] = step_cost.Compiled(step, tx, params, ms, batch)
        torch_steps[method] = torch_step(method, torch_model(name, params), layout, batch)
      for _ in range(warmup):
        for method in METHODS:
          jax_steps[method]()
          torch_steps[method]()
      times = {(fw, m): [] for fw in ("jax", "torch") for m in METHODS}
      for r in range(steps):
        for i, method in enumerate(METHODS):
          order = ("jax", "torch") if (r + i) % 2 == 0 else ("torch", "jax")
          for fw in order:
            if fw == "jax":
              times[fw, method].append(jax_steps[method]())
            else:
              t = time.perf_counter()
              torch_steps[method]()
              times[fw, method].append(time.perf_counter() - t)
      for method in METHODS:
        j = 1e3 * statistics.median(times["jax", method])
        t = 1e3 * statistics.median(times["torch", method])
        rows.append(
          {"model": name, "layout": layout, "method": method, "jax_ms": j, "torch_ms": t,
           "ratio": j / t}
        )  # fmt: skip
  return {
    "benchmark": "vs_pytorch",
    "batch_size": batch_size,
    "steps": steps,
    "torch": torch.__version__,
    "torch_threads": torch.get_num_threads(),
    "rows": rows,
    "machine": machine_info(),
  }


def markdown(report: dict) -> str:
  lines = [
    f"JAX vs PyTorch {report['torch']} ({report['torch_threads']} threads), batch "
    f"{report['batch_size']}, median of {report['steps']} interleaved steps; ratio = JAX / "
    "PyTorch time (below 1: JAX faster).",
    "",
    "| model | layout | step | JAX ms | PyTorch ms | JAX / PyTorch |",
    "|---|---|---|---:|---:|---:|",
  ]
  for r in report["rows"]:
    lines.append(
      f"| {r['model']} | {r['layout']} | {r['method']} | {r['jax_ms']:.2f} | "
      f"{r['torch_ms']:.2f} | {r['ratio']:.2f}× |"
    )
  return "\n".join(lines) + "\n"


def build_parser():
  p = argparse.ArgumentParser(
    description=__doc__.splitlines()[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
  )
  p.add_argument("--models", default=",".join(MODELS), help="comma list of mlp, cnn")
  p.add_argument("--layouts", default=",".join(LAYOUTS), help="comma list of shared, split")
  p.add_argument("--steps", type=int, default=20, help="timed interleaved rounds")
  p.add_argument("--warmup", type=int, default=3, help="untimed steps first")
  p.add_argument("--quick", action="store_true", help="MLP, shared layout, 5 steps")
  p.add_argument("--out", default="results/vs_pytorch.json", help="JSON output path")
  return p


def main(argv=None) -> dict:
  args = build_parser().parse_args(argv)
  jax.config.update("jax_platforms", "cpu")
  if args.quick:
    report = run(("mlp",), ("shared",), 5, 1)
  else:
    report = run(tuple(args.models.split(",")), tuple(args.layouts.split(",")), args.steps,
                 args.warmup)  # fmt: skip
  out = pathlib.Path(args.out)
  out.parent.mkdir(parents=True, exist_ok=True)
  write_json_atomic(out, report, indent=2)
  out.with_suffix(".md").write_text(markdown(report))
  print(markdown(report))
  return report


if __name__ == "__main__":
  main()
