"""An independent, brute-force transcription of the NeurIPS 2023 unlearning challenge's
forget score (every threshold pair enumerated on a 0.01 grid, rates as means of booleans),
shared by the metric's tests and the audit's: slow (about a second an example) and
written apart from :mod:`jaxunlearn.metrics.population`, so the two can disagree."""

import math

import numpy as np


def _reference_rates_interval(pos, neg):
  """tpr, fnr, fpr, tnr of every (left, right) pair, the peakier population positive."""
  pd, nd = np.ptp(pos), np.ptp(neg)
  width = min(pd, nd)
  if pd >= nd:
    pos, neg = neg, pos
  lo, hi = pos.min() + width - 2.0, pos.max() + 2.0
  rights = np.linspace(lo, hi, int(np.ceil((hi - lo) * 100)))
  lefts = np.concatenate([np.linspace(r - width - 2.0, r - width + 2.0, 400) for r in rights])
  rights = np.repeat(rights, 400)
  inside = lambda c: (lefts[None] <= c[:, None]) & (c[:, None] <= rights[None])
  return (
    inside(pos).mean(0),
    (~inside(pos)).mean(0),
    inside(neg).mean(0),
    (~inside(neg)).mean(0),
  )


def _reference_rates_single(pos, neg):
  both = np.concatenate([pos, neg])
  t = np.linspace(both.min(), both.max(), int(np.ceil((both.max() - both.min()) * 100)))
  return (
    (pos[:, None] >= t).mean(0),
    (pos[:, None] < t).mean(0),
    (neg[:, None] >= t).mean(0),
    (neg[:, None] < t).mean(0),
  )


def _reference_epsilon(pos, neg, delta=1e-5):
  pd, nd = np.ptp(pos), np.ptp(neg)
  if max(pd, nd) > 0 and min(pd, nd) / max(pd, nd) < 0.01:
    return 50.0
  rates = [_reference_rates_interval(pos, neg), _reference_rates_single(pos, neg)]
  tpr, fnr, fpr, tnr = (np.concatenate([a[i] for a in rates]) for i in range(4))
  eps = []
  for a, b, c, d in zip(tpr, fnr, fpr, tnr):
    if c + b == 0 and a + d == 2:
      eps.append(math.inf)
      continue
    if c * b == 0:
      continue
    candidates = [
      math.log(1 - delta - c) - math.log(b) if 1 - delta - c > 0 else math.nan,
      math.log(1 - delta - b) - math.log(c) if 1 - delta - b > 0 else math.nan,
    ]
    best = np.nanmax(candidates) if not all(map(math.isnan, candidates)) else math.nan
    if not math.isnan(best):
      eps.append(max(best, 0.0))
  return min(max(eps), 50.0)


def _reference_score(unlearned, retrained):
  eps = []
  for i in range(unlearned.shape[1]):
    u, r = unlearned[:, i], retrained[:, i]
    pos, neg = (r, u) if np.median(r) > np.median(u) else (u, r)
    eps.append(_reference_epsilon(pos, neg))
  max_eps = math.ceil(math.log(len(unlearned) - 1))
  points, start, buckets = 1.0, 0.0, {}
  while start + 0.5 <= max_eps:
    buckets[start] = points
    points /= 2
    start += 0.5
  total = 0.0
  for e in eps:
    for s, p in buckets.items():
      if e < s + 0.5:
        total += p
        break
  return total / unlearned.shape[1], np.array(eps)
