r"""One-backprop loss-weighting baselines with state: FAMO and primal–dual (PDU).

Same calling shape as :func:`jaxunlearn.implicit_gradient_surgery`: the wrapper holds
the weights in its state, the caller builds the scalarised loss with
:func:`jaxunlearn.scalarized_loss` and differentiates it once, and the wrapper turns
the gradient into a step with the base optimiser ``inner`` and then updates the
weights from observed losses.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from jaxunlearn.transforms import state_lookup


@state_lookup.register_state(weights=True, multiplier=False, sees_applied_step=True)
class FAMOState(NamedTuple):
  """State of :func:`famo`.

  Attributes:
    count: number of updates.
    logits: ξ, the task-weight logits; weights z = softmax(ξ).
    min_losses: the lower bounds m_i of each loss (0 for cross-entropies).
    eps: the small constant inside the logs.
    logits_state: state of the optimiser acting on ξ.
    inner_state: state of the base optimiser.
  """

  count: jax.Array
  logits: jax.Array
  min_losses: jax.Array
  eps: jax.Array
  logits_state: Any
  inner_state: Any

  def loss_weights(self):
    return tuple(jax.nn.softmax(self.logits))

  def scalarize(self, *losses):
    """S = Σ_i (z_i / c) log(L_i − m_i + eps), c = Σ_i z_i / (L_i − m_i + eps) held constant."""
    z = jax.lax.stop_gradient(jax.nn.softmax(self.logits))
    d = jnp.stack([jnp.asarray(l, jnp.float32) for l in losses]) - self.min_losses + self.eps
    c = jax.lax.stop_gradient(jnp.sum(z / d))
    return jnp.sum(z * jnp.log(d)) / c


def famo(
  inner: optax.GradientTransformation,
  *,
  num_objectives: int = 2,
  learning_rate: float = 0.025,
  weight_decay: float = 1e-3,
  min_losses=None,
  eps: float = 1e-8,
) -> optax.GradientTransformationExtraArgs:
  r"""FAMO (Liu et al., NeurIPS 2023): fast adaptive multitask optimisation, one backprop.

  The step descends S = Σ_i (z_i/c) log(L_i − m_i + ε), z = softmax(ξ), c = Σ_i z_i/(L_i − m_i + ε),
  whose gradient is Σ_i (z_i/c) ∇L_i/(L_i − m_i + ε). After the step the observed log-loss
  decreases δ_i = log(L_i(θ_t) − m_i + ε) − log(L_i(θ_{t+1}) − m_i + ε) (same batch) give the
  logits gradient J_softmax(ξ)ᵀ δ, applied with Adam (lr 0.025) and L2 weight decay 1e-3:
  objectives that improved the most lose weight.

  ``update(grads, state, params, *, losses, losses_fn)``: ``losses`` is the vector (L_i)
  at ``params`` on the batch and ``losses_fn(p)`` returns it at ``p`` on the same batch.
  Under ``optax.inject_hyperparams`` list ``num_objectives`` in ``static_args`` (it fixes
  array shapes).

  Examples:
    >>> import jax.numpy as jnp, optax, jaxunlearn
    >>> tx = jaxunlearn.famo(optax.sgd(0.1))
    >>> state = tx.init({"w": jnp.zeros(2)})
    >>> [round(float(w), 2) for w in jaxunlearn.loss_weights(state)]
    [0.5, 0.5]
  """
  inner = optax.with_extra_args_support(inner)
  logits_opt = optax.chain(optax.add_decayed_weights(weight_decay), optax.adam(learning_rate))
  m = (
    jnp.zeros((num_objectives,), jnp.float32)
    if min_losses is None
    else jnp.asarray(min_losses, jnp.float32)
  )

  def init_fn(params):
    logits = jnp.zeros((num_objectives,), jnp.float32)
    return FAMOState(
      count=jnp.zeros((), jnp.int32),
      logits=logits,
      min_losses=m,
      eps=jnp.asarray(eps, jnp.float32),
      logits_state=logits_opt.init(logits),
      inner_state=inner.init(params),
    )

  def update_fn(updates, state, params=None, *, losses, losses_fn, **extra_args):
    updates, inner_state = inner.update(updates, state.inner_state, params, **extra_args)
    before = jnp.asarray(losses, jnp.float32)
    after = jnp.asarray(losses_fn(optax.apply_updates(params, updates)), jnp.float32)
    delta = jnp.log(before - m + eps) - jnp.log(after - m + eps)
    _, vjp = jax.vjp(jax.nn.softmax, state.logits)
    (logits_grad,) = vjp(delta)
    ok = jnp.all(jnp.isfinite(logits_grad))
    logits_grad = jnp.where(ok, logits_grad, 0.0)
    logit_updates, new_logits_state = logits_opt.update(
      logits_grad, state.logits_state, state.logits
    )
    logits = jnp.where(ok, optax.apply_updates(state.logits, logit_updates), state.logits)
    logits_state = optax.tree.where(ok, new_logits_state, state.logits_state)
    return updates, FAMOState(
      count=optax.safe_increment(state.count),
      logits=logits,
      min_losses=state.min_losses,
      eps=state.eps,
      logits_state=logits_state,
      inner_state=inner_state,
    )

  return optax.GradientTransformationExtraArgs(init_fn, update_fn)


@state_lookup.register_state(weights=True, multiplier=True)
class PrimalDualState(NamedTuple):
  """State of :func:`primal_dual`: λ, the step count and the base optimiser's state."""

  count: jax.Array
  multiplier: jax.Array
  inner_state: Any

  def loss_weights(self):
    return self.multiplier, jnp.ones_like(self.multiplier)

  def scalarize(self, retain_loss, forget_loss):
    """S = L_f + λ·L_r (raw losses), λ held constant."""
    return forget_loss + jax.lax.stop_gradient(self.multiplier) * retain_loss


def primal_dual(
  inner: optax.GradientTransformation,
  *,
  threshold: float,
  dual_learning_rate: float = 0.1,
  init_multiplier: float = 0.0,
) -> optax.GradientTransformationExtraArgs:
  r"""Primal–dual unlearning (PDU) with an absolute retain-loss threshold.

  Lagrangian of min L_f s.t. L_r ≤ ε_abs: the primal step descends S = L_f + λ L_r and
  the dual step ascends λ ← max(0, λ + η (L_r(θ_t) − ε_abs)). Unlike IGS, the
  constraint is an absolute level of the retain loss, not a per-step change.

  ``update(grads, state, params, *, retain_loss)``: ``retain_loss`` = L_r(params).

  Examples:
    >>> import jax.numpy as jnp, optax, jaxunlearn
    >>> tx = jaxunlearn.primal_dual(optax.sgd(0.1), threshold=0.5, dual_learning_rate=1.0)
    >>> state = tx.init({"w": jnp.zeros(1)})
    >>> _, state = tx.update({"w": jnp.zeros(1)}, state, {"w": jnp.zeros(1)},
    ...                      retain_loss=jnp.array(2.0))
    >>> float(jaxunlearn.multiplier(state))
    1.5
  """
  inner = optax.with_extra_args_support(inner)

  def init_fn(params):
    return PrimalDualState(
      count=jnp.zeros((), jnp.int32),
      multiplier=jnp.maximum(jnp.asarray(init_multiplier, jnp.float32), 0.0),
      inner_state=inner.init(params),
    )

  def update_fn(updates, state, params=None, *, retain_loss, **extra_args):
    updates, inner_state = inner.update(updates, state.inner_state, params, **extra_args)
    violation = jnp.asarray(retain_loss, jnp.float32) - jnp.asarray(threshold, jnp.float32)
    new_lam = jnp.maximum(
      state.multiplier + jnp.asarray(dual_learning_rate, jnp.float32) * violation, 0.0
    )
    lam = jnp.where(jnp.isfinite(new_lam), new_lam, state.multiplier)
    return updates, PrimalDualState(
      count=optax.safe_increment(state.count), multiplier=lam, inner_state=inner_state
    )

  return optax.GradientTransformationExtraArgs(init_fn, update_fn)
