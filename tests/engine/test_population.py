"""Populations in one program equal the runs one at a time: training (to float rounding),
chunking to the memory budget, prediction, the per-model scores and unlearning."""

import dataclasses
import tempfile

import jax
import numpy as np
import pytest

from jaxunlearn import data, metrics
from jaxunlearn.engine import population, training
from jaxunlearn.engine.config import TrainConfig
from jaxunlearn.engine.evaluation import evaluate
from jaxunlearn.engine.methods import make_config
from jaxunlearn.engine.steps import make_predict
from jaxunlearn.engine.unlearning import run_batch
from jaxunlearn.errors import ConfigError

CFG = TrainConfig(model_kwargs={"hidden": (32,)}, epochs=2)


@pytest.fixture(scope="module")
def ds():
  return data.load_dataset("digits")


@pytest.fixture(scope="module")
def forget(ds):
  return data.make_forget_set(ds, "random:0.1", seed=0)


@pytest.fixture(scope="module")
def pop(ds, forget):
  return population.train_population(
    CFG, ds, [0, 5, 7], train_idx=forget.retain_idx, progress=False
  )


def _leaves(tree):
  return [np.asarray(x) for x in jax.tree.leaves(tree)]


def test_each_member_is_the_run_train_gives_with_its_seed(ds, forget, pop):
  for i, seed in enumerate(pop.seeds):
    workdir = tempfile.mkdtemp()
    training.train(
      dataclasses.replace(CFG, seed=seed),
      workdir,
      forget_spec="random:0.1",
      retrain=True,
      progress=False,
    )
    alone = training.load_trained(workdir)
    for a, b in zip(_leaves(pop.member(i)[0]), _leaves(alone.params)):
      # vmapped matrix products may sum in another order (bitwise equal at some widths)
      np.testing.assert_allclose(a, b, atol=1e-6)


def test_chunks_to_a_memory_budget_give_the_same_models(ds, forget, pop):
  said = []
  chunked = population.train_population(
    CFG, ds, [0, 5, 7], train_idx=forget.retain_idx, progress=False, memory_budget=1,
    say=said.append,
  )  # fmt: skip
  assert said and "chunks of 1" in said[0]
  for a, b in zip(_leaves(chunked.params), _leaves(pop.params)):
    np.testing.assert_allclose(a, b, atol=1e-6)


def test_map_and_vmap_agree(ds, forget, pop):
  mapped = population.train_population(
    CFG, ds, [0, 5, 7], train_idx=forget.retain_idx, progress=False, vectorize="map"
  )
  assert mapped.batch_mode == "map" and pop.batch_mode == "vmap"
  for a, b in zip(_leaves(mapped.params), _leaves(pop.params)):
    np.testing.assert_allclose(a, b, atol=1e-5)


def test_predictions_and_scores_match_one_model_at_a_time(ds, forget, pop):
  logits = population.predict_population(pop.fm, pop.params, pop.model_state, ds.test.images)
  scores = population.score_population(pop.fm, pop.params, pop.model_state, ds, forget)
  for i in range(len(pop)):
    p, s = pop.member(i)
    alone = np.asarray(make_predict(pop.fm)(p, s, ds.test.images))
    np.testing.assert_allclose(logits[i], alone, atol=1e-5)
    ev = evaluate(pop.fm, p, s, ds, forget)
    assert scores.UA[i] == pytest.approx(ev["UA"])
    assert scores.RA[i] == pytest.approx(ev["RA"])
    assert scores.TA[i] == pytest.approx(ev["TA"])
    train_logits = np.asarray(make_predict(pop.fm)(p, s, ds.train.images[forget.forget_idx]))
    want = metrics.logit_scaled_confidence(train_logits, ds.train.labels[forget.forget_idx])
    np.testing.assert_allclose(scores.confidences[i], want, rtol=1e-4, atol=1e-4)


def test_predictions_trace_and_compile_once_per_model_and_shape(ds, pop):
  """The audit predicts every population many times: the second call on the same models
  and shapes traces nothing (one cached program per form; each call used to jit anew)."""
  args = (pop.fm, pop.params, pop.model_state, ds.test.images[:64])
  first = population.predict_population(*args, batch_size=64)
  fn = population._population_logits(pop.fm, "vmap")  # noqa: SLF001
  traced = fn._cache_size()  # noqa: SLF001
  np.testing.assert_array_equal(population.predict_population(*args, batch_size=64), first)
  assert traced >= 1 and fn._cache_size() == traced  # noqa: SLF001


def test_unlearned_population_is_unlearn_batch(ds, forget, pop):
  p, s = pop.member(0)
  cfg = make_config("igs", steps=4)
  u = population.unlearn_population(cfg, pop.fm, p, s, ds, forget, [0, 1, 2])
  runs = run_batch([dataclasses.replace(cfg, seed=k) for k in range(3)], pop.fm, p, s, ds, forget)
  for i, r in enumerate(runs):
    for a, b in zip(_leaves(u.member(i)[0]), _leaves(r.params)):
      np.testing.assert_array_equal(a, b)


def test_bad_input(ds):
  with pytest.raises(ConfigError, match="augment"):
    population.train_population(dataclasses.replace(CFG, augment=True), ds, [0], progress=False)
  with pytest.raises(ValueError, match="distinct"):
    population.train_population(CFG, ds, [1, 1], progress=False)
