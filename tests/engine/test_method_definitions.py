"""Each single-loss method's first updates against its definition, written out by hand
(issue 35): a multinomial logistic regression on 40 rows, one batch of every row in play,
plain SGD, so an update is exactly −lr·∇L(θ) of the definition. The definitions here
share nothing with the registry's losses but jax.grad.

A mixed batch (the default layout, as in the authors' code) weighs each part's rows by
1/B: L_r is the sum of the retain rows' losses over the batch size B, not their mean (the
per-part mean scaled by the part's share, 32/40 here), and L_f likewise."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jaxunlearn
from jaxunlearn.engine import methods as methods_lib
from jaxunlearn.engine import starts

RNG = np.random.default_rng(0)
X = RNG.normal(size=(40, 3)).astype(np.float32)
Y = (np.arange(40) % 3).astype(np.int32)
FORGET = np.arange(8)
RETAIN = np.arange(8, 40)
THETA = {
  "w": jnp.asarray(RNG.normal(size=(3, 3)), jnp.float32),
  "b": jnp.asarray(RNG.normal(size=3), jnp.float32),
}
LR = 0.1


def apply_fn(p, x):
  return x @ p["w"] + p["b"]


B = len(X)  # one batch of every row


def ce(p, rows):
  """Cross-entropy of the true labels summed over ``rows``, over the batch size, by hand."""
  logits = apply_fn(p, X[rows])
  logp = logits - jax.scipy.special.logsumexp(logits, axis=1, keepdims=True)
  return -jnp.sum(logp[jnp.arange(len(rows)), Y[rows]]) / B


def kl(teacher, student, rows):
  """KL(softmax(teacher) ‖ softmax(student)) summed over ``rows``, over the batch size."""
  t = jax.nn.log_softmax(apply_fn(teacher, X[rows]))
  s = jax.nn.log_softmax(apply_fn(student, X[rows]))
  return jnp.sum(jnp.exp(t) * (t - s)) / B


def sgd(loss, p):
  return jax.tree.map(lambda a, g: a - LR * g, p, jax.grad(loss)(p))


def hp(method):
  return methods_lib.make_config(method).hparams


def run(method, steps=1):
  return jaxunlearn.unlearn(
    apply_fn, THETA, X, Y, forget=FORGET, method=method, steps=steps, batch_size=40,
    optimizer=optax.sgd(LR),
  ).params  # fmt: skip


def expected(method):
  """θ after the method's first step(s), from its definition."""
  if method == "ga":  # gradient ascent on the forget rows' true labels
    return sgd(lambda p: -ce(p, FORGET), THETA)
  if method == "graddiff":  # L_r − α·CE_f
    alpha = hp("graddiff").graddiff_alpha
    return sgd(lambda p: ce(p, RETAIN) - alpha * ce(p, FORGET), THETA)
  if method == "ft":  # fine-tuning: L_r only
    return sgd(lambda p: ce(p, RETAIN), THETA)
  if method == "l1sparse":  # L_r + γ(1 − t/T)‖θ‖₁, at t = 0
    gamma = hp("l1sparse").l1_gamma
    l1 = lambda p: sum(jnp.sum(jnp.abs(a)) for a in jax.tree.leaves(p))
    return sgd(lambda p: ce(p, RETAIN) + gamma * l1(p), THETA)
  if method == "npo":  # (2/β)·Σ_f log(1 + (π_θ(y|x)/π_ref(y|x))^β)/B + L_r
    beta = hp("npo").npo_beta

    def logp(p):
      logits = apply_fn(p, X[FORGET])
      return jax.nn.log_softmax(logits)[jnp.arange(len(FORGET)), Y[FORGET]]

    ref = logp(THETA)
    npo = lambda p: (2 / beta) * jnp.sum(jnp.log1p(jnp.exp(beta * (logp(p) - ref)))) / B
    return sgd(lambda p: npo(p) + ce(p, RETAIN), THETA)
  if method == "neggrad_plus":  # β·L_r − (1 − β)·CE_f
    beta = hp("neggrad_plus").neggrad_beta
    return sgd(lambda p: beta * ce(p, RETAIN) - (1 - beta) * ce(p, FORGET), THETA)
  if method == "noise_ft":  # θ + σ·std(θ)·N(0, 1) per tensor, then L_r from there
    cfg = methods_lib.make_config("noise_ft")
    key = jax.random.fold_in(jax.random.key(cfg.seed), starts._STREAM)
    noisy = {}
    for i, k in enumerate(sorted(THETA)):  # the tree's leaves in flattening order
      _, k_noise = jax.random.split(jax.random.fold_in(key, i))
      a = THETA[k]
      noisy[k] = a + cfg.start_noise * jnp.std(a) * jax.random.normal(k_noise, a.shape)
    return sgd(lambda p: ce(p, RETAIN), noisy)
  if method == "scrub":
    # step 0 maximises KL(teacher ‖ student) on the forget rows: zero at θ = teacher, and so
    # is its gradient; step 1 minimises α·KL on the retain rows + γ·CE_r, whose KL term
    # again has zero gradient at θ = teacher. So two steps are one step of γ·CE_r.
    h = hp("scrub")
    after_max = sgd(lambda p: -kl(THETA, p, FORGET), THETA)
    return sgd(lambda p: h.scrub_alpha * kl(THETA, p, RETAIN) + h.scrub_gamma * ce(p, RETAIN),
               after_max)  # fmt: skip
  raise AssertionError(method)


@pytest.mark.parametrize(
  "method,steps",
  [
    ("ga", 1),
    ("graddiff", 1),
    ("ft", 1),
    ("l1sparse", 1),
    ("npo", 1),
    ("neggrad_plus", 1),
    ("noise_ft", 1),
    ("scrub", 2),
  ],
)
def test_the_first_update_is_the_definitions(method, steps):
  got, want = run(method, steps), expected(method)
  moved = max(float(jnp.max(jnp.abs(want[k] - THETA[k]))) for k in THETA)
  assert moved > 1e-3  # the check can see a wrong direction
  for k in THETA:
    np.testing.assert_allclose(np.asarray(got[k]), np.asarray(want[k]), rtol=1e-5, atol=1e-6)


def test_a_wrong_sign_fails_the_check():
  """The deliberate bug: gradient ascent written as descent is caught."""
  got = run("ga")
  wrong = sgd(lambda p: ce(p, FORGET), THETA)
  with pytest.raises(AssertionError):
    np.testing.assert_allclose(np.asarray(got["w"]), np.asarray(wrong["w"]), rtol=1e-5, atol=1e-6)
