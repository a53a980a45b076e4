"""Read loss weights and multipliers out of a (possibly nested) optimiser state.

The weighting transformations of this package (implicit gradient surgery, FAMO,
primal–dual, explicit surgery) keep their weights in their own NamedTuple
state. Users nest that state inside ``optax.chain``, ``optax.inject_hyperparams``,
``optax.MultiSteps`` or ``flax.nnx.Optimizer`` (which wraps every leaf in a
``Variable``). The helpers here search the whole state for the one weighting
state, unwrap it, and read from it, so training code never hard-codes where the
state sits.

A weighting state is recognised by duck typing: a NamedTuple whose class has a
``scalarize`` method. This module imports nothing else of ours.
"""

from __future__ import annotations

from typing import Any

import jax


def _is_weighting_state(x: Any) -> bool:
  return isinstance(x, tuple) and hasattr(type(x), "scalarize") and hasattr(x, "_fields")


def _has_value(x: Any) -> bool:
  # flax.nnx.Variable (and OptArray) carry the array behind get_value().
  return hasattr(x, "get_value") and not hasattr(x, "shape")


def _unwrap(node):
  return jax.tree.map(lambda v: v.get_value() if _has_value(v) else v, node,
                      is_leaf=_has_value)


def find_weighting_state(opt_state):
  """Returns the unique weighting state inside ``opt_state``, its leaves unwrapped.

  Raises:
    ValueError: if there is none, or more than one (ambiguous).
  """
  found = [x for x in jax.tree.leaves(opt_state, is_leaf=_is_weighting_state)
           if _is_weighting_state(x)]
  if not found:
    raise ValueError(
        "no jaxunlearn weighting state (implicit_gradient_surgery, famo, "
        "primal_dual, explicit_gradient_surgery) found in this optimiser state")
  if len(found) > 1:
    names = ", ".join(type(x).__name__ for x in found)
    raise ValueError(f"more than one weighting state found ({names}); pass the one you mean")
  return _unwrap(found[0])


def loss_weights(opt_state):
  """The weights the next scalarised loss must use, read from the optimiser state.

  For implicit gradient surgery and primal–dual these are ``(w_retain, w_forget)``
  (``(λ, 1)`` or ``(λ/(1+λ), 1/(1+λ))``); for FAMO the softmax weights ``z``.

  Example:
    >>> import optax, jax.numpy as jnp, jaxunlearn
    >>> tx = jaxunlearn.implicit_gradient_surgery(optax.sgd(0.1), init_multiplier=0.5)
    >>> w_r, w_f = jaxunlearn.loss_weights(tx.init({"w": jnp.zeros(2)}))
    >>> float(w_r), float(w_f)
    (0.5, 1.0)
  """
  return tuple(find_weighting_state(opt_state).loss_weights())


def multiplier(opt_state):
  """The dual variable λ held in the optimiser state (IGS, primal–dual, explicit surgery's last λ*)."""
  state = find_weighting_state(opt_state)
  if not hasattr(state, "multiplier"):
    raise ValueError(f"{type(state).__name__} has no multiplier")
  return state.multiplier


def scalarized_loss(opt_state, *losses):
  """The loss to differentiate this step, built exactly as the transformation expects.

  For IGS: S = w_r·φ(L_r) + w_f·φ(L_f), φ = log (floored) or identity according to
  the transformation's own ``log_losses`` setting, weights under ``stop_gradient``.
  Pass the losses in the transformation's order (retain first, then forget).

  Example:
    >>> import optax, jax, jax.numpy as jnp, jaxunlearn
    >>> tx = jaxunlearn.implicit_gradient_surgery(optax.sgd(0.1), log_losses=False,
    ...                                           init_multiplier=2.0)
    >>> s = tx.init({"w": jnp.zeros(2)})
    >>> float(jaxunlearn.scalarized_loss(s, jnp.array(3.0), jnp.array(1.0)))
    7.0
  """
  return find_weighting_state(opt_state).scalarize(*losses)
