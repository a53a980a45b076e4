"""The same unlearning steps in JAX and in PyTorch, timed side by side in one process.

    pip install -e '.[vs-pytorch]'          # torch, an optional extra (never a core dependency)
    python -m benchmarks.vs_pytorch --out docs/results/vs_pytorch_cpu.json
    python -m benchmarks.vs_pytorch --quick  # MLP only, shared layout (< 1 min)

Steps (SGD lr 1e-3, momentum 0.9; the unlearning steps with the protocol's weight decay
5e-4), written in both frameworks from the formulas as the paper's code computes them
(the JAX side: ``benchmarks.twin_steps``; ``benchmarks.step_cost`` times the engine's own
steps):

* ``plain``: one backward of the retain cross-entropy, SGD;
* ``igs-paper``: one backward of S = λ·log L_r + log L_f, SGD, one more forward of L_r
  after the step, Adam (lr 1, L2 0.01) on λ with the observed decrease, λ ≥ 0;
* ``explicit``: the two gradients (``torch.autograd.grad`` twice), d = g_f +
  max(0, (−⟨g_r, g_f⟩ − ε)/(‖g_r‖² + δ))·g_r, clipped to norm 1, SGD.

Models, the same initial weights in both frameworks, on CIFAR-shaped synthetic batches
(32×32×3, 10 classes):

* ``mlp``: our MLP (256, 256);
* ``cnn``: the strided CNN (3×3 stride-2 convs of 32, 64 channels, a 128 dense layer);
* ``pooled-cnn``: the classic small CNN (3×3 stride-1 convs of 32, 64 channels, each with
  a 2×2 max-pool, a 128 dense layer), the slow case of XLA's CPU conv kernel gradient;
* ``resnet18``: the CIFAR ResNet-18 at base width ``--resnet-width``, default 16 for a
  2-core CPU (about 1/16 of the full model's FLOPs); 64 is the standard model (pass
  ``--resnet-width 64``, e.g. on a bigger machine; this benchmark runs both frameworks
  on the CPU). BatchNorm in train mode on both sides (batch statistics), as the JAX
  steps apply the model with ``train=True``.

Batch 256 (``--batch-size``; split: 256 retain + 256 forget rows; shared: one batch of
256). Per step: the median of ``--steps`` interleaved rounds (JAX and PyTorch alternate, so load
drift hits both) after warm-up; JAX's compile is excluded. Ratio = JAX time / PyTorch time
(below 1: JAX faster). PyTorch uses every CPU thread it is allowed (``torch.get_num_threads``).
"""

from __future__ import annotations

import argparse
import collections
import os
import statistics
import time

import jax
import numpy as np

from benchmarks import harness, step_cost, twin_steps
from experiments.cli import HelpFormatter
from jaxunlearn.engine.records import machine_info

METHODS = twin_steps.METHODS  # plain, igs-paper, explicit
MODELS = ("mlp", "cnn", "pooled-cnn", "resnet18")
LAYOUTS = ("shared", "split")
INPUT = (32, 32, 3)
DEFAULT_RESNET_WIDTH = 16  # 2 CPU cores; 64 is the standard ResNet-18


def omp_wait_policy() -> str:
  """``OMP_WAIT_POLICY`` as PyTorch's OpenMP threads saw it when torch was imported.

  It moves these ratios more than anything else we measured: by default (unset) libgomp's
  idle threads spin for a while after each PyTorch call, taking the cores from the JAX
  call that follows in an interleaved benchmark; ``PASSIVE`` makes them sleep (PyTorch's
  own calls then pay a wake-up). Both tables are committed (docs/results/).
  """
  return os.environ.get("OMP_WAIT_POLICY", "unset")


def require_torch():
  try:
    import torch  # noqa: PLC0415
  except ImportError as e:  # one line naming the fix
    raise SystemExit("this benchmark needs torch: pip install -e '.[vs-pytorch]'") from e
  return torch


# The twins' BatchNorm: jaxunlearn.nn.models._batch_norm (flax momentum 0.9 on the
# running average == PyTorch momentum 0.1 on the new batch value; the same epsilon).
BN_EPS = 1e-5
BN_MOMENTUM = 0.1


def torch_model(name: str, params, model_state=None):
  """The PyTorch twin of our model, its weights copied from the JAX ``params``.

  ``model_state``: the JAX model state (ResNet-18's BatchNorm running statistics, used
  in eval mode); unset: fresh statistics (mean 0, variance 1, as flax initialises them).
  The twin is an ``nn.Sequential`` whose children carry the JAX parameter names
  (``conv0``, ``hidden``, ``head``, ``stem_bn``, ``layer2_0``, ...), so
  :func:`jax_params` maps its weights back. Like any fresh PyTorch module it is in
  train mode (ResNet-18: batch statistics), as the JAX steps apply the model
  (``train=True``).
  """
  torch = require_torch()
  nn = torch.nn
  t = lambda a: torch.tensor(np.array(a, dtype=np.float32))
  layers = {}

  def linear(p):
    w = np.asarray(p["kernel"])
    lin = nn.Linear(*w.shape)
    lin.weight.data, lin.bias.data = t(w.T), t(p["bias"])
    return lin

  def conv(p, stride):
    w = np.asarray(p["kernel"])  # (kh, kw, cin, cout) -> (cout, cin, kh, kw)
    c = nn.Conv2d(w.shape[2], w.shape[3], w.shape[0], stride=stride,
                  padding=(w.shape[0] - 1) // 2, bias="bias" in p)  # fmt: skip
    c.weight.data = t(w.transpose(3, 2, 0, 1))
    if "bias" in p:
      c.bias.data = t(p["bias"])
    return c

  def batch_norm(p, s):
    bn = nn.BatchNorm2d(p["scale"].shape[0], eps=BN_EPS, momentum=BN_MOMENTUM)
    bn.weight.data, bn.bias.data = t(p["scale"]), t(p["bias"])
    if s is not None:
      bn.running_mean.data, bn.running_var.data = t(s["mean"]), t(s["var"])
    return bn

  if name == "mlp":
    layers["flatten"] = _make_flatten()()  # the JAX MLP flattens NHWC
    hidden = sorted((k for k in params if k.startswith("hidden")), key=lambda k: int(k[6:]))
    for k in hidden:
      layers[k], layers[f"relu_{k}"] = linear(params[k]), nn.ReLU()
    layers["head"] = linear(params["head"])
  elif name in ("cnn", "pooled-cnn"):
    convs = sorted((k for k in params if k.startswith("conv")), key=lambda k: int(k[4:]))
    for k in convs:  # cnn: stride 2, no pooling; pooled-cnn: stride 1, 2x2 max-pool
      layers[k], layers[f"relu_{k}"] = conv(params[k], 2 if name == "cnn" else 1), nn.ReLU()
      if name == "pooled-cnn":
        layers[f"pool_{k}"] = nn.MaxPool2d(2)
    # NHWC flatten order, as the JAX model flattens: permute before flattening.
    layers["flatten"] = _make_flatten()()
    if "hidden" in params:
      layers["hidden"], layers["relu_hidden"] = linear(params["hidden"]), nn.ReLU()
    layers["head"] = linear(params["head"])
  elif name == "resnet18":
    state = model_state or {}
    Block = _make_basic_block()
    layers["stem_conv"] = conv(params["stem_conv"], 1)
    layers["stem_bn"] = batch_norm(params["stem_bn"], state.get("stem_bn"))
    layers["relu"] = nn.ReLU()
    # layer{stage}_{j}; as ResNet18 builds them: stride 2 in the first block of stages 2+.
    blocks = sorted(
      (k for k in params if k.startswith("layer")),
      key=lambda k: tuple(int(i) for i in k[5:].split("_")),
    )
    for k in blocks:
      stage, j = (int(i) for i in k[5:].split("_"))
      p, s = params[k], state.get(k, {})
      stride = 2 if (stage > 1 and j == 0) else 1
      shortcut = None
      if "shortcut_conv" in p:  # projection: 1x1 conv (stride of the block) + BN
        shortcut = nn.Sequential(
          conv(p["shortcut_conv"], stride), batch_norm(p["shortcut_bn"], s.get("shortcut_bn"))
        )
      layers[k] = Block(
        conv(p["conv1"], stride), batch_norm(p["bn1"], s.get("bn1")),
        conv(p["conv2"], 1), batch_norm(p["bn2"], s.get("bn2")), shortcut,
      )  # fmt: skip
    layers["pool"] = _make_global_mean()()
    layers["head"] = linear(params["head"])
  else:
    raise ValueError(f"no PyTorch twin of {name!r}; choose from {', '.join(MODELS)}")
  return nn.Sequential(collections.OrderedDict(layers))


def jax_params(model) -> dict:
  """The weights of a :func:`torch_model` twin in the JAX ``params`` layout (numpy)."""
  torch = require_torch()
  out = {}
  for path, w in model.named_parameters():
    *mods, kind = path.split(".")
    module = model.get_submodule(".".join(mods))
    w = w.detach().numpy()
    if isinstance(module, torch.nn.Conv2d) and kind == "weight":
      key, w = "kernel", w.transpose(2, 3, 1, 0)
    elif isinstance(module, torch.nn.Linear) and kind == "weight":
      key, w = "kernel", w.T
    elif isinstance(module, torch.nn.BatchNorm2d) and kind == "weight":
      key = "scale"
    else:
      key = kind
    # the projection shortcut is one nn.Sequential (0: conv, 1: BN) in the twin
    names = (
      ".".join(mods).replace("shortcut.0", "shortcut_conv").replace("shortcut.1", "shortcut_bn")
    )
    node = out
    for m in names.split("."):
      node = node.setdefault(m, {})
    node[key] = w
  return out


def _make_global_mean():
  torch = require_torch()

  class GlobalMean(torch.nn.Module):
    def forward(self, x):
      return x.mean(dim=(2, 3))

  return GlobalMean


def _make_basic_block():
  torch = require_torch()
  relu = torch.nn.functional.relu

  class BasicBlock(torch.nn.Module):
    """jaxunlearn.nn.models.BasicBlock: relu(shortcut(x) + bn2(conv2(relu(bn1(conv1(x))))))."""

    def __init__(self, conv1, bn1, conv2, bn2, shortcut):
      super().__init__()
      self.conv1, self.bn1, self.conv2, self.bn2 = conv1, bn1, conv2, bn2
      self.shortcut = shortcut

    def forward(self, x):
      y = self.bn2(self.conv2(relu(self.bn1(self.conv1(x)))))
      return relu((x if self.shortcut is None else self.shortcut(x)) + y)

  return BasicBlock


def _make_flatten():
  torch = require_torch()

  class NHWCFlatten(torch.nn.Module):
    def forward(self, x):
      return x.permute(0, 2, 3, 1).reshape(x.shape[0], -1)

  return NHWCFlatten


def torch_step(method: str, model, layout: str, batch: dict, device: str = "cpu"):
  """A PyTorch step closure for ``method`` (see the module docstring), on ``device``
  (the model's; on CUDA the closure waits for the step, as the JAX timer does)."""
  torch = require_torch()
  f = torch.nn.functional
  params = list(model.parameters())
  wd = 0.0 if method == "plain" else 5e-4
  opt = torch.optim.SGD(params, lr=1e-3, momentum=0.9, weight_decay=wd)
  lam = torch.zeros((), requires_grad=True, device=device)
  dual = torch.optim.Adam([lam], lr=1.0, weight_decay=0.01)
  nchw = lambda a: torch.tensor(np.asarray(a).transpose(0, 3, 1, 2).copy()).to(device)
  labels = lambda a: torch.tensor(np.asarray(a)).long().to(device)
  if layout == "shared":
    x, y, y_f = nchw(batch["x"]), labels(batch["y"]), labels(batch["y_f"])
  else:
    x_r, y = nchw(batch["x_r"]), labels(batch["y_r"])
    x_f, y_f = nchw(batch["x_f"]), labels(batch["y_f"])

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

  if device == "cpu":
    return step

  def synchronized():
    step()
    torch.cuda.synchronize()

  return synchronized


def run(
  models,
  layouts,
  steps: int,
  warmup: int,
  batch_size: int = 256,
  seed: int = 0,
  resnet_width: int = DEFAULT_RESNET_WIDTH,
  device: str = "cpu",
) -> dict:
  """Both frameworks' steps, interleaved; PyTorch on ``device`` (``"cuda"`` beside JAX on
  a GPU: :mod:`benchmarks.gpu`), JAX on its default backend."""
  torch = require_torch()
  torch.manual_seed(seed)
  rows = []
  for name in models:
    fm, params, ms, _ = step_cost.build_model(name, INPUT, 10, seed, resnet_width)
    for layout in layouts:
      batch = twin_steps.make_batch(seed, layout, batch_size, batch_size, INPUT, 10)
      losses = twin_steps.Losses(fm, layout)
      jax_steps, torch_steps = {}, {}
      for method in METHODS:
        tx, step = twin_steps.make_step(method, losses)
        jax_steps[method] = step_cost.Compiled(step, tx, params, ms, batch)
        twin = torch_model(name, params, ms).to(device)
        torch_steps[method] = torch_step(method, twin, layout, batch, device)
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
    "resnet_width": resnet_width,
    "torch": torch.__version__,
    "torch_threads": torch.get_num_threads(),
    "torch_device": device,
    "jax_backend": jax.default_backend(),
    "omp_wait_policy": omp_wait_policy(),
    "rows": rows,
    "machine": machine_info(),
  }


def markdown(report: dict) -> str:
  lines = [
    f"JAX vs PyTorch {report['torch']} ({report['torch_threads']} threads, OpenMP wait policy "
    f"{report.get('omp_wait_policy', 'unset')}), batch "
    f"{report['batch_size']}, median of {report['steps']} interleaved steps, ResNet-18 width "
    f"{report.get('resnet_width', '-')}; ratio = JAX / PyTorch time (below 1: JAX faster).",
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
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0], formatter_class=HelpFormatter)
  p.add_argument("--models", default=",".join(MODELS), help=f"comma list of {', '.join(MODELS)}")
  p.add_argument("--layouts", default=",".join(LAYOUTS), help="comma list of shared, split")
  p.add_argument("--steps", type=int, default=20, help="timed interleaved rounds")
  p.add_argument("--warmup", type=int, default=3, help="untimed steps first")
  p.add_argument("--batch-size", type=int, default=256, help="examples per batch (per part)")
  p.add_argument(
    "--resnet-width",
    type=int,
    default=DEFAULT_RESNET_WIDTH,
    help="ResNet-18 base width (64: the standard model, seconds a step on CPU)",
  )
  p.add_argument("--quick", action="store_true", help="MLP, shared layout, 5 steps")
  p.add_argument("--out", default="results/vs_pytorch.json", help="JSON output path")
  return p


def main(argv=None) -> dict:
  p = build_parser()
  args = p.parse_args(argv)
  models = tuple(args.models.split(","))
  if unknown := sorted(set(models) - set(MODELS)):
    p.error(f"unknown model(s) {', '.join(unknown)}; choose from {', '.join(MODELS)}")
  jax.config.update("jax_platforms", "cpu")
  if args.quick:
    report = run(("mlp",), ("shared",), 5, 1)
  else:
    report = run(models, tuple(args.layouts.split(",")), args.steps, args.warmup,
                 args.batch_size, resnet_width=args.resnet_width)  # fmt: skip
  print(harness.write_report(args.out, report, markdown))
  return report


if __name__ == "__main__":
  main()
