"""Forget sets: which training examples to unlearn, from a one-line spec.

Specs:

* `class:K[,K2...]`: every training example of classes K, K2 (class-wise forgetting;
  those classes are also removed from the test set used for test accuracy).
* `random:FRACTION` (0 < f < 1, written with a `.`, e.g. `random:0.1`) or
  `random:COUNT` (a positive integer): a seeded uniform random subset of train.
* `ids:PATH`: a text file of example ids (`Split.ids` of the *train* split), one per
  line; blank lines and `#` comments are ignored. Never unpickled, only parsed as text.
  An id is the example's own name, not its position: for `digits` and `mnist_subset`
  the row of the package's array (`sklearn.datasets.load_digits()`), for TFDS datasets
  the record index in the TFDS train split; `dataset.train.ids[row]` maps a row to its
  id. The train split holds only part of the ids (val and test hold the rest).
* `rows:PATH`: the same file format, holding positions in `dataset.train` (0-based rows).

Indices (`forget_idx`, `retain_idx`) point into `dataset.train`; `test_*_idx` into
`dataset.test`. `digest` is the sha256 of the sorted forget ids (little-endian int64
bytes): store it with checkpoints to tie a model to its forget set.

Example:
  >>> import tempfile
  >>> from jaxunlearn.data import load_dataset, make_forget_set
  >>> ds = load_dataset("digits", data_dir=tempfile.mkdtemp())
  >>> fs = make_forget_set(ds, "class:3")
  >>> fs.forget_classes, len(fs.forget_idx) + len(fs.retain_idx) == len(ds.train)
  ((3,), True)
  >>> bool((ds.test.labels[fs.test_retain_idx] != 3).all())
  True
  >>> len(make_forget_set(ds, "random:0.1", seed=1).forget_idx)
  126
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import pathlib
import re

import numpy as np

from jaxunlearn.errors import ForgetSpecError

__all__ = [
  "ForgetSet",
  "ForgetSpecError",
  "forget_set_from_rows",
  "make_forget_set",
  "request_kind",
  "successive",
  "write_ids_file",
]

_INT = re.compile(r"[+-]?\d+")


@dataclasses.dataclass(frozen=True, eq=False)  # eq=False: `==` on arrays is ambiguous
class ForgetSet:
  """A forget set and its complement, as sorted index arrays (int64)."""

  spec: str
  forget_idx: np.ndarray
  retain_idx: np.ndarray
  forget_classes: tuple[int, ...]
  test_retain_idx: np.ndarray
  test_forget_idx: np.ndarray
  digest: str


def ids_digest(ids: np.ndarray) -> str:
  """sha256 hex digest of the sorted ids as little-endian int64."""
  return hashlib.sha256(np.sort(np.asarray(ids, dtype="<i8")).tobytes()).hexdigest()


def write_ids_file(path: str | os.PathLike, ids) -> None:
  """Write ids one per line, the format `ids:PATH` reads."""
  pathlib.Path(path).write_text("".join(f"{int(i)}\n" for i in ids))


def _one_line(text: str) -> str:
  return " ".join(str(text).split())


def _fail(spec: str, why: str) -> ForgetSpecError:
  return ForgetSpecError(_one_line(f"forget spec {spec!r}: {why}"))


def _parse_classes(spec: str, arg: str, num_classes: int) -> tuple[int, ...]:
  tokens = [t.strip() for t in arg.split(",")]
  if not arg.strip() or any(not _INT.fullmatch(t) for t in tokens):
    raise _fail(spec, "expected class:K[,K2...] with integer class labels")
  classes = [int(t) for t in tokens]
  bad = [c for c in classes if not 0 <= c < num_classes]
  if bad:
    raise _fail(spec, f"unknown class {bad[0]}; classes are 0..{num_classes - 1}")
  if len(set(classes)) != len(classes):
    raise _fail(spec, "a class is listed twice")
  return tuple(sorted(classes))


def _random_count(spec: str, arg: str, n: int) -> int:
  arg = arg.strip()
  if _INT.fullmatch(arg):
    count = int(arg)
    if count <= 0:
      raise _fail(spec, f"count must be a positive integer, got {count}")
    if count > n:
      raise _fail(spec, f"count {count} exceeds the {n} training examples")
    return count
  try:
    fraction = float(arg)
  except ValueError as e:
    raise _fail(spec, "expected random:FRACTION (0<f<1) or random:COUNT") from e
  if not 0.0 < fraction < 1.0:  # also rejects nan and inf
    raise _fail(spec, f"fraction must be in (0, 1), got {arg}")
  count = int(round(fraction * n))
  if count == 0:
    raise _fail(spec, f"fraction {arg} of {n} examples selects no example (empty set)")
  return count


def _read_ids(spec: str, arg: str) -> np.ndarray:
  path = pathlib.Path(arg.strip()).expanduser()
  if not arg.strip():
    raise _fail(spec, "expected ids:PATH")
  try:
    text = path.read_text()
  except (OSError, UnicodeDecodeError) as e:
    raise _fail(
      spec,
      f"cannot read ids file {str(path)!r}: {type(e).__name__}: "
      f"{getattr(e, 'strerror', None) or e}",
    ) from e
  ids = []
  for lineno, line in enumerate(text.splitlines(), 1):
    token = line.split("#", 1)[0].strip()
    if not token:
      continue
    if not _INT.fullmatch(token):
      raise _fail(spec, f"line {lineno} of {str(path)!r} is not an integer id: {token[:40]!r}")
    ids.append(int(token))
  return np.asarray(ids, dtype=np.int64)


def make_forget_set(dataset, spec: str, seed: int = 0) -> ForgetSet:
  """Build a `ForgetSet` of `dataset` (a `Dataset`) from `spec`; `seed` for `random:`.

  Raises:
    ForgetSpecError: unknown kind, malformed argument, empty set, unknown class, ids
      not in the train split or duplicated, unreadable ids file, fraction outside
      (0, 1), count <= 0, or a forget set equal to the whole training set.
  """
  if not isinstance(spec, str) or ":" not in spec:
    raise _fail(str(spec), "expected KIND:ARG with KIND one of class, random, ids, rows")
  kind, arg = (s.strip() for s in spec.split(":", 1))
  train_labels = np.asarray(dataset.train.labels)
  train_ids = np.asarray(dataset.train.ids)
  n = len(train_labels)
  classes: tuple[int, ...] = ()

  if kind == "class":
    classes = _parse_classes(spec, arg, int(dataset.num_classes))
    forget = np.flatnonzero(np.isin(train_labels, classes))
  elif kind == "random":
    count = _random_count(spec, arg, n)
    forget = np.sort(np.random.default_rng(seed).choice(n, size=count, replace=False))
  elif kind == "ids":
    forget = rows_of_ids(train_ids, _read_ids(spec, arg), spec)
  elif kind == "rows":
    forget = _check_rows(_read_ids(spec, arg), n, spec)
  else:
    raise _fail(spec, f"unknown kind {kind!r}; expected class, random, ids or rows")

  return forget_set_from_rows(dataset, forget, spec=spec, classes=classes)


def _check_rows(rows: np.ndarray, n: int, spec: str) -> np.ndarray:
  rows = np.asarray(rows, np.int64)
  if len(np.unique(rows)) != len(rows):
    uniq, counts = np.unique(rows, return_counts=True)
    raise _fail(spec, f"row {uniq[counts > 1][0]} is listed more than once")
  bad = rows[(rows < 0) | (rows >= n)]
  if len(bad):
    raise _fail(spec, f"row {bad[0]} is outside the train split's rows 0..{n - 1}")
  return np.sort(rows)


def rows_of_ids(train_ids: np.ndarray, ids: np.ndarray, spec: str = "ids") -> np.ndarray:
  """Sorted train rows of ``ids`` (train ids in any order); unknown or repeated ids raise."""
  ids = np.asarray(ids, np.int64)
  train_ids = np.asarray(train_ids, np.int64)
  if len(np.unique(ids)) != len(ids):
    uniq, counts = np.unique(ids, return_counts=True)
    raise _fail(spec, f"id {uniq[counts > 1][0]} is listed more than once")
  order = np.argsort(train_ids, kind="stable")
  sorted_ids = train_ids[order]
  n = len(sorted_ids)
  pos = np.minimum(np.searchsorted(sorted_ids, ids), max(n - 1, 0))
  missing = ids[sorted_ids[pos] != ids] if n else ids
  if len(missing):
    raise _fail(
      spec,
      f"{len(missing)} id(s) not in the train split (e.g. {missing[0]}); ids name examples "
      f"(train ids span {sorted_ids.min()}..{sorted_ids.max()}, with gaps where val and test "
      "examples sit) — for positions in dataset.train use rows:PATH",
    )
  return np.sort(order[pos])


def request_kind(dataset, forget_set: ForgetSet) -> str:
  """``"class"`` when ``forget_set`` is whole classes (every train row of each label it
  holds, whichever spec named it), else ``"rows"``: what a method's per-request defaults
  key on (:attr:`jaxunlearn.engine.methods.Method.request_defaults`), because forgetting
  a class and forgetting rows a retrained model still classifies ask for different runs
  (docs/design.md §12).

  Examples:
    >>> import numpy as np
    >>> from jaxunlearn.data import from_arrays
    >>> ds = from_arrays(np.zeros((6, 2)), [0, 1, 0, 1, 2, 2])
    >>> request_kind(ds, forget_set_from_rows(ds, [0, 2]))  # every 0, given as rows
    'class'
    >>> request_kind(ds, forget_set_from_rows(ds, [0, 1]))  # a 1 stays: rows
    'rows'
  """
  labels = np.asarray(dataset.train.labels)
  forgotten = np.unique(labels[forget_set.forget_idx])
  return "rows" if np.isin(labels[forget_set.retain_idx], forgotten).any() else "class"


def forget_set_from_rows(dataset, rows, *, spec: str = "rows", classes=()) -> ForgetSet:
  """A `ForgetSet` of the train rows ``rows`` (indices, or a boolean mask over train).

  Examples:
    >>> import numpy as np
    >>> from jaxunlearn.data import from_arrays
    >>> ds = from_arrays(np.zeros((6, 2)), [0, 1, 0, 1, 0, 1])
    >>> fs = forget_set_from_rows(ds, np.array([True, False, False, False, False, True]))
    >>> fs.forget_idx.tolist(), fs.retain_idx.tolist()
    ([0, 5], [1, 2, 3, 4])
  """
  n = len(dataset.train)
  rows = np.asarray(rows)
  if rows.dtype == bool:
    if rows.shape != (n,):
      raise _fail(spec, f"a boolean mask needs one entry per train row ({n}), got {rows.shape}")
    rows = np.flatnonzero(rows)
  elif rows.dtype.kind not in "iu" and rows.size:
    raise _fail(spec, f"rows must be integer indices or a boolean mask, got dtype {rows.dtype}")
  forget = _check_rows(rows.reshape(-1), n, spec)
  if len(forget) == 0:
    raise _fail(spec, "the forget set is empty")
  if len(forget) == n:
    raise _fail(spec, "the forget set is the whole training set; nothing would be retained")
  retain = np.setdiff1d(np.arange(n, dtype=np.int64), forget)
  test_forget_mask = np.isin(np.asarray(dataset.test.labels), classes)
  return ForgetSet(
    spec=spec,
    forget_idx=forget,
    retain_idx=retain,
    forget_classes=tuple(sorted(int(c) for c in classes)),
    test_retain_idx=np.flatnonzero(~test_forget_mask).astype(np.int64),
    test_forget_idx=np.flatnonzero(test_forget_mask).astype(np.int64),
    digest=ids_digest(np.asarray(dataset.train.ids)[forget]),
  )


def successive(dataset, forgotten: ForgetSet, request: ForgetSet) -> tuple[ForgetSet, ForgetSet]:
  """A deletion request after earlier ones: ``(step_set, union)``.

  ``step_set`` is what the unlearning steps see: the request's rows not forgotten yet as
  the forget set, and as the retain set only rows that no request names (an example
  forgotten earlier is neither forgotten again nor retained). ``union`` is every
  forgotten row so far: what is evaluated, and what the reference retrain leaves out.
  A request whose rows were all forgotten already raises (a request applies once).

  Examples:
    >>> import numpy as np
    >>> from jaxunlearn.data import from_arrays
    >>> ds = from_arrays(np.zeros((8, 2)), [0, 1] * 4)
    >>> a = forget_set_from_rows(ds, [0, 1])
    >>> step, union = successive(ds, a, forget_set_from_rows(ds, [1, 2]))
    >>> step.forget_idx.tolist(), step.retain_idx.tolist(), union.forget_idx.tolist()
    ([2], [3, 4, 5, 6, 7], [0, 1, 2])
  """
  new = np.setdiff1d(request.forget_idx, forgotten.forget_idx)
  if not len(new):
    raise _fail(
      request.spec,
      f"every one of its {len(request.forget_idx)} examples is forgotten already by an "
      "earlier request; a request applies once",
    )
  classes = tuple(sorted(set(forgotten.forget_classes) | set(request.forget_classes)))
  union = forget_set_from_rows(
    dataset,
    np.union1d(forgotten.forget_idx, request.forget_idx),
    spec=f"{forgotten.spec} + {request.spec}",
    classes=classes,
  )
  step = dataclasses.replace(
    forget_set_from_rows(dataset, new, spec=request.spec, classes=request.forget_classes),
    retain_idx=union.retain_idx,
  )
  return step, union
