"""Load a dataset as in-memory numpy arrays: `load_dataset(name) -> Dataset`.

Every dataset goes through one path, TFDS `array_record` + `tfds.data_source` (random
access numpy, no TensorFlow), reading from one data dir (`default_data_dir()`, i.e.
`$JAXUNLEARN_DATA_DIR` or `~/.cache/jaxunlearn/datasets`).

* `digits`, `mnist_subset` ship with packages: built on first use (see `builders.py`).
  Ids are the rows of the package's array; splits are fixed 70/10/20 per class.
* `cifar10`, `cifar100`, `svhn_cropped`, `mnist`, `fashion_mnist` must already be
  prepared in the data dir in `array_record` format: this library never downloads
  (offline machines hang for minutes in TFDS download retries). Not prepared ->
  `DatasetNotPreparedError` at once, saying how to prepare it elsewhere. Their ids are
  the record index in the TFDS split (train ids and test ids are separate ranges);
  validation = 10 % of TFDS train held out by a seeded hash of the id (CIFAR: the
  paper's 45k/5k), test = TFDS test. Images uint8 -> float32 / 255.

All images are float32 NHWC in [0, 1], labels int32, ids int64; rows are sorted by id
so the order never depends on TFDS's write shuffling. Arrays are read-only.

Example:
  >>> import tempfile
  >>> from jaxunlearn.data import load_dataset
  >>> ds = load_dataset("digits", data_dir=tempfile.mkdtemp())
  >>> ds.num_classes, ds.image_shape, ds.train.images.shape, ds.test.labels.dtype
  (10, (8, 8, 1), (1259, 8, 8, 1), dtype('int32'))
"""

from __future__ import annotations

import os
import pathlib

import numpy as np

from jaxunlearn.data import builders, splits, tofu
from jaxunlearn.data.arrays import Dataset, Split, from_arrays, split_from_arrays
from jaxunlearn.data.paths import default_data_dir, resolve_data_dir
from jaxunlearn.errors import DataError, DatasetNotPreparedError

__all__ = [
  "DATASETS",
  "Dataset",
  "DatasetNotPreparedError",
  "Split",
  "default_data_dir",
  "from_arrays",
  "load_dataset",
  "load_tofu",
  "split_from_arrays",
]

PACKAGE_DATASETS = ("digits", "mnist_subset")
TFDS_DATASETS = ("cifar10", "cifar100", "svhn_cropped", "mnist", "fashion_mnist")
DATASETS = PACKAGE_DATASETS + TFDS_DATASETS
VAL_FRACTION = 0.1  # of TFDS train; 5,000 of CIFAR's 50,000 as in the paper
VAL_SEED = 0


def _split_from_records(records, id_of=None) -> Split:
  """Stack decoded TFDS records; sort by id; freeze."""
  ids = np.asarray([r["id"] for r in records] if id_of is None else id_of, dtype=np.int64)
  images = np.stack([r["image"] for r in records])
  if images.dtype == np.uint8:
    images = images.astype(np.float32) / np.float32(255)
  images = images.astype(np.float32, copy=False)
  labels = np.asarray([r["label"] for r in records], dtype=np.int32)
  order = np.argsort(ids, kind="stable")
  arrays = [np.ascontiguousarray(a[order]) for a in (images, labels, ids)]
  for a in arrays:
    a.setflags(write=False)  # shared by everything that holds this Dataset
  return Split(*arrays)


def _read_all(source) -> list:
  return list(source.__getitems__(range(len(source))))


def _load_package_dataset(name: str, data_dir: pathlib.Path) -> Dataset:
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top

  builders.prepare(name, data_dir)
  parts = {
    s: _split_from_records(
      _read_all(
        tfds.data_source(name, split=s, data_dir=str(data_dir), download=False, try_gcs=False)
      )
    )
    for s in ("train", "validation", "test")
  }
  shape, num_classes = builders.image_shape_and_classes(name)
  return Dataset(name, num_classes, shape, parts["train"], parts["validation"], parts["test"])


def _prepare_hint(name: str, data_dir: pathlib.Path) -> str:
  return (
    f'on a machine with network and tensorflow run: python -c "import '
    f"tensorflow_datasets as tfds; tfds.builder('{name}', data_dir='{data_dir}', "
    f"file_format='array_record').download_and_prepare()\" then copy "
    f"{data_dir / name} here"
  )


def _prepared_version(name: str, data_dir: pathlib.Path) -> str:
  """Newest version folder of `name` holding train and test array_record files.

  Checked on disk *before* any TFDS builder exists, so a missing dataset fails in
  well under a millisecond and TFDS never gets the chance to try (and retry) a
  download. (Measured offline: `tfds.builder("cifar10", data_dir=empty)` 0.07 s and
  `tfds.data_source(..., download=False)` 2 ms, both fine; `download=True` hangs.)
  """
  candidates = []
  for info in (data_dir / name).glob("*/dataset_info.json"):
    vdir = info.parent
    have = {s: any(vdir.glob(f"{name}-{s}.array_record*")) for s in ("train", "test")}
    if all(have.values()):
      try:
        candidates.append(tuple(int(p) for p in vdir.name.split(".")))
      except ValueError:  # e.g. TFDS's own `incomplete.*` temp folders
        continue
    elif any(vdir.glob(f"{name}-train.tfrecord*")):
      raise DatasetNotPreparedError(
        f"{name} in {vdir} is in tfrecord format, which needs TensorFlow to read; "
        f"re-prepare it with file_format='array_record': {_prepare_hint(name, data_dir)}"
      )
  if not candidates:
    raise DatasetNotPreparedError(
      f"{name} is not prepared in {data_dir} and this library never downloads; "
      f"{_prepare_hint(name, data_dir)} (or set $JAXUNLEARN_DATA_DIR to a dir that has it)"
    )
  return ".".join(map(str, max(candidates)))


def _load_tfds_dataset(name: str, data_dir: pathlib.Path) -> Dataset:
  version = _prepared_version(name, data_dir)
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top

  def source(split):
    # download=False and try_gcs=False: never touch the network, even if the check
    # above is fooled by a damaged folder.
    return tfds.data_source(
      f"{name}:{version}", split=split, data_dir=str(data_dir), download=False, try_gcs=False
    )

  train_src, test_src = source("train"), source("test")
  features = train_src.dataset_info.features
  num_classes = int(features["label"].num_classes)
  shape = tuple(int(d) for d in features["image"].shape)

  train_records = _read_all(train_src)
  keep, held = splits.holdout_split(np.arange(len(train_records)), VAL_FRACTION, VAL_SEED)
  train = _split_from_records([train_records[i] for i in keep], id_of=keep)
  val = _split_from_records([train_records[i] for i in held], id_of=held)
  test = _split_from_records(_read_all(test_src), id_of=np.arange(len(test_src)))
  return Dataset(name, num_classes, shape, train, val, test)


def load_dataset(name: str = "digits", data_dir: str | os.PathLike | None = None) -> Dataset:
  """Load `name` (one of `DATASETS`) from `data_dir` (default: `default_data_dir()`).

  Raises:
    ValueError: unknown name.
    DatasetNotPreparedError: a TFDS dataset that is not prepared in `data_dir`.
  """
  if name not in DATASETS:
    raise DataError(f"unknown dataset {name!r}; valid names: {', '.join(DATASETS)}")
  path = resolve_data_dir(data_dir)
  if name in PACKAGE_DATASETS:
    return _load_package_dataset(name, path)
  return _load_tfds_dataset(name, path)


def load_tofu(data_dir: str | os.PathLike | None = None) -> tofu.QADataset:
  """The default TOFU-style set (:func:`jaxunlearn.data.tofu.make_dataset` at its
  defaults) through TFDS: prepared once into ``data_dir`` as an ``array_record`` dataset
  (:func:`jaxunlearn.data.prepare`; ``tfds.data_source("tofu", ...)`` reads it) and read
  back, equal to ``make_dataset()`` array for array. It lives here, with the other TFDS
  readers, rather than in :mod:`~jaxunlearn.data.tofu`, which the builder that prepares
  it imports: one direction, no circle."""
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top

  root = resolve_data_dir(data_dir)
  builders.prepare("tofu", root)
  parts = {}
  for split in ("train", "holdout"):
    source = tfds.data_source(
      "tofu", split=split, data_dir=str(root), download=False, try_gcs=False
    )
    records = sorted(_read_all(source), key=lambda r: int(r["id"]))
    parts[split] = {k: np.stack([np.asarray(r[k]) for r in records]) for k in records[0]}
  info = source.dataset_info.metadata
  keys = ("tokens", "label", "paraphrased", "perturbed", "perturbed_answers")
  columns = lambda part: tuple(part[k] for k in keys)
  return tofu.qa_dataset(
    "tofu_a100_f10_w20_s0", tofu.WordTokenizer(info["vocab"]), int(info["authors"]),
    columns(parts["train"]), columns(parts["holdout"]),
  )  # fmt: skip
