"""The language-model evaluation: rows scored in padded buckets, all parts in one pass,
equal to scoring each part alone, with one compiled program per bucket."""

import numpy as np
import pytest
from flax import nnx

from jaxunlearn import objectives
from jaxunlearn.data import tofu
from jaxunlearn.engine import answers
from jaxunlearn.nn.transformer import Decoder, functional_lm


@pytest.fixture(scope="module")
def qa():
  ds = tofu.make_dataset(authors=5, facts=3, world=3)
  model = Decoder(len(ds.tokenizer), ds.tokens_per_row, size="tiny", rngs=nnx.Rngs(0))
  fm, params, state = functional_lm(model, objectives.answer_losses)
  return ds, fm, params, state


@pytest.mark.parametrize(
  ("rows", "size"), [(1, 8), (8, 8), (9, 16), (33, 64), (200, 256), (256, 256)]
)
def test_bucket_is_the_next_power_of_two_from_8_up_to_the_batch(rows, size):
  assert answers._bucket(rows, 256) == size  # noqa: SLF001


def test_padded_batches_score_each_row_as_alone(qa):
  """A row's loss is the same (to float rounding: another batch shape, another blocking)
  whether it is scored alone, in a padded bucket or in a full chunk of its neighbours."""
  ds, fm, params, state = qa
  tokens = ds.train.images
  together = answers.average_losses(fm, params, state, tokens)
  alone = np.array([answers.average_losses(fm, params, state, t[None])[0] for t in tokens[:5]])
  np.testing.assert_allclose(alone, together[:5], rtol=1e-5)
  chunked = np.concatenate(
    [answers.average_losses(fm, params, state, tokens[i : i + 7]) for i in range(0, 21, 7)]
  )
  np.testing.assert_allclose(chunked, together[:21], rtol=1e-5)


def test_all_parts_in_one_pass_equal_each_part_scored_alone(qa):
  ds, fm, params, state = qa
  forget = tofu.forget_split(ds, 20)
  rows = answers.eval_rows(ds, forget)
  args = (ds.train.images, ds.paraphrased, ds.perturbed)
  joint = answers._split(  # noqa: SLF001
    answers.qa_scores(fm, params, state, ds, np.concatenate(list(rows.values())), *args),
    {k: len(r) for k, r in rows.items()},
  )
  assert set(joint) == {"forget", "retain", "world"}
  for part, r in rows.items():
    alone = answers.qa_scores(fm, params, state, ds, r, *args)
    for name, value in alone.items():
      np.testing.assert_allclose(joint[part][name], value, rtol=1e-5, err_msg=(part, name))


def test_an_evaluation_compiles_one_program_per_bucket(qa):
  """The forget, retained and world rows, their paraphrases, their perturbed answers and
  the holdout were once scored in batches of as many sizes, each its own program; now
  every loss is one pass, chunks of 256 and one bucket."""
  ds, fm, params, state = qa
  answers._loss_fn.cache_clear()  # noqa: SLF001
  answers._greedy_fn.cache_clear()  # noqa: SLF001
  answers._logprob_fn.cache_clear()  # noqa: SLF001
  answers.evaluate_qa(fm, params, state, ds, tofu.forget_split(ds, 20))
  rows = sum(len(r) for r in answers.eval_rows(ds, tofu.forget_split(ds, 20)).values())
  scored = (2 + tofu.PERTURBED) * rows  # answers, paraphrases, perturbed answers
  assert scored == 90  # one chunk, padded to 128
  assert answers._loss_fn(fm)._cache_size() == 1  # noqa: SLF001
  assert answers._greedy_fn(fm, ds.answer_id, tofu.EOS_ID)._cache_size() == 1  # noqa: SLF001
  assert answers._logprob_fn(fm)._cache_size() == 1  # noqa: SLF001
