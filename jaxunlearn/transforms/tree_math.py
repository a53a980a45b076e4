"""Inner products, norms and Gram matrices over parameter pytrees.

Everything is computed leaf by leaf and accumulated in float32: flattening the
pytree with ``ravel_pytree`` was measured to be erratic on CPU (8–30 ms a step on
a 784-512-256 MLP), while per-leaf dot products were steady. Accumulating in
float32 keeps bfloat16 parameters from losing the inner product to rounding.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

Array = jax.Array


def tree_vdot(a, b) -> Array:
  """Returns ⟨a, b⟩ = Σ_leaves Σ_i a_i b_i as a float32 scalar.

  Examples:
    >>> import jax.numpy as jnp
    >>> float(tree_vdot({"w": jnp.ones(3)}, {"w": jnp.arange(3.0)}))
    3.0
  """
  leaves = jax.tree.leaves(
    jax.tree.map(lambda x, y: jnp.vdot(x.astype(jnp.float32), y.astype(jnp.float32)), a, b)
  )
  return sum(leaves, jnp.zeros((), jnp.float32))


def tree_sq_norm(a) -> Array:
  """Returns ‖a‖² over all leaves, as a float32 scalar."""
  return tree_vdot(a, a)


def stacked_gram(stacked) -> Array:
  """Gram matrix K_ij = ⟨g_i, g_j⟩ of a pytree whose leaves have a leading objective axis.

  Args:
    stacked: pytree, every leaf of shape (k, ...), row i the gradient of objective i.

  Returns:
    float32 array of shape (k, k).
  """

  def leaf_gram(x):
    flat = x.reshape(x.shape[0], -1).astype(jnp.float32)
    return flat @ flat.T

  return sum(jax.tree.leaves(jax.tree.map(leaf_gram, stacked)))


def combine(weights: Array, stacked):
  """Returns Σ_i weights_i g_i for a stacked pytree, each leaf in its own dtype.

  Unrolled over the (small, static) objective axis: a broadcast multiply followed by a
  reduction over axis 0 measured 165–215 ms on a 3072×256 leaf on CPU, the unrolled
  sum 1.2 ms.
  """
  weights = weights.astype(jnp.float32)

  def leaf_combine(x):
    total = weights[0] * x[0].astype(jnp.float32)
    for i in range(1, x.shape[0]):
      total = total + weights[i] * x[i].astype(jnp.float32)
    return total.astype(x.dtype)

  return jax.tree.map(leaf_combine, stacked)


def num_objectives(stacked) -> int:
  """Size of the leading objective axis; all leaves must agree."""
  sizes = {leaf.shape[0] if leaf.ndim else None for leaf in jax.tree.leaves(stacked)}
  if len(sizes) != 1 or None in sizes:
    raise ValueError(
      "per-objective gradients must be a pytree whose leaves all share a leading "
      f"objective axis; got leading sizes {sorted(map(str, sizes))}"
    )
  return sizes.pop()
