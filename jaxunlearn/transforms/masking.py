"""Fixed 0/1 masks on updates: the parameter selection of SalUn and similar methods."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax


def masked_updates(mask) -> optax.GradientTransformation:
  """Multiplies the updates leaf by leaf by a fixed mask (a pytree like the params).

  Chain it before the optimiser so momentum only ever sees masked gradients.

  Examples:
    >>> import jax.numpy as jnp, optax
    >>> tx = optax.chain(masked_updates({"w": jnp.array([1.0, 0.0])}), optax.sgd(1.0))
    >>> params = {"w": jnp.zeros(2)}
    >>> updates, _ = tx.update({"w": jnp.ones(2)}, tx.init(params), params)
    >>> updates["w"].tolist()
    [-1.0, -0.0]
  """
  return optax.stateless(lambda updates, params: jax.tree.map(jnp.multiply, updates, mask))


def parameter_path(path) -> str:
  """A pytree path as dotted names: ``blocks.0.attention.query.kernel``.

  Examples:
    >>> import jax
    >>> [parameter_path(p) for p, _ in jax.tree_util.tree_flatten_with_path({"a": [1, 2]})[0]]
    ['a.0', 'a.1']
  """
  parts = []
  for key in path:
    for attr in ("key", "idx", "name"):
      if hasattr(key, attr):
        parts.append(str(getattr(key, attr)))
        break
  return ".".join(parts)


def _under(name: str, prefixes) -> bool:
  """Whether the dotted ``name`` is one of ``prefixes`` or inside one (whole names only)."""
  return any(name == p or name.startswith(p + ".") for p in prefixes)


def frozen_except(prefixes) -> optax.GradientTransformation:
  """Zero updates for every parameter outside ``prefixes`` (dotted path prefixes,
  :func:`parameter_path`): parameter-efficient unlearning as an ``optax`` mask.

  Chained *before* a method's transformation, so its weighting, projections and
  optimiser only ever see the trainable parameters' gradients. The zeros are constants,
  so XLA drops the frozen weights' gradients from the compiled step (their memory and
  work); an optimiser after it still keeps its state for every parameter. ``init``
  raises if a prefix names no parameter.

  Examples:
    >>> import jax.numpy as jnp, optax
    >>> params = {"body": {"w": jnp.ones(2)}, "head": {"w": jnp.ones(1)}}
    >>> tx = optax.chain(frozen_except(["head"]), optax.sgd(1.0))
    >>> updates, _ = tx.update(params, tx.init(params), params)
    >>> updates["body"]["w"].tolist(), updates["head"]["w"].tolist()
    ([-0.0, -0.0], [-1.0])
  """
  prefixes = tuple(prefixes)

  def init(params):
    names = [parameter_path(p) for p, _ in jax.tree_util.tree_flatten_with_path(params)[0]]
    for prefix in prefixes:
      if not any(_under(n, (prefix,)) for n in names):
        raise ValueError(
          f"trainable prefix {prefix!r} names no parameter; parameters: {', '.join(names)}"
        )
    return optax.EmptyState()

  def update(updates, state, params=None):
    del params
    updates = jax.tree_util.tree_map_with_path(
      lambda path, u: u if _under(parameter_path(path), prefixes) else jnp.zeros_like(u),
      updates,
    )
    return updates, state

  return optax.GradientTransformation(init, update)
