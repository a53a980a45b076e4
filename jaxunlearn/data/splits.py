"""Fixed, seeded train/val/test splits that do not depend on any RNG implementation.

Examples are ordered by a 64-bit integer hash (splitmix64) of `(id, seed)` and cut in
that order. Unlike `np.random.permutation`, the hash is pure integer arithmetic, so the
same ids give the same split on every numpy version and platform.

Example:
  >>> import numpy as np
  >>> from jaxunlearn.data.splits import stratified_split
  >>> labels = np.repeat(np.arange(3), 10)
  >>> parts = stratified_split(np.arange(30), labels, {"test": 0.2, "val": 0.1}, seed=0)
  >>> [len(parts[k]) for k in ("train", "val", "test")]
  [21, 3, 6]
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

_U64 = np.uint64


def splitmix64(x: np.ndarray) -> np.ndarray:
  """splitmix64 finaliser, elementwise on uint64 (wraps mod 2**64 by design)."""
  z = np.asarray(x, dtype=_U64) + _U64(0x9E3779B97F4A7C15)
  z = (z ^ (z >> _U64(30))) * _U64(0xBF58476D1CE4E5B9)
  z = (z ^ (z >> _U64(27))) * _U64(0x94D049BB133111EB)
  return z ^ (z >> _U64(31))


def hash_order(ids: np.ndarray, seed: int) -> np.ndarray:
  """Positions of `ids` sorted by hash(id, seed); ties (never seen in practice) by id."""
  ids = np.asarray(ids, dtype=np.int64)
  keyed = splitmix64(ids.astype(_U64) ^ splitmix64(np.full(ids.shape, seed, _U64)))
  return np.lexsort((ids, keyed))


def holdout_split(ids: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
  """Split `ids` into (kept, held_out) with `round(fraction * n)` held out; both sorted."""
  ids = np.asarray(ids, dtype=np.int64)
  n_out = int(round(fraction * len(ids)))
  order = hash_order(ids, seed)
  return np.sort(ids[order[n_out:]]), np.sort(ids[order[:n_out]])


def stratified_split(
  ids: np.ndarray, labels: np.ndarray, fractions: Mapping[str, float], seed: int
) -> dict[str, np.ndarray]:
  """Per class, hold out `round(f * n_class)` ids for each named part; the rest is "train".

  Stratifying keeps every class in every part in its original proportion, which the
  class-wise protocol needs (per-class test accuracy). Returns sorted id arrays.
  """
  ids = np.asarray(ids, dtype=np.int64)
  labels = np.asarray(labels)
  parts: dict[str, list[np.ndarray]] = {k: [] for k in ("train", *fractions)}
  for c in np.unique(labels):
    cls_ids = ids[labels == c]
    cls_ids = cls_ids[hash_order(cls_ids, seed)]
    start = 0
    for part, frac in fractions.items():
      n = int(round(frac * len(cls_ids)))
      parts[part].append(cls_ids[start : start + n])
      start += n
    parts["train"].append(cls_ids[start:])
  return {k: np.sort(np.concatenate(v)) for k, v in parts.items()}
