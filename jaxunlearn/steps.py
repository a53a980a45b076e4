"""Jitted step builders: a functional model, objectives and a transformation make a step.

This layer sits above the ground floor (models, transformations, objectives) and below
the unlearning methods and experiments. Every builder returns a pure, jitted function
over arrays — ``(params, model_state, opt_state, batch...) -> (new ..., metrics)`` — so
the same step runs on CPU, GPU or TPU, sharded or not.

BatchNorm: training steps run the model in train mode and keep the new running
statistics; evaluation and the IGS re-evaluation pass never keep them.
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
import optax

from jaxunlearn.models import FunctionalModel
from jaxunlearn.objectives import cross_entropy


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
      return cross_entropy(logits, labels), (logits, new_state)
    (loss, (logits, new_state)), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
    updates, opt_state = tx.update(grads, opt_state, params)
    params = optax.apply_updates(params, updates)
    return params, new_state, opt_state, {"loss": loss, "accuracy": accuracy(logits, labels)}

  return jax.jit(step)


def make_predict(fm: FunctionalModel, batch_size: int = 1024) -> Callable:
  """``predict(params, model_state, images) -> logits`` in eval mode, batched on the host."""
  apply = jax.jit(lambda p, s, x: fm.apply(p, s, x, train=False)[0])

  def predict(params, model_state, images):
    outs = [apply(params, model_state, jnp.asarray(images[i:i + batch_size]))
            for i in range(0, len(images), batch_size)]
    return jnp.concatenate(outs) if outs else jnp.zeros((0,))

  return predict
