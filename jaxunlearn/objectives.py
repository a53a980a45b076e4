r"""Unlearning objectives on logits: what the forget and retain losses are.

All functions take logits (and labels or reference logits) and return a scalar mean,
so they compose with any model. With ``weights`` (one per example) they return the
weighted *sum* instead: the paper's mixed batches weight each part's rows by 1/B (B the
batch size), so the retain and forget losses are the per-row means of each part scaled by
that part's share of the batch, and a row outside the part has weight 0. Lower is better
for every one of them (each is a loss to *minimise*); the forget objectives are built so
that minimising them removes the forget set.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax


def _reduce(per_example, weights):
  if weights is None:
    return per_example.mean()
  return jnp.sum(per_example * weights)


def reduce_losses(per_example, weights=None):
  """Mean of per-example losses, or their weighted sum with ``weights`` (mixed batches).

  Examples:
    >>> import jax.numpy as jnp
    >>> float(reduce_losses(jnp.array([1.0, 3.0]))), float(reduce_losses(jnp.array([1.0, 3.0]),
    ...                                                                  jnp.array([0.5, 0.0])))
    (2.0, 0.5)
  """
  return _reduce(per_example, weights)


def per_example_cross_entropy(logits, labels):
  """Softmax cross-entropy of each row with integer labels, shape ``(B,)``: the default
  per-example loss of :func:`jaxunlearn.unlearn`.

  Examples:
    >>> import jax.numpy as jnp
    >>> per_example_cross_entropy(jnp.zeros((2, 4)), jnp.array([0, 3])).shape
    (2,)
  """
  return optax.softmax_cross_entropy_with_integer_labels(logits, labels)


def cross_entropy(logits, labels, weights=None):
  """Mean softmax cross-entropy with integer labels: the retain loss L_r.

  Examples:
    >>> import jax.numpy as jnp
    >>> round(float(cross_entropy(jnp.zeros((2, 4)), jnp.array([0, 3]))), 4)  # log 4
    1.3863
    >>> w = jnp.array([0.5, 0.0])  # a mixed batch of 2 rows, the first in this part
    >>> round(float(cross_entropy(jnp.zeros((2, 4)), jnp.array([0, 3]), w)), 4)  # log 4 / 2
    0.6931
  """
  return _reduce(optax.softmax_cross_entropy_with_integer_labels(logits, labels), weights)


def random_label_loss(logits, random_labels, weights=None):
  """L_f = CE(logits, random labels): the paper's forget objective (RL).

  Draw ``random_labels`` over the *wrong* classes only (never the true label) for
  class-wise forgetting: with labels over all classes the argmax can still land on the
  true class and UA stalls below 100 % (docs/design.md §4).

  Examples:
    >>> import jax.numpy as jnp
    >>> logits = jnp.array([[5.0, 0.0, 0.0]])          # confident in class 0 (true)
    >>> float(random_label_loss(logits, jnp.array([1]))) > 5   # far from the random label
    True
  """
  return cross_entropy(logits, random_labels, weights)


def gradient_ascent_loss(logits, labels, weights=None):
  """L_f = −CE(logits, true labels): gradient ascent on the forget set (GA). Unbounded below.

  Examples:
    >>> import jax.numpy as jnp
    >>> round(float(gradient_ascent_loss(jnp.zeros((1, 2)), jnp.array([0]))), 4)  # −log 2
    -0.6931
  """
  return -cross_entropy(logits, labels, weights)


def npo_loss(logits, ref_logits, labels, beta: float = 0.1, weights=None):
  r"""Negative preference optimisation (Zhang et al., 2024) on classification.

  L = (2/β)·mean log(1 + (π_θ(y|x)/π_ref(y|x))^β), π_ref the original model (held fixed):
  a bounded, slower-diverging form of gradient ascent.

  Examples:
    >>> import jax.numpy as jnp
    >>> x, y = jnp.array([[2.0, 0.0]]), jnp.array([0])
    >>> round(float(npo_loss(x, x, y, beta=0.5)), 4)  # π_θ = π_ref: (2/β)·log 2
    2.7726
  """
  logp = jnp.take_along_axis(jax.nn.log_softmax(logits), labels[:, None], axis=-1)[:, 0]
  ref = jnp.take_along_axis(
    jax.nn.log_softmax(jax.lax.stop_gradient(ref_logits)), labels[:, None], axis=-1
  )[:, 0]
  return (2.0 / beta) * _reduce(jax.nn.softplus(beta * (logp - ref)), weights)


def kl_to_teacher(logits, teacher_logits, temperature: float = 1.0, weights=None):
  """KL(teacher ‖ student) on softened outputs, mean over the batch (SCRUB's distance).

  Examples:
    >>> import jax.numpy as jnp
    >>> x = jnp.array([[1.0, 2.0, 3.0]])
    >>> float(kl_to_teacher(x, x))  # identical outputs
    0.0
  """
  t = jax.nn.log_softmax(jax.lax.stop_gradient(teacher_logits) / temperature)
  s = jax.nn.log_softmax(logits / temperature)
  return _reduce(jnp.sum(jnp.exp(t) * (t - s), axis=-1), weights)


def l1_norm(params):
  """‖θ‖₁ over every leaf (the ℓ1-sparse unlearning penalty).

  Examples:
    >>> import jax.numpy as jnp
    >>> float(l1_norm({"w": jnp.array([1.0, -2.0]), "b": jnp.array([-0.5])}))
    3.5
  """
  return sum(jnp.sum(jnp.abs(x)) for x in jax.tree.leaves(params))


def answer_losses(logits, tokens, *, answer_id: int = 2, pad_id: int = 0):
  """Per-row mean cross-entropy of a causal language model on its answer tokens, ``(B,)``.

  ``tokens`` ``(B, T)`` are the inputs the ``logits`` ``(B, T, V)`` came from; position t
  predicts token t + 1. The loss counts the targets after the row's ``answer_id``
  separator that are not padding (the answer and its end token), so the question is
  masked, as in TOFU. ``answer_id`` and ``pad_id`` default to those of
  :mod:`jaxunlearn.data.tofu`. The mean over a row's answer tokens is its "average
  loss", whose exp(−·) is TOFU's length-normalised answer probability.

  Examples:
    >>> import jax.numpy as jnp
    >>> tokens = jnp.array([[1, 5, 2, 3, 0]])  # <bos> q <ans> <eos> <pad>: one target
    >>> logits = jnp.zeros((1, 5, 6)).at[0, 2, 3].set(2.0)  # position 2 predicts <eos>
    >>> round(float(answer_losses(logits, tokens)[0]), 4)  # −log softmax(2 | 0 × 5)
    0.5168
  """
  targets = tokens[:, 1:]
  seen = jnp.cumsum(tokens[:, :-1] == answer_id, axis=1) > 0
  mask = (seen & (targets != pad_id)).astype(jnp.float32)
  ce = optax.softmax_cross_entropy_with_integer_labels(logits[:, :-1], targets)
  return jnp.sum(ce * mask, axis=1) / jnp.maximum(jnp.sum(mask, axis=1), 1.0)


def npo_from_losses(losses, ref_losses, beta: float = 0.1, weights=None):
  r"""NPO from per-example losses: (2/β)·mean softplus(β·(ℓ_ref − ℓ)), where ℓ = −log π_θ(y|x)
  and ℓ_ref the original model's (held fixed): :func:`npo_loss` for any model whose
  per-example loss is a negative log-likelihood (for a language model with
  :func:`answer_losses`, the length-normalised one).

  Examples:
    >>> import jax.numpy as jnp
    >>> l = jnp.array([0.3, 1.2])
    >>> round(float(npo_from_losses(l, l, beta=0.5)), 4)  # π_θ = π_ref: (2/β)·log 2
    2.7726
  """
  return (2.0 / beta) * _reduce(
    jax.nn.softplus(beta * (jax.lax.stop_gradient(ref_losses) - losses)), weights
  )


def simnpo_loss(losses, beta: float = 4.5, gamma: float = 0.125, weights=None):
  r"""SimNPO (Fan et al., 2024): NPO without the reference model, on length-normalised
  log-likelihoods with a margin: (2/β)·mean softplus(γ − β·ℓ), ℓ the per-example loss
  (for a language model the mean token loss of the answer, :func:`answer_losses`).

  Examples:
    >>> import jax.numpy as jnp
    >>> round(float(simnpo_loss(jnp.array([0.0]), beta=2.0, gamma=0.0)), 4)  # (2/β)·log 2
    0.6931
  """
  return (2.0 / beta) * _reduce(jax.nn.softplus(gamma - beta * losses), weights)
