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
