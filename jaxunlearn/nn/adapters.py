"""Any model as the engine's functional view: an apply function, a linen or an NNX module.

The engine runs every model through ``fm.apply(params, state, x, *, train) -> (logits,
new_state)`` (:class:`~jaxunlearn.nn.models.FunctionalModel` for our NNX models).
:func:`as_functional` gives that view of a user's model:

* a function ``apply_fn(params, x) -> logits`` (no mutable state);
* a ``flax.linen`` module with its variables (``{"params": ..., "batch_stats": ...}``):
  in train mode the non-param collections are mutable and come back updated; the
  module's ``__call__`` gets ``train=`` when it has such an argument. (Dropout needs an
  RNG stream: wrap such a module in your own ``apply_fn``.)
* a ``flax.nnx`` module (its params split off, the rest as state).

A per-example ``loss(logits, labels) -> (B,)`` travels with the adapter
(``example_loss``), so the unlearning objectives use it instead of cross-entropy.
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable
from typing import Any

from flax import linen, nnx

from jaxunlearn.errors import ConfigError
from jaxunlearn.nn.models import FunctionalModel, functional


@dataclasses.dataclass(frozen=True)
class FunctionModel:
  """The functional view over ``fn(params, state, x, train) -> (logits, new_state)``.

  Hashable by its function and loss, so the same adapter reuses one compiled step.

  Examples:
    >>> import jax.numpy as jnp
    >>> fm, params, state = as_functional(lambda p, x: x @ p["w"], {"w": jnp.ones((3, 2))})
    >>> fm.apply(params, state, jnp.ones((4, 3)), train=True)[0].shape
    (4, 2)
  """

  fn: Callable
  example_loss: Callable | None = None
  kind: str = "apply_fn"

  def apply(self, params: Any, state: Any, x: Any, *, train: bool) -> tuple[Any, Any]:
    """Returns ``(logits, new_state)``; ``new_state`` is ``state`` in eval mode."""
    return self.fn(params, state, x, train)


class _SameObject:
  """Equal and hashed by the identity of what it wraps: the same user model gives the
  same adapter, so a second request on it reuses the compiled step (a new closure per
  call compiled every request again: five requests on wine took 14.9 s, now 7.1 s)."""

  wrapped: Any

  def __eq__(self, other):
    return type(other) is type(self) and other.wrapped is self.wrapped

  def __hash__(self):
    return id(self.wrapped)


@dataclasses.dataclass(frozen=True)
class _Graph:
  """An NNX model's functional view as ``fn(params, state, x, train)``; equal for equal
  graphs, so two models of one architecture (an original and its retrained twin) share
  their compiled steps and evaluations."""

  wrapped: FunctionalModel

  def __call__(self, params, state, x, train):
    return self.wrapped.apply(params, state, x, train=train)


@dataclasses.dataclass(frozen=True, eq=False)
class _Stateless(_SameObject):
  """``apply_fn(params, x)`` as ``fn(params, state, x, train)``."""

  wrapped: Callable

  def __call__(self, params, state, x, train):
    del train
    return self.wrapped(params, x), state


@dataclasses.dataclass(frozen=True, eq=False)
class _Linen(_SameObject):
  """A linen module as ``fn(params, state, x, train)``: in train mode the non-param
  collections are mutable and come back updated."""

  wrapped: linen.Module

  def __call__(self, params, state, x, train):
    module = self.wrapped
    takes_train = "train" in inspect.signature(module.__call__).parameters
    kwargs = {"train": train} if takes_train else {}
    variables = {"params": params, **state}
    if train and state:
      logits, new_state = module.apply(variables, x, mutable=list(state), **kwargs)
      return logits, dict(new_state)
    return module.apply(variables, x, **kwargs), state


def as_functional(model, params=None, model_state=None, *, loss: Callable | None = None):
  """``(fm, params, model_state)`` for ``model``: an apply function, a linen module or an
  NNX module; ``loss`` is the per-example loss to unlearn with (cross-entropy if None).

  Args:
    model: ``apply_fn(params, x) -> logits``; a ``flax.linen.Module`` (then ``params``
      are its variables, or its ``"params"`` collection with ``model_state`` the rest);
      a ``flax.nnx.Module`` (``params`` must be None); or a :class:`FunctionalModel`
      with its params and state.
    params: the parameters (what is optimised).
    model_state: mutable non-parameter state (BatchNorm statistics), ``{}`` if none.
    loss: ``loss(logits, labels) -> per-example losses``.

  Examples:
    >>> import flax.linen as nn, jax, jax.numpy as jnp
    >>> module = nn.Dense(3)
    >>> variables = module.init(jax.random.key(0), jnp.ones((1, 5)))
    >>> fm, params, state = as_functional(module, variables)
    >>> sorted(params), state, fm.kind
    (['bias', 'kernel'], {}, 'linen')
  """
  if isinstance(model, nnx.Module):
    if params is not None:
      raise ConfigError("an NNX module carries its own params; pass params=None")
    base, params, model_state = functional(model)
    if loss is None:
      return base, params, model_state
    return FunctionModel(_Graph(base), loss, "nnx"), params, model_state
  if isinstance(model, FunctionalModel):
    fm = model
    if loss is not None:
      fm = FunctionModel(_Graph(model), loss, "nnx")
  elif isinstance(model, linen.Module):
    if isinstance(params, dict) and "params" in params and model_state is None:
      model_state = {k: v for k, v in params.items() if k != "params"}
      params = params["params"]
    fm = FunctionModel(_Linen(model), loss, "linen")
  elif callable(model):
    if model_state:
      raise ConfigError(
        "a plain apply_fn(params, x) has no mutable state; for BatchNorm-like state pass a "
        "linen or NNX module"
      )
    fm = FunctionModel(_Stateless(model), loss, "apply_fn")
  else:
    raise ConfigError(
      f"model must be an apply function, a flax linen or NNX module, got {type(model).__name__}"
    )
  if params is None:
    raise ConfigError("pass the model's params (what unlearning optimises)")
  return fm, params, {} if model_state is None else model_state


FORMS = ("params", "variables")


def params_form(model, params=None, model_state=None) -> str:
  """How the user passed the parameters: ``"variables"`` for a linen module's whole
  variables (``{"params": ..., "batch_stats": ...}``), which :func:`as_functional`
  splits into params and state, ``"params"`` otherwise. :func:`in_form` gives results
  back in it, so ``model.apply(report.params, x)`` works as it did before.

  Examples:
    >>> import flax.linen as nn, jax, jax.numpy as jnp
    >>> params_form(nn.Dense(2), nn.Dense(2).init(jax.random.key(0), jnp.ones((1, 3))))
    'variables'
    >>> params_form(lambda p, x: x @ p, jnp.ones((3, 2)))
    'params'
  """
  linen_variables = isinstance(model, linen.Module) and isinstance(params, dict)
  if linen_variables and "params" in params and model_state is None:
    return "variables"
  return "params"


def in_form(form: str, params, model_state):
  """The engine's ``params`` (and ``model_state``) in the user's ``form``."""
  if form == "variables":
    return {"params": params, **(model_state or {})}
  return params


def engine_params(form: str, params):
  """The engine's params out of the user's ``form`` (the inverse of :func:`in_form`)."""
  return params["params"] if form == "variables" else params
