"""The forget score against an independent, brute-force transcription of the NeurIPS 2023
challenge's definition (every threshold pair enumerated, rates as means of booleans),
closed forms, and the properties the metric promises."""

import math

import numpy as np
import pytest
from forget_score_reference import _reference_epsilon, _reference_score
from scipy.special import logsumexp

from jaxunlearn import metrics
from jaxunlearn.metrics import population as fs


def _populations(kind, rng, n=16, examples=2):
  r = rng.normal(size=(n, examples))
  if kind == "identical":
    u = rng.normal(size=(n, examples))
  elif kind == "shifted":
    u = rng.normal(size=(n, examples)) + np.linspace(0.3, 3.0, examples)
  elif kind == "wider":
    u = 3.0 * rng.normal(size=(n, examples)) - 0.5
  elif kind == "separated":
    u = rng.uniform(5, 6, size=(n, examples))
  return u, r


@pytest.mark.parametrize("kind", ["identical", "shifted", "wider", "separated"])
def test_agrees_with_the_brute_force_definition(kind):
  u, r = _populations(kind, np.random.default_rng(len(kind)))
  want_score, want_eps = _reference_score(u, r)
  got = metrics.forget_score(u, r)
  np.testing.assert_allclose(got.epsilons, want_eps, atol=1e-6)
  assert abs(got.score - want_score) < 1e-6
  assert got.max_epsilon == math.ceil(math.log(len(u) - 1)) and got.models == len(u)


def test_a_single_threshold_case_in_closed_form():
  # The larger-median population has one low outlier, the other one high outlier: the
  # best rule is a threshold between the clusters, with fpr = fnr = 1/10 (the interval
  # rule cannot do better: taking the low outlier in takes all of the other's cluster).
  pos = np.array([0.0, *np.arange(10.0, 10.85, 0.1)])
  neg = np.array([*np.arange(0.0, 0.85, 0.1), 10.9])
  want = math.log(1 - 1e-5 - 0.1) - math.log(0.1)
  eps = metrics.example_epsilons(neg[:, None], pos[:, None])
  assert abs(eps[0] - want) < 1e-9
  assert abs(_reference_epsilon(pos, neg) - want) < 1e-9


def test_perfect_separation_and_peaky_populations_get_the_cap():
  rng = np.random.default_rng(1)
  r = rng.normal(size=(16, 3))
  constant = np.ones((16, 3))  # one model copied: doing nothing, 16 times
  assert metrics.example_epsilons(constant, r).tolist() == [50.0] * 3
  assert metrics.forget_score(constant, r).score == 0.0
  far = r + 100.0
  assert metrics.example_epsilons(far, r).tolist() == [50.0] * 3


def test_identical_populations_score_near_the_top_and_the_ceiling_grows_with_n():
  rng = np.random.default_rng(2)
  small = metrics.forget_score(rng.normal(size=(16, 200)), rng.normal(size=(16, 200)))
  large = metrics.forget_score(rng.normal(size=(128, 200)), rng.normal(size=(128, 200)))
  assert small.max_epsilon == 3.0 and large.max_epsilon == 5.0
  # Sampling noise alone finds ε ≈ log k for small k: the score of one distribution
  # against itself stays well below 1 and depends on N.
  assert 0.05 < small.score < 0.6 and 0.05 < large.score < 0.6
  shifted = metrics.forget_score(rng.normal(2.0, 1.0, (128, 200)), rng.normal(size=(128, 200)))
  assert shifted.score < large.score / 3


def test_bucket_points():
  eps = np.array([0.0, 0.49, 0.5, 1.2, 4.99, 5.0, np.inf])
  # N = 128: ceil(ln 127) = 5, ten buckets of 0.5
  assert fs.bucket_points(eps, 128).tolist() == [1, 1, 0.5, 0.25, 2**-9, 0, 0]


def test_logit_scaled_confidence_matches_its_definition():
  rng = np.random.default_rng(3)
  logits = rng.normal(scale=5.0, size=(50, 7))
  labels = rng.integers(0, 7, 50)
  logp = logits - logsumexp(logits, axis=1, keepdims=True)
  p = np.exp(logp)
  mask = np.eye(7, dtype=bool)[labels]
  want = logp[mask] - np.log(np.where(mask, 0, p).sum(1))
  np.testing.assert_allclose(metrics.logit_scaled_confidence(logits, labels), want, rtol=1e-12)
  # stable where the naive formula overflows or takes log 0
  big = metrics.logit_scaled_confidence(np.array([[1000.0, 0.0], [0.0, 1000.0]]), np.array([0, 0]))
  assert big.tolist() == [1000.0, -1000.0]


def test_final_score():
  assert metrics.final_score(
    0.4, retain_unlearned=99, retain_retrained=100, test_unlearned=95, test_retrained=100
  ) == pytest.approx(0.4 * 0.99 * 0.95)


def test_lira_separability_against_closed_forms():
  rng = np.random.default_rng(4)
  n, examples = 400, 40
  r = rng.normal(size=(n, examples))
  same = metrics.lira_separability(rng.normal(size=(n, examples)), r)
  assert abs(same.auc - 50) < 3 and abs(same.accuracy - 50) < 3
  # Equal variances, means 2 apart: the Bayes test's balanced accuracy is Φ(1) and the
  # AUC Φ(2/√2).
  from scipy.stats import norm

  shifted = metrics.lira_separability(rng.normal(2.0, 1.0, (n, examples)), r)
  assert abs(shifted.accuracy - 100 * norm.cdf(1.0)) < 2
  assert abs(shifted.auc - 100 * norm.cdf(2 / math.sqrt(2))) < 2
  assert shifted.per_example_auc.shape == (examples,)


@pytest.mark.parametrize(
  "u,r,match",
  [
    (np.zeros((4, 3)), np.zeros((4, 2)), "same examples"),
    (np.zeros((1, 3)), np.zeros((4, 3)), "at least 2 models"),
    (np.full((4, 3), np.nan), np.zeros((4, 3)), "finite"),
    # the ceiling was taken from the smaller count (issue 35)
    (np.zeros((8, 3)), np.zeros((16, 3)), "equal size.*got 8 unlearned and 16 retrained"),
    # at N = 2 no bucket is scored: every input scored 0.0
    (np.zeros((2, 3)), np.ones((2, 3)), "at least 3 models a population"),
  ],
)
def test_bad_input_is_refused(u, r, match):
  with pytest.raises(ValueError, match=match):
    metrics.forget_score(u, r)


def test_location_and_spread_in_closed_form():
  rng = np.random.default_rng(5)
  r = rng.normal(size=(2000, 10))
  u = 0.25 * rng.normal(size=(2000, 10)) - 1.5
  ls = metrics.location_and_spread(u, r)
  assert abs(ls.shift - 1.5) < 0.1 and abs(ls.spread_ratio - 0.25) < 0.02
  np.testing.assert_allclose(ls.per_example_shift, -1.5, atol=0.15)
  # a point mass against a spread: ratio 0; two point masses: 1 (equally wide)
  assert metrics.location_and_spread(np.ones((8, 1)), r[:8, :1]).spread_ratio == 0.0
  assert metrics.location_and_spread(np.ones((8, 1)), np.zeros((8, 1))).spread_ratio == 1.0
