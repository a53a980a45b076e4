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

from .augment import augment
from .batches import FORGET_LABELS
from .batches import batch_indices
from .batches import epoch_batches
from .batches import epoch_permutation
from .batches import random_labels
from .batches import steps_per_epoch
from .batches import union_batch
from .batches import unlearning_batch
from .builders import prepare
from .forget import ForgetSet
from .forget import ForgetSpecError
from .forget import ids_digest
from .forget import make_forget_set
from .forget import write_ids_file
from .source import DATASETS
from .source import Dataset
from .source import DatasetNotPreparedError
from .source import Split
from .source import default_data_dir
from .source import load_dataset

__all__ = [
    "DATASETS", "Dataset", "DatasetNotPreparedError", "FORGET_LABELS", "ForgetSet",
    "ForgetSpecError", "Split", "augment", "batch_indices", "default_data_dir",
    "epoch_batches", "epoch_permutation", "ids_digest", "load_dataset",
    "make_forget_set", "prepare", "random_labels", "steps_per_epoch", "union_batch",
    "unlearning_batch", "write_ids_file",
]
