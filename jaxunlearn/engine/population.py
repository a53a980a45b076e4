"""Populations of models in one compiled program: N seeds of a training recipe trained
together, and the logits of N models at once.

What population-based audits need (the NeurIPS 2023 challenge's forget score compares
hundreds of unlearned runs with hundreds of retrained models, example by example): the
seeds go through ``jax.vmap`` (or, for convolutions on CPU, a ``lax.map`` inside the one
program, as :func:`~jaxunlearn.engine.unlearning.run_batch` does), an epoch is one
``lax.scan`` over its steps, and the models go in chunks that fit the memory budget
(:mod:`jaxunlearn.engine.memory`). Member ``i`` is the recipe with ``seed=seeds[i]``:
its initialisation and its batch order are those of
:func:`jaxunlearn.engine.training.train` with that seed, and its parameters equal that
run's to float rounding (tested).
"""

from __future__ import annotations

import dataclasses
import functools
import sys
import time
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxunlearn import data as data_lib
from jaxunlearn.engine import memory as memory_lib
from jaxunlearn.engine import steps as steps_lib
from jaxunlearn.engine.config import TrainConfig
from jaxunlearn.engine.progress import CompileApartBar
from jaxunlearn.engine.training import build_model, make_optimizer
from jaxunlearn.engine.unlearning import lowers_to_convolution, run_batch
from jaxunlearn.errors import ConfigError
from jaxunlearn.metrics import logit_scaled_confidence
from jaxunlearn.nn.models import FunctionalModel


@dataclasses.dataclass
class Population:
  """N models of one architecture: every leaf of ``params`` and ``model_state`` has a
  leading axis of models (member ``i`` was trained with ``seeds[i]``)."""

  fm: FunctionalModel
  params: Any
  model_state: Any
  seeds: tuple
  seconds: float = 0.0  # wall time, compile included
  compile_seconds: float = 0.0
  batch_mode: str = "vmap"  # how the program went over the models: "vmap" or "map"

  def __len__(self) -> int:
    return len(self.seeds)

  def member(self, i: int):
    """``(params, model_state)`` of model ``i``."""
    pick = lambda tree: jax.tree.map(lambda x: x[i], tree)
    return pick(self.params), pick(self.model_state)


def stack(trees) -> Any:
  """Trees of equal structure stacked along a new leading axis (numpy)."""
  return jax.tree.map(lambda *xs: np.stack([np.asarray(x) for x in xs]), *trees)


def _lowered(vectorize: str, jitted_of, args):
  """``(how, lowered)``: the program over the models in the form ``vectorize`` asks for,
  lowered once for ``args``; ``"auto"`` is vmap, except for a convolution on CPU, where
  XLA's vmapped convolution (a grouped one) is slower than the models in turn (see
  :func:`~jaxunlearn.engine.unlearning.run_batch`): there, a ``lax.map``."""
  if vectorize not in ("auto", "vmap", "map"):
    raise ValueError(f"vectorize must be 'auto', 'vmap' or 'map', got {vectorize!r}")
  how = "vmap" if vectorize == "auto" else vectorize
  lowered = jitted_of(how).lower(*args)
  on_cpu = jax.devices()[0].platform == "cpu"
  if vectorize == "auto" and on_cpu and lowers_to_convolution(lowered):
    how = "map"
    lowered = jitted_of(how).lower(*args)
  return how, lowered


def train_population(
  config: TrainConfig,
  dataset: data_lib.Dataset,
  seeds,
  *,
  train_idx=None,
  memory_budget: int | None = None,
  vectorize: str = "auto",
  progress: bool = True,
  desc: str = "population",
  say=None,
) -> Population:
  """Trains ``config`` once per seed in ``seeds``, all in one compiled program.

  ``train_idx``: the training rows (default: the whole training split; a retrained
  population passes the forget set's ``retain_idx``). Augmentation is not supported
  (its host-side random crops would serialise the program): a recipe with
  ``augment=True`` is refused.

  Examples:
    >>> from jaxunlearn import data
    >>> ds = data.load_dataset("digits")
    >>> pop = train_population(TrainConfig(epochs=1, model_kwargs={"hidden": (16,)}), ds,
    ...                        [0, 1, 2], progress=False)
    >>> len(pop), jax.tree.leaves(pop.params)[0].shape[0]
    (3, 3)
  """
  config, seeds, train_idx = _checked(config, seeds, train_idx, dataset)
  recipe = _Recipe(config, dataset, train_idx)
  start = time.perf_counter()
  first = recipe.initial(seeds)
  program_of = functools.partial(_epoch_program, recipe)
  how, lowered = _lowered(vectorize, program_of, (*first, recipe.rows(seeds, 0)))
  compiled = lowered.compile()
  budget = memory_lib.budget_bytes(recipe.device) if memory_budget is None else int(memory_budget)
  needed = memory_lib.program_bytes(compiled)
  size = memory_lib.runs_that_fit(needed, len(seeds), budget)
  if size < len(seeds):
    (say or _stderr)(
      f"{desc}: {len(seeds)} models need {needed / 2**20:.0f} MiB at once, over the memory "
      f"budget of {budget / 2**20:.0f} MiB ({memory_lib.ENV}); training them in chunks of {size}"
    )
    first = recipe.initial(seeds[:size])
    compiled = program_of(how).lower(*first, recipe.rows(seeds[:size], 0)).compile()
  chunks = [seeds[i : i + size] for i in range(0, len(seeds), size)]
  bar = CompileApartBar(
    total=len(chunks) * config.epochs, disable=not progress, desc=desc, unit="epoch", leave=False
  )
  compile_seconds = 0.0
  out = []
  for c, real in enumerate(chunks):
    # Padded with repeats of the last seed, so one program serves every chunk; the pads
    # are dropped below. The first chunk's state was built for the compile.
    chunk = real + (real[-1],) * (size - len(real))
    p, s, o = first if c == 0 else recipe.initial(chunk)
    for epoch in range(config.epochs):
      p, s, o, loss = compiled(p, s, o, recipe.rows(chunk, epoch))
      if c == 0 and epoch == 0:
        jax.block_until_ready(p)
        compile_seconds = time.perf_counter() - start
        bar.first_step_done(1, compile_seconds=compile_seconds)
      else:
        bar.update(1)
      bar.set_postfix_str(f"loss {float(np.mean(np.asarray(loss)[: len(real)])):.3f}")
    out.append(jax.tree.map(functools.partial(_head, n=len(real)), (p, s)))
  bar.close()
  params = jax.tree.map(lambda *xs: np.concatenate(xs), *[a for a, _ in out])
  state = jax.tree.map(lambda *xs: np.concatenate(xs), *[b for _, b in out])
  return Population(
    recipe.fm, params, state, seeds, time.perf_counter() - start, compile_seconds, how
  )


def _checked(config: TrainConfig, seeds, train_idx, dataset):
  """The validated config, the seeds as a tuple and the training rows, or the one error
  that names the fix."""
  config = config.validate()
  if config.augment:
    raise ConfigError(
      f"population training does not augment; use a recipe with augment=False "
      f"({config.dataset}/{config.model})"
    )
  seeds = tuple(int(s) for s in seeds)
  if not seeds:
    raise ValueError("train_population needs at least one seed")
  if len(set(seeds)) != len(seeds):
    raise ValueError("train_population: seeds must be distinct")
  train_idx = np.arange(len(dataset.train.labels)) if train_idx is None else np.asarray(train_idx)
  if config.batch_size > len(train_idx):
    raise ConfigError(
      f"batch_size {config.batch_size} is larger than the training set ({len(train_idx)} rows)"
    )
  return config, seeds, train_idx


class _Recipe:
  """What every model of a population shares: the model, its optimiser and train step,
  the training rows on the device; and what each seed draws (initialisation, batches)."""

  def __init__(self, config: TrainConfig, dataset: data_lib.Dataset, train_idx: np.ndarray):
    self.config, self.dataset, self.train_idx = config, dataset, train_idx
    per_epoch = data_lib.steps_per_epoch(len(train_idx), config.batch_size)
    self.tx = make_optimizer(config, per_epoch)
    self.fm = build_model(config, dataset)[0]  # the architecture: equal for every seed
    self.step = steps_lib.make_train_step(self.fm, self.tx)
    self.device = jax.devices()[0]
    self.images = jax.device_put(jnp.asarray(dataset.train.images), self.device)
    self.labels = jax.device_put(jnp.asarray(dataset.train.labels), self.device)

  def initial(self, seeds):
    """Stacked params, model state and optimiser state of ``seeds``, as train() starts."""
    inits = [build_model(dataclasses.replace(self.config, seed=s), self.dataset)[1:] for s in seeds]
    params = stack([p for p, _ in inits])
    states = stack([s for _, s in inits])
    opt = stack([self.tx.init(p) for p, _ in inits])
    return jax.device_put((params, states, opt), self.device)

  def rows(self, seeds, epoch: int) -> jax.Array:
    """``(steps, models, batch)``: each seed's batches of ``epoch``, as train() draws them."""
    n, b = len(self.train_idx), self.config.batch_size
    per_seed = [self.train_idx[np.stack(data_lib.epoch_batches(n, b, s, epoch))] for s in seeds]
    return jnp.asarray(np.stack(per_seed, axis=1))


def _epoch_program(recipe: _Recipe, how: str):
  """One epoch of every model, jitted: a ``lax.scan`` over the steps, each step the train
  step over the models (``vmap``, or ``lax.map`` with ``how="map"``); the states donated."""
  step, images, labels = recipe.step, recipe.images, recipe.labels

  def run_epoch(params, model_state, opt_state, idx):
    def body(carry, idx_t):
      p, s, o = carry
      x, y = images[idx_t], labels[idx_t]
      if how == "vmap":
        p, s, o, m = jax.vmap(step)(p, s, o, x, y)
      else:
        p, s, o, m = jax.lax.map(lambda a: step(*a), (p, s, o, x, y))
      return (p, s, o), m["loss"]

    (p, s, o), losses = jax.lax.scan(body, (params, model_state, opt_state), idx)
    return p, s, o, losses.mean(0)

  return jax.jit(run_epoch, donate_argnums=(0, 1, 2))


def predict_population(
  fm: FunctionalModel,
  params,
  model_state,
  images,
  *,
  batch_size: int = 1024,
  vectorize: str = "auto",
) -> np.ndarray:
  """Eval-mode logits of every model (leading axis of ``params``) on ``images``:
  ``(models, rows, classes)``, float32.

  Examples:
    >>> from jaxunlearn import data
    >>> ds = data.load_dataset("digits")
    >>> pop = train_population(TrainConfig(epochs=1, model_kwargs={"hidden": (16,)}), ds,
    ...                        [0, 1], progress=False)
    >>> predict_population(pop.fm, pop.params, pop.model_state, ds.test.images[:5]).shape
    (2, 5, 10)
  """
  images = np.asarray(images)
  jitted_of = functools.partial(_population_logits, fm)
  if len(images) == 0:
    raise ValueError("predict_population: no images")
  params, model_state = jax.device_put((params, model_state), jax.devices()[0])
  first = jnp.asarray(images[:batch_size])
  fn = jitted_of(_lowered(vectorize, jitted_of, (params, model_state, first))[0])
  outs = [
    np.asarray(fn(params, model_state, jnp.asarray(images[i : i + batch_size])))
    for i in range(0, len(images), batch_size)
  ]
  return np.concatenate(outs, axis=1)


@functools.lru_cache(maxsize=32)
def _population_logits(fm, how: str):
  """The jitted eval-mode logits of a population, vmapped or mapped over its models:
  one per (model, form), so every audit, attack and evaluation of a population reuses its
  trace and compile (a fresh ``jax.jit`` per call traced again each time)."""
  apply = lambda p, s, x: fm.apply(p, s, x, train=False)[0]
  if how == "vmap":
    return jax.jit(jax.vmap(apply, in_axes=(0, 0, None)))
  return jax.jit(lambda p, s, x: jax.lax.map(lambda a: apply(*a, x), (p, s)))


def unlearn_population(
  cfg, fm, params, model_state, dataset, forget_set, seeds, *, say=None
) -> Population:
  """``cfg`` run from one original ``(params, model_state)`` once per seed (batch order,
  random labels), as one program (:func:`~jaxunlearn.engine.unlearning.run_batch`,
  memory-budgeted chunks): the unlearned population of an audit.

  Examples:
    >>> from jaxunlearn import data
    >>> from jaxunlearn.engine import training
    >>> from jaxunlearn.engine.methods import make_config
    >>> ds = data.load_dataset("digits")
    >>> fm, p, s = training.build_model(TrainConfig(model_kwargs={"hidden": (16,)}), ds)
    >>> pop = unlearn_population(make_config("igs", steps=3), fm, p, s, ds,
    ...                          data.make_forget_set(ds, "class:0"), [0, 1, 2])
    >>> len(pop), jax.tree.leaves(pop.params)[0].shape[0]
    (3, 3)
  """
  seeds = tuple(int(s) for s in seeds)
  if len(set(seeds)) != len(seeds) or not seeds:
    raise ValueError("unlearn_population needs distinct seeds")
  start = time.perf_counter()
  configs = [dataclasses.replace(cfg, seed=s) for s in seeds]
  results = run_batch(configs, fm, params, model_state, dataset, forget_set, say=say)
  return Population(
    fm,
    stack([r.params for r in results]),
    stack([r.model_state for r in results]),
    seeds,
    time.perf_counter() - start,
    sum(r.compile_seconds for r in results),
    results[0].batch_mode,
  )


class PopulationScores(NamedTuple):
  """What an audit reads off each model of a population (accuracies in percent)."""

  confidences: np.ndarray  # (models, forget rows): logit-scaled confidence of the true label
  UA: np.ndarray  # (models,) 100 − accuracy on the forget rows
  RA: np.ndarray  # (models,) accuracy on the retain rows
  TA: np.ndarray  # (models,) test accuracy (the remaining classes for class-wise forgetting)

  def as_arrays(self) -> dict:
    return {k: np.asarray(v) for k, v in self._asdict().items()}


def score_population(
  fm: FunctionalModel, params, model_state, dataset: data_lib.Dataset, forget_set
) -> PopulationScores:
  """Per model: the forget rows' logit-scaled confidences and UA, RA, TA — as
  :func:`jaxunlearn.engine.evaluation.evaluate` defines them (TA on the test rows of the
  remaining classes), for every model of the population at once.

  Examples:
    >>> from jaxunlearn import data
    >>> ds = data.load_dataset("digits")
    >>> fs = data.make_forget_set(ds, "random:0.1")
    >>> pop = train_population(TrainConfig(epochs=1, model_kwargs={"hidden": (16,)}), ds,
    ...                        [0, 1], progress=False)
    >>> s = score_population(pop.fm, pop.params, pop.model_state, ds, fs)
    >>> s.confidences.shape == (2, len(fs.forget_idx)), s.RA.shape
    (True, (2,))
  """
  train = predict_population(fm, params, model_state, dataset.train.images)
  test = predict_population(fm, params, model_state, dataset.test.images)
  labels, test_labels = dataset.train.labels, dataset.test.labels

  def acc(logits, y):
    return 100.0 * (logits.argmax(-1) == y[None, :]).mean(axis=1)

  forget, retain, keep = forget_set.forget_idx, forget_set.retain_idx, forget_set.test_retain_idx
  confs = np.stack([logit_scaled_confidence(lg, labels[forget]) for lg in train[:, forget]])
  return PopulationScores(
    confs,
    100.0 - acc(train[:, forget], labels[forget]),
    acc(train[:, retain], labels[retain]),
    acc(test[:, keep], test_labels[keep]),
  )


def _head(x, n):
  return np.asarray(x[:n])


def _stderr(message: str) -> None:
  print(message, file=sys.stderr)
