"""Objectives against hand computations."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxunlearn import objectives

LOGITS = jnp.array([[2.0, 0.0, -1.0], [0.0, 1.0, 0.0]])
LABELS = jnp.array([0, 2])


def np_log_softmax(x):
  x = np.asarray(x, np.float64)
  return x - np.log(np.exp(x).sum(-1, keepdims=True))


def test_cross_entropy_and_gradient_ascent():
  ls = np_log_softmax(LOGITS)
  ce = -(ls[0, 0] + ls[1, 2]) / 2
  assert float(objectives.cross_entropy(LOGITS, LABELS)) == pytest.approx(ce, rel=1e-6)
  assert float(objectives.gradient_ascent_loss(LOGITS, LABELS)) == pytest.approx(-ce, rel=1e-6)
  assert float(objectives.random_label_loss(LOGITS, LABELS)) == pytest.approx(ce, rel=1e-6)


def test_npo_matches_formula_and_is_zero_gradient_free_at_reference():
  ref = LOGITS + jnp.array([[0.5, 0.0, 0.0], [0.0, 0.0, 1.0]])
  beta = 0.3
  lp, lr = np_log_softmax(LOGITS), np_log_softmax(ref)
  ratio = np.array([lp[0, 0] - lr[0, 0], lp[1, 2] - lr[1, 2]])
  expected = (2 / beta) * np.mean(np.log1p(np.exp(beta * ratio)))
  assert float(objectives.npo_loss(LOGITS, ref, LABELS, beta)) == pytest.approx(expected, rel=1e-5)
  # At the reference the loss is (2/β)·log 2 and pushes the true-class probability down.
  g = jax.grad(lambda x: objectives.npo_loss(x, LOGITS, LABELS, beta))(LOGITS)
  assert float(objectives.npo_loss(LOGITS, LOGITS, LABELS, beta)) == pytest.approx(
    2 / beta * np.log(2), rel=1e-6
  )
  assert float(g[0, 0]) > 0 and float(g[1, 2]) > 0


def test_kl_to_teacher_and_l1():
  t = jnp.array([[1.0, 0.0, 0.0]])
  s = jnp.array([[0.0, 0.0, 0.0]])
  pt = np.exp(np_log_softmax(t))[0]
  expected = np.sum(pt * (np.log(pt) - np.log(np.full(3, 1 / 3))))
  assert float(objectives.kl_to_teacher(s, t)) == pytest.approx(expected, rel=1e-6)
  assert float(objectives.kl_to_teacher(t, t)) == pytest.approx(0.0, abs=1e-7)
  assert float(objectives.l1_norm({"a": jnp.array([-1.0, 2.0]), "b": jnp.array(-3.0)})) == 6.0


def test_answer_losses_masks_the_question_and_padding():
  from jaxunlearn.data import tofu

  rng = np.random.default_rng(0)
  tokens = np.array([[1, 7, 8, 2, 9, 10, 3, 0], [1, 7, 2, 11, 3, 0, 0, 0]])
  logits = rng.normal(size=(2, 8, 12)).astype(np.float32)
  got = objectives.answer_losses(jnp.asarray(logits), jnp.asarray(tokens))
  for row, (t, lg) in enumerate(zip(tokens, logits)):
    start = list(t).index(tofu.ANS_ID)
    end = list(t).index(tofu.EOS_ID)
    losses = []
    for pos in range(start, end):  # position pos predicts token pos + 1: answer and <eos>
      z = lg[pos] - lg[pos].max()
      losses.append(-(z[t[pos + 1]] - np.log(np.exp(z).sum())))
    assert float(got[row]) == pytest.approx(np.mean(losses), rel=1e-5)
  defaults = objectives.answer_losses.__kwdefaults__
  assert defaults == {"answer_id": tofu.ANS_ID, "pad_id": tofu.PAD_ID}


def test_npo_from_losses_is_npo_for_cross_entropy():
  logits = jnp.array([[2.0, 0.0, -1.0], [0.5, 0.3, 0.1]])
  ref = jnp.array([[1.0, 1.0, 0.0], [0.0, 2.0, 0.1]])
  y = jnp.array([0, 2])
  ce = objectives.per_example_cross_entropy
  got = objectives.npo_from_losses(ce(logits, y), ce(ref, y), beta=0.3)
  assert float(got) == pytest.approx(float(objectives.npo_loss(logits, ref, y, beta=0.3)), rel=1e-6)


def test_simnpo_by_hand():
  import math

  losses = jnp.array([0.2, 1.5])
  beta, gamma = 3.0, 0.5
  expected = (2 / beta) * sum(math.log1p(math.exp(gamma - beta * float(l))) for l in losses) / 2
  assert float(objectives.simnpo_loss(losses, beta, gamma)) == pytest.approx(expected, rel=1e-6)
