"""Explicit surgery against an independent projection (scipy) and its defining properties."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.optimize import minimize

import jaxunlearn
from jaxunlearn.transforms import tree_math

SHAPES = {"a": (3, 4), "b": (5,), "c": (2, 2, 2)}


def random_pair(seed, dtype=jnp.float32):
  rng = np.random.default_rng(seed)
  return {k: jnp.asarray(rng.normal(size=(2,) + s), dtype) for k, s in SHAPES.items()}


def flat(tree, row):
  return np.concatenate([np.asarray(tree[k][row], np.float64).ravel() for k in sorted(tree)])


def scipy_projection(g_r, g_f, eps):
  """argmin_d ‖d − g_f‖² s.t. ⟨g_r, d⟩ ≥ −eps, by SLSQP (independent of the closed form)."""
  res = minimize(
    lambda d: np.sum((d - g_f) ** 2),
    g_f,
    jac=lambda d: 2 * (d - g_f),
    constraints=[{"type": "ineq", "fun": lambda d: g_r @ d + eps, "jac": lambda d: g_r}],
    method="SLSQP",
    options={"ftol": 1e-14, "maxiter": 500},
  )
  assert res.success, res.message
  return res.x


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("tolerance", [0.0, 0.5, -0.5])
def test_equals_scipy_projection(seed, tolerance):
  g = random_pair(seed)
  g_r, g_f = flat(g, 0), flat(g, 1)
  tx = jaxunlearn.explicit_gradient_surgery(tolerance=tolerance)
  d, state = jax.jit(tx.update)(g, tx.init(None))
  expected = scipy_projection(g_r, g_f, tolerance)
  got = np.concatenate([np.asarray(d[k]).ravel() for k in sorted(d)])
  np.testing.assert_allclose(got, expected, atol=1e-5, rtol=1e-5)
  assert float(g_r @ got) >= -tolerance - 1e-5
  assert float(state.multiplier) >= 0.0


def test_no_conflict_passes_forget_gradient_exactly():
  g = random_pair(0)
  # Make g_f agree with g_r: replace row 1 by row 0 plus a small orthogonal-ish part.
  g = {k: v.at[1].set(v[0] * 2.0) for k, v in g.items()}
  d, state = jaxunlearn.explicit_gradient_surgery().update(g, None)
  for k in g:
    np.testing.assert_array_equal(np.asarray(d[k]), np.asarray(g[k][1]))
  assert float(state.multiplier) == 0.0


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
def test_constraint_holds_and_dtype_preserved(dtype):
  tx = jaxunlearn.explicit_gradient_surgery(tolerance=0.1)
  for seed in range(20):
    g = random_pair(100 + seed, dtype)
    d, _ = tx.update(g, tx.init(None))
    assert all(d[k].dtype == dtype and d[k].shape == g[k].shape[1:] for k in g)
    g_r = jax.tree.map(lambda x: x[0], g)
    # bfloat16 rounding of d costs ~2^-8 relative; allow for it.
    slack = (
      1e-4
      if dtype == jnp.float32
      else 0.02 * float(jnp.sqrt(tree_math.tree_sq_norm(g_r) * tree_math.tree_sq_norm(d)))
    )
    assert float(tree_math.tree_vdot(g_r, d)) >= -0.1 - slack


def test_retain_weight_adds_retain_gradient():
  g = random_pair(3)
  d0, _ = jaxunlearn.explicit_gradient_surgery().update(g, None)
  d1, _ = jaxunlearn.explicit_gradient_surgery(retain_weight=1.0).update(g, None)
  for k in g:
    np.testing.assert_allclose(np.asarray(d1[k]), np.asarray(d0[k] + g[k][0]), atol=1e-5)


def test_rejects_wrong_number_of_objectives():
  g = {"a": jnp.ones((3, 4))}
  with pytest.raises(ValueError, match="exactly 2 objectives"):
    jaxunlearn.explicit_gradient_surgery().update(g, None)


def test_objective_gradients_match_separate_grads():
  f = lambda p, x: jnp.sum(jnp.sin(p["w"] * x))
  g = lambda p, x: jnp.sum((p["w"] - x) ** 2) + jnp.sum(p["b"])
  params = {"w": jnp.arange(3.0), "b": jnp.ones(2)}
  x = jnp.array([0.5, -1.0, 2.0])
  losses, grads = jax.jit(lambda p: jaxunlearn.objective_gradients((f, g), p, x))(params)
  for i, fn in enumerate((f, g)):
    ref = jax.grad(fn)(params, x)
    assert float(losses[i]) == pytest.approx(float(fn(params, x)), rel=1e-6)
    for k in params:
      np.testing.assert_allclose(np.asarray(grads[k][i]), np.asarray(ref[k]), rtol=1e-6)
