"""Tests of deterministic batching, random labels and augmentation (jaxunlearn.data)."""

import numpy as np
import pytest

from jaxunlearn import data
from jaxunlearn.data import batches


def _toy(n_train=120, n_test=40, num_classes=4, shape=(3, 3, 1)):
  """A small synthetic Dataset: image pixel 0 encodes the id, so rows are checkable."""

  def split(ids):
    labels = (ids % num_classes).astype(np.int32)
    images = np.zeros((len(ids), *shape), np.float32)
    images[:, 0, 0, 0] = ids
    return data.Split(images, labels, ids.astype(np.int64))

  return data.Dataset(
    "toy",
    num_classes,
    shape,
    split(np.arange(n_train)),
    split(np.arange(n_train, n_train + 10)),
    split(np.arange(n_train + 10, n_train + 10 + n_test)),
  )


@pytest.fixture(scope="module")
def toy():
  return _toy()


# -------------------------------------------------------------------- epochs and steps


def test_epoch_batches_cover_each_index_once():
  full = data.epoch_batches(10, 3, seed=0, epoch=0, drop_last=False)
  assert [len(b) for b in full] == [3, 3, 3, 1]
  np.testing.assert_array_equal(np.sort(np.concatenate(full)), np.arange(10))
  epoch = data.epoch_batches(10, 3, seed=0, epoch=0)
  assert [len(b) for b in epoch] == [3, 3, 3]
  assert len(np.unique(np.concatenate(epoch))) == 9


def test_epochs_and_seeds_give_different_permutations():
  a = data.epoch_permutation(100, seed=0, epoch=0)
  assert not np.array_equal(a, data.epoch_permutation(100, seed=0, epoch=1))
  assert not np.array_equal(a, data.epoch_permutation(100, seed=1, epoch=0))
  np.testing.assert_array_equal(a, np.random.default_rng([0, 0]).permutation(100))


def test_batch_at_step_is_a_pure_function_resumed_runs_match():
  n, bs, seed = 50, 8, 7
  spe = data.steps_per_epoch(n, bs)
  assert spe == 6
  run = [data.batch_indices(n, bs, seed, s).copy() for s in range(4 * spe)]
  for s, b in enumerate(run):
    np.testing.assert_array_equal(b, data.epoch_batches(n, bs, seed, s // spe)[s % spe])
  batches._permutation.cache_clear()  # a fresh process: nothing cached
  for s in (0, 5, 6, 13, 23):
    np.testing.assert_array_equal(data.batch_indices(n, bs, seed, s), run[s])


@pytest.mark.parametrize("bad", [0, -1, 11, 2.0, True])
def test_bad_batch_sizes_raise(bad):
  with pytest.raises(ValueError, match="batch size"):
    data.epoch_batches(10, bad, seed=0, epoch=0)
  with pytest.raises(ValueError, match="batch size"):
    data.batch_indices(10, bad, seed=0, step=0)


def test_negative_seed_or_step_raise():
  with pytest.raises(ValueError, match="seed"):
    data.batch_indices(10, 2, seed=-1, step=0)
  with pytest.raises(ValueError, match="step"):
    data.batch_indices(10, 2, seed=0, step=-1)


# ---------------------------------------------------------------------- random labels


def test_random_wrong_labels_never_true_and_cover_all_wrong_classes():
  c = 10
  y = np.repeat(np.arange(c), 2000)
  r = data.random_labels(0, y, c, wrong_only=True)
  assert r.dtype == np.int32 and not np.any(r == y)
  counts = np.zeros((c, c), int)
  np.add.at(counts, (y, r), 1)
  off = counts[~np.eye(c, dtype=bool)]
  assert off.min() > 0  # every (true, wrong) pair occurs
  assert np.abs(off / (2000 / (c - 1)) - 1).max() < 0.3  # roughly uniform (expected 222)


def test_random_all_labels_cover_all_classes_including_true():
  y = np.repeat(np.arange(10), 1000)
  r = data.random_labels(np.random.default_rng(1), y, 10, wrong_only=False)
  assert set(np.unique(r)) == set(range(10))
  assert 0.05 < np.mean(r == y) < 0.15  # ~1/10 land on the true class


def test_random_labels_use_the_datasets_num_classes():
  # The public code's bug: labels from 10 classes on 100-class data.
  r = data.random_labels(0, np.zeros(5000, int), 100, wrong_only=True)
  assert r.max() == 99 and r.min() == 1 and len(np.unique(r)) == 99


def test_random_labels_reject_out_of_range_true_labels():
  with pytest.raises(ValueError):
    data.random_labels(0, np.array([0, 10]), 10, wrong_only=True)


# ------------------------------------------------------------------- unlearning batch


def test_unlearning_batch_is_deterministic_and_resumable(toy):
  fs = data.make_forget_set(toy, "class:1")
  kw = dict(seed=3, n_retain=16, n_forget=8)
  first = [data.unlearning_batch(toy, fs, s, **kw) for s in range(12)]
  batches._permutation.cache_clear()
  for s in (0, 4, 11):
    again = data.unlearning_batch(toy, fs, s, **kw)
    assert again.keys() == first[s].keys()
    for k in again:
      np.testing.assert_array_equal(again[k], first[s][k])
  other = data.unlearning_batch(toy, fs, 0, seed=4, n_retain=16, n_forget=8)
  assert not np.array_equal(other["retain_index"], first[0]["retain_index"])


def test_unlearning_batch_contents(toy):
  fs = data.make_forget_set(toy, "class:1")  # 30 forget, 90 retain
  b = data.unlearning_batch(
    toy, fs, 0, seed=0, n_retain=16, n_forget=8, forget_labels="random_wrong"
  )
  assert np.isin(b["retain_index"], fs.retain_idx).all()
  assert np.isin(b["forget_index"], fs.forget_idx).all()
  # Images and labels are the rows named by the indices (pixel 0 holds the id).
  np.testing.assert_array_equal(b["retain_image"][:, 0, 0, 0], toy.train.ids[b["retain_index"]])
  np.testing.assert_array_equal(b["forget_image"][:, 0, 0, 0], toy.train.ids[b["forget_index"]])
  np.testing.assert_array_equal(b["retain_label"], toy.train.labels[b["retain_index"]])
  assert (b["forget_true_label"] == 1).all() and (b["forget_label"] != 1).all()
  assert b["retain_image"].shape == (16, 3, 3, 1) and b["forget_label"].dtype == np.int32


def test_retain_and_forget_cycle_by_their_own_epochs(toy):
  fs = data.make_forget_set(toy, "class:1")  # 30 forget -> 3 steps/epoch at 10
  kw = dict(seed=0, n_retain=10, n_forget=10)
  bs = [data.unlearning_batch(toy, fs, s, **kw) for s in range(9)]
  for e in range(3):  # each forget epoch is a permutation of the forget set
    rows = np.concatenate([b["forget_index"] for b in bs[3 * e : 3 * e + 3]])
    np.testing.assert_array_equal(np.sort(rows), fs.forget_idx)
  retain_rows = np.concatenate([b["retain_index"] for b in bs])  # 90 retain -> 1 epoch
  np.testing.assert_array_equal(np.sort(retain_rows), fs.retain_idx)
  assert not np.array_equal(bs[0]["forget_index"], bs[3]["forget_index"])


def _labels_by_example(toy, fs, n_forget, steps, **kw):
  out = {}
  for s in steps:
    b = data.unlearning_batch(toy, fs, s, seed=0, n_retain=8, n_forget=n_forget, **kw)
    out.update(zip(b["forget_index"].tolist(), b["forget_label"].tolist()))
  return out


def test_random_label_fixed_per_example_and_forget_epoch(toy):
  fs = data.make_forget_set(toy, "class:2")  # 30 examples
  # Epoch 0 seen through batches of 5 and of 10: same permutation, same labels.
  by5 = _labels_by_example(toy, fs, 5, range(6))
  by10 = _labels_by_example(toy, fs, 10, range(3))
  assert len(by5) == len(by10) == 30 and by5 == by10
  # Redrawn in the next epoch (30 labels over 3 wrong classes: some must change).
  epoch1 = _labels_by_example(toy, fs, 10, range(3, 6))
  assert epoch1.keys() == by10.keys() and epoch1 != by10


def test_forget_label_modes(toy):
  fs = data.make_forget_set(toy, "random:0.5", seed=0)
  steps = range(40)

  def collect(mode):
    bs = [
      data.unlearning_batch(toy, fs, s, seed=0, n_retain=8, n_forget=8, forget_labels=mode)
      for s in steps
    ]
    return (
      np.concatenate([b["forget_label"] for b in bs]),
      np.concatenate([b["forget_true_label"] for b in bs]),
    )

  lab, true = collect("true")
  np.testing.assert_array_equal(lab, true)
  lab, true = collect("random_wrong")
  assert not np.any(lab == true) and set(np.unique(lab)) == set(range(4))
  lab, true = collect("random_all")
  assert np.any(lab == true) and set(np.unique(lab)) == set(range(4))
  with pytest.raises(ValueError, match="forget_labels"):
    data.unlearning_batch(toy, fs, 0, seed=0, n_retain=8, n_forget=8, forget_labels="rand")


def test_unlearning_batch_accepts_arrays(toy):
  fs = data.make_forget_set(toy, "class:0")
  a = data.unlearning_batch(toy, fs, 3, seed=1, n_retain=8, n_forget=4)
  b = data.unlearning_batch(
    (toy.train.images, toy.train.labels), fs, 3, seed=1, n_retain=8, n_forget=4, num_classes=4
  )
  for k in a:
    np.testing.assert_array_equal(a[k], b[k])
  with pytest.raises(ValueError, match="num_classes"):
    data.unlearning_batch(
      (toy.train.images, toy.train.labels), fs, 3, seed=1, n_retain=8, n_forget=4
    )


def test_unlearning_batch_rejects_batches_larger_than_the_sets(toy):
  fs = data.make_forget_set(toy, "class:0")  # 30 forget, 90 retain
  with pytest.raises(ValueError, match="forget set"):
    data.unlearning_batch(toy, fs, 0, seed=0, n_retain=8, n_forget=31)
  with pytest.raises(ValueError, match="retain set"):
    data.unlearning_batch(toy, fs, 0, seed=0, n_retain=91, n_forget=8)
  with pytest.raises(ValueError, match="positive"):
    data.unlearning_batch(toy, fs, 0, seed=0, n_retain=0, n_forget=8)


# ------------------------------------------------------------------------ union batch


def test_union_batch_mask_labels_and_weights(toy):
  fs = data.make_forget_set(toy, "random:30", seed=0)
  forget = set(fs.forget_idx.tolist())
  n_forget_seen = 0
  seen = []
  for s in range(6):  # one epoch: 120 / 20
    b = data.union_batch(toy, fs, s, seed=0, batch_size=20)
    seen.append(b)
    np.testing.assert_array_equal(b["is_forget"], [i in forget for i in b["index"]])
    r = ~b["is_forget"]
    np.testing.assert_array_equal(b["label"][r], toy.train.labels[b["index"][r]])
    np.testing.assert_array_equal(b["true_label"], toy.train.labels[b["index"]])
    assert not np.any(b["label"][b["is_forget"]] == b["true_label"][b["is_forget"]])
    assert b["forget_weight"] == np.float32(b["is_forget"].mean())
    assert b["forget_weight"] + b["retain_weight"] == 1
    # Batch-fraction weights turn the two group means into the batch mean.
    loss = np.random.default_rng(s).random(20)
    parts = (b["retain_weight"] * loss[r].mean() if r.any() else 0.0) + (
      b["forget_weight"] * loss[~r].mean() if (~r).any() else 0.0
    )
    np.testing.assert_allclose(parts, loss.mean(), rtol=1e-6)
    n_forget_seen += int(b["is_forget"].sum())
  assert n_forget_seen == 30  # the epoch visits every forget example once
  np.testing.assert_array_equal(np.sort(np.concatenate([b["index"] for b in seen])), np.arange(120))


def test_union_batch_is_deterministic(toy):
  fs = data.make_forget_set(toy, "class:3")
  a = data.union_batch(toy, fs, 7, seed=2, batch_size=16)
  batches._permutation.cache_clear()
  b = data.union_batch(toy, fs, 7, seed=2, batch_size=16)
  for k in a:
    np.testing.assert_array_equal(a[k], b[k])


# --------------------------------------------------------------------------- augment


def test_augment_is_a_crop_of_the_padded_image_or_its_flip():
  rng = np.random.default_rng(0)
  x = rng.random((16, 8, 8, 3), dtype=np.float32)
  out = data.augment(x, rng=1, pad=2)
  assert out.shape == x.shape and out.dtype == x.dtype
  padded = np.pad(x, ((0, 0), (2, 2), (2, 2), (0, 0)))
  flips = 0
  for i in range(len(x)):
    crops = {
      (dy, dx, f): (
        padded[i, dy : dy + 8, dx : dx + 8, :][:, ::-1]
        if f
        else padded[i, dy : dy + 8, dx : dx + 8, :]
      )
      for dy in range(5)
      for dx in range(5)
      for f in (0, 1)
    }
    hits = [k for k, c in crops.items() if np.array_equal(c, out[i])]
    assert hits, i
    flips += hits[0][2]
  assert 0 < flips < len(x)  # both flipped and unflipped images occur
  np.testing.assert_array_equal(out, data.augment(x, rng=1, pad=2))
  assert not np.array_equal(out, data.augment(x, rng=2, pad=2))


def test_augment_without_pad_or_flip_is_identity():
  x = np.random.default_rng(0).random((4, 5, 5, 1))
  np.testing.assert_array_equal(data.augment(x, rng=0, pad=0, flip=False), x)
  with pytest.raises(ValueError):
    data.augment(x[0], rng=0)
