"""Aggregators checked against their defining properties with independent solvers."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from scipy.optimize import minimize

from jaxunlearn.transforms import aggregators, tree_math


def random_stack(seed, k=2, conflict=True):
  rng = np.random.default_rng(seed)
  tree = {"a": rng.normal(size=(k, 4, 3)), "b": rng.normal(size=(k, 6))}
  if conflict:  # push g_1 against g_0 so the interesting branch is exercised
    tree = {key: v.copy() for key, v in tree.items()}
    for key in tree:
      tree[key][1] -= 1.5 * tree[key][0]
  return jax.tree.map(lambda x: jnp.asarray(x, jnp.float32), tree)


def rows(tree):
  k = tree["a"].shape[0]
  return np.stack(
    [
      np.concatenate([np.asarray(tree[key][i], np.float64).ravel() for key in sorted(tree)])
      for i in range(k)
    ]
  )


def flat(tree):
  return np.concatenate([np.asarray(tree[key], np.float64).ravel() for key in sorted(tree)])


@pytest.mark.parametrize("seed", range(5))
def test_mgda_two_objectives_is_min_norm_by_brute_force(seed):
  g = random_stack(seed)
  d, _ = aggregators.mgda().update(g, None)
  G = rows(g)
  gammas = np.linspace(0, 1, 100001)
  norms = np.linalg.norm(gammas[:, None] * G[0] + (1 - gammas[:, None]) * G[1], axis=1)
  assert np.linalg.norm(flat(d)) == pytest.approx(norms.min(), rel=1e-4, abs=1e-6)
  # Common descent direction: ⟨g_i, d⟩ ≥ ‖d‖² (up to float error).
  assert np.all(G @ flat(d) >= np.linalg.norm(flat(d)) ** 2 - 1e-4)


@pytest.mark.parametrize("seed", range(3))
def test_mgda_many_objectives_matches_scipy(seed):
  g = random_stack(seed, k=4, conflict=False)
  d, _ = aggregators.mgda(iterations=2000).update(g, None)
  G = rows(g)
  res = minimize(
    lambda w: np.sum((w @ G) ** 2),
    np.full(4, 0.25),
    method="SLSQP",
    bounds=[(0, 1)] * 4,
    constraints=[{"type": "eq", "fun": lambda w: w.sum() - 1}],
    options={"ftol": 1e-15, "maxiter": 1000},
  )
  assert np.linalg.norm(flat(d)) == pytest.approx(np.sqrt(res.fun), rel=2e-3, abs=1e-5)


@pytest.mark.parametrize("seed", range(5))
def test_pcgrad_leaves_no_conflict(seed):
  g = random_stack(seed)
  G = rows(g)
  assert G[0] @ G[1] < 0  # the test premise: they conflict
  coeffs = np.asarray(aggregators.pcgrad_weights(tree_math.stacked_gram(g)), np.float64)
  projected = coeffs @ G
  assert projected[0] @ G[1] >= -1e-4 and projected[1] @ G[0] >= -1e-4
  d, _ = aggregators.pcgrad().update(g, None)
  # Independent formula for two objectives.
  p0 = G[0] - (G[0] @ G[1]) / (G[1] @ G[1]) * G[1]
  p1 = G[1] - (G[1] @ G[0]) / (G[0] @ G[0]) * G[0]
  np.testing.assert_allclose(flat(d), p0 + p1, rtol=1e-4, atol=1e-5)


def test_pcgrad_without_conflict_is_sum():
  g = random_stack(0, conflict=False)
  g = jax.tree.map(lambda x: x.at[1].set(jnp.abs(x[1]) * jnp.sign(x[0])), g)
  d, _ = aggregators.pcgrad().update(g, None)
  np.testing.assert_allclose(flat(d), rows(g).sum(0), rtol=1e-5)


def cagrad_primal(G, c):
  """max_d min_i ⟨g_i, d⟩ s.t. ‖d − g_0‖ ≤ c‖g_0‖, solved by SLSQP in (d, t)."""
  g0 = G.mean(0)
  r = c * np.linalg.norm(g0)
  n = G.shape[1]
  cons = [{"type": "ineq", "fun": lambda z, i=i: G[i] @ z[:n] - z[n]} for i in range(len(G))]
  cons.append({"type": "ineq", "fun": lambda z: r**2 - np.sum((z[:n] - g0) ** 2)})
  res = minimize(
    lambda z: -z[n],
    np.concatenate([g0, [0.0]]),
    constraints=cons,
    method="SLSQP",
    options={"ftol": 1e-12, "maxiter": 1000},
  )
  # SLSQP may stop at its line-search precision limit; accept any feasible optimum.
  assert np.sum((res.x[:n] - g0) ** 2) <= r**2 * (1 + 1e-6), res.message
  return res.x[:n]


@pytest.mark.parametrize("k", [2, 3])
@pytest.mark.parametrize("seed", range(3))
def test_cagrad_solves_its_primal_problem(k, seed):
  g = random_stack(seed, k=k)
  c = 0.4
  d, _ = aggregators.cagrad(c, rescale=0).update(g, None)
  G = rows(g)
  expected = cagrad_primal(G, c)
  got = flat(d)
  # Same worst-case improvement as the primal optimum, and the same point.
  assert (G @ got).min() == pytest.approx((G @ expected).min(), rel=2e-3, abs=1e-4)
  np.testing.assert_allclose(got, expected, rtol=0, atol=2e-2 * np.linalg.norm(expected))
  d1, _ = aggregators.cagrad(c).update(g, None)
  np.testing.assert_allclose(flat(d1), got / (1 + c**2), rtol=1e-5, atol=1e-6)


def test_linear_and_errors():
  g = random_stack(1)
  d, _ = aggregators.linear([0.3, 0.7]).update(g, None)
  np.testing.assert_allclose(flat(d), 0.3 * rows(g)[0] + 0.7 * rows(g)[1], rtol=1e-5)
  with pytest.raises(ValueError, match="3 weights for 2 objectives"):
    aggregators.linear([1.0, 1.0, 1.0]).update(g, None)
  with pytest.raises(ValueError, match="leading objective axis"):
    aggregators.mgda().update({"a": jnp.ones((2, 3)), "b": jnp.ones((3, 3))}, None)
  with pytest.raises(ValueError):
    aggregators.cagrad(-1.0)


@pytest.mark.parametrize(
  "make",
  [
    aggregators.mgda,
    aggregators.pcgrad,
    aggregators.cagrad,
    lambda: aggregators.linear([1.0, 1.0]),
  ],
)
def test_chains_in_front_of_optax_under_jit(make):
  params = {"a": jnp.zeros((4, 3)), "b": jnp.zeros(6)}
  tx = optax.chain(make(), optax.clip_by_global_norm(1.0), optax.adam(1e-2))
  state = tx.init(params)
  step = jax.jit(tx.update)
  for seed in range(3):
    updates, new_state = step(random_stack(seed), state, params)
    assert jax.tree.structure(new_state) == jax.tree.structure(state)
    state = new_state
    params = optax.apply_updates(params, updates)
  assert all(bool(jnp.all(jnp.isfinite(x))) for x in jax.tree.leaves(params))
  assert params["a"].shape == (4, 3)
