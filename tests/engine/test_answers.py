"""The language-model evaluation: rows scored in padded buckets, all parts in one pass,
equal to scoring each part alone, with one compiled program per bucket."""

import jax
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


def _fit(ds, model, steps=80):
  """A few full-batch Adam steps, so answers are neither random nor all memorised."""
  import optax

  optimizer = nnx.Optimizer(model, optax.adam(1e-2), wrt=nnx.Param)
  tokens = ds.train.images

  @nnx.jit
  def step(model, optimizer):
    grads = nnx.grad(lambda m: objectives.answer_losses(m(tokens), tokens).mean())(model)
    optimizer.update(model, grads)

  for _ in range(steps):
    step(model, optimizer)
  return model


def _by_hand_loss(model, row) -> float:
  """−mean log p of the answer tokens (after <ans>, up to the first pad), one row."""
  row = [int(t) for t in row]
  logp = np.asarray(jax.nn.log_softmax(model(np.asarray([row]))[0]), np.float64)
  start = row.index(tofu.ANS_ID)
  targets = [t for t in range(start + 1, len(row)) if row[t] != tofu.PAD_ID]
  return -float(np.mean([logp[t - 1, row[t]] for t in targets]))


def _by_hand_greedy(model, row) -> list[int]:
  """The question up to <ans>, then the argmax token, one at a time, until <eos>."""
  row = [int(t) for t in row]
  out = row[: row.index(tofu.ANS_ID) + 1]
  while len(out) < len(row):
    padded = np.asarray([out + [tofu.PAD_ID] * (len(row) - len(out))])
    nxt = int(np.argmax(np.asarray(model(padded))[0, len(out) - 1]))
    if nxt == tofu.EOS_ID:
      break
    out.append(nxt)
  return out[row.index(tofu.ANS_ID) + 1 :]


def test_the_forget_metrics_equal_a_hand_computation_from_the_models_outputs():
  """Forget probability, ROUGE-L (rouge-score's), truth ratio, forget quality (scipy's KS)
  and model utility (scipy's harmonic mean), from the module's own logits and a Python
  greedy loop: nothing of the evaluation's batching, masking or decoding."""
  from rouge_score import rouge_scorer
  from scipy import stats

  ds = tofu.make_dataset(authors=4, facts=3, world=2)
  model = _fit(ds, Decoder(len(ds.tokenizer), ds.tokens_per_row, size="tiny", rngs=nnx.Rngs(0)))
  other = Decoder(len(ds.tokenizer), ds.tokens_per_row, size="tiny", rngs=nnx.Rngs(1))
  forget = tofu.forget_split(ds, 25)
  fm, params, state = functional_lm(model, objectives.answer_losses)
  ofm, oparams, ostate = functional_lm(other, objectives.answer_losses)
  reference = answers.evaluate_qa(ofm, oparams, ostate, ds, forget)
  got = answers.evaluate_qa(fm, params, state, ds, forget, reference["forget_ratios"])

  rows = np.asarray(forget.forget_idx)
  loss = np.array([_by_hand_loss(model, ds.train.images[i]) for i in rows])
  assert got["forget_prob"] == pytest.approx(np.mean(np.exp(-loss)), rel=1e-4)
  para = np.array([_by_hand_loss(model, ds.paraphrased[i]) for i in rows])
  pert = np.array([[_by_hand_loss(model, p) for p in ds.perturbed[i]] for i in rows])
  ratio = np.exp(-pert.mean(axis=1)) / np.exp(-para)  # geometric mean of P(wrong) / P(para)
  np.testing.assert_allclose(got["forget_ratios"], ratio, rtol=1e-3)
  assert got["forget_truth_ratio"] == pytest.approx(np.mean(np.minimum(ratio, 1 / ratio)), rel=1e-3)
  scorer = rouge_scorer.RougeScorer(["rougeL"])
  decode = lambda ids: " ".join(ds.tokenizer.decode(ids))  # words, as the scorer reads them
  rouge = [
    scorer.score(
      decode(answers.answer_part(ds.train.images[i])),
      decode(_by_hand_greedy(model, ds.train.images[i])),
    )["rougeL"].recall
    for i in rows
  ]
  assert got["forget_rouge"] == pytest.approx(np.mean(rouge), abs=1e-9)
  assert got["forget_rouge"] > 0.0 and got["forget_prob"] > 0.05  # the check sees something
  ks = stats.ks_2samp(got["forget_ratios"], reference["forget_ratios"]).pvalue
  assert got["forget_quality"] == pytest.approx(ks)
  parts = [got[f"{s}_{k}"] for s in ("retain", "world") for k in ("prob", "rouge", "truth_ratio")]
  assert got["model_utility"] == pytest.approx(stats.hmean(parts))
