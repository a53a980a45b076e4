"""The steps ``benchmarks.vs_pytorch`` writes twice, in JAX here and in PyTorch there, from
the same formulas: a framework comparison needs both sides to compute exactly the same
thing, so neither is the engine's step (``benchmarks.step_cost`` times that one).

Layouts: ``shared`` (one batch of B rows, both losses from the same logits: L_r to the
true labels, L_f to random wrong labels) and ``split`` (B retain rows and B forget rows
in separate forwards). Methods: ``plain`` (one value_and_grad of L_r, SGD), ``igs-paper``
(the paper's IGS update from the method registry) and ``explicit`` (two gradients,
closed-form surgery).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax

import jaxunlearn
from benchmarks import synthetic
from jaxunlearn.engine.methods import ObservedLosses, build_transformation, get_method, make_config

LAYOUTS = ("shared", "split")
BASELINE = "plain"
VARIANTS = {"igs-paper": ("igs_paper", {}), "explicit": ("explicit", {})}
METHODS = (BASELINE, *VARIANTS)


# ------------------------------------------------------------------ losses and data


def cross_entropy(logits, labels):
  return optax.softmax_cross_entropy_with_integer_labels(logits.astype(jnp.float32), labels).mean()


def make_batch(
  seed: int,
  layout: str,
  batch_size: int,
  forget_size: int,
  input_shape,
  num_classes: int,
  forget_true: bool = False,
) -> dict:
  """Synthetic batch; forget labels are random *wrong* labels (never the true class);
  ``forget_true``: also the split forget rows' true labels (``y_ft``, the DDPM's condition)."""
  rng = np.random.default_rng(seed)

  def part(n):
    return tuple(map(jnp.asarray, synthetic.synthetic_examples(rng, n, input_shape, num_classes)))

  if layout == "split":
    x_r, y_r, _ = part(batch_size)
    x_f, y_ft, y_f = part(forget_size)
    out = {"x_r": x_r, "y_r": y_r, "x_f": x_f, "y_f": y_f}
    return {**out, "y_ft": y_ft} if forget_true else out
  if layout == "shared":
    x, y, y_f = part(batch_size)
    return {"x": x, "y": y, "y_f": y_f}
  raise ValueError(f"unknown layout {layout!r}; choose from {', '.join(LAYOUTS)}")


class Losses:
  """Loss functions of one layout; each returns its loss(es) and the new model state.

  ``retain(p, ms, batch)`` and ``forget(p, ms, batch)`` are single losses (one forward
  each), ``both(p, ms, batch)`` returns (L_r, L_f) from the fewest forwards the layout
  allows: two in ``split``, one in ``shared``.
  """

  def __init__(self, fm, layout: str):
    self.fm, self.layout = fm, layout
    if layout not in LAYOUTS:
      raise ValueError(f"unknown layout {layout!r}; choose from {', '.join(LAYOUTS)}")

  def _forward(self, p, ms, x):
    return self.fm.apply(p, ms, x, train=True)

  def retain(self, p, ms, batch):
    x, y = (batch["x_r"], batch["y_r"]) if self.layout == "split" else (batch["x"], batch["y"])
    logits, new_ms = self._forward(p, ms, x)
    return cross_entropy(logits, y), new_ms

  def forget(self, p, ms, batch):
    x = batch["x_f"] if self.layout == "split" else batch["x"]
    logits, new_ms = self._forward(p, ms, x)
    return cross_entropy(logits, batch["y_f"]), new_ms

  def both(self, p, ms, batch):
    if self.layout == "split":
      l_r, new_ms = self.retain(p, ms, batch)
      l_f, _ = self.forget(p, ms, batch)
      return l_r, l_f, new_ms
    logits, new_ms = self._forward(p, ms, batch["x"])
    return cross_entropy(logits, batch["y"]), cross_entropy(logits, batch["y_f"]), new_ms


# ------------------------------------------------------------------ steps


def make_step(method: str, losses: Losses, lr: float = 1e-3):
  """Returns ``(tx, step)``: ``step(params, ms, opt_state, batch) -> (params, ms, opt_state, aux)``.

  ``method`` is the plain baseline or a variant in :data:`VARIANTS`, its transformation
  from the method registry.
  """
  if method == BASELINE:
    tx = optax.sgd(lr, momentum=0.9)

    def step(params, ms, opt_state, batch):
      (l_r, new_ms), g = jax.value_and_grad(losses.retain, has_aux=True)(params, ms, batch)
      updates, opt_state = tx.update(g, opt_state, params)
      return optax.apply_updates(params, updates), new_ms, opt_state, jnp.stack([l_r, l_r])

    return tx, step

  if method not in VARIANTS:
    raise ValueError(f"unknown method {method!r}; choose from {', '.join(METHODS)}")
  name, overrides = VARIANTS[method]
  cfg = make_config(name, learning_rate=lr, momentum=0.9, **overrides)
  entry = get_method(name)
  tx = build_transformation(cfg)

  if entry.shape == "aggregated":

    def step(params, ms, opt_state, batch):
      fns = (lambda p: losses.retain(p, ms, batch), lambda p: losses.forget(p, ms, batch))
      values, auxes, grads = jaxunlearn.objective_gradients(fns, params, has_aux=True)
      updates, opt_state = tx.update(grads, opt_state, params)
      return optax.apply_updates(params, updates), auxes[0], opt_state, values

    return tx, step

  def step(params, ms, opt_state, batch):  # weighted: one backprop of the scalarised loss
    def objective(p):
      l_r, l_f, new_ms = losses.both(p, ms, batch)
      return jaxunlearn.scalarized_loss(opt_state, l_r, l_f), (jnp.stack([l_r, l_f]), new_ms)

    (_, (values, new_ms)), g = jax.value_and_grad(objective, has_aux=True)(params)
    observed = ObservedLosses(
      values[0],
      values[1],
      lambda p: losses.retain(p, ms, batch)[0],
      lambda p: losses.forget(p, ms, batch)[0],
      lambda p: losses.both(p, ms, batch)[:2],  # one forward in the shared layout
    )
    updates, opt_state = tx.update(g, opt_state, params, **observed.extra_args())
    return optax.apply_updates(params, updates), new_ms, opt_state, values

  return tx, step
