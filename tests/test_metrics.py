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
  z = [[0.0, math.log(3.0)], [0.0, 0.0]]  # probs [.25, .75] and [.5, .5]
  h1 = -(0.25 * math.log(0.25) + 0.75 * math.log(0.75))
  np.testing.assert_allclose(mia_features(z, [1, 0], "confidence")[:, 0], [0.75, 0.5])
  np.testing.assert_allclose(mia_features(z, [1, 0], "entropy")[:, 0], [h1, math.log(2.0)])
  np.testing.assert_allclose(mia_features(z, [1, 0], "prob"), [[0.25, 0.75], [0.5, 0.5]])
  np.testing.assert_array_equal(mia_features(z, [0, 0], "correctness")[:, 0], [0.0, 1.0])


def test_mia_features_numerically_stable_for_huge_logits():
  z = [[1000.0, 0.0, -1000.0], [1e4, 1e4, 1e4]]
  np.testing.assert_allclose(mia_features(z, [0, 2], "confidence")[:, 0], [1.0, 1 / 3])
  h = mia_features(z, [0, 2], "entropy")[:, 0]
  np.testing.assert_allclose(h, [0.0, math.log(3.0)], atol=1e-12)
  assert np.all(np.isfinite(mia_features(z, [0, 2], "m_entropy")))


def test_mia_features_shift_invariant():
  rng = np.random.default_rng(0)
  z = rng.normal(size=(7, 5))
  y = rng.integers(0, 5, 7)
  for feature in metrics.MIA_FEATURES:
    np.testing.assert_allclose(
      mia_features(z, y, feature), mia_features(z + 123.0, y, feature), atol=1e-9
    )


def _salun_features(logits, labels):
  """SalUn's ``collect_prob``/``SVC_MIA`` feature code, transcribed to numpy line by line
  (torch's column-indexing semantics kept), as the independent reference."""
  from scipy.special import softmax

  prob = softmax(np.asarray(logits, np.float64), axis=-1)
  labels = np.asarray(labels)
  log_prob = np.where(prob > 0, np.log(np.where(prob > 0, prob, 1)), np.log(1e-30))
  reverse_prob = 1 - prob
  log_reverse_prob = np.where(prob > 0, np.log(np.where(prob > 0, prob, 1)), np.log(1e-30))
  modified_probs = prob.copy()
  modified_probs[:, labels] = reverse_prob[:, labels]
  modified_log_probs = log_reverse_prob.copy()
  modified_log_probs[:, labels] = log_prob[:, labels]
  return {
    "correctness": (np.argmax(prob, axis=1) == labels).astype(int),
    "confidence": prob[np.arange(len(labels)), labels][:, None],
    "entropy": -np.sum(np.where(prob > 0, prob * np.log(np.where(prob > 0, prob, 1)), 0.0), -1),
    "m_entropy": -np.sum(modified_probs * modified_log_probs, axis=-1),
    "prob": prob,
  }


def _salun_attack(members, nonmembers, forget, feature):
  """SalUn's ``SVC_fit_predict`` on the features above: members are the first len(test)."""
  from sklearn.svm import SVC

  n = len(nonmembers[1])
  f_in = _salun_features(members[0][:n], members[1][:n])[feature]
  f_out = _salun_features(*nonmembers)[feature]
  f_target = _salun_features(*forget)[feature]
  x = np.concatenate([f_in.reshape(len(f_in), -1), f_out.reshape(n, -1)])
  y = np.concatenate([np.ones(len(f_in)), np.zeros(n)])
  clf = SVC(C=3, gamma="auto", kernel="rbf").fit(x, y)
  return 100 * (1 - clf.predict(f_target.reshape(len(forget[1]), -1)).mean())


@pytest.mark.parametrize("feature", ["confidence", "entropy", "m_entropy", "prob", "correctness"])
def test_mia_features_equal_salun_code(feature):
  rng = np.random.default_rng(5)
  logits = rng.normal(0, 3, (30, 4))
  logits[0, 2] = -200.0  # a probability that underflows to 0 (the 1e-30 floor)
  labels = rng.integers(0, 3, 30)  # class 3 absent: m_entropy's set-of-labels quirk shows
  ours = mia_features(logits, labels, feature)
  ref = np.asarray(_salun_features(logits, labels)[feature], np.float64).reshape(30, -1)
  np.testing.assert_allclose(ours, ref, rtol=1e-10, atol=1e-12)


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


@pytest.mark.parametrize("feature", ["confidence", "entropy", "m_entropy", "prob", "correctness"])
def test_mia_efficacy_equals_salun_reference(feature):
  rng = np.random.default_rng(7)
  # Overlapping groups, so the decision boundary (not just separability) is compared.
  members = _preds(rng, 300, 2.0, noise=1.0)
  nonmembers = _preds(rng, 200, 1.0, noise=1.0)
  forget = _preds(rng, 150, 1.5, noise=1.0)
  ours = mia_efficacy(*members, *nonmembers, *forget, feature=feature)
  assert ours == pytest.approx(_salun_attack(members, nonmembers, forget, feature), abs=1e-9)
  assert 0.0 < ours < 100.0


def test_mia_efficacy_uses_the_first_len_test_members(mia_sets):
  members, nonmembers, forget_in, _ = mia_sets
  # Members beyond len(test) never reach the attack: appending non-member-like rows
  # after them changes nothing.
  padded = (
    np.concatenate([members[0][:80], nonmembers[0]]),
    np.concatenate([members[1][:80], nonmembers[1]]),
  )
  assert mia_efficacy(*padded, *nonmembers, *forget_in) == mia_efficacy(
    *members, *nonmembers, *forget_in
  )


def test_mia_efficacy_member_like_forget_set_is_near_0(mia_sets):
  members, nonmembers, forget_in, _ = mia_sets
  assert mia_efficacy(*members, *nonmembers, *forget_in) <= 5.0


def test_mia_efficacy_nonmember_like_forget_set_is_near_100(mia_sets):
  members, nonmembers, _, forget_out = mia_sets
  assert mia_efficacy(*members, *nonmembers, *forget_out) >= 95.0


def test_mia_efficacy_unknown_feature(mia_sets):
  members, nonmembers, forget_in, _ = mia_sets
  with pytest.raises(ValueError, match="unknown MIA feature"):
    mia_efficacy(*members, *nonmembers, *forget_in, feature="loss")


# ---------------------------------------------------------------------------
# Loss AUC
# ---------------------------------------------------------------------------


def test_loss_auc_equals_sklearn_roc_auc():
  from sklearn.metrics import roc_auc_score

  rng = np.random.default_rng(3)
  forget, test = _preds(rng, 60, 2.0, noise=1.0), _preds(rng, 90, 1.0, noise=1.0)
  forget[0][:5] = test[0][:5]  # exact ties count half, as in the AUC
  forget[1][:5] = test[1][:5]
  lf = metrics.per_example_loss(*forget)
  lt = metrics.per_example_loss(*test)
  # member = forget, scored by -loss
  want = 100 * roc_auc_score(np.r_[np.ones(60), np.zeros(90)], -np.r_[lf, lt])
  assert metrics.loss_auc(*forget, *test) == pytest.approx(want, abs=1e-9)


def test_loss_auc_directions():
  rng = np.random.default_rng(4)
  seen, unseen = _preds(rng, 50, 8.0), _preds(rng, 50, 0.3)
  assert metrics.loss_auc(*seen, *unseen) > 95  # memorised: lower loss than unseen
  assert metrics.loss_auc(*unseen, *seen) < 5  # pushed beyond unseen data
  assert metrics.loss_auc(*unseen, *unseen) == 50.0


# ---------------------------------------------------------------------------
# evaluate_predictions, avg_gap, DIRECTION
# ---------------------------------------------------------------------------


def test_evaluate_predictions(mia_sets):
  members, nonmembers, _, forget_out = mia_sets
  forget = (forget_out[0], forget_out[1])
  m = evaluate_predictions(forget, members, nonmembers)
  assert set(m) == set(METRIC_KEYS) | {"LossAUC"}
  assert m["UA"] == unlearning_accuracy(*forget)
  assert m["RA"] == accuracy(*members) == 100.0
  assert m["TA"] == accuracy(*nonmembers)
  assert m["MIA"] == mia_efficacy(*members, *nonmembers, *forget)
  assert m["LossAUC"] == metrics.loss_auc(*forget, *nonmembers)
  assert all(isinstance(v, float) for v in m.values())
  m2 = evaluate_predictions(forget, members, nonmembers, auc_test=members)
  assert m2["LossAUC"] == metrics.loss_auc(*forget, *members)


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
