"""Population-based forgetting evidence: the NeurIPS 2023 Machine Unlearning challenge's
forget score, and a threshold-free per-example likelihood-ratio test beside it.

Unlearning promises that the unlearned model is *distributed like* a model retrained
without the forget set. The challenge (Triantafillou et al., 2024; its evaluation code is
``google-deepmind/unlearning_evaluation``) measures exactly that, one forget example at a
time: for each example it compares the outputs of many unlearned runs (from one original)
with those of many retrained models, and asks how well any decision rule on that one
number can tell the two populations apart, as an (ε, δ) privacy budget.

This module is written from the challenge's definitions (no code of theirs):

* :func:`logit_scaled_confidence` — ``log p_y − log Σ_{j≠y} p_j``, the statistic;
* :func:`example_epsilons` — per example, the ε of the best rule among two families
  (one threshold; two thresholds around the peakier population), δ = 1e-5;
* :func:`forget_score` — the mean of ``2^−k`` over examples, k the ε bucket;
* :func:`final_score` — the forget score × the utility ratios (retain, test);
* :func:`location_and_spread` — why an example fails: its populations' medians apart, or
  the unlearned one too narrow;
* :func:`lira_separability` — Gaussians fitted to each population per example
  (U-LiRA's idea, Hayes et al. 2024), cross-fitted: how often a likelihood-ratio test
  tells an unlearned model from a retrained one (50 % = indistinguishable).

Example (two populations drawn from one distribution score near the top; shifted ones
do not):
  >>> import numpy as np
  >>> rng = np.random.default_rng(0)
  >>> same = forget_score(rng.normal(size=(64, 20)), rng.normal(size=(64, 20)))
  >>> shifted = forget_score(rng.normal(3.0, 1.0, size=(64, 20)), rng.normal(size=(64, 20)))
  >>> bool(same.score > 5 * shifted.score), same.max_epsilon
  (True, 5.0)
"""

from __future__ import annotations

import functools
import math
import os
from concurrent.futures import ThreadPoolExecutor
from typing import Any, NamedTuple

import numpy as np

__all__ = [
  "DELTA",
  "EPSILON_CAP",
  "THRESHOLDS_PER_UNIT",
  "ForgetScore",
  "logit_scaled_confidence",
  "example_epsilons",
  "forget_score",
  "final_score",
  "LiraSeparability",
  "lira_separability",
  "LocationSpread",
  "location_and_spread",
]

#: δ of the (ε, δ) budget.
DELTA = 1e-5
#: The largest ε an example can get (also given when one population is far peakier).
EPSILON_CAP = 50.0
#: Thresholds per unit of confidence (a grid step of 0.01).
THRESHOLDS_PER_UNIT = 100
# The two-threshold rule searches its thresholds this far beyond the peakier population.
_MARGIN = 2.0
# Below this ratio of the two populations' ranges the peakier one is taken as a point
# mass the grid cannot resolve: ε = EPSILON_CAP.
_SPREAD_RATIO = 0.01
# Bucket width of the score: ε in [k/2, (k+1)/2) scores 2^-k.
_BUCKET = 0.5


class ForgetScore(NamedTuple):
  """:func:`forget_score`'s answer."""

  score: float  # mean over forget examples of 2^-k (1 = indistinguishable everywhere)
  epsilons: np.ndarray  # (examples,) ε of each forget example, in [0, EPSILON_CAP]
  max_epsilon: float  # ceil(ln(N − 1)): beyond it an example scores 0 (N: unlearned models)
  models: int  # N, the number of unlearned models


def logit_scaled_confidence(logits: Any, labels: Any) -> np.ndarray:
  """``log p_y − log Σ_{j≠y} p_j`` per row, in float64 (the challenge's statistic).

  Computed as ``z_y − logsumexp_{j≠y} z_j``, which equals it exactly and never
  overflows or takes the log of 0. (The challenge's code adds 1e-45 inside both logs,
  which caps its confidences near ±103.6; below that they agree to float rounding.)

  Examples:
    >>> import numpy as np
    >>> c = logit_scaled_confidence(np.array([[2.0, 0.0, 0.0], [0.0, 1e4, 0.0]]), np.array([0, 0]))
    >>> np.round(c, 4).tolist()
    [1.3069, -10000.0]
  """
  z = np.asarray(logits, np.float64)
  y = np.asarray(labels)
  if z.ndim != 2 or y.shape != z.shape[:1]:
    raise ValueError(f"logits must be (n, classes) and labels (n,); got {z.shape} and {y.shape}")
  if z.shape[1] < 2:
    raise ValueError("logit_scaled_confidence needs at least two classes")
  rows = np.arange(len(y))
  z_y = z[rows, y]
  others = z.copy()
  others[rows, y] = -np.inf
  top = others.max(axis=1, keepdims=True)
  lse = top[:, 0] + np.log(np.exp(others - top).sum(axis=1))
  return z_y - lse


def _population_pair(unlearned, retrained) -> tuple[np.ndarray, np.ndarray]:
  u = np.asarray(unlearned, np.float64)
  r = np.asarray(retrained, np.float64)
  if u.ndim != 2 or r.ndim != 2 or u.shape[1] != r.shape[1]:
    raise ValueError(
      "confidences must be [models, forget examples] with the same examples; "
      f"got {u.shape} and {r.shape}"
    )
  if min(len(u), len(r)) < 2:
    raise ValueError(f"each population needs at least 2 models; got {len(u)} and {len(r)}")
  if not (np.isfinite(u).all() and np.isfinite(r).all()):
    raise ValueError("confidences must be finite (a diverged model has no confidence)")
  return u, r


@functools.lru_cache(maxsize=16)
def _epsilon_table(n_pos: int, n_neg: int, delta: float) -> np.ndarray:
  """ε of a rule with ``fn`` false negatives among ``n_pos`` and ``fp`` false positives
  among ``n_neg``, as ``table[fp, fn]``: +inf for perfect separation, nan where exactly
  one of the two rates is 0 (discarded: too few samples to trust), else
  ``max(log(1−δ−fpr) − log fnr, log(1−δ−fnr) − log fpr)`` clipped at 0."""
  fpr = np.arange(n_neg + 1)[:, None] / n_neg
  fnr = np.arange(n_pos + 1)[None, :] / n_pos
  with np.errstate(divide="ignore", invalid="ignore"):
    a = np.log(1 - delta - fpr) - np.log(fnr)
    b = np.log(1 - delta - fnr) - np.log(fpr)
    eps = np.clip(np.fmax(a, b), 0, None)  # fmax: the larger of the two that is a number
  one_zero = (fpr * fnr == 0) & ~((fpr == 0) & (fnr == 0))
  eps = np.where(one_zero, np.nan, eps)
  eps[0, 0] = np.inf
  return eps


def _single_threshold_counts(pos, neg):
  """False negatives and false positives of "positive iff c ≥ t" for t on the grid over
  both populations' range."""
  lo = min(pos[0], neg[0])
  hi = max(pos[-1], neg[-1])
  t = np.linspace(lo, hi, int(math.ceil((hi - lo) * THRESHOLDS_PER_UNIT)))
  fn = np.searchsorted(pos, t, side="left")  # pos < t
  fp = len(neg) - np.searchsorted(neg, t, side="left")  # neg ≥ t
  return fp, fn


def _interval_counts(peaky, other):
  """False negatives (of ``peaky``) and false positives (of ``other``) of "positive iff
  left ≤ c ≤ right", right on a grid from the peakier population's lowest value plus its
  width minus the margin to its highest plus the margin, left within ± the margin of
  right − width."""
  width = peaky[-1] - peaky[0]
  lo = peaky[0] + width - _MARGIN
  hi = peaky[-1] + _MARGIN
  right = np.linspace(lo, hi, int(math.ceil((hi - lo) * THRESHOLDS_PER_UNIT)))
  n_left = int(math.ceil(2 * _MARGIN * THRESHOLDS_PER_UNIT))
  left = np.linspace(right - width - _MARGIN, right - width + _MARGIN, n_left, axis=1)
  right = right[:, None]

  def inside(c):  # 0 where left > right (an empty interval)
    n = np.searchsorted(c, right, side="right") - np.searchsorted(c, left, side="left")
    return np.maximum(n, 0)

  fn = len(peaky) - inside(peaky)
  fp = inside(other)
  return fp.ravel(), fn.ravel()


def _epsilon(pos: np.ndarray, neg: np.ndarray, delta: float) -> float:
  """ε of one example; ``pos`` is the population with the larger median; both sorted."""
  pos_range, neg_range = pos[-1] - pos[0], neg[-1] - neg[0]
  largest, smallest = max(pos_range, neg_range), min(pos_range, neg_range)
  if largest > 0 and smallest / largest < _SPREAD_RATIO:
    return EPSILON_CAP
  fp_s, fn_s = _single_threshold_counts(pos, neg)
  eps = [_epsilon_table(len(pos), len(neg), delta)[fp_s, fn_s]]
  # The two-threshold rule calls the peakier population (smaller range; on a tie, the
  # one with the smaller median) positive.
  peaky, other = (pos, neg) if pos_range < neg_range else (neg, pos)
  fp_i, fn_i = _interval_counts(peaky, other)
  eps.append(_epsilon_table(len(peaky), len(other), delta)[fp_i, fn_i])
  eps = np.concatenate(eps)
  eps = eps[~np.isnan(eps)]
  if eps.size == 0:
    # Every rule has one error rate exactly 0 and the other not: no evidence either way
    # (e.g. both populations one and the same constant). The challenge's code stops with
    # an assertion here; no rule separates them, so ε = 0.
    return 0.0
  return float(min(eps.max(), EPSILON_CAP))


def example_epsilons(unlearned_confs: Any, retrained_confs: Any, *, delta: float = DELTA):
  """Per forget example, the ε that the best threshold rule attains in telling the
  unlearned population from the retrained one (arrays ``[models, examples]``).

  For each example the *positive* population is the one with the larger median (the
  unlearned one on a tie). Two
  rule families are searched on a grid of 0.01: one threshold (positive iff c ≥ t, t
  over both populations' range), and two thresholds (positive iff left ≤ c ≤ right,
  calling the peakier population positive, right within 2 of it and left within ± 2 of
  right minus its width). Each rule's false-positive and false-negative rates give
  ``ε = max(log(1−δ−fpr) − log fnr, log(1−δ−fnr) − log fpr)``; rules with exactly one
  rate 0 are discarded (too few samples), perfect separation gives ε = ∞; the example's ε
  is the largest, capped at :data:`EPSILON_CAP`. An example whose populations' ranges
  differ by a factor over 100 gets the cap at once.

  Example (separated populations: the cap):
    >>> import numpy as np
    >>> example_epsilons(np.zeros((4, 1)) + np.arange(4)[:, None],
    ...                  10 + np.arange(4.0)[:, None]).tolist()
    [50.0]
  """
  u, r = _population_pair(unlearned_confs, retrained_confs)
  u, r = np.sort(u, axis=0), np.sort(r, axis=0)
  retrain_positive = np.median(r, axis=0) > np.median(u, axis=0)

  def one(i):
    pos, neg = (r[:, i], u[:, i]) if retrain_positive[i] else (u[:, i], r[:, i])
    return _epsilon(pos, neg, delta)

  # numpy's searchsorted releases the GIL: examples in threads use every core (1.4x on 2)
  with ThreadPoolExecutor(min(os.cpu_count() or 1, 8)) as pool:
    return np.array(list(pool.map(one, range(u.shape[1]))), np.float64)


def max_epsilon(models: int) -> float:
  """``ceil(ln(models − 1))``: the largest ε that ``models`` samples can show; an example
  with ε at or beyond it scores 0 (0 for two models or fewer)."""
  return float(math.ceil(math.log(models - 1))) if models > 2 else 0.0


def bucket_points(epsilons: np.ndarray, models: int) -> np.ndarray:
  """``2^−k`` for ε in the k-th bucket ``[k/2, (k+1)/2)``, for buckets that end at or
  below ``ceil(ln(models − 1))``; 0 beyond."""
  buckets = int(max_epsilon(models) / _BUCKET)
  k = np.floor(np.asarray(epsilons, np.float64) / _BUCKET)
  return np.where(k < buckets, 0.5 ** np.minimum(k, 1074), 0.0)


def forget_score(
  unlearned_confs: Any, retrained_confs: Any, *, delta: float = DELTA
) -> ForgetScore:
  """The challenge's forget score of an unlearned population against a retrained one.

  ``unlearned_confs``, ``retrained_confs``: ``[models, forget examples]`` logit-scaled
  confidences (:func:`logit_scaled_confidence`) of each forget example under each model.
  Each example scores ``2^−k`` when its ε (:func:`example_epsilons`) lies in
  ``[k/2, (k+1)/2)`` and the bucket ends at or below ``ceil(ln(N − 1))`` (N unlearned
  models; the largest ε that N samples can show), 0 beyond; the score is the mean over
  examples, in [0, 1]. Its ceiling depends on N: two samples of one distribution do not
  score 1 (report the retrained-against-retrained score beside it).
  """
  u, r = _population_pair(unlearned_confs, retrained_confs)
  if len(u) != len(r):
    raise ValueError(
      f"the forget score compares populations of equal size (its buckets end at "
      f"ceil(ln(N − 1)) of one N); got {len(u)} unlearned and {len(r)} retrained models: "
      f"pass {min(len(u), len(r))} of each"
    )
  if len(u) < 3:
    raise ValueError(
      f"the forget score needs at least 3 models a population (at N = 2 no ε bucket is "
      f"scored, so every input scores 0); got {len(u)}"
    )
  eps = example_epsilons(u, r, delta=delta)
  n = len(u)
  return ForgetScore(float(bucket_points(eps, n).mean()), eps, max_epsilon(n), n)


def final_score(
  score: float,
  *,
  retain_unlearned: float,
  retain_retrained: float,
  test_unlearned: float,
  test_retrained: float,
) -> float:
  """The challenge's final score: ``score × (RA_u / RA_r) × (TA_u / TA_r)``, each accuracy
  the mean over its population.

  Examples:
    >>> final_score(0.5, retain_unlearned=90, retain_retrained=100,
    ...             test_unlearned=80, test_retrained=80)
    0.45
  """
  return float(score * (retain_unlearned / retain_retrained) * (test_unlearned / test_retrained))


class LocationSpread(NamedTuple):
  """:func:`location_and_spread`'s answer: medians over forget examples, and per example."""

  shift: float  # median over examples of |median_u − median_r| (confidence units)
  spread_ratio: float  # median over examples of std_u / std_r (1 = the retrained spread)
  per_example_shift: np.ndarray  # signed: median_u − median_r
  per_example_spread_ratio: np.ndarray


def location_and_spread(unlearned_confs: Any, retrained_confs: Any) -> LocationSpread:
  """Why an example's ε is what it is, in two numbers: how far the unlearned population's
  median lies from the retrained one's, and how wide it is against the retrained one.

  A population can fail the forget score either way: far off (it moved the example too
  much or too little) or too narrow (runs from one original agree with each other more
  than retrained models do; the interval rule, and below a ratio of 0.01 the cap, catch
  that).

  Examples:
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> ls = location_and_spread(rng.normal(2.0, 0.5, (4000, 3)), rng.normal(0.0, 1.0, (4000, 3)))
    >>> round(ls.shift, 1), round(ls.spread_ratio, 1)
    (2.0, 0.5)
  """
  u, r = _population_pair(unlearned_confs, retrained_confs)
  shift = np.median(u, axis=0) - np.median(r, axis=0)
  with np.errstate(divide="ignore", invalid="ignore"):
    ratio = u.std(axis=0) / r.std(axis=0)
  ratio = np.where(np.isfinite(ratio), ratio, np.where(u.std(axis=0) > 0, np.inf, 1.0))
  return LocationSpread(float(np.median(np.abs(shift))), float(np.median(ratio)), shift, ratio)


class LiraSeparability(NamedTuple):
  """:func:`lira_separability`'s answer (means over forget examples, and per example)."""

  accuracy: float  # balanced accuracy (%) of the likelihood-ratio test; 50 = indistinguishable
  auc: float  # ROC AUC (%) of the log-likelihood ratio; 50 = indistinguishable
  per_example_accuracy: np.ndarray
  per_example_auc: np.ndarray


def _gaussian_fit(c: np.ndarray, floor: float):
  mu = c.mean(axis=0)
  sigma = np.maximum(c.std(axis=0, ddof=1), floor)
  return mu, sigma


def _log_normal(c, mu, sigma):
  return -0.5 * ((c - mu) / sigma) ** 2 - np.log(sigma)


def _auc(a: np.ndarray, b: np.ndarray) -> np.ndarray:
  """Per column, P(a > b) + ½ P(a = b) over all pairs (Mann–Whitney)."""
  greater = (a[:, None, :] > b[None, :, :]).mean(axis=(0, 1))
  ties = (a[:, None, :] == b[None, :, :]).mean(axis=(0, 1))
  return greater + 0.5 * ties


def lira_separability(
  unlearned_confs: Any, retrained_confs: Any, *, sigma_floor: float = 1e-6
) -> LiraSeparability:
  """How well a per-example Gaussian likelihood-ratio test tells the populations apart,
  threshold-free (in the spirit of U-LiRA, Hayes et al. 2024).

  Per forget example, each population's confidences get a Gaussian (mean, standard
  deviation ≥ ``sigma_floor``) fitted on half of its models; the other half is scored
  by the log-likelihood ratio ``log N(c; unlearned) − log N(c; retrained)``, and the
  halves then swap (two-fold cross-fitting, so a test never scores the models it was
  fitted on). Reported per example and averaged: the balanced accuracy of deciding
  "unlearned" when the ratio is positive, and the ROC AUC of the ratio. 50 % means the
  unlearned models look retrained; 100 % that every one is recognised.

  Examples:
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> far = lira_separability(rng.normal(4, 1, (64, 30)), rng.normal(0, 1, (64, 30)))
    >>> near = lira_separability(rng.normal(0, 1, (64, 30)), rng.normal(0, 1, (64, 30)))
    >>> round(far.accuracy) > 95, abs(near.auc - 50) < 10
    (True, True)
  """
  u, r = _population_pair(unlearned_confs, retrained_confs)
  if min(len(u), len(r)) < 4:
    raise ValueError("lira_separability needs at least 4 models in each population")
  accs, aucs = [], []
  for fit, held in ((0, 1), (1, 0)):
    uf, uh = u[fit::2], u[held::2]
    rf, rh = r[fit::2], r[held::2]
    mu_u, s_u = _gaussian_fit(uf, sigma_floor)
    mu_r, s_r = _gaussian_fit(rf, sigma_floor)
    lu = _log_normal(uh, mu_u, s_u) - _log_normal(uh, mu_r, s_r)
    lr = _log_normal(rh, mu_u, s_u) - _log_normal(rh, mu_r, s_r)
    accs.append(50 * ((lu > 0).mean(axis=0) + (lr <= 0).mean(axis=0)))
    aucs.append(100 * _auc(lu, lr))
  acc, auc = np.mean(accs, axis=0), np.mean(aucs, axis=0)
  return LiraSeparability(float(acc.mean()), float(auc.mean()), acc, auc)
