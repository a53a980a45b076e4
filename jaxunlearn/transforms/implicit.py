r"""Implicit gradient surgery (IGS): constrained unlearning with one backprop a step.

It solves, one step at a time, the constrained problem of Zhou et al.,
*Efficient Utility-Preserving Machine Unlearning with Implicit Gradient Surgery*
(NeurIPS 2025, arXiv:2510.22124):

    minimise L_f(θ)  subject to  L_r(θ) ≤ L_r(θ_0) + ε,

with L_r the retain (utility) loss, L_f the forget objective (e.g. cross-entropy to
random labels) and θ_0 the original model. Two variants (:data:`VARIANTS`):

* ``"anchored"`` (the default, ours): the constraint as written, held on every batch
  against θ_0, on raw losses, with an SGD dual step;
* ``"paper"``: the update of the authors' code, which bounds each *step's* increase of
  log L_r instead (L_r rising by at most ε per step) with an Adam dual.

Fidelity: ``variant="paper"`` reproduces, step by step, the log-loss ``EU`` update of
the authors' classification code with λ projected to ≥ 0 after each dual step
(S = λ·log L_r + log L_f, δ = log L_r − log L_r⁺ re-evaluated on the same batch, Adam
lr 1 with L2 0.01 on λ, λ_0 = 0). Some versions of that repository put raw losses in S
or do not clamp λ; those differ from it (``tests/transforms/test_implicit.py`` checks
the update against a numpy transcription, and that the unclamped one departs from it).

Sign convention (one signed ``tolerance`` ε everywhere): ε is the *tolerated increase*
of the retain loss (per step for ``"paper"``, against θ_0 for ``"anchored"``). Larger ε ⇒
more forgetting, less protection. The paper's code calls −ε its ``error`` (a required
decrease).
"""

from __future__ import annotations

import functools
import math
import numbers
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxunlearn.transforms import state_lookup

SIGNALS = ("reevaluate", "consecutive", "jvp")
REFERENCES = ("previous", "start")
DEFAULT_LOSS_FLOOR = 1e-8


def log_floor(loss, floor: float = DEFAULT_LOSS_FLOOR):
  """φ(L) = log(max(L, floor)): a memorised loss of exactly 0 gives log(floor), not −inf."""
  return jnp.log(jnp.maximum(loss, floor))


def default_dual_optimizer(learning_rate: float = 1.0, weight_decay: float = 0.01):
  """Adam on λ with L2 weight decay added to the dual gradient before the moments.

  This is what ``torch.optim.Adam(lr, weight_decay=0.01)`` does, the dual optimiser of
  the paper's code. The projection λ ← max(λ, 0) is applied by the caller.

  Examples:
    >>> import jax.numpy as jnp
    >>> dual = default_dual_optimizer(0.1, weight_decay=0.0)
    >>> lam = jnp.array(0.0)
    >>> step, _ = dual.update(jnp.array(2.0), dual.init(lam), lam)
    >>> round(float(step), 4)  # Adam's first step has the size of its learning rate
    -0.1
  """
  return optax.chain(optax.add_decayed_weights(weight_decay), optax.adam(learning_rate))


@state_lookup.register_state(weights=True, multiplier=True, sees_applied_step=True)
class ImplicitGradientSurgeryState(NamedTuple):
  """State of :func:`implicit_gradient_surgery`; every field an array (jit, shard, checkpoint).

  Attributes:
    count: number of updates applied (int32).
    multiplier: the dual variable λ ≥ 0 (float32).
    weights: ``(w_retain, w_forget)`` to build the next scalarised loss with.
    log_losses: whether φ = log (bool scalar), so helpers build S consistently.
    loss_floor: floor inside the log.
    prev_retain: φ(L_r) seen at the previous update (the ``consecutive`` signal).
    decrease: the last observed decrease Δ_t of φ(L_r) against the reference (for
      logging; 0 before any).
    dual_state: state of the dual optimiser acting on λ.
    inner_state: state of the wrapped base optimiser.
    start_params: with ``reference="start"``, the parameters at ``init`` (θ_0), whose
      retain loss on each batch is the anchor; ``None`` otherwise.
  """

  count: jax.Array
  multiplier: jax.Array
  weights: jax.Array
  log_losses: jax.Array
  loss_floor: jax.Array
  prev_retain: jax.Array
  decrease: jax.Array
  dual_state: Any
  inner_state: Any
  start_params: Any = None

  def loss_weights(self):
    return self.weights[0], self.weights[1]

  def scalarize(self, retain_loss, forget_loss):
    # The negative-loss check is a host callback, which JAX's persistent compilation
    # cache cannot store: only the log-weighted state (its own type, so the choice is
    # static under jit) carries it.
    checked = isinstance(self, LogWeightedState)
    retain_loss = check_loss(retain_loss, "retain_loss", checked)
    forget_loss = check_loss(forget_loss, "forget_loss", checked)
    w = jax.lax.stop_gradient(self.weights)
    phi = lambda x: jnp.where(self.log_losses, log_floor(x, self.loss_floor), x)
    return w[0] * phi(retain_loss) + w[1] * phi(forget_loss)


@state_lookup.register_state(weights=True, multiplier=True, sees_applied_step=True)
class LogWeightedState(ImplicitGradientSurgeryState):
  """The IGS state when ``log_losses=True``: the same fields; its type tells
  :meth:`scalarize` (statically, under jit) to check that the losses are not negative."""

  __slots__ = ()


def _negative_loss(name: str, value) -> None:
  value = np.asarray(value)
  # Under jax.vmap the cond becomes a select and this runs for every step: check again.
  if not np.any(value < 0):
    return
  raise ValueError(
    f"{name} = {float(value.min()):.4g} < 0 with log_losses=True: the log weighting floors it and "
    "its gradient is zero; pass log_losses=False (e.g. for gradient ascent) or use a "
    "positive forget loss (random labels)"
  )


def check_loss(loss, name: str, log_losses=False):
  """``loss`` as a float scalar, or a ValueError that names the fix.

  Checked at trace time: a tuple ``(loss, aux)``, a per-example (non-scalar) loss, an
  integer dtype. With ``log_losses`` (a Python bool), a negative value raises
  when the step runs (a host callback taken only on that branch, so a healthy step pays
  one comparison): under ``jax.jit`` the error surfaces as a ``JaxRuntimeError`` that
  carries this message.

  Examples:
    >>> import jax.numpy as jnp
    >>> check_loss(jnp.ones(3), "retain_loss")
    Traceback (most recent call last):
    ...
    ValueError: retain_loss must be a scalar (the batch mean), got shape (3,); reduce it ...
  """
  if isinstance(loss, (tuple, list, dict)):
    raise ValueError(
      f"{name} is a {type(loss).__name__}, not a scalar: a loss function that returns "
      "(loss, aux) must be wrapped, e.g. lambda p: loss_fn(p)[0]"
    )
  loss = jnp.asarray(loss)
  if loss.ndim != 0:
    raise ValueError(
      f"{name} must be a scalar (the batch mean), got shape {loss.shape}; reduce it with .mean()"
    )
  if not jnp.issubdtype(loss.dtype, jnp.floating):
    raise ValueError(f"{name} has dtype {loss.dtype}; pass the floating-point loss value")
  if log_losses:
    jax.lax.cond(
      jnp.logical_and(log_losses, loss < 0),
      lambda: jax.debug.callback(_negative_loss, name, loss),
      lambda: None,
    )
  return loss


class Variant(NamedTuple):
  """Defaults that one ``variant`` of :func:`implicit_gradient_surgery` gives its arguments."""

  reference: str
  normalize_weights: bool
  log_losses: bool
  tolerance: float
  dual: str  # "adam" (L2 on λ added to the dual gradient) or "sgd"
  dual_lr: float
  dual_weight_decay: float

  def dual_optimizer(self) -> optax.GradientTransformation:
    return dual_optimizer(self.dual, self.dual_lr, self.dual_weight_decay)


#: ``"paper"``: the update of Zhou et al.'s code — per-step constraint on log L_r,
#: weights (λ, 1), dual Adam(lr 1) with L2 0.01 on λ, tolerance 0.
#: ``"anchored"``: the constraint of the problem statement, L_r(θ) ≤ L_r(θ_0) + ε on
#: each batch (raw losses), normalised weights (λ, 1)/(1+λ), dual SGD with step 30,
#: ε = 0.02 (see docs/design.md §6 for why, and docs/studies.md for the measurements).
VARIANTS = {
  "paper": Variant("previous", False, True, 0.0, "adam", 1.0, 0.01),
  "anchored": Variant("start", True, False, 0.02, "sgd", 30.0, 0.0),
}
DUALS = ("adam", "sgd")


def dual_optimizer(kind: str, learning_rate: float, weight_decay: float = 0.0):
  """The optimiser acting on λ: ``"adam"`` (:func:`default_dual_optimizer`, the paper's)
  or ``"sgd"`` (a step proportional to the signal), both with L2 ``weight_decay`` on λ.

  Examples:
    >>> import jax.numpy as jnp
    >>> tx = dual_optimizer("sgd", 30.0)
    >>> lam = jnp.array(0.0)
    >>> round(float(tx.update(jnp.array(-0.01), tx.init(lam), lam)[0]), 4)  # λ += 30 × 0.01
    0.3
  """
  if kind == "adam":
    return default_dual_optimizer(learning_rate, weight_decay)
  if kind == "sgd":
    return optax.chain(optax.add_decayed_weights(weight_decay), optax.sgd(learning_rate))
  raise ValueError(f"unknown dual optimiser {kind!r}; choose one of {', '.join(DUALS)}")


DEFAULT_VARIANT = "anchored"


def _weights(lam, normalize: bool):
  if normalize:
    return jnp.stack([lam / (1.0 + lam), 1.0 / (1.0 + lam)])
  return jnp.stack([lam, jnp.ones_like(lam)])


def implicit_gradient_surgery(
  inner: optax.GradientTransformation,
  *,
  variant: str = DEFAULT_VARIANT,
  tolerance: float | None = None,
  reference: str | None = None,
  dual_optimizer: optax.GradientTransformation | None = None,
  init_multiplier: float = 0.0,
  log_losses: bool | None = None,
  normalize_weights: bool | None = None,
  signal: str = "reevaluate",
  loss_floor: float = DEFAULT_LOSS_FLOOR,
) -> optax.GradientTransformationExtraArgs:
  r"""Implicit gradient surgery (IGS): constrained unlearning with one backprop per step.

  Instead of computing the surgery multiplier from two gradients, IGS keeps it as a
  dual variable λ ≥ 0 in the optimiser state and learns it from how the retain loss
  actually moves:

  1. the caller differentiates the scalarised loss
     S(θ) = w_r·φ(L_r) + w_f·φ(L_f) with (w_r, w_f) = (λ, 1), or (λ, 1)/(1+λ) when
     ``normalize_weights`` (the default); φ = identity (the default) or log (scale-free,
     the paper's). Build S with :func:`jaxunlearn.scalarized_loss` so the settings
     cannot mismatch.
  2. ``inner`` turns ∇S into the parameter step Δθ (so this wrapper sees the actual step).
  3. the observed decrease Δ_t = φ(L_r(θ_t)) − φ(L_r(θ_{t+1})) gives the dual gradient
     u_t = Δ_t + ε, and λ ← max(0, λ − α·dualopt(u_t)): λ grows while the retain loss
     rises by more than the tolerance ε (against the reference below), and decays when
     it falls.

  Ways to observe Δ_t (``signal``):

  * ``"reevaluate"``: one extra forward ``retain_loss_fn(θ_{t+1})`` on the same batch
    (the paper's code, FAMO); no extra backward.
  * ``"jvp"``: the exact first-order change, Δ_t ≈ −φ'(L_r)·⟨g_r, Δθ⟩, from one
    forward-mode ``jax.jvp`` of ``retain_loss_fn`` along the step; still one backprop.
  * ``"consecutive"``: φ(L_r) of the previous batch minus φ(L_r) of this batch: free,
    but noisy (on digits its signal barely correlated with a step's real effect); the
    dual update at step t reacts to step t−1 and the first update leaves λ alone.

  What the constraint compares against (``reference``):

  * ``"previous"`` (the paper's): each step may raise φ(L_r) by at most ε — it has no
    memory, so a run can drift far from where it started in many small allowed steps;
  * ``"start"``: L_r(θ_t) ≤ L_r(θ_0) + ε on every batch (the *bounded increase of the
    utility loss* the problem states). θ_0 is kept in the state (one copy of the
    parameters) and its loss on the batch costs one more forward per step.

  ``variant`` picks the defaults of ``reference``, ``normalize_weights``, ``log_losses``,
  ``tolerance`` and the dual optimiser together (any of them can still be passed):
  ``"paper"`` is exactly the update of the paper's code; ``"anchored"`` is ours
  (:data:`VARIANTS`).

  The dual gradient is skipped (λ and dual state kept) when it is not finite.

  Where IGS goes in a chain — it must see the step that is really applied:

  * right: ``implicit_gradient_surgery(optax.chain(optax.clip_by_global_norm(1.0),
    optax.sgd(lr)))`` or ``optax.chain(optax.clip(1.0), implicit_gradient_surgery(sgd))``
    (IGS last); and ``optax.MultiSteps(implicit_gradient_surgery(sgd), k)``: λ learns
    once per applied (accumulated) step, from the last micro-batch's retain loss;
  * wrong, and raises: ``optax.chain(implicit_gradient_surgery(sgd), optax.scale(0.5))``
    (:func:`jaxunlearn.scalarized_loss` checks the chain when it builds S) and
    ``implicit_gradient_surgery(optax.MultiSteps(sgd, k))`` (raised at ``init``: IGS
    would learn from the zero steps of the mini-steps).

  Misuse raises at trace time: a ``retain_loss`` that is not a float scalar, a
  ``retain_loss_fn`` that returns a tuple, non-finite ``tolerance`` / ``init_multiplier``;
  a negative loss under ``log_losses`` raises when the step runs (see :func:`check_loss`).

  Args:
    inner: the base optimiser, e.g. ``optax.sgd(1e-3, momentum=0.9)``.
    variant: ``"paper"`` or ``"anchored"``: the defaults of the arguments below.
    tolerance: ε, the tolerated increase of φ(L_r) against the reference (signed; may
      be negative to demand a decrease).
    reference: ``"previous"`` (per step) or ``"start"`` (θ_0).
    dual_optimizer: optimiser acting on λ; the paper's is Adam(lr 1.0) with L2 0.01
      (:func:`default_dual_optimizer`).
    init_multiplier: λ_0.
    log_losses: φ = log (floored at ``loss_floor``) if True, identity otherwise. Use
      identity when a loss can be negative (gradient ascent).
    normalize_weights: use (λ, 1)/(1+λ) instead of (λ, 1).
    signal: ``"reevaluate"``, ``"jvp"`` or ``"consecutive"``.
    loss_floor: floor inside the log so a zero loss never gives −inf.

  Returns:
    An ``optax.GradientTransformationExtraArgs`` whose ``update(grads, state, params, *,
    retain_loss, retain_loss_fn=None, anchor_loss=None, **extra)`` takes ``retain_loss`` =
    L_r(params) on the batch, and ``retain_loss_fn(p)`` = L_r(p) on the same batch (needed
    by ``"reevaluate"`` and ``"jvp"``). With ``reference="start"``, ``anchor_loss`` =
    L_r(θ_0) on the batch, when the caller has it without a forward pass (the mean of
    per-row losses of θ_0 computed once, where a batch's loss depends on its rows only:
    :func:`jaxunlearn.engine.unlearning.anchor_table`); unset, it is
    ``retain_loss_fn(θ_0)``, one more forward a step. Other extra arguments go to
    ``inner``.

  Examples:
    >>> import jax, jax.numpy as jnp, optax, jaxunlearn
    >>> x = jnp.linspace(-1, 1, 8)[:, None]; y_r = 2 * x; y_f = -2 * x
    >>> params = {"w": jnp.ones((1, 1))}
    >>> retain = lambda p: jnp.mean((x @ p["w"] - y_r) ** 2) + 1e-3
    >>> forget = lambda p: jnp.mean((x @ p["w"] - y_f) ** 2)
    >>> tx = jaxunlearn.implicit_gradient_surgery(optax.sgd(0.05), tolerance=0.0)
    >>> state = tx.init(params)
    >>> @jax.jit
    ... def step(params, state):
    ...   def objective(p):
    ...     l_r = retain(p)
    ...     return jaxunlearn.scalarized_loss(state, l_r, forget(p)), l_r
    ...   (_, l_r), g = jax.value_and_grad(objective, has_aux=True)(params)
    ...   updates, state = tx.update(g, state, params, retain_loss=l_r,
    ...                              retain_loss_fn=retain)
    ...   return optax.apply_updates(params, updates), state
    >>> for _ in range(20):
    ...   params, state = step(params, state)
    >>> bool(jaxunlearn.multiplier(state) > 0)  # the dual variable reacted
    True
  """
  preset = _preset(variant, signal, tolerance=tolerance, reference=reference)
  preset = _given(preset, log_losses=log_losses, normalize_weights=normalize_weights)
  tolerance, reference, log_losses = preset.tolerance, preset.reference, preset.log_losses
  normalize_weights = preset.normalize_weights
  _check_arguments(reference, tolerance, init_multiplier, loss_floor)
  inner = optax.with_extra_args_support(inner)
  dual = dual_optimizer if dual_optimizer is not None else preset.dual_optimizer()
  anchored = reference == "start"
  state_type = LogWeightedState if log_losses else ImplicitGradientSurgeryState
  phi = functools.partial(_phi, log_losses=log_losses, floor=loss_floor)

  def init_fn(params):
    inner_state = inner.init(params)
    _refuse_multisteps_inside(inner_state)
    lam = jnp.maximum(jnp.asarray(init_multiplier, jnp.float32), 0.0)
    return state_type(
      count=jnp.zeros((), jnp.int32),
      multiplier=lam,
      weights=_weights(lam, normalize_weights),
      log_losses=jnp.asarray(log_losses),
      loss_floor=jnp.asarray(loss_floor, jnp.float32),
      prev_retain=jnp.zeros((), jnp.float32),
      decrease=jnp.zeros((), jnp.float32),
      dual_state=dual.init(lam),
      inner_state=inner_state,
      # A copy: the caller may donate params and state buffers to a jitted step.
      start_params=jax.tree.map(jnp.copy, params) if anchored else None,
    )

  def update_fn(
    updates, state, params=None, *, retain_loss, retain_loss_fn=None, anchor_loss=None, **extra_args
  ):
    retain_loss_fn = _checked_retain_fn(
      signal, reference, retain_loss_fn, params, needs_anchor=anchored and anchor_loss is None
    )
    retain_loss = check_loss(retain_loss, "retain_loss", log_losses)
    updates, inner_state = inner.update(updates, state.inner_state, params, **extra_args)
    before = phi(retain_loss)
    after = _observed_after(
      signal, phi, retain_loss_fn, params, updates, before, log_losses, loss_floor
    )
    anchor = _anchor(state, anchor_loss, retain_loss_fn, log_losses) if anchored else None
    decrease, ready = _decrease(
      signal, state, None if anchor is None else phi(anchor), before, after
    )

    lam, dual_state, apply = _dual_step(dual, state, decrease, tolerance, ready)

    new_state = state._replace(
      count=optax.safe_increment(state.count),
      multiplier=lam,
      weights=_weights(lam, normalize_weights),
      prev_retain=before,
      decrease=jnp.where(apply, decrease, 0.0).astype(jnp.float32),
      dual_state=dual_state,
      inner_state=inner_state,
    )
    return updates, new_state

  return optax.GradientTransformationExtraArgs(init_fn, update_fn)


def _decrease(signal, state, anchor, before, after):
  """``(Δ, ready)``: the observed decrease of φ(L_r) against the reference, and whether
  it is a real observation yet."""
  if anchor is not None:  # against θ_0 on the same batch: L_r(θ) ≤ L_r(θ_0) + ε over a run
    return anchor - after, jnp.asarray(True)
  if signal == "consecutive":  # the previous batch's φ(L_r) against this one's
    return state.prev_retain - before, state.count > 0
  return before - after, jnp.asarray(True)


def _observed_after(signal, phi, retain_loss_fn, params, updates, before, log_losses, floor):
  """φ(L_r) after the step, observed as ``signal`` says."""
  if signal == "reevaluate":
    return phi(retain_loss_fn(optax.apply_updates(params, updates)))
  if signal == "jvp":
    # d/dt L_r(θ + t·Δθ) at t = 0 is ⟨g_r, Δθ⟩; φ = log scales it by 1/L_r.
    primal, tangent = jax.jvp(retain_loss_fn, (params,), (updates,))
    tangent = jnp.asarray(tangent, jnp.float32)
    if log_losses:
      tangent = tangent / jnp.maximum(jnp.asarray(primal, jnp.float32), floor)
    return before + tangent
  return before  # consecutive: no look after the step; this batch's loss stands for it


def _refuse_multisteps_inside(inner_state) -> None:
  is_multisteps = lambda x: isinstance(x, optax.MultiStepsState)
  if any(is_multisteps(x) for x in jax.tree.leaves(inner_state, is_leaf=is_multisteps)):
    raise ValueError(
      "optax.MultiSteps inside implicit_gradient_surgery would show IGS the zero steps of "
      "the accumulation mini-steps; put it outside: "
      "optax.MultiSteps(implicit_gradient_surgery(inner), every_k_schedule=k)"
    )


def _anchor(state, anchor_loss, retain_loss_fn, log_losses):
  """L_r(θ_0) on this batch: as given (checked), or one more forward of θ_0."""
  if anchor_loss is not None:
    return check_loss(anchor_loss, "anchor_loss", log_losses)
  return retain_loss_fn(state.start_params)


def _checked_retain_fn(signal, reference, retain_loss_fn, params, *, needs_anchor):
  """``retain_loss_fn`` checked on each call (a float scalar), or a one-line error when
  the signal (or θ_0's loss on the batch) needs it and it, or ``params``, is missing."""
  if (signal != "consecutive" or needs_anchor) and (retain_loss_fn is None or params is None):
    raise ValueError(
      f"signal={signal!r} with reference={reference!r} needs params and retain_loss_fn "
      "(L_r on the same batch); pass them"
      + ("" if reference == "start" else ", or use signal='consecutive'")
    )
  if retain_loss_fn is None:
    return None
  return lambda p: check_loss(retain_loss_fn(p), "retain_loss_fn(params)")


def _preset(variant: str, signal: str, **given) -> Variant:
  """The variant's defaults with the arguments given (not ``None``) in their place."""
  if signal not in SIGNALS:
    raise ValueError(f"unknown signal {signal!r}; choose one of {', '.join(SIGNALS)}")
  if variant not in VARIANTS:
    raise ValueError(f"unknown variant {variant!r}; choose one of {', '.join(VARIANTS)}")
  return _given(VARIANTS[variant], **given)


def _given(preset: Variant, **given) -> Variant:
  return preset._replace(**{k: v for k, v in given.items() if v is not None})


def _phi(loss, *, log_losses: bool, floor: float):
  """φ(L) as a float32 scalar: log(max(L, floor)) with log losses, L otherwise."""
  loss = jnp.asarray(loss, jnp.float32)
  return log_floor(loss, floor) if log_losses else loss


def _check_arguments(reference, tolerance, init_multiplier, loss_floor) -> None:
  if reference not in REFERENCES:
    raise ValueError(f"unknown reference {reference!r}; choose one of {', '.join(REFERENCES)}")
  # Python and numpy numbers only: optax.inject_hyperparams passes traced arrays.
  for name, value in (("tolerance", tolerance), ("init_multiplier", init_multiplier)):
    if isinstance(value, numbers.Real) and not math.isfinite(value):
      raise ValueError(f"{name} must be finite, got {value}")
  if isinstance(loss_floor, numbers.Real) and not 0 < loss_floor < math.inf:
    raise ValueError(f"loss_floor must be a positive finite number, got {loss_floor}")


def _dual_step(dual, state, decrease, tolerance, ready):
  """The projected dual step: λ ← max(0, λ − dualopt(Δ + ε)), skipped (λ and the dual
  state kept) before the signal is ready or when it is not finite. Returns
  ``(λ, dual state, applied)``."""
  dual_grad = decrease + jnp.asarray(tolerance, jnp.float32)
  apply = jnp.logical_and(ready, jnp.isfinite(dual_grad))
  dual_grad = jnp.where(apply, dual_grad, 0.0)
  dual_updates, new_dual_state = dual.update(dual_grad, state.dual_state, state.multiplier)
  new_lam = jnp.maximum(optax.apply_updates(state.multiplier, dual_updates), 0.0)
  lam = jnp.where(apply, new_lam, state.multiplier)
  return lam, optax.tree.where(apply, new_dual_state, state.dual_state), apply


def with_anchor(opt_state, params):
  """``opt_state`` with the anchor θ_0 of every ``reference="start"`` IGS state set to
  ``params``: the budget L_r(θ) ≤ L_r(params) + ε then holds against that model (e.g. the
  *original* model across successive deletion requests, not the last request's start).
  Other states are returned unchanged.

  Examples:
    >>> import optax, jax.numpy as jnp, jaxunlearn
    >>> tx = jaxunlearn.implicit_gradient_surgery(optax.sgd(0.1))  # anchored: start reference
    >>> state = with_anchor(tx.init({"w": jnp.zeros(2)}), {"w": jnp.ones(2)})
    >>> state.start_params["w"].tolist()
    [1.0, 1.0]
  """
  is_igs = lambda x: isinstance(x, ImplicitGradientSurgeryState)

  def set_anchor(x):
    if not is_igs(x) or x.start_params is None:
      return x
    if jax.tree.structure(x.start_params) != jax.tree.structure(params):
      raise ValueError("the anchor params must have the structure of the optimised params")
    return x._replace(start_params=jax.tree.map(jnp.copy, params))

  return jax.tree.map(set_anchor, opt_state, is_leaf=is_igs)


def retain_decrease(opt_state) -> jax.Array:
  """The last observed decrease Δ_t of φ(L_r) held by the IGS state in ``opt_state``.

  Examples:
    >>> import optax, jax.numpy as jnp, jaxunlearn
    >>> tx = jaxunlearn.implicit_gradient_surgery(optax.sgd(0.1))
    >>> float(retain_decrease(tx.init({"w": jnp.zeros(2)})))  # 0 before any update
    0.0
  """
  state = state_lookup.find_weighting_state(opt_state)
  if not isinstance(state, ImplicitGradientSurgeryState):
    raise TypeError(
      f"retain_decrease reads an implicit_gradient_surgery state, not {type(state).__name__}"
    )
  return state.decrease
