"""A small class-conditional denoiser for 8×8 digits: an MLP with time and class embeddings.

The design of the feasibility study (docs/design.md §9): the flattened noisy image ‖ a
128-d sinusoidal embedding of t ‖ a 128-d embedding of the class (``num_classes`` is the
null label of classifier-free guidance) → 512 → 512 (residual) → 512 (residual) → the
image. Its input is one tuple ``(x_t, t, labels)``, so :func:`~jaxunlearn.nn.models.functional`
gives it the same functional view as the classifiers and every engine step runs it.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from flax import nnx


def time_embedding(t, dim: int = 128):
  """Sinusoidal embedding of integer timesteps, shape ``(B, dim)``.

  Examples:
    >>> time_embedding(jnp.array([0, 10]), 8).shape
    (2, 8)
  """
  half = dim // 2
  freqs = jnp.exp(-math.log(10000.0) * jnp.arange(half, dtype=jnp.float32) / half)
  angles = jnp.asarray(t, jnp.float32)[:, None] * freqs[None]
  return jnp.concatenate([jnp.sin(angles), jnp.cos(angles)], axis=-1)


class MLPDenoiser(nnx.Module):
  """ε-prediction denoiser: ``model((x_t, t, labels)) -> ε̂`` with the shape of ``x_t``.

  Examples:
    >>> m = MLPDenoiser((8, 8, 1), num_classes=10, rngs=nnx.Rngs(0), hidden=32, embed=16)
    >>> m((jnp.zeros((3, 8, 8, 1)), jnp.array([0, 5, 9]), jnp.array([0, 1, 10]))).shape
    (3, 8, 8, 1)
  """

  def __init__(self, image_shape, num_classes: int, *, rngs, hidden: int = 512, embed: int = 128):
    self.image_shape = tuple(image_shape)
    self.embed = embed
    dim = math.prod(self.image_shape)
    self.label_embedding = nnx.Embed(num_classes + 1, embed, rngs=rngs)  # + the null label
    self.inp = nnx.Linear(dim + 2 * embed, hidden, rngs=rngs)
    self.res1 = nnx.Linear(hidden, hidden, rngs=rngs)
    self.res2 = nnx.Linear(hidden, hidden, rngs=rngs)
    self.out = nnx.Linear(hidden, dim, rngs=rngs)

  def __call__(self, inputs):
    x, t, labels = inputs
    n = x.shape[0]
    h = jnp.concatenate(
      [x.reshape(n, -1), time_embedding(t, self.embed), self.label_embedding(labels)], axis=-1
    )
    h = jax.nn.silu(self.inp(h))
    h = h + jax.nn.silu(self.res1(h))
    h = h + jax.nn.silu(self.res2(h))
    return self.out(h).reshape(x.shape)
