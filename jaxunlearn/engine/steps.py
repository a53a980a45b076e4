"""Jitted steps: a functional model, objectives and a transformation make a pure step.

Every builder returns a jitted function over arrays, so the same step runs on CPU, GPU
or TPU, sharded or not (:mod:`jaxunlearn.engine.parallel`).

* :func:`make_train_step` — plain supervised step (pretraining, retraining);
* :func:`make_predict` — eval-mode logits, batched on the host;
* :func:`make_unlearn_step` — one unlearning step of a registry method, in one of three
  shapes (``single``, ``weighted``, ``aggregated``; see :mod:`jaxunlearn.engine.methods`).

What an unlearning batch holds and how it goes through the model is the layout's
(:mod:`jaxunlearn.engine.layouts`: the paper's *mixed* batches or *split* ones).
BatchNorm: training steps run the model in train mode and keep the new running
statistics (of the mixed batch, or of the retain pass); evaluation and the IGS
re-evaluation pass never keep them.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

from jaxunlearn import objectives, transforms
from jaxunlearn.engine.config import UnlearnConfig
from jaxunlearn.engine.layouts import LAYOUTS, StepInputs, example_loss
from jaxunlearn.engine.methods import Method, ObservedLosses, forget_objective, retain_objective
from jaxunlearn.nn.models import FunctionalModel


def accuracy(logits, labels):
  return jnp.mean(jnp.argmax(logits, -1) == labels)


def make_train_step(fm: FunctionalModel, tx: optax.GradientTransformation):
  """Plain supervised step (pretraining, retraining, fine-tuning).

  Returns ``step(params, model_state, opt_state, images, labels) ->
  (params, model_state, opt_state, {"loss", "accuracy"})``.
  """

  def step(params, model_state, opt_state, images, labels):
    def loss_fn(p):
      logits, new_state = fm.apply(p, model_state, images, train=True)
      return objectives.cross_entropy(logits, labels), (logits, new_state)

    (loss, (logits, new_state)), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
    updates, opt_state = tx.update(grads, opt_state, params)
    params = optax.apply_updates(params, updates)
    return params, new_state, opt_state, {"loss": loss, "accuracy": accuracy(logits, labels)}

  return jax.jit(step)


@functools.lru_cache(maxsize=32)
def make_predict(fm: FunctionalModel, batch_size: int = 1024) -> Callable:
  """``predict(params, model_state, images) -> logits`` in eval mode, batched on the host.

  Cached per model, so repeated evaluations reuse one compiled function.
  """
  apply = jax.jit(lambda p, s, x: fm.apply(p, s, x, train=False)[0])

  def predict(params, model_state, images):
    outs = [
      apply(params, model_state, jnp.asarray(images[i : i + batch_size]))
      for i in range(0, len(images), batch_size)
    ]
    return jnp.concatenate(outs) if outs else jnp.zeros((0,))

  return predict


class StepLogs(NamedTuple):
  """What one unlearning step logs (scalars, or ``weights`` of shape (2,)).

  ``None`` fields are not produced by that method's step and are not recorded.
  """

  retain_loss: jax.Array
  forget_loss: jax.Array
  skipped: jax.Array  # the step was not applied (non-finite)
  loss: jax.Array | None = None  # single shape: the loss differentiated
  weights: jax.Array | None = None  # weighted shape: (w_retain, w_forget)
  multiplier: jax.Array | None = None  # λ, for methods that keep one
  retain_decrease: jax.Array | None = None  # IGS: observed decrease of φ(L_r)

  def as_dict(self) -> dict:
    return {k: v for k, v in self._asdict().items() if v is not None}


def forward_outputs(
  fm, method: Method, cfg: UnlearnConfig, params, model_state, batch, teacher, step_index
):
  """Forward passes of one batch: the :class:`~jaxunlearn.engine.layouts.StepInputs` a
  single-shape method's ``loss`` reads, and the new model state."""
  layout = LAYOUTS[cfg.layout]
  parts, new_state = layout.forward(fm, params, model_state, batch)
  teacher = _teacher_outputs(fm, layout, teacher, batch, parts) if method.needs_teacher else ()
  inputs = StepInputs(*parts, step_index, step_index / cfg.steps, params, *teacher)
  return inputs, new_state


def _teacher_outputs(fm, layout, teacher, batch, parts) -> tuple:
  """The original model's logits on each part and its loss on the forget rows' labels."""
  retain_logits, forget_logits = layout.teacher_logits(fm, teacher, batch)
  losses = example_loss(fm)(forget_logits, parts.forget_true_label)
  return retain_logits, forget_logits, losses


def _all_finite(tree):
  return jnp.all(jnp.stack([jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(tree)]))


def _single(fm, method, cfg, tx, params, model_state, opt_state, batch, teacher, step_index):
  def loss_fn(p):
    out, new_state = forward_outputs(fm, method, cfg, p, model_state, batch, teacher, step_index)
    return method.loss(out, cfg), (out, new_state)

  (loss, (out, new_state)), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
  updates, opt_state = tx.update(grads, opt_state, params)
  logs = dict(loss=loss, retain_loss=retain_objective(out), forget_loss=forget_objective(out, cfg))
  return updates, opt_state, new_state, logs


def _weighted(fm, method, cfg, tx, params, model_state, opt_state, batch, teacher, step_index):
  def loss_fn(p):
    out, new_state = forward_outputs(fm, method, cfg, p, model_state, batch, teacher, step_index)
    l_r, l_f = retain_objective(out), forget_objective(out, cfg)
    return transforms.scalarized_loss(opt_state, l_r, l_f), (l_r, l_f, new_state, out)

  (_, (l_r, l_f, new_state, out)), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
  observed = ObservedLosses(
    l_r,
    l_f,
    _retain_loss_fn(fm, cfg, model_state, batch),
    _forget_loss_fn(fm, cfg, model_state, batch),
    _both_losses_fn(fm, cfg, model_state, batch),
    _anchor_loss(batch, out),
  )
  updates, opt_state = tx.update(grads, opt_state, params, **observed.extra_args())
  logs = dict(
    retain_loss=l_r, forget_loss=l_f, weights=jnp.stack(transforms.loss_weights(opt_state))
  )
  return updates, opt_state, new_state, logs


def _anchor_loss(batch, out):
  """L_r of θ_0 on the batch from its rows' cached losses (the layout's ``anchor_losses``,
  reduced with the retain weights as L_r is), or ``None`` where none are cached."""
  if "anchor_losses" not in batch:
    return None
  return retain_objective(out._replace(retain_losses=batch["anchor_losses"]))


def _aggregated(fm, method, cfg, tx, params, model_state, opt_state, batch, teacher, step_index):
  del method, teacher, step_index
  layout = LAYOUTS[cfg.layout]

  def r_with_state(p):
    part, new_state = layout.retain_part(fm, p, model_state, batch)
    return retain_objective(part), new_state

  def f_with_aux(p):
    return _forget_loss_fn(fm, cfg, model_state, batch)(p), None

  losses, auxes, grads = transforms.objective_gradients(
    (r_with_state, f_with_aux), params, has_aux=True
  )
  updates, opt_state = tx.update(grads, opt_state, params)
  return updates, opt_state, auxes[0], dict(retain_loss=losses[0], forget_loss=losses[1])


def _retain_loss_fn(fm, cfg, model_state, batch):
  def fn(p):  # L_r on the same batch; the new BN statistics are discarded
    return retain_objective(LAYOUTS[cfg.layout].retain_part(fm, p, model_state, batch)[0])

  return fn


def _forget_loss_fn(fm, cfg, model_state, batch):
  def fn(p):
    return forget_objective(LAYOUTS[cfg.layout].forget_part(fm, p, model_state, batch)[0], cfg)

  return fn


def _both_losses_fn(fm, cfg, model_state, batch):
  def fn(p):  # one forward per pass the layout needs (one for mixed batches)
    out = LAYOUTS[cfg.layout].forward(fm, p, model_state, batch)[0]
    return retain_objective(out), forget_objective(out, cfg)

  return fn


_SHAPES = {"single": _single, "weighted": _weighted, "aggregated": _aggregated}


def make_unlearn_step(
  fm: FunctionalModel, method: Method, cfg: UnlearnConfig, tx: optax.GradientTransformation
):
  """The jitted unlearning step of ``method``.

  Returns ``step(params, model_state, opt_state, batch, teacher, step_index) ->
  (params, model_state, opt_state, StepLogs)``; ``teacher`` is ``(params, model_state)``
  of the original model. A non-finite loss or update skips the step: params, model
  state and optimiser state (λ included) stay as they were, and ``skipped`` is set.
  """
  return jax.jit(unlearn_step(fm, method, cfg, tx))


def unlearn_step(
  fm: FunctionalModel, method: Method, cfg: UnlearnConfig, tx: optax.GradientTransformation
):
  """:func:`make_unlearn_step` before ``jax.jit``: a pure function to trace inside another
  program (``cfg``'s numbers may then be tracers: a batch of runs with traced
  hyperparameters, :func:`jaxunlearn.engine.unlearning.run_batch`)."""
  shape_step = _SHAPES[method.shape]

  def step(params, model_state, opt_state, batch, teacher, step_index):
    updates, new_opt, new_state, logs = shape_step(
      fm, method, cfg, tx, params, model_state, opt_state, batch, teacher, step_index
    )
    logs.update(method.state_logs(new_opt))
    new_params = optax.apply_updates(params, updates)
    ok = jnp.logical_and(
      _all_finite((logs["retain_loss"], logs["forget_loss"])), _all_finite(updates)
    )
    logs = StepLogs(skipped=jnp.logical_not(ok), **logs)
    return (
      optax.tree.where(ok, new_params, params),
      optax.tree.where(ok, new_state, model_state),
      optax.tree.where(ok, new_opt, opt_state),
      logs,
    )

  return step
