"""A dataset in memory: :class:`Split` and :class:`Dataset`, and the constructors over a
user's arrays (:func:`from_arrays`, :func:`split_from_arrays`), which refuse non-finite
inputs and labels that are not class ids before any work.

The types every other data module builds on; this module imports none of them, so the
loaders (:mod:`~jaxunlearn.data.source`, TFDS), the generated TOFU set
(:mod:`~jaxunlearn.data.tofu`) and the builders that prepare it import in one direction.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from jaxunlearn.errors import DataError

__all__ = ["Dataset", "Split", "from_arrays", "split_from_arrays"]


@dataclasses.dataclass(frozen=True, eq=False)  # eq=False: `==` on arrays is ambiguous
class Split:
  """One split: `images` float32 of any rank with examples first (NHWC in [0, 1] for the
  package datasets, `(N, features)` for tabular data); `labels` int32; `ids` int64
  (sorted for the package datasets; any unique ids for arrays, see `from_arrays`)."""

  images: np.ndarray
  labels: np.ndarray
  ids: np.ndarray

  def __post_init__(self):
    n = len(self.ids)
    if self.images.ndim < 1 or len(self.images) != n or self.labels.shape != (n,):
      raise DataError(
        f"inconsistent split: inputs {self.images.shape}, labels {self.labels.shape}, "
        f"ids {self.ids.shape}; each needs one row per example (labels 1-D class ids)"
      )

  def __len__(self) -> int:
    return len(self.ids)


@dataclasses.dataclass(frozen=True, eq=False)
class Dataset:
  """A dataset with fixed train / val / test splits."""

  name: str
  num_classes: int
  image_shape: tuple[int, ...]
  train: Split
  val: Split
  test: Split


def split_from_arrays(x, y, ids=None, *, name: str = "train") -> Split:
  """A :class:`Split` from a user's arrays: inputs of any rank (examples first), integer
  class labels, optional unique ids (default: the row numbers).

  Examples:
    >>> s = split_from_arrays(np.zeros((5, 3)), [0, 1, 0, 1, 1])
    >>> s.images.shape, s.ids.tolist()
    ((5, 3), [0, 1, 2, 3, 4])
  """
  x = np.asarray(x)
  if x.dtype.kind not in "fiub":
    raise DataError(f"{name} inputs have dtype {x.dtype}; pass numbers (they become float32)")
  with np.errstate(over="ignore"):  # too large for float32: refused just below, by row
    x = np.ascontiguousarray(x, np.float32)
  _check_finite_rows(x, name)
  y = np.asarray(y)
  if (
    y.ndim != 1
    or y.dtype.kind not in "iu"
    and not (y.dtype.kind == "f" and np.all(np.mod(y, 1) == 0))
  ):
    raise DataError(
      f"{name} labels must be a 1-D array of integer class ids, got shape {y.shape} "
      f"dtype {y.dtype} (one-hot labels: pass labels.argmax(-1))"
    )
  if len(y) != len(x):
    raise DataError(f"{name} has {len(x)} inputs but {len(y)} labels")
  if len(y) and y.min() < 0:
    raise DataError(f"{name} labels must be class ids ≥ 0, got {int(y.min())}")
  ids = np.arange(len(y), dtype=np.int64) if ids is None else np.asarray(ids, np.int64)
  if ids.shape != (len(y),):
    raise DataError(f"{name} ids have shape {ids.shape}; pass one id per row ({len(y)})")
  if len(np.unique(ids)) != len(ids):
    raise DataError(f"{name} ids are not unique; each row needs its own id")
  return Split(x, y.astype(np.int32), ids)


def _check_finite_rows(x: np.ndarray, name: str) -> None:
  """Refuses NaN or infinite inputs (also float64 values too large for float32), naming
  the first bad row: left in, they skip every step of a run or empty its metrics."""
  bad = ~np.isfinite(x.reshape(len(x), -1)).all(axis=1) if x.size else np.zeros(0, bool)
  if bad.any():
    rows = np.flatnonzero(bad)
    more = f" (and {len(rows) - 1} more rows)" if len(rows) > 1 else ""
    raise DataError(
      f"{name} inputs hold NaN or infinity in row {int(rows[0])}{more}; drop or impute "
      f"those rows first (np.isfinite(x).all(axis=tuple(range(1, x.ndim))) keeps the "
      f"good ones; float64 beyond 3.4e38 overflows float32)"
    )


def from_arrays(
  x, y, *, ids=None, val=None, test=None, num_classes: int | None = None, name: str = "arrays"
) -> Dataset:
  """A :class:`Dataset` over in-memory arrays; ``val`` and ``test`` are optional
  ``(x, y)`` pairs (absent ones are empty splits, and the metrics that need them are
  skipped).

  Examples:
    >>> ds = from_arrays(np.zeros((6, 4)), [0, 1, 2, 0, 1, 2], test=(np.ones((2, 4)), [0, 2]))
    >>> ds.num_classes, ds.image_shape, len(ds.val), len(ds.test)
    (3, (4,), 0, 2)
  """
  train = split_from_arrays(x, y, ids, name="train")
  feature = train.images.shape[1:]

  def optional(pair, part):
    if pair is None:
      return Split(
        np.zeros((0, *feature), np.float32), np.zeros(0, np.int32), np.zeros(0, np.int64)
      )
    if not isinstance(pair, (tuple, list)) or len(pair) != 2:
      raise DataError(f"{part} must be an (x, y) pair of arrays")
    split = split_from_arrays(*pair, name=part)
    if split.images.shape[1:] != feature:
      raise DataError(f"{part} inputs have shape {split.images.shape[1:]}, train {feature}")
    return split

  val_split, test_split = optional(val, "val"), optional(test, "test")
  seen = max(int(s.labels.max()) + 1 for s in (train, val_split, test_split) if len(s))
  if num_classes is None:
    num_classes = seen
  elif num_classes < seen:
    raise DataError(f"num_classes={num_classes} but labels go up to {seen - 1}")
  return Dataset(name, int(num_classes), tuple(feature), train, val_split, test_split)
