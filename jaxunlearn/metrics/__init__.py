"""Unlearning metrics computed from predictions (logits and integer labels).

This module is on the ground floor of ``jaxunlearn``: it imports nothing else
from the library and never sees a model.  Every function takes per-example
logits of shape ``(n, num_classes)`` and integer labels of shape ``(n,)``
(NumPy or JAX arrays, or anything ``np.asarray`` accepts), so the metrics do not
depend on how the predictions were produced.

Metrics and their direction of better (see also :data:`DIRECTION`):

* **UA** -- unlearning accuracy, ``100 - accuracy`` on the forget set with the
  true labels.  Higher means more forgetting, but the *target* is the UA of a
  model retrained from scratch without the forget set (not 100): forgetting
  more than retraining would is itself a signal an attacker can read.
* **RA** -- retain accuracy, accuracy on the retain set.  Higher is better.
* **TA** -- test accuracy, accuracy on held-out test data.  Higher is better.
  For class-wise forgetting the test set holds only the *remaining* classes.
* **MIA** -- MIA-efficacy, the percentage of forget examples that a membership
  classifier calls non-members: SalUn's attack (an RBF SVC, C = 3, on the unscaled
  true-label confidence, trained on the first ``len(test)`` retain examples as
  members vs the test set as non-members), as the literature reports it. Higher
  means more forgetting; the target is the retrained model's value.
* **LossAUC** -- ROC AUC (percent) of telling forget examples from unseen test
  examples by their loss; 50 = indistinguishable. Threshold-free; reported beside
  MIA, not part of Avg. Gap.
* **AvgGap** -- mean absolute difference to the retrained model over UA, RA,
  TA and MIA.  Lower is better.

All accuracies and MIA-efficacy are percentages in ``[0, 100]``.

Example:
  >>> import numpy as np
  >>> from jaxunlearn import metrics
  >>> logits = np.array([[2.0, 0.0], [0.0, 1.0], [3.0, -1.0], [0.0, 5.0]])
  >>> labels = np.array([0, 1, 1, 1])
  >>> metrics.accuracy(logits, labels)
  75.0
  >>> metrics.unlearning_accuracy(logits, labels)
  25.0
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

__all__ = [
  "METRIC_KEYS",
  "REPORTED_KEYS",
  "DIRECTION",
  "accuracy",
  "unlearning_accuracy",
  "retain_accuracy",
  "test_accuracy",
  "log_softmax",
  "MIA_FEATURES",
  "mia_features",
  "mia_efficacy",
  "per_example_loss",
  "loss_auc",
  "evaluate_predictions",
  "avg_gap",
  "mean_std",
  "ci95",
  "format_mean_std",
  "logit_scaled_confidence",
  "forget_score",
  "example_epsilons",
  "final_score",
  "lira_separability",
  "ForgetScore",
  "LiraSeparability",
  "location_and_spread",
  "LocationSpread",
]

#: The four metrics reported for every unlearning run, in table order.
METRIC_KEYS: tuple[str, ...] = ("UA", "RA", "TA", "MIA")

#: Everything :func:`evaluate_predictions` reports: the four above and the loss AUC (which
#: is not part of :func:`avg_gap`).
REPORTED_KEYS: tuple[str, ...] = (*METRIC_KEYS, "LossAUC")

#: Direction of better for each reported quantity, for table captions.
#: ``"closer to retrain"`` means the gold standard is the retrained model's value
#: (a smaller ``|value - retrain|`` is better), not an extreme.
DIRECTION: dict[str, str] = {
  "UA": "closer to retrain",  # 100 - forget accuracy; higher = more forgetting
  "RA": "higher",  # retain accuracy
  "TA": "higher",  # test accuracy (remaining classes if class-wise)
  "MIA": "closer to retrain",  # % forget examples judged non-members
  "LossAUC": "closer to retrain",  # AUC forget vs unseen by loss; 50 = indistinguishable
  "AvgGap": "lower",  # mean |metric - retrain| over METRIC_KEYS
  "RunTime": "lower",  # wall-clock seconds of the unlearning run
}


# ---------------------------------------------------------------------------
# Input validation
# ---------------------------------------------------------------------------


def _check_logits_labels(
  logits: Any, labels: Any, name: str = "inputs"
) -> tuple[np.ndarray, np.ndarray]:
  """Validates and converts a (logits, labels) pair to NumPy arrays."""
  logits = np.asarray(logits)
  labels = np.asarray(labels)
  if logits.ndim != 2:
    raise ValueError(f"{name}: logits must have shape (n, num_classes), got {logits.shape}.")
  if labels.ndim != 1:
    raise ValueError(f"{name}: labels must have shape (n,), got {labels.shape}.")
  n, num_classes = logits.shape
  if labels.shape[0] != n:
    raise ValueError(f"{name}: {n} logits rows but {labels.shape[0]} labels (lengths must match).")
  if n == 0:
    raise ValueError(f"{name}: empty arrays (need at least one example).")
  if num_classes == 0:
    raise ValueError(f"{name}: logits have zero classes.")
  if not np.issubdtype(logits.dtype, np.number) or np.issubdtype(logits.dtype, np.complexfloating):
    raise ValueError(f"{name}: logits must be real numbers, got dtype {logits.dtype}.")
  logits = logits.astype(np.float64)
  if not np.all(np.isfinite(logits)):
    bad = int(np.sum(~np.all(np.isfinite(logits), axis=1)))
    raise ValueError(f"{name}: logits contain NaN or inf ({bad} of {n} rows).")
  if np.issubdtype(labels.dtype, np.integer) or (
    np.issubdtype(labels.dtype, np.floating)
    and np.all(np.isfinite(labels))
    and np.all(labels == np.round(labels))
  ):
    labels = labels.astype(np.int64)
  else:
    raise ValueError(f"{name}: labels must be integer class indices, got dtype {labels.dtype}.")
  if labels.min() < 0 or labels.max() >= num_classes:
    raise ValueError(
      f"{name}: labels must lie in [0, {num_classes}), got range [{labels.min()}, {labels.max()}]."
    )
  return logits, labels


# ---------------------------------------------------------------------------
# Accuracies
# ---------------------------------------------------------------------------


def accuracy(logits: Any, labels: Any) -> float:
  """Top-1 accuracy in percent: ``100 * mean(argmax(logits, -1) == labels)``.

  Higher is better.  Ties in the logits resolve to the lowest class index
  (``np.argmax``).

  Args:
    logits: array of shape ``(n, num_classes)``, finite.
    labels: integer array of shape ``(n,)`` with values in ``[0, num_classes)``.

  Returns:
    A Python float in ``[0, 100]``.

  Raises:
    ValueError: on mismatched lengths, empty input, non-finite logits or
      out-of-range labels.

  Examples:
    >>> accuracy([[1.0, 0.0], [0.0, 1.0]], [0, 0])
    50.0
  """
  logits, labels = _check_logits_labels(logits, labels, "accuracy")
  return float(100.0 * np.mean(np.argmax(logits, axis=-1) == labels))


def unlearning_accuracy(forget_logits: Any, forget_labels: Any) -> float:
  """Unlearning accuracy UA = ``100 - accuracy`` on the forget set (true labels).

  Higher means the model gets more forget examples wrong, i.e. more
  forgetting.  The target is the retrained model's UA, not 100: for random
  forgetting a retrained model still classifies most forget examples
  correctly (they resemble the retain data), so UA near 100 over-forgets.

  Examples:
    >>> unlearning_accuracy([[1.0, 0.0], [1.0, 0.0], [0.0, 2.0]], [1, 1, 1])
    66.66666666666667
  """
  return 100.0 - accuracy(forget_logits, forget_labels)


def retain_accuracy(retain_logits: Any, retain_labels: Any) -> float:
  """Retain accuracy RA: :func:`accuracy` on the retain set.  Higher is better.

  Examples:
    >>> retain_accuracy([[0.0, 3.0]], [1])
    100.0
  """
  return accuracy(retain_logits, retain_labels)


def test_accuracy(test_logits: Any, test_labels: Any) -> float:
  """Test accuracy TA: :func:`accuracy` on held-out test data.  Higher is better.

  For class-wise forgetting, pass only the test examples of the *remaining*
  classes (the forgotten class is removed from the test set).

  Examples:
    >>> test_accuracy([[0.0, 3.0], [3.0, 0.0]], [1, 1])
    50.0
  """
  return accuracy(test_logits, test_labels)


# Not a pytest test despite the name.
test_accuracy.__test__ = False  # type: ignore[attr-defined]


# ---------------------------------------------------------------------------
# Membership-inference features and MIA-efficacy
# ---------------------------------------------------------------------------


def log_softmax(logits: Any) -> np.ndarray:
  """Numerically stable log-softmax over the last axis (float64).

  ``log p_k = z_k - max(z) - log(sum_j exp(z_j - max(z)))``.

  Examples:
    >>> np.round(np.exp(log_softmax([[0.0, np.log(3.0)]])), 6)
    array([[0.25, 0.75]])
  """
  z = np.asarray(logits, dtype=np.float64)
  z = z - np.max(z, axis=-1, keepdims=True)
  return z - np.log(np.sum(np.exp(z), axis=-1, keepdims=True))


#: The per-example features of SalUn's attack (``SVC_MIA``); ``confidence`` is the one
#: the unlearning literature reports as MIA-efficacy.
MIA_FEATURES: tuple[str, ...] = ("confidence", "entropy", "m_entropy", "prob", "correctness")

# SalUn floors log p at log(1e-30) where p underflows to 0 (only in m_entropy).
_LOG_FLOOR = np.log(1e-30)


def mia_features(logits: Any, labels: Any, feature: str = "confidence") -> np.ndarray:
  """Per-example features of the field's membership attack (SalUn's ``SVC_MIA``).

  From the softmax ``p`` of the logits (no temperature), an array ``(n, d)``:

  * ``confidence``: ``p[label]``, the probability of the true label (d = 1);
  * ``entropy``: ``-sum_k p_k log p_k``, terms with ``p_k = 0`` dropped (d = 1);
  * ``m_entropy``: as SalUn's code computes it: with ``L`` the set of labels present in
    the whole set passed in, ``-sum_{k in L} (1 - p_k) log p_k - sum_{k not in L} p_k log
    p_k`` (log p floored at log 1e-30). This is *not* Song & Mittal's modified entropy
    (SalUn indexes columns by the set's labels, not each example's); it is reproduced so
    that numbers stay comparable (d = 1);
  * ``prob``: the whole softmax vector (d = number of classes);
  * ``correctness``: 1 if the argmax is the label, else 0 (d = 1).

  Examples:
    >>> f = mia_features([[0.0, np.log(3.0)]], [1], "confidence")  # p = [.25, .75]
    >>> np.round(f, 6).tolist()  # the last bit of the softmax differs across numpy builds
    [[0.75]]
    >>> np.round(mia_features([[0.0, np.log(3.0)]], [1], "entropy"), 6).tolist()
    [[0.562335]]
  """
  logits, labels = _check_logits_labels(logits, labels, "mia_features")
  if feature not in MIA_FEATURES:
    raise ValueError(f"unknown MIA feature {feature!r}; choose one of {', '.join(MIA_FEATURES)}")
  logp = log_softmax(logits)
  p = np.exp(logp)
  n = labels.shape[0]
  if feature == "confidence":
    out = p[np.arange(n), labels][:, None]
  elif feature == "entropy":
    out = -np.sum(np.where(p > 0, p * logp, 0.0), axis=-1, keepdims=True)
  elif feature == "m_entropy":
    floored = np.where(p > 0, logp, _LOG_FLOOR)
    present = np.zeros(p.shape[1], bool)
    present[np.unique(labels)] = True
    weight = np.where(present[None, :], 1.0 - p, p)
    out = -np.sum(weight * floored, axis=-1, keepdims=True)
  elif feature == "prob":
    out = p
  else:  # correctness
    out = (np.argmax(logits, axis=-1) == labels).astype(np.float64)[:, None]
  return np.maximum(out, 0.0) if feature in ("entropy", "m_entropy") else out


def mia_efficacy(
  retain_logits: Any,
  retain_labels: Any,
  test_logits: Any,
  test_labels: Any,
  forget_logits: Any,
  forget_labels: Any,
  *,
  feature: str = "confidence",
) -> float:
  """MIA-efficacy as the unlearning literature computes it (SalUn's ``SVC_MIA``).

  The attack of Jia et al. (2023) and SalUn (Fan et al., 2024), which the IGS paper's
  code copies:

  1. Members: the first ``len(test)`` retain examples (in the order given — pass the
     retain set in dataset order); non-members: the whole test set (for class-wise
     forgetting, the test examples of the remaining classes).
  2. One ``sklearn.svm.SVC(C=3, gamma="auto", kernel="rbf")`` on the *unscaled*
     ``feature`` of :func:`mia_features` (``confidence`` by default, what papers report),
     members labelled 1, non-members 0.
  3. Result: ``100 * (1 - mean(predict(forget)))``, the share of forget examples the
     attack calls non-members.

  Higher means the forget set looks more like unseen data (more forgetting); the target
  is the value a retrained model gets, not 100. Deterministic: no subsampling, and the
  SVC is deterministic.

  Examples:
    >>> rng = np.random.default_rng(0)
    >>> def preds(n, margin):  # 2-class logits with the given true-class margin
    ...   return np.stack([np.zeros(n), margin + rng.normal(0, 0.3, n)], 1), np.ones(n, int)
    >>> member, nonmember = preds(50, 6.0), preds(50, 0.5)
    >>> mia_efficacy(*member, *nonmember, *preds(20, 0.5))  # forget looks unseen
    100.0
    >>> mia_efficacy(*member, *nonmember, *preds(20, 6.0))  # forget looks trained-on
    0.0
  """
  from sklearn.svm import SVC

  x_in = _mia_features_named(retain_logits, retain_labels, "mia_efficacy (retain)", feature)
  x_out = _mia_features_named(test_logits, test_labels, "mia_efficacy (test)", feature)
  x_forget = _mia_features_named(forget_logits, forget_labels, "mia_efficacy (forget)", feature)
  x_in = x_in[: x_out.shape[0]]
  x = np.concatenate([x_in, x_out], axis=0)
  y = np.concatenate([np.ones(len(x_in), np.int64), np.zeros(len(x_out), np.int64)])
  clf = SVC(C=3, gamma="auto", kernel="rbf")
  clf.fit(x, y)
  return float(100.0 * (1.0 - np.mean(clf.predict(x_forget))))


def _mia_features_named(logits: Any, labels: Any, name: str, feature: str) -> np.ndarray:
  logits, labels = _check_logits_labels(logits, labels, name)
  return mia_features(logits, labels, feature)


def per_example_loss(logits: Any, labels: Any) -> np.ndarray:
  """Cross-entropy of each example, ``-log softmax(logits)[label]`` (float64).

  Examples:
    >>> np.round(per_example_loss([[0.0, 0.0]], [1]), 6).tolist()  # log 2
    [0.693147]
  """
  logits, labels = _check_logits_labels(logits, labels, "per_example_loss")
  return -log_softmax(logits)[np.arange(labels.shape[0]), labels]


def loss_auc(forget_logits: Any, forget_labels: Any, test_logits: Any, test_labels: Any) -> float:
  """How well the loss tells forget examples from unseen ones: ROC AUC in percent.

  The probability that a random forget example has a *lower* loss than a random test
  example (ties count half), times 100: 50 means indistinguishable, 100 that every forget
  example still looks trained-on, below 50 that the forget set was pushed further than
  unseen data (over-forgetting, itself a signal). Threshold-free, so it does not flip with
  an attack's decision boundary; the target is the retrained model's value. Compare with
  test examples of the same classes as the forget set (for class-wise forgetting, the
  test examples of the forgotten class).

  Examples:
    >>> seen = (np.array([[0.0, 5.0]] * 3), np.ones(3, int))     # low loss
    >>> unseen = (np.array([[0.0, 0.5]] * 4), np.ones(4, int))   # higher loss
    >>> loss_auc(*seen, *unseen), loss_auc(*unseen, *unseen)
    (100.0, 50.0)
  """
  f = per_example_loss(forget_logits, forget_labels)
  t = per_example_loss(test_logits, test_labels)
  # Mann–Whitney U from ranks of the pooled losses (average ranks for ties).
  from scipy.stats import rankdata

  ranks = rankdata(np.concatenate([f, t]))
  u_forget_higher = ranks[: len(f)].sum() - len(f) * (len(f) + 1) / 2
  return float(100.0 * (1.0 - u_forget_higher / (len(f) * len(t))))


# ---------------------------------------------------------------------------
# All four metrics at once, and the gap to retraining
# ---------------------------------------------------------------------------


def evaluate_predictions(
  forget: Sequence[Any],
  retain: Sequence[Any],
  test: Sequence[Any],
  *,
  auc_test: Sequence[Any] | None = None,
  mia_feature: str = "confidence",
) -> dict[str, float]:
  """UA, RA, TA, MIA-efficacy and the loss AUC from ``(logits, labels)`` pairs.

  Args:
    forget: ``(logits, labels)`` on the forget set -> UA, the MIA target, the AUC.
    retain: ``(logits, labels)`` on the retain set in dataset order -> RA, and the
      attack's members (its first ``len(test)`` examples).
    test: ``(logits, labels)`` on the test set -> TA, and the non-members of the
      attack. For class-wise forgetting, the remaining classes only.
    auc_test: ``(logits, labels)`` of unseen examples like the forget set's, for
      :func:`loss_auc` (for class-wise forgetting, the test examples of the forgotten
      class); default ``test``.
    mia_feature: the attack's feature (:data:`MIA_FEATURES`).

  Returns:
    ``{"UA", "RA", "TA", "MIA", "LossAUC"}``, all percentages (directions in
    :data:`DIRECTION`). ``LossAUC`` is reported beside MIA and is not part of
    :func:`avg_gap`, so Avg. Gap stays comparable with the literature.

  Examples:
    >>> f = (np.array([[2.0, 0.0], [0.0, 2.0]]), np.array([1, 1]))
    >>> r = (np.array([[0.0, 6.0], [6.0, 0.0], [0.0, 5.0]]), np.array([1, 0, 1]))
    >>> t = (np.array([[0.0, 1.0], [1.0, 0.0], [0.0, -1.0]]), np.array([1, 0, 1]))
    >>> m = evaluate_predictions(f, r, t)
    >>> sorted(m), m["UA"], m["RA"]
    (['LossAUC', 'MIA', 'RA', 'TA', 'UA'], 50.0, 100.0)
  """
  forget_logits, forget_labels = _unpack(forget, "forget")
  retain_logits, retain_labels = _unpack(retain, "retain")
  test_logits, test_labels = _unpack(test, "test")
  auc_logits, auc_labels = (
    (test_logits, test_labels) if auc_test is None else _unpack(auc_test, "auc_test")
  )
  return {
    "UA": unlearning_accuracy(forget_logits, forget_labels),
    "RA": retain_accuracy(retain_logits, retain_labels),
    "TA": test_accuracy(test_logits, test_labels),
    "MIA": mia_efficacy(
      retain_logits,
      retain_labels,
      test_logits,
      test_labels,
      forget_logits,
      forget_labels,
      feature=mia_feature,
    ),
    "LossAUC": loss_auc(forget_logits, forget_labels, auc_logits, auc_labels),
  }


def _unpack(pair: Any, name: str) -> tuple[Any, Any]:
  try:
    logits, labels = pair
  except (TypeError, ValueError) as e:
    raise ValueError(f"{name} must be a (logits, labels) pair.") from e
  return logits, labels


def avg_gap(
  metrics: Mapping[str, float],
  reference: Mapping[str, float],
  keys: Iterable[str] = METRIC_KEYS,
) -> float:
  """Avg. Gap: ``mean_k |metrics[k] - reference[k]|`` over ``keys``.

  ``reference`` is the retrained-from-scratch model's metrics.  Lower is
  better (0 = indistinguishable from retraining on these metrics).

  Raises:
    ValueError: if a key is missing from either dict, ``keys`` is empty, or a
      value is not finite.

  Examples:
    >>> avg_gap({"UA": 10, "RA": 99, "TA": 90, "MIA": 20},
    ...         {"UA": 12, "RA": 100, "TA": 91, "MIA": 16})
    2.0
  """
  keys = tuple(keys)
  if not keys:
    raise ValueError("avg_gap: keys must be non-empty.")
  for name, d in (("metrics", metrics), ("reference", reference)):
    missing = [k for k in keys if k not in d]
    if missing:
      raise ValueError(f"avg_gap: {name} is missing key(s) {missing}; has {sorted(d)}.")
  gaps = []
  for k in keys:
    a, b = float(metrics[k]), float(reference[k])
    if not (math.isfinite(a) and math.isfinite(b)):
      raise ValueError(f"avg_gap: non-finite value for {k!r}: {a} vs {b}.")
    gaps.append(abs(a - b))
  return float(np.mean(gaps))


# ---------------------------------------------------------------------------
# Aggregation across seeds
# ---------------------------------------------------------------------------


def mean_std(values: Iterable[float]) -> tuple[float, float]:
  """Mean and sample standard deviation (``ddof=1``) across runs/seeds.

  The std is 0.0 for a single value.

  Raises:
    ValueError: if ``values`` is empty or contains NaN/inf.

  Examples:
    >>> mean_std([1.0, 2.0, 3.0])
    (2.0, 1.0)
    >>> mean_std([5.0])
    (5.0, 0.0)
  """
  v = np.asarray(list(values), dtype=np.float64).ravel()
  if v.size == 0:
    raise ValueError("mean_std: need at least one value.")
  if not np.all(np.isfinite(v)):
    raise ValueError(f"mean_std: values contain NaN or inf: {v.tolist()}.")
  std = float(np.std(v, ddof=1)) if v.size > 1 else 0.0
  return float(np.mean(v)), std


def ci95(values: Iterable[float]) -> tuple[float, float]:
  """Two-sided 95 % confidence interval of the mean (Student's t, ``n - 1`` dof).

  ``(mean, mean)`` for a single value.

  Examples:
    >>> lo, hi = ci95([1.0, 2.0, 3.0])  # mean 2, std 1, t(0.975, 2) = 4.303
    >>> round(lo, 3), round(hi, 3)
    (-0.484, 4.484)
  """
  from scipy.stats import t

  values = list(values)
  mean, std = mean_std(values)
  n = len(values)
  if n < 2:
    return mean, mean
  half = float(t.ppf(0.975, n - 1)) * std / math.sqrt(n)
  return mean - half, mean + half


def format_mean_std(mean: float, std: float, digits: int = 2) -> str:
  """Formats ``mean ± std`` with ``digits`` decimals, e.g. ``"97.50 ± 0.30"``.

  Examples:
    >>> format_mean_std(97.5, 0.3)
    '97.50 ± 0.30'
    >>> format_mean_std(*mean_std([1, 2, 3]), digits=1)
    '2.0 ± 1.0'
  """
  return f"{float(mean):.{digits}f} ± {float(std):.{digits}f}"


# The population-based evidence (the NeurIPS 2023 challenge's forget score) lives in its
# own module; its names are part of this one's.
from jaxunlearn.metrics.population import (  # noqa: E402
  ForgetScore,
  LiraSeparability,
  LocationSpread,
  example_epsilons,
  final_score,
  forget_score,
  lira_separability,
  location_and_spread,
  logit_scaled_confidence,
)
