import itertools
import math

import numpy as np
import pytest
import scipy.stats
from conftest import import_or_skip

from jaxunlearn.metrics import language as lm


def test_rouge_l_recall_matches_rouge_score():
  rouge_scorer = import_or_skip("rouge_score.rouge_scorer", "the test extra")
  scorer = rouge_scorer.RougeScorer(["rougeL"])
  rng = np.random.default_rng(0)
  words = ["the", "cat", "sat", "on", "a", "mat", "dog", "."]
  for _ in range(50):
    ref = list(rng.choice(words, size=rng.integers(1, 9)))
    pred = list(rng.choice(words, size=rng.integers(0, 9)))
    expected = scorer.score(" ".join(ref), " ".join(pred))["rougeL"].recall
    assert lm.rouge_l_recall(ref, pred) == pytest.approx(expected)


def test_rouge_l_recall_by_hand():
  assert lm.rouge_l_recall(["a", "b", "c", "d"], ["b", "x", "d"]) == 0.5  # LCS b d
  assert lm.rouge_l_recall(["."], ["a"]) == 0.0  # punctuation only: nothing to recall


def test_truth_ratio_and_its_aggregates_by_hand():
  para = np.array([0.5, 2.0])
  pert = np.array([[1.0, 2.0, 3.0], [0.5, 0.5, 0.5]])
  expected = np.exp(-pert.mean(1)) / np.exp(-para)  # exp(-2)/exp(-0.5), exp(-0.5)/exp(-2)
  assert np.allclose(lm.truth_ratios(para, pert), expected)
  r = np.array([0.25, 4.0, 1.0])
  assert lm.forget_truth_ratio(r) == pytest.approx((0.25 + 0.25 + 1.0) / 3)
  assert lm.retain_truth_ratio(r) == pytest.approx((0.75 + 0 + 0) / 3)


def test_probability_with_options_by_hand():
  got = lm.probability_with_options([math.log(2)], [[math.log(4), math.log(4)]])
  assert got[0] == pytest.approx(0.5 / (0.5 + 0.25 + 0.25))


def test_forget_quality_is_the_ks_p_value():
  assert lm.forget_quality([0.1, 0.2, 0.3], [0.1, 0.2, 0.3]) == 1.0
  # disjoint samples of 5 and 5: the exact two-sided p-value is 2 / C(10, 5)
  assert lm.forget_quality(np.arange(5), np.arange(5) + 10) == pytest.approx(2 / 252)


def test_model_utility_is_the_harmonic_mean():
  assert lm.model_utility([0.2, 0.5, 1.0]) == pytest.approx(3 / (5 + 2 + 1))
  assert lm.model_utility([0.9, 0.0]) == 0.0


def test_min_k_scores_by_hand():
  lp = [[-1.0, -5.0, -2.0, -4.0, -3.0, 0.0]]
  mask = [[1, 1, 1, 1, 1, 0]]
  assert lm.min_k_scores(lp, mask, k=0.4)[0] == pytest.approx(4.5)  # ⌊0.4·5⌋ = 2: −5, −4
  assert lm.min_k_scores(lp, mask, k=0.01)[0] == pytest.approx(5.0)  # at least one


def test_mia_auc_counts_pairs_and_privleak_is_relative():
  forget, holdout = np.array([0.1, 0.4, 0.35]), np.array([0.3, 0.8])
  pairs = [(h > f) + 0.5 * (h == f) for f, h in itertools.product(forget, holdout)]
  assert lm.mia_auc(forget, holdout) == pytest.approx(np.mean(pairs))
  assert lm.privleak(0.7, 0.7) == pytest.approx(0.0)
  assert lm.privleak(1.0, 0.5) == pytest.approx(-100.0)
  assert lm.privleak(0.25, 0.5) == pytest.approx(50.0)


def test_hmean_agrees_with_scipy():
  v = [0.3, 0.6, 0.9]
  assert lm.model_utility(v) == pytest.approx(scipy.stats.hmean(v))
