"""Deterministic numpy batching: batch k of epoch e is a pure function of (seed, e, k).

Nothing here keeps iterator state, so a run resumed from a checkpoint at global step
`s` gets exactly the batches it would have seen (`batch_indices(..., step=s)`), with no
RNG state to save. Each epoch is a fresh permutation from
`np.random.default_rng([seed, epoch])`; the last partial batch is dropped
(`steps_per_epoch = n // batch_size`) so every step has the same shape under `jit`.

Unlearning draws retain and forget batches from two independent streams, each cycling
through its own set by its own epochs (`unlearning_batch`). Random forget labels are
redrawn once per *forget epoch*: for a given example and epoch the label is fixed, so a
resumed run sees the same targets. `random_wrong` labels never equal the true label;
`random_all` (the paper code's choice) can, which stalls class-wise forgetting
(docs/design.md §4). Random labels always use the dataset's own `num_classes`.

Example:
  >>> import numpy as np
  >>> from jaxunlearn.data import batch_indices, epoch_batches
  >>> b = epoch_batches(10, 4, seed=0, epoch=1)
  >>> len(b), bool((batch_indices(10, 4, seed=0, step=3) == b[1]).all())  # 2 steps/epoch
  (2, True)
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Literal

import numpy as np

from jaxunlearn.errors import DataError

__all__ = [
  "FORGET_LABELS",
  "batch_indices",
  "epoch_batches",
  "epoch_permutation",
  "random_labels",
  "steps_per_epoch",
  "unlearning_batch",
  "union_batch",
]

ForgetLabels = Literal["random_all", "random_wrong", "true"]
FORGET_LABELS = ("random_all", "random_wrong", "true")

# Stream tags keep the retain, forget, label and union streams of one seed independent.
# (They go last and are >= 1: numpy's SeedSequence pads entropy with zeros, so
# [seed, epoch] and [seed, epoch, 0] would be the *same* stream.)
_RETAIN, _FORGET, _LABELS, _UNION = 1, 2, 3, 4


def _check_nonneg_int(name: str, value) -> int:
  if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
    raise ValueError(f"{name} must be a non-negative integer, got {value!r}")
  return int(value)


def _check_batch(n: int, batch_size: int, what: str = "data") -> None:
  if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)):
    raise ValueError(f"batch size must be an integer, got {batch_size!r}")
  if batch_size <= 0:
    raise ValueError(f"batch size must be positive, got {batch_size}")
  if batch_size > n:
    raise DataError(f"batch size {batch_size} is larger than the {n} examples of the {what}")


@functools.lru_cache(maxsize=16)
def _permutation(n: int, key: tuple[int, ...]) -> np.ndarray:
  # Cached: per-step callers ask for the same epoch's permutation many times.
  perm = np.random.default_rng(list(key)).permutation(n)
  perm.setflags(write=False)
  return perm


def epoch_permutation(n: int, seed: int, epoch: int) -> np.ndarray:
  """The (read-only) permutation of `range(n)` used for `epoch`."""
  return _permutation(int(n), (_check_nonneg_int("seed", seed), _check_nonneg_int("epoch", epoch)))


def steps_per_epoch(n: int, batch_size: int) -> int:
  """Full batches per epoch (`n // batch_size`, the partial batch is dropped)."""
  _check_batch(n, batch_size)
  return n // batch_size


def epoch_batches(
  n: int, batch_size: int, seed: int, epoch: int, drop_last: bool = True
) -> list[np.ndarray]:
  """Index batches of one epoch (read-only views); with `drop_last=False` the last may
  be short."""
  _check_batch(n, batch_size)
  perm = epoch_permutation(n, seed, epoch)
  stop = n - n % batch_size if drop_last else n
  return [perm[i : i + batch_size] for i in range(0, stop, batch_size)]


def _stream_batch(
  n: int, batch_size: int, key: tuple[int, ...], step: int
) -> tuple[np.ndarray, int]:
  epoch, k = divmod(_check_nonneg_int("step", step), n // batch_size)
  return _permutation(n, (*key[:1], epoch, *key[1:]))[k * batch_size : (k + 1) * batch_size], epoch


def batch_indices(n: int, batch_size: int, seed: int, step: int) -> np.ndarray:
  """Indices of global `step`: `epoch_batches(n, batch_size, seed, step // spe)[step % spe]`."""
  _check_batch(n, batch_size)
  return _stream_batch(n, batch_size, (_check_nonneg_int("seed", seed),), step)[0]


def random_labels(
  rng_or_seed, true_labels: np.ndarray, num_classes: int, wrong_only: bool
) -> np.ndarray:
  """Random labels in `[0, num_classes)`, int32, one per true label.

  `wrong_only=False`: uniform over all classes. `wrong_only=True`: uniform over the
  `num_classes - 1` classes other than the true one (draw r in [0, C-1) and skip the
  true label: r + (r >= y)), so the target is never the true class.
  """
  rng = np.random.default_rng(rng_or_seed)
  y = np.asarray(true_labels)
  if y.size and (y.min() < 0 or y.max() >= num_classes):
    raise ValueError(f"true labels must be in [0, {num_classes}), got {y.min()}..{y.max()}")
  if not wrong_only:
    return rng.integers(0, num_classes, size=y.shape).astype(np.int32)
  if num_classes < 2:
    raise ValueError("wrong-only labels need at least 2 classes")
  r = rng.integers(0, num_classes - 1, size=y.shape)
  return (r + (r >= y)).astype(np.int32)


def _train_arrays(data, num_classes: int | None) -> tuple[np.ndarray, np.ndarray, int]:
  """(images, labels, num_classes) of the train split from a Dataset or arrays."""
  if hasattr(data, "train"):
    return data.train.images, data.train.labels, int(data.num_classes)
  if isinstance(data, Mapping):
    images, labels = data["images"], data["labels"]
  else:
    images, labels = data
  if num_classes is None:
    raise ValueError("num_classes is required when passing arrays instead of a Dataset")
  return np.asarray(images), np.asarray(labels), int(num_classes)


def _forget_targets(
  true: np.ndarray,
  positions: np.ndarray,
  forget_labels: str,
  seed: int,
  epoch: int,
  num_classes: int,
  n_forget_total: int,
  all_true: np.ndarray,
) -> np.ndarray:
  """Targets for forget examples at `positions` (into the forget set) in `epoch`."""
  if forget_labels == "true":
    return true.astype(np.int32)
  # One draw for the whole forget set per epoch, then index: the label of an example
  # depends only on (seed, epoch, its position), not on which batch it lands in.
  labels = random_labels(
    np.random.default_rng([seed, epoch, _LABELS]),
    all_true,
    num_classes,
    wrong_only=forget_labels == "random_wrong",
  )
  assert len(labels) == n_forget_total
  return labels[positions]


def _check_forget_labels(forget_labels: str) -> None:
  if forget_labels not in FORGET_LABELS:
    raise ValueError(f"forget_labels must be one of {FORGET_LABELS}, got {forget_labels!r}")


def unlearning_batch(
  data,
  forget_set,
  step: int,
  *,
  seed: int,
  n_retain: int,
  n_forget: int,
  forget_labels: ForgetLabels = "random_wrong",
  num_classes: int | None = None,
) -> dict[str, np.ndarray]:
  """Separate retain and forget batches for global `step`, deterministic in (seed, step).

  Args:
    data: a `Dataset` (its train split is used), or `(images, labels)` of the train
      split together with `num_classes=`.
    forget_set: a `ForgetSet` (`forget_idx`, `retain_idx` index the train split).
    step: global step >= 0. Retain and forget sets cycle by their own epochs
      (`step // (len(set) // n)`), each with its own seeded permutation.
    forget_labels: "random_wrong" (uniform over wrong classes), "random_all" (uniform
      over all classes) or "true" (e.g. for gradient ascent).

  Returns:
    dict of `retain_image`, `retain_label`, `forget_image`, `forget_label` (the
    target), `forget_true_label`, and `retain_index` / `forget_index` (train rows).
  """
  _check_forget_labels(forget_labels)
  seed = _check_nonneg_int("seed", seed)
  images, labels, num_classes = _train_arrays(data, num_classes)
  retain_idx, forget_idx = np.asarray(forget_set.retain_idx), np.asarray(forget_set.forget_idx)
  _check_batch(len(retain_idx), n_retain, "retain set")
  _check_batch(len(forget_idx), n_forget, "forget set")

  r_pos, _ = _stream_batch(len(retain_idx), n_retain, (seed, _RETAIN), step)
  f_pos, f_epoch = _stream_batch(len(forget_idx), n_forget, (seed, _FORGET), step)
  r_rows, f_rows = retain_idx[r_pos], forget_idx[f_pos]
  f_true = labels[f_rows].astype(np.int32)
  return {
    "retain_image": images[r_rows],
    "retain_label": labels[r_rows].astype(np.int32),
    "forget_image": images[f_rows],
    "forget_label": _forget_targets(
      f_true, f_pos, forget_labels, seed, f_epoch, num_classes, len(forget_idx), labels[forget_idx]
    ),
    "forget_true_label": f_true,
    "retain_index": r_rows,
    "forget_index": f_rows,
  }


def union_batch(
  data,
  forget_set,
  step: int,
  *,
  seed: int,
  batch_size: int,
  forget_labels: ForgetLabels = "random_wrong",
  num_classes: int | None = None,
) -> dict[str, np.ndarray]:
  """The paper code's batches: one shuffled batch from the whole train split (the *mixed*
  layout of the unlearning engine).

  Batches cycle over all training examples (forget and retain together), so a batch
  holds forget examples in proportion to the forget set's share of train, sometimes
  none. `is_forget` marks them; their `label` is the random (or true) target, retain
  examples keep their true label. Loss weights are the batch fractions,
  `forget_weight = n_forget_in_batch / batch_size` and `retain_weight = 1 -
  forget_weight`, so `retain_weight * mean_retain_loss + forget_weight *
  mean_forget_loss` equals the per-example mean over the batch. Guard the means of
  an empty group (e.g. `sum(mask * loss) / max(1, sum(mask))`).

  Random forget labels are drawn per union epoch for the whole forget set, so an
  example's label is fixed within an epoch.

  Returns:
    dict of `image`, `label`, `true_label`, `is_forget` (bool), `index` (train rows),
    `forget_weight`, `retain_weight` (float32 scalars).
  """
  _check_forget_labels(forget_labels)
  seed = _check_nonneg_int("seed", seed)
  images, labels, num_classes = _train_arrays(data, num_classes)
  forget_idx = np.asarray(forget_set.forget_idx)
  retain_idx = np.asarray(forget_set.retain_idx)
  # The rows in play: every train row, except rows an earlier deletion request forgot
  # (neither forget nor retain here, see data.forget.successive).
  pool = None
  if len(forget_idx) + len(retain_idx) != len(labels):
    pool = np.union1d(forget_idx, retain_idx)
  n = len(labels) if pool is None else len(pool)
  _check_batch(n, batch_size, "train split")

  rows, epoch = _stream_batch(n, batch_size, (seed, _UNION), step)
  if pool is not None:
    rows = pool[rows]
  true = labels[rows].astype(np.int32)
  f_pos = np.searchsorted(forget_idx, rows)  # forget_idx is sorted
  is_forget = forget_idx[np.minimum(f_pos, len(forget_idx) - 1)] == rows
  target = true.copy()
  if is_forget.any():
    target[is_forget] = _forget_targets(
      true[is_forget],
      f_pos[is_forget],
      forget_labels,
      seed,
      epoch,
      num_classes,
      len(forget_idx),
      labels[forget_idx],
    )
  frac = np.float32(is_forget.sum() / batch_size)
  return {
    "image": images[rows],
    "label": target,
    "true_label": true,
    "is_forget": is_forget,
    "index": rows,
    "forget_weight": frac,
    "retain_weight": np.float32(1) - frac,
  }
