"""FAMO and primal–dual against trajectories written out by hand in numpy."""

import jax
import jax.numpy as jnp
import numpy as np
import optax

import jaxunlearn

A = np.array([[1.0, 0.5], [0.0, 1.0], [0.3, -1.0]])
B = np.array([1.0, -1.0, 0.5])
C = np.array([-2.0, 3.0])


def losses_np(w):
  return np.array([0.5 * np.sum((A @ w - B) ** 2) + 0.1, 0.5 * np.sum((w - C) ** 2) + 0.1])


def grads_np(w):
  return np.stack([A.T @ (A @ w - B), w - C])


def losses_jax(p):
  a, b, c = (jnp.asarray(x, jnp.float32) for x in (A, B, C))
  return jnp.stack(
    [0.5 * jnp.sum((a @ p["w"] - b) ** 2) + 0.1, 0.5 * jnp.sum((p["w"] - c) ** 2) + 0.1]
  )


def softmax(x):
  e = np.exp(x - x.max())
  return e / e.sum()


def run_weighted(tx, steps, extra):
  """Runs ``steps`` jitted steps on the scalarised loss; ``extra(L)`` gives update kwargs.

  Returns the final params and the state after every step.
  """
  params = {"w": jnp.zeros(2)}
  state = tx.init(params)

  @jax.jit
  def step(params, state):
    def objective(p):
      L = losses_jax(p)
      return jaxunlearn.scalarized_loss(state, L[0], L[1]), L

    (_, L), g = jax.value_and_grad(objective, has_aux=True)(params)
    updates, state = tx.update(g, state, params, **extra(L))
    return optax.apply_updates(params, updates), state

  states = []
  for _ in range(steps):
    params, state = step(params, state)
    states.append(state)
  return params, states


def test_famo_matches_hand_computation():
  lr, steps, famo_lr, wd = 0.05, 12, 0.2, 1e-3
  # numpy by hand
  w, xi = np.zeros(2), np.zeros(2)
  m = v = np.zeros(2)
  hand = []
  for t in range(1, steps + 1):
    L = losses_np(w)
    z = softmax(xi)
    c = np.sum(z / L)
    g = (z / c / L) @ grads_np(w)
    w_new = w - lr * g
    delta = np.log(L) - np.log(losses_np(w_new))
    jac = np.diag(z) - np.outer(z, z)
    grad_xi = jac.T @ delta + wd * xi
    m = 0.9 * m + 0.1 * grad_xi
    v = 0.999 * v + 0.001 * grad_xi**2
    xi = xi - famo_lr * (m / (1 - 0.9**t)) / (np.sqrt(v / (1 - 0.999**t)) + 1e-8)
    w = w_new
    hand.append(softmax(xi))
  # jaxunlearn
  tx = jaxunlearn.famo(optax.sgd(lr), learning_rate=famo_lr, weight_decay=wd, eps=0.0)
  params, states = run_weighted(tx, steps, lambda L: dict(losses=L, losses_fn=losses_jax))
  got = [np.asarray(jaxunlearn.loss_weights(s)) for s in states]
  hand = np.array(hand)
  assert np.ptp(hand[:, 0]) > 0.01  # the weights moved
  np.testing.assert_allclose(np.array(got), hand, rtol=1e-3, atol=1e-4)
  np.testing.assert_allclose(np.asarray(params["w"]), w, rtol=1e-3, atol=1e-4)


def test_primal_dual_matches_hand_computation():
  lr, eta, threshold, steps = 0.05, 0.5, 0.3, 15
  w, lam, hand = np.zeros(2), 0.0, []
  for _ in range(steps):
    L = losses_np(w)
    g = grads_np(w)[1] + lam * grads_np(w)[0]
    w = w - lr * g
    lam = max(0.0, lam + eta * (L[0] - threshold))
    hand.append(lam)
  tx = jaxunlearn.primal_dual(optax.sgd(lr), threshold=threshold, dual_learning_rate=eta)
  _, states = run_weighted(tx, steps, lambda L: dict(retain_loss=L[0]))
  got = [float(jaxunlearn.multiplier(s)) for s in states]
  assert max(hand) > 0.1
  np.testing.assert_allclose(got, hand, rtol=1e-4, atol=1e-5)


def test_primal_dual_multiplier_stays_projected():
  tx = jaxunlearn.primal_dual(
    optax.sgd(0.1), threshold=10.0, dual_learning_rate=1.0, init_multiplier=0.5
  )
  params = {"w": jnp.zeros(2)}
  _, state = tx.update(params, tx.init(params), params, retain_loss=jnp.array(1.0))
  assert float(state.multiplier) == 0.0
