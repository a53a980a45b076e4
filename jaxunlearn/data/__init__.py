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

from jaxunlearn.errors import DatasetNotPreparedError, ForgetSpecError
from jaxunlearn.data.augment import augment
from jaxunlearn.data.batches import FORGET_LABELS
from jaxunlearn.data.batches import batch_indices
from jaxunlearn.data.batches import epoch_batches
from jaxunlearn.data.batches import epoch_permutation
from jaxunlearn.data.batches import random_labels
from jaxunlearn.data.batches import steps_per_epoch
from jaxunlearn.data.batches import unlearning_batch
from jaxunlearn.data.builders import prepare
from jaxunlearn.data.forget import ForgetSet
from jaxunlearn.data.forget import ids_digest
from jaxunlearn.data.forget import make_forget_set
from jaxunlearn.data.forget import write_ids_file
from jaxunlearn.data.source import DATASETS
from jaxunlearn.data.source import Dataset
from jaxunlearn.data.source import Split
from jaxunlearn.data.source import default_data_dir
from jaxunlearn.data.source import load_dataset

__all__ = [
    "DATASETS", "Dataset", "DatasetNotPreparedError", "FORGET_LABELS", "ForgetSet",
    "ForgetSpecError", "Split", "augment", "batch_indices", "default_data_dir",
    "epoch_batches", "epoch_permutation", "ids_digest", "load_dataset",
    "make_forget_set", "prepare", "random_labels", "steps_per_epoch",
    "unlearning_batch", "write_ids_file",
]
