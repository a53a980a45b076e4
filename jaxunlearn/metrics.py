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
  classifier (RBF SVC on confidence/entropy features, trained on retain
  examples as members vs test examples as non-members) calls non-members.
  Higher means more forgetting; the target is the retrained model's value.
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
  "DIRECTION",
  "accuracy",
  "unlearning_accuracy",
  "retain_accuracy",
  "test_accuracy",
  "log_softmax",
  "mia_features",
  "mia_efficacy",
  "evaluate_predictions",
  "avg_gap",
  "mean_std",
  "format_mean_std",
]

#: The four metrics reported for every unlearning run, in table order.
METRIC_KEYS: tuple[str, ...] = ("UA", "RA", "TA", "MIA")

#: Direction of better for each reported quantity, for table captions.
#: ``"closer to retrain"`` means the gold standard is the retrained model's value
#: (a smaller ``|value - retrain|`` is better), not an extreme.
DIRECTION: dict[str, str] = {
  "UA": "closer to retrain",  # 100 - forget accuracy; higher = more forgetting
  "RA": "higher",  # retain accuracy
  "TA": "higher",  # test accuracy (remaining classes if class-wise)
  "MIA": "closer to retrain",  # % forget examples judged non-members
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

  Example:
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

  Example:
    >>> unlearning_accuracy([[1.0, 0.0], [1.0, 0.0], [0.0, 2.0]], [1, 1, 1])
    66.66666666666667
  """
  return 100.0 - accuracy(forget_logits, forget_labels)


def retain_accuracy(retain_logits: Any, retain_labels: Any) -> float:
  """Retain accuracy RA: :func:`accuracy` on the retain set.  Higher is better.

  Example:
    >>> retain_accuracy([[0.0, 3.0]], [1])
    100.0
  """
  return accuracy(retain_logits, retain_labels)


def test_accuracy(test_logits: Any, test_labels: Any) -> float:
  """Test accuracy TA: :func:`accuracy` on held-out test data.  Higher is better.

  For class-wise forgetting, pass only the test examples of the *remaining*
  classes (the forgotten class is removed from the test set).

  Example:
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

  Example:
    >>> np.round(np.exp(log_softmax([[0.0, np.log(3.0)]])), 6)
    array([[0.25, 0.75]])
  """
  z = np.asarray(logits, dtype=np.float64)
  z = z - np.max(z, axis=-1, keepdims=True)
  return z - np.log(np.sum(np.exp(z), axis=-1, keepdims=True))


def mia_features(logits: Any, labels: Any) -> np.ndarray:
  """Per-example membership-inference features from logits.

  Returns an array of shape ``(n, 2)`` with columns

  * ``confidence = softmax(logits)[label]`` -- probability of the true label,
    in ``[0, 1]``;
  * ``entropy = -sum_k p_k log p_k`` of the softmax ``p`` (natural log, in
    nats), in ``[0, log(num_classes)]``.

  Both come from a numerically stable ``log_softmax`` (no overflow for large
  logits; a class whose probability underflows to 0 contributes 0 to the
  entropy).  Training members typically have high confidence and low
  entropy; these two features are what :func:`mia_efficacy`'s classifier sees.

  Example:
    >>> f = mia_features([[0.0, np.log(3.0)]], [1])
    >>> np.round(f, 6)  # p = [.25, .75]; H = -(.25 log .25 + .75 log .75)
    array([[0.75    , 0.562335]])
  """
  logits, labels = _check_logits_labels(logits, labels, "mia_features")
  logp = log_softmax(logits)
  p = np.exp(logp)
  confidence = p[np.arange(labels.shape[0]), labels]
  entropy = -np.sum(p * logp, axis=-1)
  entropy = np.maximum(entropy, 0.0)  # clip -0.0 / rounding below zero
  return np.stack([confidence, entropy], axis=1)


def _subsample(n: int, k: int, rng: np.random.Generator) -> np.ndarray:
  """Sorted indices of ``k`` of ``range(n)`` without replacement (all if k >= n)."""
  if k >= n:
    return np.arange(n)
  return np.sort(rng.choice(n, size=k, replace=False))


def mia_efficacy(
  retain_logits: Any,
  retain_labels: Any,
  test_logits: Any,
  test_labels: Any,
  forget_logits: Any,
  forget_labels: Any,
  *,
  seed: int = 0,
  max_train: int | None = None,
) -> float:
  """MIA-efficacy: percentage of forget examples a membership attack calls non-members.

  The attack is the confidence-based SVC attack of the unlearning literature
  (Jia et al. 2023, "Model sparsity can simplify machine unlearning"; SalUn):

  1. Features: :func:`mia_features` (true-label confidence, softmax entropy).
  2. Training set: retain examples labelled member (1) and test examples
     labelled non-member (0), class-balanced -- the larger group is
     subsampled (seeded, without replacement) to the size of the smaller;
     ``max_train`` further caps the examples per group.
  3. Classifier: ``StandardScaler`` followed by
     ``sklearn.svm.SVC(kernel="rbf", C=3, gamma="scale")``.  We choose
     ``gamma="scale"`` (``1 / (n_features * X.var())``); after standardising,
     ``X.var()`` is 1, so it equals ``gamma="auto"`` (``1 / n_features``) and
     the choice is immaterial -- ``"scale"`` just stays correct if a feature is
     constant.
  4. Result: ``100 * mean(predict(forget_features) == 0)``.

  Caveat measured on digits: after random-label unlearning of a class the forget
  examples (confidence ≈ 0.006, entropy ≈ log 10) lie beyond every training point of
  the attack, whose answer there is decided by a handful of outlying examples and
  flips between 0 and 100 with the subsample seed (clipping the features to the
  training range or taking the nearest training point did not help). Average over
  several seeds (``evaluate_predictions(..., mia_seeds=5)``) to see it.

  Higher means the forget set looks more like unseen data (more forgetting);
  the target is the value a retrained model gets, not 100.  The result is
  deterministic given ``seed`` (the SVC itself is deterministic; only the
  subsampling is random).

  Args:
    retain_logits, retain_labels: predictions on (a sample of) the retain set.
    test_logits, test_labels: predictions on held-out test data.
    forget_logits, forget_labels: predictions on the forget set.
    seed: seed for the balancing/capping subsample.
    max_train: if given, at most this many members and this many non-members
      are used to train the attack (SVC training is quadratic; a few thousand
      per group is plenty).

  Returns:
    A Python float in ``[0, 100]``.

  Raises:
    ValueError: on bad logits/labels (see :func:`accuracy`) or
      ``max_train < 1``.

  Example:
    >>> rng = np.random.default_rng(0)
    >>> def preds(n, margin):  # 2-class logits with the given true-class margin
    ...     return np.stack([np.zeros(n), margin + rng.normal(0, .3, n)], 1), np.ones(n, int)
    >>> member, nonmember = preds(50, 6.0), preds(50, 0.5)
    >>> mia_efficacy(*member, *nonmember, *preds(20, 0.5))  # forget looks unseen
    100.0
    >>> mia_efficacy(*member, *nonmember, *preds(20, 6.0))  # forget looks trained-on
    0.0
  """

  if max_train is not None:
    if isinstance(max_train, bool) or not isinstance(max_train, (int, np.integer)):
      raise ValueError(f"max_train must be a positive int or None, got {max_train!r}.")
    if max_train < 1:
      raise ValueError(f"max_train must be >= 1, got {max_train}.")

  x_in = _mia_features_named(retain_logits, retain_labels, "mia_efficacy (retain)")
  x_out = _mia_features_named(test_logits, test_labels, "mia_efficacy (test)")
  x_forget = _mia_features_named(forget_logits, forget_labels, "mia_efficacy (forget)")
  return mia_efficacy_from_features(x_in, x_out, x_forget, seed=seed, max_train=max_train)


def mia_efficacy_from_features(
  x_in: np.ndarray,
  x_out: np.ndarray,
  x_forget: np.ndarray,
  *,
  seed: int = 0,
  max_train: int | None = None,
) -> float:
  """:func:`mia_efficacy` on precomputed features (members, non-members, forget)."""
  from sklearn.pipeline import make_pipeline
  from sklearn.preprocessing import StandardScaler
  from sklearn.svm import SVC

  rng = np.random.default_rng(seed)
  k = min(x_in.shape[0], x_out.shape[0])
  if max_train is not None:
    k = min(k, int(max_train))
  x_in = x_in[_subsample(x_in.shape[0], k, rng)]
  x_out = x_out[_subsample(x_out.shape[0], k, rng)]

  x = np.concatenate([x_in, x_out], axis=0)
  y = np.concatenate([np.ones(k, np.int64), np.zeros(k, np.int64)])
  clf = make_pipeline(StandardScaler(), SVC(kernel="rbf", C=3.0, gamma="scale"))
  clf.fit(x, y)
  pred = clf.predict(x_forget)
  return float(100.0 * np.mean(pred == 0))


def _mia_features_named(logits: Any, labels: Any, name: str) -> np.ndarray:
  logits, labels = _check_logits_labels(logits, labels, name)
  return mia_features(logits, labels)


# ---------------------------------------------------------------------------
# All four metrics at once, and the gap to retraining
# ---------------------------------------------------------------------------


def evaluate_predictions(
  forget: Sequence[Any],
  retain: Sequence[Any],
  test: Sequence[Any],
  *,
  mia_retain: Sequence[Any] | None = None,
  seed: int = 0,
  max_train: int | None = None,
  mia_seeds: int = 1,
) -> dict[str, float]:
  """UA, RA, TA and MIA-efficacy from ``(logits, labels)`` pairs.

  ``mia_seeds`` > 1 averages MIA-efficacy over that many attack subsamples (seeds
  ``seed, seed+1, …``): the attack's answer on far-out forget sets can flip with the
  subsample (see :func:`mia_efficacy`), and the mean estimates it with less variance.

  Args:
    forget: ``(logits, labels)`` on the forget set -> UA and the MIA target.
    retain: ``(logits, labels)`` on the retain set -> RA, and the members
      used to train the MIA attack (unless ``mia_retain`` is given).
    test: ``(logits, labels)`` on the test set -> TA, and the non-members of
      the MIA attack.  For class-wise forgetting, the remaining classes only.
    mia_retain: optional separate ``(logits, labels)`` for the attack's
      members (e.g. a retain subsample the size of the test set).
    seed, max_train: passed to :func:`mia_efficacy`.

  Returns:
    ``{"UA": ..., "RA": ..., "TA": ..., "MIA": ...}``, all percentages
    (directions in :data:`DIRECTION`).

  Example:
    >>> f = (np.array([[2.0, 0.0], [0.0, 2.0]]), np.array([1, 1]))
    >>> r = (np.array([[0.0, 6.0], [6.0, 0.0], [0.0, 5.0]]), np.array([1, 0, 1]))
    >>> t = (np.array([[0.0, 1.0], [1.0, 0.0], [0.0, -1.0]]), np.array([1, 0, 1]))
    >>> m = evaluate_predictions(f, r, t)
    >>> sorted(m), m["UA"], m["RA"]
    (['MIA', 'RA', 'TA', 'UA'], 50.0, 100.0)
  """
  forget_logits, forget_labels = _unpack(forget, "forget")
  retain_logits, retain_labels = _unpack(retain, "retain")
  test_logits, test_labels = _unpack(test, "test")
  mia_in = (
    (retain_logits, retain_labels) if mia_retain is None else _unpack(mia_retain, "mia_retain")
  )
  return {
    "UA": unlearning_accuracy(forget_logits, forget_labels),
    "RA": retain_accuracy(retain_logits, retain_labels),
    "TA": test_accuracy(test_logits, test_labels),
    "MIA": float(
      np.mean(
        [
          mia_efficacy(
            *mia_in,
            test_logits,
            test_labels,
            forget_logits,
            forget_labels,
            seed=seed + i,
            max_train=max_train,
          )
          for i in range(int(mia_seeds))
        ]
      )
    ),
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

  Example:
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

  Example:
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


def format_mean_std(mean: float, std: float, digits: int = 2) -> str:
  """Formats ``mean ± std`` with ``digits`` decimals, e.g. ``"97.50 ± 0.30"``.

  Example:
    >>> format_mean_std(97.5, 0.3)
    '97.50 ± 0.30'
    >>> format_mean_std(*mean_std([1, 2, 3]), digits=1)
    '2.0 ± 1.0'
  """
  return f"{float(mean):.{digits}f} ± {float(std):.{digits}f}"
