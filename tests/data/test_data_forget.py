"""Tests of forget-set specs (jaxunlearn.data.forget)."""

import hashlib

import numpy as np
import pytest

from jaxunlearn import data
from jaxunlearn.data import make_forget_set
from jaxunlearn.errors import ForgetSpecError


@pytest.fixture(scope="session")
def digits(tmp_path_factory):
  # Same dir as tests/test_data.py's fixture: built once per session.
  return data.load_dataset("digits", tmp_path_factory.getbasetemp() / "jaxunlearn_data")


def _ids_file(tmp_path, lines, name="ids.txt"):
  p = tmp_path / name
  p.write_text("\n".join(str(x) for x in lines) + "\n")
  return p


def test_class_forget_set_contents(digits):
  fs = data.make_forget_set(digits, "class:3")
  assert fs.forget_classes == (3,)
  np.testing.assert_array_equal(fs.forget_idx, np.flatnonzero(digits.train.labels == 3))
  np.testing.assert_array_equal(fs.retain_idx, np.flatnonzero(digits.train.labels != 3))
  np.testing.assert_array_equal(fs.test_retain_idx, np.flatnonzero(digits.test.labels != 3))
  np.testing.assert_array_equal(fs.test_forget_idx, np.flatnonzero(digits.test.labels == 3))
  assert len(fs.test_forget_idx) > 0
  assert set(np.unique(digits.test.labels[fs.test_retain_idx])) == set(range(10)) - {3}


def test_multi_class_spec_is_sorted_and_tolerates_spaces(digits):
  fs = data.make_forget_set(digits, "class: 7, 1")
  assert fs.forget_classes == (1, 7)
  assert set(np.unique(digits.train.labels[fs.forget_idx])) == {1, 7}
  assert not np.isin(digits.test.labels[fs.test_retain_idx], [1, 7]).any()


@pytest.mark.parametrize(
  "spec,count", [("random:0.1", 126), ("random:0.5", 630), ("random:37", 37), ("random:1e-1", 126)]
)
def test_random_forget_set_size_and_complement(digits, spec, count):
  n = len(digits.train)
  fs = data.make_forget_set(digits, spec, seed=0)
  assert len(fs.forget_idx) == count
  assert np.all(np.diff(fs.forget_idx) > 0) and np.all(np.diff(fs.retain_idx) > 0)
  np.testing.assert_array_equal(np.sort(np.r_[fs.forget_idx, fs.retain_idx]), np.arange(n))
  assert fs.forget_classes == ()
  np.testing.assert_array_equal(fs.test_retain_idx, np.arange(len(digits.test)))
  assert fs.test_forget_idx.size == 0


def test_random_forget_set_is_seeded(digits):
  a = data.make_forget_set(digits, "random:0.1", seed=0)
  b = data.make_forget_set(digits, "random:0.1", seed=0)
  c = data.make_forget_set(digits, "random:0.1", seed=1)
  np.testing.assert_array_equal(a.forget_idx, b.forget_idx)
  assert a.digest == b.digest
  assert not np.array_equal(a.forget_idx, c.forget_idx) and a.digest != c.digest


def test_ids_spec_round_trip(digits, tmp_path):
  fs = data.make_forget_set(digits, "random:50", seed=3)
  ids = digits.train.ids[fs.forget_idx]
  path = tmp_path / "forget_ids.txt"
  data.write_ids_file(path, ids)
  back = data.make_forget_set(digits, f"ids:{path}")
  np.testing.assert_array_equal(back.forget_idx, fs.forget_idx)
  np.testing.assert_array_equal(back.retain_idx, fs.retain_idx)
  assert back.digest == fs.digest and back.forget_classes == ()
  # Order, blank lines and comments do not matter; the digest is of the sorted ids.
  shuffled = np.random.default_rng(0).permutation(ids)
  lines = ["# forget request 42", ""] + [f"{i}  # user" for i in shuffled] + [""]
  again = data.make_forget_set(digits, f"ids:{_ids_file(tmp_path, lines, 'b.txt')}")
  np.testing.assert_array_equal(again.forget_idx, fs.forget_idx)
  assert again.digest == fs.digest


def test_digest_is_sha256_of_sorted_forget_ids(digits):
  fs = data.make_forget_set(digits, "class:0")
  ids = np.sort(digits.train.ids[fs.forget_idx]).astype("<i8")
  assert fs.digest == hashlib.sha256(ids.tobytes()).hexdigest()
  assert fs.digest != data.make_forget_set(digits, "class:1").digest


def _spec_errors(digits, tmp_path):
  n = len(digits.train)
  train_ids = digits.train.ids
  test_id = int(digits.test.ids[0])  # a real id, but not in train
  all_classes = ",".join(map(str, range(10)))
  return [
    ("", "KIND:ARG"),
    ("class3", "KIND:ARG"),
    ("forget:3", "unknown kind"),
    ("class:", "integer class"),
    ("class:a", "integer class"),
    ("class:1.5", "integer class"),
    ("class:1,,2", "integer class"),
    ("class:10", "unknown class 10"),
    ("class:-1", "unknown class -1"),
    ("class:2,2", "twice"),
    (f"class:{all_classes}", "whole training set"),
    ("random:", "FRACTION"),
    ("random:abc", "FRACTION"),
    ("random:0", "positive integer"),
    ("random:-5", "positive integer"),
    ("random:0.0", "(0, 1)"),
    ("random:1.0", "(0, 1)"),
    ("random:1.5", "(0, 1)"),
    ("random:-0.1", "(0, 1)"),
    ("random:nan", "(0, 1)"),
    ("random:0.0001", "empty"),
    (f"random:{n}", "whole training set"),
    (f"random:{n + 1}", "exceeds"),
    ("ids:", "ids:PATH"),
    (f"ids:{tmp_path / 'missing.txt'}", "cannot read"),
    (f"ids:{tmp_path}", "cannot read"),  # a directory
    (f"ids:{_ids_file(tmp_path, [], 'empty.txt')}", "empty"),
    (f"ids:{_ids_file(tmp_path, ['# only a comment'], 'c.txt')}", "empty"),
    (
      f"ids:{_ids_file(tmp_path, [train_ids[0], train_ids[1], train_ids[0]], 'd.txt')}",
      f"id {train_ids[0]} is listed more than once",
    ),
    (f"ids:{_ids_file(tmp_path, [train_ids[0], 'x7'], 'e.txt')}", "line 2"),
    (f"ids:{_ids_file(tmp_path, [train_ids[0], 1.5], 'f.txt')}", "not an integer"),
    (f"ids:{_ids_file(tmp_path, [train_ids[0], 99999], 'g.txt')}", "not in the train split"),
    (f"ids:{_ids_file(tmp_path, [train_ids[0], -1], 'h.txt')}", "not in the train split"),
    (f"ids:{_ids_file(tmp_path, [test_id], 'i.txt')}", "not in the train split"),
    (f"ids:{_ids_file(tmp_path, train_ids, 'j.txt')}", "whole training set"),
  ]


def test_every_invalid_spec_raises_one_line_forget_spec_error(digits, tmp_path):
  (tmp_path / "bin.txt").write_bytes(b"\xff\xfe\x00\x81")
  cases = _spec_errors(digits, tmp_path) + [(f"ids:{tmp_path / 'bin.txt'}", "cannot read")]
  for spec, expected in cases:
    with pytest.raises(data.ForgetSpecError) as e:
      data.make_forget_set(digits, spec)
    msg = str(e.value)
    assert isinstance(e.value, ValueError)
    assert "\n" not in msg, (spec, msg)
    assert expected in msg, (spec, msg)
    assert repr(spec) in msg, (spec, msg)


def test_spec_must_be_a_string(digits):
  with pytest.raises(data.ForgetSpecError):
    data.make_forget_set(digits, None)


def test_ids_file_is_never_unpickled(digits, tmp_path):
  import pickle

  path = tmp_path / "ids.pkl"
  path.write_bytes(pickle.dumps([int(digits.train.ids[0])]))
  with pytest.raises(data.ForgetSpecError):
    data.make_forget_set(digits, f"ids:{path}")


# --- issue 11: rows, unsorted ids, masks, successive requests --------------------------


def _arrays_dataset(n=12, ids=None):
  from jaxunlearn.data import from_arrays

  return from_arrays(np.arange(n * 3, dtype=np.float32).reshape(n, 3), np.arange(n) % 3, ids=ids)


def test_rows_spec_reads_positions(tmp_path):
  from jaxunlearn.data import write_ids_file

  ds = _arrays_dataset(ids=np.arange(12)[::-1] * 10)  # ids unrelated to positions
  write_ids_file(tmp_path / "rows.txt", [5, 1])
  fs = make_forget_set(ds, f"rows:{tmp_path / 'rows.txt'}")
  assert fs.forget_idx.tolist() == [1, 5]
  write_ids_file(tmp_path / "bad.txt", [12])
  with pytest.raises(ForgetSpecError, match=r"row 12 is outside the train split's rows 0..11"):
    make_forget_set(ds, f"rows:{tmp_path / 'bad.txt'}")


def test_ids_spec_maps_unsorted_ids_to_their_rows(tmp_path):
  from jaxunlearn.data import write_ids_file

  ids = np.array([70, 10, 50, 0, 30, 20, 60, 40, 80, 90, 110, 100])
  ds = _arrays_dataset(ids=ids)
  write_ids_file(tmp_path / "ids.txt", [50, 100])
  fs = make_forget_set(ds, f"ids:{tmp_path / 'ids.txt'}")
  assert fs.forget_idx.tolist() == [2, 11]
  assert ds.train.ids[fs.forget_idx].tolist() == [50, 100]
  write_ids_file(tmp_path / "rows_not_ids.txt", [5])
  with pytest.raises(ForgetSpecError, match="for positions in dataset.train use rows:PATH"):
    make_forget_set(ds, f"ids:{tmp_path / 'rows_not_ids.txt'}")


def test_forget_set_from_a_mask_equals_from_indices():
  from jaxunlearn.data import forget_set_from_rows

  ds = _arrays_dataset()
  mask = np.zeros(12, bool)
  mask[[3, 7]] = True
  a, b = forget_set_from_rows(ds, mask), forget_set_from_rows(ds, [7, 3])
  assert a.forget_idx.tolist() == b.forget_idx.tolist() == [3, 7]
  assert a.digest == b.digest
  with pytest.raises(ForgetSpecError, match="one entry per train row"):
    forget_set_from_rows(ds, mask[:5])
  with pytest.raises(ForgetSpecError, match="listed more than once"):
    forget_set_from_rows(ds, [1, 1])


def test_successive_requests_union_and_refusal():
  from jaxunlearn.data import forget_set_from_rows, successive, union_batch

  ds = _arrays_dataset()
  a = forget_set_from_rows(ds, [0, 1, 2])
  step, union = successive(ds, a, forget_set_from_rows(ds, [2, 3]))
  assert step.forget_idx.tolist() == [3]
  assert union.forget_idx.tolist() == [0, 1, 2, 3]
  assert step.retain_idx.tolist() == union.retain_idx.tolist() == list(range(4, 12))
  with pytest.raises(ForgetSpecError, match="forgotten already by an earlier request"):
    successive(ds, union, forget_set_from_rows(ds, [1, 3]))
  # mixed batches stream over the rows in play only: never an earlier request's rows
  seen = np.concatenate(
    [union_batch(ds, step, t, seed=0, batch_size=3)["index"] for t in range(12)]
  )
  assert set(seen.tolist()) == set(range(3, 12))


def test_the_request_kind_is_whole_classes_whichever_spec_names_them(digits):
  labels = np.asarray(digits.train.labels)
  assert data.request_kind(digits, make_forget_set(digits, "class:3")) == "class"
  assert data.request_kind(digits, make_forget_set(digits, "class:3,5")) == "class"
  assert data.request_kind(digits, make_forget_set(digits, "random:0.1")) == "rows"
  threes = np.flatnonzero(labels == 3)
  assert data.request_kind(digits, data.forget_set_from_rows(digits, threes)) == "class"
  assert data.request_kind(digits, data.forget_set_from_rows(digits, threes[1:])) == "rows"
