"""Read loss weights and multipliers out of a (possibly nested) optimiser state.

The weighting transformations of this package (implicit gradient surgery, FAMO,
primal–dual, explicit surgery) keep their weights in their own NamedTuple
state. Users nest that state inside ``optax.chain``, ``optax.inject_hyperparams``,
``optax.MultiSteps`` or ``flax.nnx.Optimizer`` (which wraps every leaf in a
``Variable``). The helpers here search the whole state for the one weighting
state, unwrap it, and read from it, so training code never hard-codes where the
state sits.

States are recognised by their *type*: each transformation registers its state class
with :func:`register_state`, saying whether it holds loss weights (it then implements
``loss_weights()`` and ``scalarize(*losses)``) and whether it holds a multiplier λ (a
``multiplier`` field). This module imports nothing else of ours; the transformations
import it to register.
"""

from __future__ import annotations

from typing import Any

import jax

# state class -> (holds loss weights, holds a multiplier, must see the applied step)
_REGISTRY: dict[type, tuple[bool, bool, bool]] = {}


def register_state(*, weights: bool, multiplier: bool, sees_applied_step: bool = False):
  """Class decorator: registers a transformation's NamedTuple state for the readers here.

  ``sees_applied_step``: the transformation observes the effect of the step it returns
  (IGS and FAMO re-evaluate the losses after it), so no later transformation of a chain
  may change that step; :func:`scalarized_loss` checks it.

  Examples:
    >>> from typing import NamedTuple
    >>> @register_state(weights=False, multiplier=True)
    ... class MyState(NamedTuple):
    ...   multiplier: float
    >>> float(multiplier((MyState(2.0),)))
    2.0
  """

  def register(cls):
    _REGISTRY[cls] = (weights, multiplier, sees_applied_step)
    return cls

  return register


def _registered(x: Any) -> bool:
  return type(x) in _REGISTRY


def _has_value(x: Any) -> bool:
  # flax.nnx.Variable (and OptArray) carry the array behind get_value().
  return hasattr(x, "get_value") and not hasattr(x, "shape")


def _unwrap(node):
  return jax.tree.map(lambda v: v.get_value() if _has_value(v) else v, node, is_leaf=_has_value)


def _find(opt_state, role: int, what: str):
  states = [x for x in jax.tree.leaves(opt_state, is_leaf=_registered) if _registered(x)]
  found = [x for x in states if _REGISTRY[type(x)][role]]
  if not found:
    have = ", ".join(type(x).__name__ for x in states)
    raise ValueError(
      f"no jaxunlearn state with {what} found in this optimiser state"
      + (f" (it holds {have}, which has none)" if have else "")
    )
  if len(found) > 1:
    names = ", ".join(type(x).__name__ for x in found)
    raise ValueError(f"more than one state with {what} found ({names}); pass the one you mean")
  return _unwrap(found[0])


def find_weighting_state(opt_state):
  """Returns the unique state holding loss weights inside ``opt_state``, leaves unwrapped.

  Raises:
    ValueError: if there is none, or more than one (ambiguous).

  Examples:
    >>> import optax, jax.numpy as jnp, jaxunlearn
    >>> tx = optax.chain(optax.clip(1.0), jaxunlearn.famo(optax.sgd(0.1)))
    >>> type(find_weighting_state(tx.init({"w": jnp.zeros(2)}))).__name__
    'FAMOState'
  """
  return _find(opt_state, 0, "loss weights")


def loss_weights(opt_state):
  """The weights the next scalarised loss must use, read from the optimiser state.

  For implicit gradient surgery and primal–dual these are ``(w_retain, w_forget)``
  (``(λ, 1)`` or ``(λ/(1+λ), 1/(1+λ))``); for FAMO the softmax weights ``z``.

  Examples:
    >>> import optax, jax.numpy as jnp, jaxunlearn
    >>> tx = jaxunlearn.implicit_gradient_surgery(optax.sgd(0.1), init_multiplier=0.5)
    >>> w_r, w_f = jaxunlearn.loss_weights(tx.init({"w": jnp.zeros(2)}))
    >>> round(float(w_r), 4), round(float(w_f), 4)  # the default: (λ, 1)/(1+λ)
    (0.3333, 0.6667)
    >>> paper = jaxunlearn.implicit_gradient_surgery(optax.sgd(0.1), variant="paper",
    ...                                              init_multiplier=0.5)
    >>> tuple(float(w) for w in jaxunlearn.loss_weights(paper.init({"w": jnp.zeros(2)})))
    (0.5, 1.0)
  """
  return tuple(find_weighting_state(opt_state).loss_weights())


def multiplier(opt_state):
  """The dual variable λ held in the optimiser state (IGS, primal–dual, explicit surgery's last λ*).

  Also reads a state restored as plain nested dicts (``jaxunlearn.load(...,
  optimizer_state=True)`` of a run with your own optimiser), where λ is the one field
  named ``multiplier``.

  Examples:
    >>> import optax, jax.numpy as jnp, jaxunlearn
    >>> tx = jaxunlearn.primal_dual(optax.sgd(0.1), threshold=0.1, init_multiplier=0.3)
    >>> round(float(multiplier(tx.init({"w": jnp.zeros(2)}))), 4)
    0.3
    >>> multiplier({"0": {"count": 3}, "1": {"multiplier": 2.5, "count": 3}})
    2.5
  """
  try:
    return _find(opt_state, 1, "a multiplier").multiplier
  except ValueError:
    # A state restored without its classes (jaxunlearn.load of a run with the user's own
    # optimiser: nested dicts and lists) holds λ as its one "multiplier" field.
    found = _fields_named(opt_state, "multiplier")
    if len(found) != 1:
      raise
    return found[0]


def _fields_named(tree, name: str) -> list:
  """Every value stored under the key ``name`` in nested dicts, lists and tuples."""
  if isinstance(tree, dict):
    own = [tree[name]] if name in tree else []
    return own + [x for k, v in tree.items() if k != name for x in _fields_named(v, name)]
  if isinstance(tree, (list, tuple)) and not _registered(tree):
    return [x for v in tree for x in _fields_named(v, name)]
  return []


# optax keeps states, not transformations: what a state says about who made it.
_MADE_BY = {
  "EmptyState": "a stateless one (scale, clip, clip_by_global_norm, …)",
  "ScaleByAdamState": "scale_by_adam (adam, adamw)",
  "TraceState": "trace (sgd's momentum)",
  "ScaleByScheduleState": "scale_by_schedule (a learning-rate schedule)",
  "ScaleByRmsState": "scale_by_rms (rmsprop)",
  "InjectHyperparamsState": "inject_hyperparams",
  "MultiStepsState": "MultiSteps",
}


def _made_by(state) -> str:
  name = type(state).__name__
  if type(state) is tuple:  # a chain, or an optimiser that is one (adam, sgd)
    return f"a chain of [{' + '.join(_made_by(x) for x in state)}]"
  return _MADE_BY.get(name, f"one with state {name}")


def _transformation_name(state) -> str:
  """``ImplicitGradientSurgeryState`` → ``implicit_gradient_surgery``."""
  name = type(state).__name__.removesuffix("State")
  return (
    "".join(f"_{c.lower()}" if c.isupper() else c for c in name)
    .lstrip("_")
    .replace("f_a_m_o", "famo")
  )


def _transformations_after(node, target) -> list[str] | None:
  """Names of the states that follow ``target`` inside an ``optax.chain`` on its path.

  ``optax.chain`` keeps one state per transformation, in order, in a plain tuple (an
  ``EmptyState`` for stateless ones such as ``scale`` or ``clip_by_global_norm``), so a
  state that is not the last of its tuple belongs to a transformation whose step is
  changed afterwards. ``None`` when ``target`` is not in ``node``.
  """
  if node is target:
    return []
  if _registered(node) and node is not target:
    return None  # a wrapper state of ours: its inner state is its own business
  if type(node) is tuple:  # optax.chain (NamedTuples are states, not chains)
    for i, child in enumerate(node):
      found = _transformations_after(child, target)
      if found is not None:
        return found + [_made_by(x) for x in node[i + 1 :]]
    return None
  if isinstance(node, dict):
    children = list(node.values())
  elif isinstance(node, (tuple, list)):
    children = list(node)
  else:
    return None
  for child in children:
    found = _transformations_after(child, target)
    if found is not None:
      return found
  return None


def check_outermost(opt_state) -> None:
  """Raises if a transformation that must see the applied step is followed by another.

  IGS learns λ from how the retain loss moves under the step it returns; if a later
  transformation rescales that step (``optax.chain(igs, optax.clip_by_global_norm(1e-3))``)
  λ reacts to a step that is never applied. Put such transformations *inside* IGS
  (``implicit_gradient_surgery(optax.chain(optax.clip_by_global_norm(1.0), optax.sgd(lr)))``)
  or before it in the chain, so IGS is last. ``optax.MultiSteps(igs, k)`` is fine: it
  applies IGS's step once every ``k`` calls.

  Examples:
    >>> import optax, jax.numpy as jnp, jaxunlearn
    >>> igs = jaxunlearn.implicit_gradient_surgery(optax.sgd(0.1))
    >>> check_outermost(optax.chain(optax.clip(1.0), igs).init({"w": jnp.zeros(2)}))  # fine
    >>> check_outermost(optax.chain(igs, optax.scale(0.5)).init({"w": jnp.zeros(2)}))
    Traceback (most recent call last):
    ...
    ValueError: implicit_gradient_surgery must be the last of its optax.chain ...
  """
  for state in jax.tree.leaves(opt_state, is_leaf=_registered):
    if not (_registered(state) and _REGISTRY[type(state)][2]):
      continue
    after = _transformations_after(opt_state, state)
    if after:
      raise ValueError(
        f"{_transformation_name(state)} must be the last of its optax.chain (it learns "
        f"from the step it returns, and {len(after)} later transformation(s) — "
        f"{'; '.join(after)} — "
        "change that step): move them before it or into its inner optimiser, e.g. "
        f"{_transformation_name(state)}(optax.chain(optax.clip_by_global_norm(1.0), "
        "optax.sgd(lr)))"
      )


def scalarized_loss(opt_state, *losses):
  """The loss to differentiate this step, built exactly as the transformation expects.

  For IGS: S = w_r·φ(L_r) + w_f·φ(L_f), φ = log (floored) or identity according to
  the transformation's own ``log_losses`` setting, weights under ``stop_gradient``.
  Pass the losses in the transformation's order (retain first, then forget).

  Also checks the optimiser's structure (at trace time, once per compile): a
  transformation that learns from the step it returns (IGS, FAMO) must be the last of
  its chain (:func:`check_outermost`).

  Examples:
    >>> import optax, jax, jax.numpy as jnp, jaxunlearn
    >>> tx = jaxunlearn.implicit_gradient_surgery(optax.sgd(0.1), variant="paper",
    ...                                           log_losses=False, init_multiplier=2.0)
    >>> s = tx.init({"w": jnp.zeros(2)})
    >>> float(jaxunlearn.scalarized_loss(s, jnp.array(3.0), jnp.array(1.0)))  # 2·3 + 1
    7.0
  """
  check_outermost(opt_state)
  return find_weighting_state(opt_state).scalarize(*losses)
