"""Tests for jaxunlearn.metrics on hand-made predictions with known answers."""

import doctest
import math

import numpy as np
import pytest

from jaxunlearn import metrics
from jaxunlearn.metrics import (
  DIRECTION,
  METRIC_KEYS,
  accuracy,
  avg_gap,
  evaluate_predictions,
  format_mean_std,
  mean_std,
  mia_efficacy,
  mia_features,
  retain_accuracy,
  test_accuracy,
  unlearning_accuracy,
)

# ---------------------------------------------------------------------------
# Accuracies
# ---------------------------------------------------------------------------

LOGITS = np.array(
  [
    [3.0, 1.0, 0.0],  # pred 0
    [0.0, 2.0, 1.0],  # pred 1
    [0.0, 1.0, 5.0],  # pred 2
    [4.0, 0.0, 0.0],  # pred 0
  ]
)


def test_accuracy_hand_computed():
  assert accuracy(LOGITS, [0, 1, 2, 0]) == 100.0
  assert accuracy(LOGITS, [0, 1, 2, 1]) == 75.0
  assert accuracy(LOGITS, [1, 0, 0, 1]) == 0.0
  assert isinstance(accuracy(LOGITS, [0, 1, 2, 0]), float)


def test_unlearning_accuracy_is_100_minus_accuracy():
  assert unlearning_accuracy(LOGITS, [0, 1, 2, 1]) == 25.0
  assert unlearning_accuracy(LOGITS, [1, 0, 0, 1]) == 100.0
  assert unlearning_accuracy(LOGITS, [0, 1, 2, 0]) == 0.0


def test_retain_and_test_accuracy_are_accuracy():
  labels = [0, 2, 2, 0]
  assert retain_accuracy(LOGITS, labels) == accuracy(LOGITS, labels) == 75.0
  assert test_accuracy(LOGITS, labels) == 75.0


def test_accuracy_accepts_jax_arrays_and_float_int_labels():
  import jax.numpy as jnp

  assert accuracy(jnp.asarray(LOGITS, jnp.float32), jnp.array([0, 1, 2, 1])) == 75.0
  assert accuracy(LOGITS, np.array([0.0, 1.0, 2.0, 1.0])) == 75.0


def test_accuracy_ties_resolve_to_lowest_index():
  assert accuracy([[1.0, 1.0]], [0]) == 100.0


# ---------------------------------------------------------------------------
# MIA features
# ---------------------------------------------------------------------------


def test_mia_features_hand_computed():
  f = mia_features([[0.0, math.log(3.0)], [0.0, 0.0]], [1, 0])
  assert f.shape == (2, 2)
  # probs [.25, .75]
  h1 = -(0.25 * math.log(0.25) + 0.75 * math.log(0.75))
  np.testing.assert_allclose(f[0], [0.75, h1], rtol=1e-12)
  # uniform over 2 classes: confidence .5, entropy log 2
  np.testing.assert_allclose(f[1], [0.5, math.log(2.0)], rtol=1e-12)


def test_mia_features_confidence_uses_true_label():
  f = mia_features([[0.0, math.log(3.0)]], [0])
  np.testing.assert_allclose(f[0, 0], 0.25, rtol=1e-12)


def test_mia_features_numerically_stable_for_huge_logits():
  f = mia_features([[1000.0, 0.0, -1000.0], [1e4, 1e4, 1e4]], [0, 2])
  assert np.all(np.isfinite(f))
  np.testing.assert_allclose(f[0], [1.0, 0.0], atol=1e-12)
  np.testing.assert_allclose(f[1], [1 / 3, math.log(3.0)], rtol=1e-12)
  assert np.all(f[:, 1] >= 0.0)


def test_mia_features_shift_invariant():
  rng = np.random.default_rng(0)
  z = rng.normal(size=(7, 5))
  y = rng.integers(0, 5, 7)
  np.testing.assert_allclose(mia_features(z, y), mia_features(z + 123.0, y), atol=1e-10)


# ---------------------------------------------------------------------------
# MIA efficacy
# ---------------------------------------------------------------------------


def _preds(rng, n, margin, num_classes=3, noise=0.3):
  """Logits whose true-class margin is about `margin` (confidence grows with it)."""
  labels = rng.integers(0, num_classes, n)
  logits = rng.normal(0.0, noise, (n, num_classes))
  logits[np.arange(n), labels] += margin
  return logits, labels


@pytest.fixture
def mia_sets():
  rng = np.random.default_rng(42)
  members = _preds(rng, 120, 8.0)  # confident, low entropy
  nonmembers = _preds(rng, 80, 0.3)  # near uniform
  forget_member_like = _preds(rng, 40, 8.0)
  forget_nonmember_like = _preds(rng, 40, 0.3)
  return members, nonmembers, forget_member_like, forget_nonmember_like


def test_mia_efficacy_member_like_forget_set_is_near_0(mia_sets):
  members, nonmembers, forget_in, _ = mia_sets
  assert mia_efficacy(*members, *nonmembers, *forget_in) <= 5.0


def test_mia_efficacy_nonmember_like_forget_set_is_near_100(mia_sets):
  members, nonmembers, _, forget_out = mia_sets
  assert mia_efficacy(*members, *nonmembers, *forget_out) >= 95.0


def test_mia_efficacy_mixed_forget_set_is_in_between(mia_sets):
  members, nonmembers, forget_in, forget_out = mia_sets
  mixed = (
    np.concatenate([forget_in[0], forget_out[0]]),
    np.concatenate([forget_in[1], forget_out[1]]),
  )
  value = mia_efficacy(*members, *nonmembers, *mixed)
  assert 40.0 <= value <= 60.0


def test_mia_efficacy_deterministic_and_seeded(mia_sets):
  rng = np.random.default_rng(1)
  # Overlapping groups so the subsample actually matters.
  members = _preds(rng, 300, 2.0, noise=1.0)
  nonmembers = _preds(rng, 200, 1.0, noise=1.0)
  forget = _preds(rng, 200, 1.5, noise=1.0)
  kw = dict(max_train=50)
  a = mia_efficacy(*members, *nonmembers, *forget, seed=3, **kw)
  b = mia_efficacy(*members, *nonmembers, *forget, seed=3, **kw)
  assert a == b
  values = {mia_efficacy(*members, *nonmembers, *forget, seed=s, **kw) for s in range(6)}
  assert len(values) > 1  # the seed does change the subsample
  assert all(0.0 <= v <= 100.0 for v in values)


def test_mia_efficacy_max_train_and_balancing(mia_sets):
  members, nonmembers, forget_in, forget_out = mia_sets
  assert mia_efficacy(*members, *nonmembers, *forget_in, max_train=10) <= 5.0
  assert mia_efficacy(*members, *nonmembers, *forget_out, max_train=10) >= 95.0
  # Unbalanced other way round (more non-members than members) still works.
  assert mia_efficacy(members[0][:20], members[1][:20], *nonmembers, *forget_out) >= 95.0


def test_mia_efficacy_bad_max_train(mia_sets):
  members, nonmembers, forget_in, _ = mia_sets
  for bad in (0, -1, 2.5, True):
    with pytest.raises(ValueError, match="max_train"):
      mia_efficacy(*members, *nonmembers, *forget_in, max_train=bad)


# ---------------------------------------------------------------------------
# evaluate_predictions, avg_gap, DIRECTION
# ---------------------------------------------------------------------------


def test_evaluate_predictions(mia_sets):
  members, nonmembers, _, forget_out = mia_sets
  forget = (forget_out[0], forget_out[1])
  m = evaluate_predictions(forget, members, nonmembers, seed=0)
  assert set(m) == set(METRIC_KEYS)
  assert m["UA"] == unlearning_accuracy(*forget)
  assert m["RA"] == accuracy(*members) == 100.0
  assert m["TA"] == accuracy(*nonmembers)
  assert m["MIA"] == mia_efficacy(*members, *nonmembers, *forget, seed=0)
  assert all(isinstance(v, float) for v in m.values())


def test_evaluate_predictions_mia_retain_override(mia_sets):
  members, nonmembers, forget_in, _ = mia_sets
  # RA comes from `retain`, the attack's members from `mia_retain`: with the
  # non-member-like set as members, the member-like forget set (confident) is
  # closer to the non-members than to the members, so MIA flips to ~100.
  retain_ra = (members[0][:10], members[1][:10])
  m = evaluate_predictions(forget_in, retain_ra, members, mia_retain=nonmembers)
  assert m["RA"] == 100.0
  assert m["MIA"] == mia_efficacy(*nonmembers, *members, *forget_in)
  assert m["MIA"] >= 95.0


def test_evaluate_predictions_bad_pair():
  with pytest.raises(ValueError, match="pair"):
    evaluate_predictions(LOGITS, (LOGITS, [0, 1, 2, 0]), (LOGITS, [0, 1, 2, 0]))


def test_avg_gap_known_value():
  m = {"UA": 10.0, "RA": 99.0, "TA": 90.0, "MIA": 20.0, "extra": 1.0}
  ref = {"UA": 12.0, "RA": 100.0, "TA": 91.0, "MIA": 16.0}
  assert avg_gap(m, ref) == pytest.approx((2 + 1 + 1 + 4) / 4)
  assert avg_gap(m, ref, keys=("UA", "MIA")) == pytest.approx(3.0)
  assert avg_gap(ref, ref) == 0.0


def test_avg_gap_missing_key():
  with pytest.raises(ValueError, match="missing.*MIA"):
    avg_gap({"UA": 1, "RA": 1, "TA": 1}, {"UA": 1, "RA": 1, "TA": 1, "MIA": 1})
  with pytest.raises(ValueError, match="reference"):
    avg_gap({"UA": 1, "RA": 1, "TA": 1, "MIA": 1}, {"UA": 1})
  with pytest.raises(ValueError):
    avg_gap({"UA": 1}, {"UA": 1}, keys=())
  with pytest.raises(ValueError, match="non-finite"):
    avg_gap({"UA": float("nan")}, {"UA": 1}, keys=("UA",))


def test_direction():
  for k in METRIC_KEYS + ("AvgGap", "RunTime"):
    assert DIRECTION[k] in ("higher", "lower", "closer to retrain")
  assert DIRECTION["RA"] == DIRECTION["TA"] == "higher"
  assert DIRECTION["UA"] == DIRECTION["MIA"] == "closer to retrain"
  assert DIRECTION["AvgGap"] == "lower"


# ---------------------------------------------------------------------------
# mean_std / format_mean_std
# ---------------------------------------------------------------------------


def test_mean_std_known_values():
  assert mean_std([1.0, 2.0, 3.0]) == (2.0, 1.0)
  mean, std = mean_std([97.2, 97.8])
  assert mean == pytest.approx(97.5)
  assert std == pytest.approx(math.sqrt(0.18))  # ddof=1: sqrt((.09+.09)/1)
  assert mean_std([5.0]) == (5.0, 0.0)
  assert mean_std(np.array([4, 4, 4])) == (4.0, 0.0)
  assert mean_std(v for v in [1.0, 3.0]) == (2.0, pytest.approx(math.sqrt(2.0)))


def test_mean_std_bad_input():
  with pytest.raises(ValueError, match="at least one"):
    mean_std([])
  with pytest.raises(ValueError, match="NaN"):
    mean_std([1.0, float("nan")])


def test_format_mean_std():
  assert format_mean_std(97.5, 0.3) == "97.50 ± 0.30"
  assert format_mean_std(97.5, 0.3, digits=1) == "97.5 ± 0.3"
  assert format_mean_std(*mean_std([1, 2, 3]), digits=0) == "2 ± 1"


# ---------------------------------------------------------------------------
# Bad input
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
  "fn", [accuracy, unlearning_accuracy, retain_accuracy, test_accuracy, mia_features]
)
def test_bad_input_raises_value_error(fn):
  with pytest.raises(ValueError, match="lengths must match"):
    fn(LOGITS, [0, 1, 2])
  with pytest.raises(ValueError, match="empty"):
    fn(np.zeros((0, 3)), np.zeros((0,), int))
  bad = LOGITS.copy()
  bad[1, 2] = np.nan
  with pytest.raises(ValueError, match="NaN"):
    fn(bad, [0, 1, 2, 0])
  bad[1, 2] = np.inf
  with pytest.raises(ValueError, match="NaN or inf"):
    fn(bad, [0, 1, 2, 0])
  with pytest.raises(ValueError, match="shape"):
    fn(LOGITS[0], [0])
  with pytest.raises(ValueError, match="shape"):
    fn(LOGITS, [[0, 1, 2, 0]])
  with pytest.raises(ValueError, match=r"\[0, 3\)"):
    fn(LOGITS, [0, 1, 3, 0])
  with pytest.raises(ValueError, match=r"\[0, 3\)"):
    fn(LOGITS, [0, -1, 2, 0])
  with pytest.raises(ValueError, match="integer"):
    fn(LOGITS, [0.5, 1, 2, 0])


def test_mia_efficacy_bad_input_names_the_set(mia_sets):
  members, nonmembers, forget_in, _ = mia_sets
  bad = forget_in[0].copy()
  bad[0, 0] = np.nan
  with pytest.raises(ValueError, match=r"forget.*NaN"):
    mia_efficacy(*members, *nonmembers, bad, forget_in[1])
  with pytest.raises(ValueError, match=r"test.*empty"):
    mia_efficacy(*members, np.zeros((0, 3)), np.zeros((0,), int), *forget_in)
  with pytest.raises(ValueError, match=r"retain.*lengths"):
    mia_efficacy(members[0], members[1][:-1], *nonmembers, *forget_in)


# ---------------------------------------------------------------------------
# Docstring examples run
# ---------------------------------------------------------------------------


def test_docstring_examples():
  result = doctest.testmod(metrics, optionflags=doctest.NORMALIZE_WHITESPACE)
  assert result.attempted > 10
  assert result.failed == 0


def test_evaluate_predictions_averages_mia_over_attack_seeds():
  rng = np.random.default_rng(3)

  def preds(n, margin):
    logits = rng.normal(0, 1.0, (n, 3))
    labels = rng.integers(0, 3, n)
    logits[np.arange(n), labels] += margin
    return logits, labels

  forget, retain, test = preds(40, 2.0), preds(200, 3.0), preds(120, 1.5)
  single = [evaluate_predictions(forget, retain, test, seed=s)["MIA"] for s in (4, 5, 6)]
  assert len(set(single)) > 1  # the subsample matters here, so averaging means something
  averaged = evaluate_predictions(forget, retain, test, seed=4, mia_seeds=3)["MIA"]
  assert averaged == pytest.approx(np.mean(single))
