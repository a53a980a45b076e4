"""The digits denoiser: shapes, and that time and class change its output."""

import jax.numpy as jnp
from flax import nnx

from jaxunlearn.nn import models
from jaxunlearn.nn.denoiser import MLPDenoiser, time_embedding


def test_functional_view_and_conditioning():
  fm, params, state = models.functional(MLPDenoiser((8, 8, 1), 10, rngs=nnx.Rngs(0), hidden=32))
  x = jnp.ones((2, 8, 8, 1))
  out = lambda t, y: fm.apply(params, state, (x, jnp.array([t, t]), jnp.array([y, y])), train=True)[
    0
  ]
  assert out(5, 1).shape == (2, 8, 8, 1)
  assert not jnp.allclose(out(5, 1), out(500, 1))  # time matters
  assert not jnp.allclose(out(5, 1), out(5, 10))  # the class (10 = null) matters
  assert state == {}


def test_time_embedding_is_sin_cos_of_scaled_t():
  e = time_embedding(jnp.array([0.0]), 4)
  assert jnp.allclose(e, jnp.array([[0.0, 0.0, 1.0, 1.0]]))
