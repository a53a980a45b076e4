import numpy as np
import pytest

from jaxunlearn.data import source, tofu
from jaxunlearn.errors import DataError


@pytest.fixture(scope="module")
def ds():
  return tofu.make_dataset(authors=10, facts=4, world=5, seed=3)


def _text(ds, row):
  return " ".join(w for w in ds.tokenizer.decode(row) if w != tofu.PAD)


def test_same_seed_same_set_other_seed_another():
  a, b = tofu.make_dataset(6, 3, 4, seed=1), tofu.make_dataset(6, 3, 4, seed=1)
  assert np.array_equal(a.train.images, b.train.images)
  assert np.array_equal(a.perturbed, b.perturbed) and a.tokenizer.vocab == b.tokenizer.vocab
  c = tofu.make_dataset(6, 3, 4, seed=2)
  assert _text(a, a.train.images[0]) != _text(c, c.train.images[0])


def test_rows_are_question_then_answer(ds):
  assert len(ds.train) == 10 * 4 + 5
  assert np.bincount(ds.train.labels).tolist() == [4] * 10 + [5]
  for row in ds.train.images:
    words = ds.tokenizer.decode(row)
    assert words[0] == tofu.BOS and words.count(tofu.ANS) == 1 and words.count(tofu.EOS) == 1
    end = words.index(tofu.EOS)
    assert all(w == tofu.PAD for w in words[end + 1 :])
  row = _text(ds, ds.train.images[0])
  assert row.startswith("<bos> where was ") and " born ? <ans> " in row


def test_evaluation_answers_share_the_question_and_differ_from_the_answer(ds):
  for i in range(len(ds.train)):
    question = _text(ds, ds.train.images[i]).split("<ans>")[0]
    answer = _text(ds, ds.train.images[i]).split("<ans>")[1]
    para = _text(ds, ds.paraphrased[i])
    assert para.startswith(question) and para.split("<ans>")[1] != answer
    wrong = {_text(ds, p).split("<ans>")[1] for p in ds.perturbed[i]}
    assert len(wrong) == tofu.PERTURBED and para.split("<ans>")[1] not in wrong
    wrong_answers = {_text(ds, p).split("<ans>")[1] for p in ds.perturbed_answers[i]}
    assert len(wrong_answers) == tofu.PERTURBED and answer not in wrong_answers


def test_holdout_authors_are_new(ds):
  def names(split):  # from each author's first row: "<bos> where was NAME born ? …"
    words = [ds.tokenizer.decode(r) for r in split.images[::4]]
    return {" ".join(w[3 : w.index("born")]) for w in words if w[1] == "where"}

  assert len(ds.holdout) == 1 * 4
  assert len(names(ds.train)) == 10 and len(names(ds.holdout)) == 1
  assert not names(ds.holdout) & names(ds.train)


def test_forget_splits_are_nested_and_whole_authors():
  ds = tofu.make_dataset(authors=100, facts=2, world=0)
  sets = [tofu.forget_split(ds, p) for p in tofu.FORGET_PERCENTS]
  assert [len(s.forget_classes) for s in sets] == [1, 5, 10]
  assert set(sets[0].forget_idx) < set(sets[1].forget_idx) < set(sets[2].forget_idx)
  for s in sets:
    assert set(ds.train.labels[s.forget_idx]) == set(s.forget_classes)
    assert not set(ds.train.labels[s.retain_idx]) & set(s.forget_classes)
  assert tofu.forget_authors(tofu.make_dataset(authors=20, facts=1, world=0), 1) == (19,)


def test_bad_arguments_name_the_range():
  with pytest.raises(DataError, match="facts must be in 1..20"):
    tofu.make_dataset(facts=21)
  with pytest.raises(DataError, match="at least 2"):
    tofu.make_dataset(authors=1)
  with pytest.raises(DataError, match="not in this tokenizer"):
    tofu.WordTokenizer(["a b"]).encode("a z")


def test_the_default_set_through_tfds_equals_the_generated_one(tmp_path):
  import tensorflow_datasets as tfds

  loaded, made = source.load_tofu(tmp_path), tofu.make_dataset()
  assert loaded.tokenizer.vocab == made.tokenizer.vocab and loaded.name == made.name
  for field in ("paraphrased", "perturbed", "perturbed_answers", "holdout_perturbed", "idk"):
    assert np.array_equal(getattr(loaded, field), getattr(made, field)), field
  for split in ("train", "holdout"):
    a, b = getattr(loaded, split), getattr(made, split)
    assert np.array_equal(a.images, b.images) and np.array_equal(a.labels, b.labels)
    assert np.array_equal(a.ids, b.ids)
  assert len(tfds.data_source("tofu", split="holdout", data_dir=str(tmp_path))) == 100
