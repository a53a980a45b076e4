"""Is data-parallel unlearning bitwise equal across device counts? A fixed reduction order
put to the test.

The engine's data-parallel step (:mod:`jaxunlearn.engine.parallel`) lets XLA's SPMD
partitioner sum each device's share of the batch gradient with an all-reduce, an order
of additions a single device does not use, so a run on two devices equals a run on one
to float rounding, not bitwise. The textbook cure is a fixed reduction order: cut the
batch into a fixed number of row groups, give every group its own gradient (the same
shapes whatever the device count), gather the groups' gradients and add them in one
pairwise tree. This benchmark builds both on the tiny TOFU decoder and compares the
gradient of one batch (and the logits of its forward) computed on 1 and on 2 forced
host devices, each in a child process::

    python -m benchmarks.dp_bitwise --out docs/results/dp_bitwise.json

``engine`` is the engine's way (one jitted value_and_grad of the sharded batch);
``fixed_order`` is the row-group scheme (``shard_map``: each device's groups one after
another, the groups' logits gathered, the loss and its cotangent computed in full on every
device, a VJP a group, the groups' gradients gathered and summed pairwise). Reported per
scheme: how many parameter leaves came out bitwise equal, and the largest difference; for
the fixed order also each piece (the groups' logits, the cotangent, each group's gradient),
to show where the two device counts part.

Measured (``docs/results/dp_bitwise.md``): the fixed order makes the logits, the loss and
its cotangent bitwise equal, and 12 of the 20 leaves of each group's gradient; the other 8
(attention query and key, the first LayerNorm, the embeddings and positions, all upstream
of the attention's softmax) differ by about 1e-8, because XLA compiles the same group's
backward another way inside a program partitioned over two devices. So a fixed reduction
order alone does not give bitwise equality on XLA:CPU; the engine does not adopt it.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys

import numpy as np

from benchmarks import harness
from jaxunlearn.engine.records import machine_info

GROUPS = 4  # row groups of the fixed-order scheme: a multiple of every device count tried


def _pairwise_sum(x):
  """Σ over the leading axis (a power of two) as a balanced tree: ((a+b)+(c+d))."""
  while x.shape[0] > 1:
    x = x[0::2] + x[1::2]
  return x[0]


def fixed_order_grad(apply, loss_of_outputs, mesh, groups: int = GROUPS):
  """``grad(params, x)`` of ``loss_of_outputs(apply(params, x))`` where the forward and the
  backward of each of ``groups`` row groups are computed apart (a ``lax.map`` over a
  device's groups), the outputs gathered so the loss is formed from the whole batch on
  every device, and the groups' parameter gradients gathered and summed pairwise."""
  import jax
  from jax.sharding import NamedSharding
  from jax.sharding import PartitionSpec as P

  local = groups // mesh.devices.size
  split = lambda a: a.reshape(local, -1, *a.shape[1:])

  def forward(p, x):
    out = jax.lax.map(lambda xg: apply(p, xg), split(x))
    return out.reshape(-1, *out.shape[2:])

  def backward(p, x, ct):
    vjp = lambda pair: jax.vjp(lambda q: apply(q, pair[0]), p)[1](pair[1])[0]
    return jax.lax.map(vjp, (split(x), split(ct)))

  rows, whole = P("data"), NamedSharding(mesh, P())
  fwd = jax.shard_map(forward, mesh=mesh, in_specs=(P(), rows), out_specs=rows)
  # check_vma off: a VJP against the replicated params would otherwise all-reduce the
  # groups' gradients itself, the very sum this scheme orders
  bwd = jax.shard_map(backward, mesh=mesh, in_specs=(P(), rows, rows), out_specs=rows,
                      check_vma=False)  # fmt: skip

  def loss_and_cotangent(logits):
    loss, pull = jax.vjp(loss_of_outputs, logits)
    return loss, pull(np.float32(1.0))[0]

  # the whole batch's loss on every device in full, a manual computation the partitioner
  # cannot split (left to it, the loss of the gathered logits came out another way)
  head = jax.shard_map(loss_and_cotangent, mesh=mesh, in_specs=P(), out_specs=(P(), P()),
                       check_vma=False)  # fmt: skip

  def grad(p, x):
    """``(loss, gradient, {"logits", "cotangent", "per_group"})``."""
    logits = jax.lax.with_sharding_constraint(fwd(p, x), whole)
    loss, ct = head(logits)
    per_group = jax.lax.with_sharding_constraint(bwd(p, x, ct), whole)
    parts = {"logits": logits, "cotangent": ct, "per_group": per_group}
    return loss, jax.tree.map(_pairwise_sum, per_group), parts

  return grad


_CHILD = r"""
import json, sys
import jax, jax.numpy as jnp, numpy as np
from jax.sharding import NamedSharding, PartitionSpec as P
from flax import nnx
from benchmarks import dp_bitwise
from jaxunlearn import objectives
from jaxunlearn.engine import parallel
from jaxunlearn.nn.transformer import Decoder, functional_lm

devices, rows, out = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
mesh = parallel.make_mesh(devices)
fm, params, _ = functional_lm(Decoder(50, 12, size="tiny", rngs=nnx.Rngs(0)),
                              objectives.answer_losses)
apply = lambda p, x: fm.apply(p, {}, x, train=True)[0]
x = np.random.default_rng(0).integers(1, 50, size=(rows, 12)).astype(np.int32)
half = rows // 2
loss_of = lambda logits: (jnp.log(jnp.mean(fm.example_loss(logits[:half], x[:half])))
                          + 0.3 * jnp.mean(fm.example_loss(logits[half:], x[half:])))
p = parallel.replicate(params, mesh)
xs = parallel.shard_batch(x, mesh)
engine = jax.jit(jax.value_and_grad(lambda q, t: loss_of(apply(q, t))))
fixed = jax.jit(dp_bitwise.fixed_order_grad(apply, loss_of, mesh))
logits = jax.jit(lambda q, t: apply(q, t), out_shardings=NamedSharding(mesh, P()))
arrays = {"logits": logits(p, xs)}

def put(prefix, tree):
  for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
    arrays[prefix + jax.tree_util.keystr(path)] = leaf

value, grads, parts = fixed(p, xs)
put("fixed_order/", grads)
put("parts/per_group", parts["per_group"])
arrays.update({"fixed_order/loss": value, "parts/logits": parts["logits"],
               "parts/cotangent": parts["cotangent"]})
value, grads = engine(p, xs)
put("engine/", grads)
arrays["engine/loss"] = value
np.savez(out, **{k: np.asarray(v) for k, v in arrays.items()})
"""


def run_child(devices: int, rows: int, out: str) -> None:
  env = {
    **os.environ,
    "JAX_PLATFORMS": "cpu",
    "XLA_FLAGS": "--xla_force_host_platform_device_count=2",
  }
  subprocess.run([sys.executable, "-c", _CHILD, str(devices), str(rows), out], check=True,
                 env=env, capture_output=True, text=True)  # fmt: skip


def compare(one: dict, two: dict) -> dict:
  """Per scheme: leaves bitwise equal, leaves in all, and the largest |difference|."""
  report = {}
  for scheme in ("engine", "fixed_order"):
    keys = [k for k in one if k.startswith(scheme + "/") and not k.endswith("/loss")]
    diffs = {k: float(np.max(np.abs(one[k] - two[k]))) for k in keys}
    report[scheme] = {
      "leaves": len(keys),
      "bitwise_leaves": sum(d == 0.0 for d in diffs.values()),
      "max_abs_diff": max(diffs.values()),
      "loss_bitwise": bool(np.array_equal(one[scheme + "/loss"], two[scheme + "/loss"])),
      "differing": sorted(k.split("/", 1)[1] for k, d in diffs.items() if d > 0),
    }
  report["forward_logits_bitwise"] = bool(np.array_equal(one["logits"], two["logits"]))
  # the two schemes compute one gradient: their difference on one device, for scale
  leaves = [k.split("/", 1)[1] for k in one if k.startswith("engine/") and k != "engine/loss"]
  report["schemes_max_abs_diff"] = max(
    float(np.max(np.abs(one["engine/" + k] - one["fixed_order/" + k]))) for k in leaves
  )
  same = lambda k: bool(np.array_equal(one[k], two[k]))
  groups = [k for k in one if k.startswith("parts/per_group")]
  report["fixed_order_parts"] = {
    "group_logits_bitwise": same("parts/logits"),
    "cotangent_bitwise": same("parts/cotangent"),
    "group_gradients_bitwise": sum(same(k) for k in groups),
    "group_gradient_leaves": len(groups),
  }
  return report


def measure(rows: int, workdir) -> dict:
  paths = {n: os.path.join(workdir, f"devices{n}.npz") for n in (1, 2)}
  for n, path in paths.items():
    run_child(n, rows, path)
  one, two = (dict(np.load(paths[n])) for n in (1, 2))
  return {"rows": rows, "groups": GROUPS, **compare(one, two)}


def to_markdown(report: dict) -> str:
  r = report["result"]
  lines = [
    f"Gradient of one batch ({r['rows']} rows, the tiny TOFU decoder) on 1 and on 2 forced "
    f"host devices; the forward's logits bitwise equal: {r['forward_logits_bitwise']}.",
    "",
    "| scheme | leaves bitwise equal | largest difference | loss bitwise | differing leaves |",
    "|---|---:|---:|---|---|",
  ]
  for scheme, label in (("engine", "engine (all-reduce)"), ("fixed_order", "fixed order")):
    s = r[scheme]
    differing = ", ".join(".".join(re.findall(r"\['?([^'\]]+)'?\]", k)) for k in s["differing"])
    if len(s["differing"]) == s["leaves"]:
      differing = "all"
    lines.append(
      f"| {label} | {s['bitwise_leaves']} of {s['leaves']} | {s['max_abs_diff']:.2e} | "
      f"{s['loss_bitwise']} | {differing or '—'} |"
    )
  f = r["fixed_order_parts"]
  lines += [
    "",
    f"Fixed order, piece by piece: each group's logits bitwise equal: "
    f"{f['group_logits_bitwise']}; the loss's cotangent: {f['cotangent_bitwise']}; the groups' "
    f"gradients: {f['group_gradients_bitwise']} of {f['group_gradient_leaves']} leaves. The two "
    f"schemes' gradients on one device differ by at most {r['schemes_max_abs_diff']:.1e}.",
  ]
  m = report["machine"]
  lines.append(
    f"\nMachine: {m['processor']}, {m['affinity_cpus']} CPUs, JAX {m['versions']['jax']}."
  )
  return "\n".join(lines) + "\n"


def main(argv=None):
  import tempfile

  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--rows", type=int, default=16, help="rows of the batch (a multiple of 4)")
  p.add_argument("--out", default="docs/results/dp_bitwise.json")
  args = p.parse_args(argv)
  with tempfile.TemporaryDirectory() as workdir:
    report = {"result": measure(args.rows, workdir), "machine": machine_info()}
  print(harness.write_report(args.out, report, to_markdown))
  print(json.dumps({k: report["result"][k]["bitwise_leaves"] for k in ("engine", "fixed_order")}))


if __name__ == "__main__":
  main()
