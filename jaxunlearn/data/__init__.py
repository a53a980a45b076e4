"""Data for jaxunlearn: datasets, forget sets and deterministic batches (numpy only).

A ground-floor module: it imports nothing else from jaxunlearn.

Example:
  >>> import tempfile
  >>> from jaxunlearn import data
  >>> ds = data.load_dataset("digits", data_dir=tempfile.mkdtemp())
  >>> fs = data.make_forget_set(ds, "class:0")
  >>> b = data.unlearning_batch(ds, fs, step=0, seed=0, n_retain=64, n_forget=16)
  >>> b["retain_image"].shape, bool((b["forget_label"] != b["forget_true_label"]).all())
  ((64, 8, 8, 1), True)
"""

from jaxunlearn.data.augment import augment
from jaxunlearn.data.batches import (
  FORGET_LABELS,
  batch_indices,
  epoch_batches,
  epoch_permutation,
  random_labels,
  steps_per_epoch,
  union_batch,
  unlearning_batch,
)
from jaxunlearn.data.builders import prepare
from jaxunlearn.data.forget import (
  ForgetSet,
  forget_set_from_rows,
  ids_digest,
  make_forget_set,
  request_kind,
  rows_of_ids,
  successive,
  write_ids_file,
)
from jaxunlearn.data.ledger import DeletionLedger, DeletionRequest, data_digest
from jaxunlearn.data.source import (
  DATASETS,
  Dataset,
  Split,
  default_data_dir,
  from_arrays,
  load_dataset,
  split_from_arrays,
)
from jaxunlearn.errors import DatasetNotPreparedError, ForgetSpecError

__all__ = [
  "DATASETS",
  "Dataset",
  "DeletionLedger",
  "DeletionRequest",
  "DatasetNotPreparedError",
  "FORGET_LABELS",
  "ForgetSet",
  "ForgetSpecError",
  "Split",
  "augment",
  "batch_indices",
  "data_digest",
  "default_data_dir",
  "epoch_batches",
  "epoch_permutation",
  "forget_set_from_rows",
  "request_kind",
  "from_arrays",
  "ids_digest",
  "load_dataset",
  "make_forget_set",
  "prepare",
  "random_labels",
  "rows_of_ids",
  "split_from_arrays",
  "steps_per_epoch",
  "successive",
  "union_batch",
  "unlearning_batch",
  "write_ids_file",
]
