"""Run one unlearning method from an original model: the resumable, jitted loop
(:func:`run_method`), and many runs of one method as one program (:func:`run_batch`).

Importable logic behind ``python -m experiments.unlearn`` and ``experiments.compare``.
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
from jaxunlearn import transforms
from jaxunlearn.engine import memory as memory_lib
from jaxunlearn.engine import methods as methods_lib
from jaxunlearn.engine import parallel, stopping
from jaxunlearn.engine.config import UnlearnConfig
from jaxunlearn.engine.layouts import LAYOUTS, example_loss
from jaxunlearn.engine.progress import CompileApartBar
from jaxunlearn.engine.starts import forget_gradient, start_params
from jaxunlearn.engine.steps import make_predict, unlearn_step
from jaxunlearn.errors import ConfigError


@dataclasses.dataclass
class UnlearnResult:
  params: Any
  model_state: Any
  history: dict  # name -> np.ndarray over steps
  seconds: float  # wall time of the loop, compile included
  compile_seconds: float  # time of the first step (compile + one step)
  opt_state: Any = None  # the method's optimiser state at the end (λ for IGS)
  batched_with: int = 1  # runs in the one program that ran it (run_batch)
  batch_mode: str = "single"  # how that program went over its runs: "vmap" or "map"


@functools.lru_cache(maxsize=64)
def _cached_step(fm, base: UnlearnConfig, optimizer=None):
  """One compiled step per (model, config up to its traced numbers and the seed,
  optimiser): see :func:`_single_program`."""
  return _single_program(fm, base, None, optimizer)


def _single_program(fm, base: UnlearnConfig, prepared, optimizer):
  """``(tx_of, step)``: :func:`_run_step`'s, jitted. Runs that differ only in their
  traced numbers and the seed compile it once (tests/engine/test_unlearning.py counts the
  compilations); :func:`run_batch` does the same over many runs at once."""
  tx_of, step = _run_step(fm, base, prepared, optimizer)
  return tx_of, jax.jit(step)


def _run_step(fm, base: UnlearnConfig, prepared, optimizer):
  """``(tx_of, step)``: a run's transformation from its config, and its step with the
  run's traced numbers (learning rate, tolerance, the held-out level, …:
  :meth:`~jaxunlearn.engine.config.UnlearnConfig.traced_values`) as its first argument,
  ``step(values, params, model_state, opt_state, batch, teacher, step_index)``, not jitted:
  one run's (:func:`_single_program`) or a batch's over runs (:func:`_traced_program`)."""
  method = methods_lib.get_method(base.method)

  def tx_of(cfg):
    return methods_lib.build_transformation(cfg, prepared, optimizer)

  def step(values, params, model_state, opt_state, batch, teacher, step_index):
    cfg = base.replace(**values)
    fn = unlearn_step(fm, method, cfg, tx_of(cfg))
    return fn(params, model_state, opt_state, batch, teacher, step_index)

  return tx_of, step


def with_heldout_loss(cfg: UnlearnConfig, fm, params, model_state, dataset) -> UnlearnConfig:
  """``cfg`` with its held-out level measured, for ``forget_objective="heldout"`` left at
  ``heldout_loss < 0``: the mean per-example loss of ``(params, model_state)`` (the
  original model) on the validation split. Any other config is returned as it is.

  Examples:
    >>> from jaxunlearn import data
    >>> from jaxunlearn.engine import training
    >>> from jaxunlearn.engine.config import TrainConfig
    >>> from jaxunlearn.engine.methods import make_config
    >>> ds = data.load_dataset("digits")
    >>> fm, params, state = training.build_model(TrainConfig(), ds)
    >>> cfg = make_config("igs", forget_objective="heldout")
    >>> cfg = with_heldout_loss(cfg, fm, params, state, ds)
    >>> 2.0 < cfg.heldout_loss < 2.6  # an untrained 10-class model: about log 10
    True
  """
  if cfg.forget_objective != "heldout" or cfg.heldout_loss >= 0:
    return cfg
  if not len(dataset.val):
    raise ConfigError(
      "forget_objective=heldout measures the original's loss on the validation split, "
      "and this dataset has none; pass heldout_loss=VALUE"
    )
  losses = _example_losses(fm, params, model_state, dataset.val, cfg.layout)
  return dataclasses.replace(cfg, heldout_loss=float(jnp.mean(losses)))


def _example_losses(fm, params, model_state, split, layout: str):
  """The model's per-example loss (eval mode) on every row of ``split``, against what
  ``layout`` compares a row with (its label; a language model's row, its tokens)."""
  logits = make_predict(fm)(params, model_state, split.images)
  return example_loss(fm)(logits, jnp.asarray(LAYOUTS[layout].row_targets(split)))


def anchor_table(cfg: UnlearnConfig, fm, params, model_state, dataset) -> np.ndarray | None:
  """Per-row losses of the anchor θ_0 (``params``) over the train rows, for a method whose
  transformation takes ``anchor_loss`` (anchored IGS, :attr:`Method.takes_anchor_loss`)
  where a batch's loss is a function of its rows: the layout's rows fix the losses
  (not a DDPM's noise), no augmentation, and a model without state (BatchNorm's batch
  statistics or dropout's random state would make a row's loss depend on its batch or
  its step). Then a batch's anchor is the retain-weighted mean of its rows' entries: no
  forward of θ_0 a step, and the same value as that forward up to float rounding (the
  rows are evaluated in other batches). ``None`` otherwise: the transformation
  re-evaluates θ_0 on each batch.

  Examples:
    >>> from jaxunlearn import data
    >>> from jaxunlearn.engine import training
    >>> from jaxunlearn.engine.config import TrainConfig
    >>> from jaxunlearn.engine.methods import make_config
    >>> ds = data.load_dataset("digits")
    >>> fm, params, state = training.build_model(TrainConfig(), ds)
    >>> anchor_table(make_config("igs"), fm, params, state, ds).shape == (len(ds.train),)
    True
    >>> anchor_table(make_config("igs_paper"), fm, params, state, ds) is None  # no anchor
    True
  """
  method = methods_lib.get_method(cfg.method)
  if not method.takes_anchor_loss(cfg) or cfg.augment or not LAYOUTS[cfg.layout].rows_fix_losses:
    return None
  if jax.tree.leaves(model_state):
    return None
  # Eval mode equals train mode for a model without state; its compiled predict is the
  # one evaluation uses anyway.
  return np.asarray(_example_losses(fm, params, model_state, dataset.train, cfg.layout), np.float32)


def _step(cfg, fm, params, model_state, dataset, forget_set, optimizer):
  """The run's transformation and its step ``(params, model_state, opt_state, batch,
  teacher, step_index)``: the compiled program of its method and untraced config with this
  run's traced numbers bound; cached unless the method prepares something from the model
  (SalUn's mask)."""
  method = methods_lib.get_method(cfg.method)
  base = program_config(cfg)
  if method.prepare is None:
    tx_of, jitted = _cached_step(fm, base, optimizer)
  else:
    prepared = method.prepare(
      methods_lib.PrepareContext(fm, params, model_state, dataset, forget_set), cfg
    )
    tx_of, jitted = _single_program(fm, base, prepared, optimizer)
  values = {k: jnp.asarray(v, jnp.float32) for k, v in cfg.traced_values().items()}
  return tx_of(cfg), functools.partial(jitted, values)


def run_method(
  cfg: UnlearnConfig,
  fm,
  params,
  model_state,
  dataset: data_lib.Dataset,
  forget_set: data_lib.ForgetSet,
  *,
  progress: bool = True,
  mesh=None,
  fsdp: bool = False,
  checkpointer=None,
  checkpoint_every: int = 0,
  resume: bool = False,
  metadata: dict | None = None,
  optimizer=None,
  anchor=None,
) -> UnlearnResult:
  """Runs ``cfg.steps`` steps of ``cfg.method`` from ``(params, model_state)``.

  ``checkpointer`` (a :class:`jaxunlearn.checkpoint.Checkpointer`): saves params, model
  state, optimiser state (λ included) and the history every ``checkpoint_every`` steps
  and at the end; with ``resume`` the run continues from its latest checkpoint. Batches
  are a pure function of (seed, step), so a resumed run ends bitwise equal (on CPU) to an
  uninterrupted one. The teacher (SCRUB, NPO) and what a method prepares (SalUn's mask)
  always come from the ``params`` passed in, i.e. the original model.

  ``optimizer``: any optax optimiser to use instead of the config's SGD (its
  ``learning_rate``, ``momentum`` and ``weight_decay`` are then unused). ``anchor``:
  params (and nothing else) that IGS's ``reference="start"`` budget holds against
  instead of ``params`` — the original model across successive deletion requests
  (:func:`jaxunlearn.transforms.with_anchor`).

  ``mesh`` (a :class:`jax.sharding.Mesh`, see :mod:`jaxunlearn.parallel`): data-parallel
  steps — each batch split across the mesh's devices, params and optimiser state
  replicated; the batch rows (``n_retain`` and ``n_forget`` for the split layout, their
  sum for mixed) must be divisible by the device count. With ``fsdp=True`` the params,
  model state, optimiser state and teacher are split across the devices instead
  (fully sharded data parallel, :func:`jaxunlearn.engine.parallel.fully_sharded`): each
  device holds about ``1/N`` of them.

  Examples:
    >>> from jaxunlearn import data
    >>> from jaxunlearn.engine import training
    >>> from jaxunlearn.engine.config import TrainConfig
    >>> from jaxunlearn.engine.methods import make_config
    >>> ds = data.load_dataset("digits")
    >>> fm, params, state = training.build_model(TrainConfig(), ds)
    >>> forget = data.make_forget_set(ds, "class:0")
    >>> result = run_method(make_config("igs", steps=5), fm, params, state, ds, forget,
    ...                  progress=False)
    >>> sorted(result.history)
    ['forget_loss', 'multiplier', 'retain_decrease', 'retain_loss', 'skipped', 'weights']
  """
  methods_lib.get_method(cfg.method)  # an unknown method fails before any work
  if fsdp and mesh is None:
    raise ConfigError("fsdp=True splits the model over a mesh's devices; pass mesh=")
  cfg = with_heldout_loss(
    cfg.validate(), fm, params if anchor is None else anchor, model_state, dataset
  )
  n_retain, n_forget = rows_a_step(cfg, forget_set)
  layout = LAYOUTS[cfg.layout]
  if mesh is not None:
    names = ("n_retain", "n_forget") if cfg.layout == "split" else ("n_retain + n_forget",)
    for rows, name in zip(layout.rows(n_retain, n_forget), names):
      parallel.check_divisible(rows, mesh, name)
  tx, step_fn = _step(cfg, fm, params, model_state, dataset, forget_set, optimizer)
  opt_state = tx.init(params)  # from the original: IGS's budget holds against it
  if anchor is not None:
    opt_state = transforms.with_anchor(opt_state, anchor)
  if mesh is not None:
    step_fn = (parallel.fully_sharded if fsdp else parallel.data_parallel)(step_fn, mesh)
  place = functools.partial(_place, mesh=mesh, fsdp=fsdp)
  gradient = forget_gradient(cfg, fm, params, model_state, dataset, forget_set)
  state = place((start_params(cfg, params, gradient), model_state, opt_state))
  teacher = state[:2]
  # History preallocated from the step's abstract output, so it checkpoints as arrays.
  table = anchor_table(cfg, fm, params if anchor is None else anchor, model_state, dataset)
  batch_shapes = layout.shapes(dataset, n_retain, n_forget, anchor=table is not None)
  logs_shape = jax.eval_shape(step_fn, *state, batch_shapes, teacher, jnp.zeros((), jnp.int32))
  history = _History(cfg.steps, logs_shape[3].as_dict())
  first = 0
  if resume and checkpointer is not None and checkpointer.latest_step() is not None:
    state, history.arrays, first = _restore(checkpointer, state, history.arrays)
    state = place(state)
  saver = None
  if checkpointer is not None:
    meta = {"kind": "unlearned", "config": cfg.to_dict(), "forget_digest": forget_set.digest}
    saver = _Saver(checkpointer, history, {**meta, **(metadata or {})})

  def inputs_at(t):
    batch = layout.batch(dataset, forget_set, t, cfg, n_retain, n_forget, anchor=table)
    if mesh is None:
      return {k: jnp.asarray(v) for k, v in batch.items()}, teacher, jnp.asarray(t, jnp.int32)
    # straight from host memory to each device's slice
    index = parallel.replicate(jnp.asarray(t, jnp.int32), mesh)
    return parallel.shard_batch(batch, mesh), teacher, index

  bar = CompileApartBar(
    total=cfg.steps, initial=first, disable=not progress, desc=cfg.method, unit="step", leave=False
  )
  start = time.perf_counter()
  state, first_done = _loop(
    step_fn, state, inputs_at, range(first, cfg.steps), history, bar, saver, checkpoint_every
  )
  seconds = time.perf_counter() - start
  if saver is not None:
    saver.save(cfg.steps, state)
    checkpointer.wait_until_finished()
  return UnlearnResult(*state[:2], history.arrays, seconds, first_done - start, state[2])


def rows_a_step(cfg: UnlearnConfig, forget_set) -> tuple[int, int]:
  """``(n_retain, n_forget)`` a step: the config's, or fewer when a set is smaller."""
  return (
    min(cfg.n_retain, len(forget_set.retain_idx)),
    min(cfg.n_forget, len(forget_set.forget_idx)),
  )


def backward_rows(cfg: UnlearnConfig, forget_set) -> int:
  """The work of a run as the audit's frontier counts it: rows through a backward pass.
  A step backpropagates its batch once (twice for the methods that aggregate two
  gradients); a method that ranks weights by the forget set's gradient first (SalUn's
  mask, ``start_reinit``) adds the forget rows once. Forwards (IGS's re-evaluation, a
  teacher) are not counted.

  Examples:
    >>> from jaxunlearn import data
    >>> from jaxunlearn.engine.methods import make_config
    >>> ds = data.load_dataset("digits")
    >>> fs = data.make_forget_set(ds, "class:0")
    >>> [backward_rows(make_config(m, steps=10), fs) for m in ("igs", "pcgrad", "salun")]
    [800, 1600, 924]
  """
  method = methods_lib.get_method(cfg.method)
  n_retain, n_forget = rows_a_step(cfg, forget_set)
  passes = 2 if method.shape == "aggregated" else 1
  ranks = method.prepare is not None or cfg.start_reinit > 0
  return cfg.steps * (n_retain + n_forget) * passes + (len(forget_set.forget_idx) if ranks else 0)


def _place(tree, mesh, fsdp=False):
  """Split over ``mesh`` (``fsdp``), replicated over it, or committed to the first device
  like the step's outputs, so the second step reuses the first one's executable
  (uncommitted inputs made XLA compile the step twice: 0.65 s + 0.63 s on digits,
  measured with JAX_LOG_COMPILES=1)."""
  if mesh is not None:
    return (parallel.shard_fully if fsdp else parallel.replicate)(tree, mesh)
  return jax.device_put(tree, jax.devices()[0])


class _History:
  """Per-step logs, preallocated; a step's logs stay on device until a save or the end
  (pulling them every step would force a sync per step and serialise dispatch)."""

  def __init__(self, steps: int, shapes: dict | None = None):
    self.steps, self.arrays, self.pending = steps, None, []
    if shapes is not None:
      self._allocate(shapes)

  def _allocate(self, shapes: dict) -> None:
    self.arrays = {k: np.zeros((self.steps,) + v.shape, v.dtype) for k, v in shapes.items()}

  def add(self, t, logs) -> None:
    self.pending.append((t, logs))

  def flush(self) -> None:
    if self.arrays is None and self.pending:  # shapes from the first step's logs
      self._allocate(self.pending[0][1].as_dict())
    for t, logs in self.pending:
      for k, v in logs.as_dict().items():
        self.arrays[k][t] = np.asarray(v)
    self.pending.clear()


def _restore(checkpointer, state, history: dict):
  """``(state, history, first step)`` of the latest checkpoint."""
  params, model_state, opt_state = state
  template = {
    "params": params,
    "model_state": model_state,
    "opt_state": opt_state,
    "history": history,
    "step": np.zeros((), np.int32),
  }
  got = checkpointer.restore(template)
  history = {k: np.array(v) for k, v in got["history"].items()}
  return (got["params"], got["model_state"], got["opt_state"]), history, int(got["step"])


class _Saver:
  """Saves the loop's state, its history so far and the run's metadata."""

  def __init__(self, checkpointer, history: _History, metadata: dict):
    self.checkpointer, self.history, self.metadata = checkpointer, history, metadata
    self.saved_at = None

  def save(self, step: int, state) -> None:
    self.history.flush()
    params, model_state, opt_state = state
    self.checkpointer.save(
      step,
      {
        "params": params,
        "model_state": model_state,
        "opt_state": opt_state,
        "history": self.history.arrays,
        "step": np.asarray(step, np.int32),
      },
      metadata=self.metadata,
    )
    self.saved_at = step


def _loop(step, state, inputs_at, steps, history, bar, saver=None, every=0, stoppable=True):
  """The engine's one unlearning loop, for a single run and for a batch of runs alike:
  ``state = step(*state, *inputs_at(t))`` for ``t`` in ``steps`` (a range), the logs into
  ``history``, with progress (``bar``), periodic checkpoints (``saver`` every ``every``
  steps) and the graceful stop (``stoppable``) as hooks around the step call. A batch of
  runs has no saver and is not stoppable: its runs are short and stored whole, and the
  comparison stops between batches. Returns ``(state, when the first step was done
  (perf_counter))``, the first step holding the compile."""
  start = first_done = time.perf_counter()
  end = steps.stop
  for t in steps:
    *state, logs = step(*state, *inputs_at(t))
    history.add(t, logs)
    if t == steps.start:
      jax.block_until_ready(state[0])
      first_done = time.perf_counter()
      bar.first_step_done(t + 1, compile_seconds=first_done - start)
    else:
      bar.update(1)
    if saver is not None and every > 0 and (t + 1) % every == 0 and t + 1 < end:
      saver.save(t + 1, state)
    if stoppable and stopping.requested() and t + 1 < end:
      jax.block_until_ready(state[0])
      bar.close()
      _stop(end, t + 1, state, saver)
  jax.block_until_ready(state[0])
  bar.close()
  history.flush()
  return tuple(state), first_done


def _stop(steps: int, done: int, state, saver):
  """A requested stop: save (unless the periodic checkpoint just did) and raise."""
  if saver is None:
    raise stopping.Stopped(f"stopped at step {done} of {steps}; nothing was saved")
  if saver.saved_at != done:
    saver.save(done, state)
  saver.checkpointer.wait_until_finished()
  raise stopping.Stopped(
    f"stopped at step {done} of {steps}, checkpoint saved; continue with --resume"
  )


def run_seeds(
  cfg: UnlearnConfig,
  fm,
  params,
  model_state,
  dataset: data_lib.Dataset,
  forget_set: data_lib.ForgetSet,
  seeds,
  *,
  optimizer=None,
) -> list[UnlearnResult]:
  """``cfg`` run for every seed in ``seeds`` at once (:func:`run_batch`).

  Examples:
    >>> from jaxunlearn import data
    >>> from jaxunlearn.engine import training
    >>> from jaxunlearn.engine.config import TrainConfig
    >>> from jaxunlearn.engine.methods import make_config
    >>> ds = data.load_dataset("digits")
    >>> fm, params, state = training.build_model(TrainConfig(), ds)
    >>> forget = data.make_forget_set(ds, "class:0")
    >>> results = run_seeds(make_config("igs", steps=3), fm, params, state, ds, forget, [0, 1])
    >>> [r.history["multiplier"].shape for r in results]
    [(3,), (3,)]
  """
  seeds = [int(s) for s in seeds]
  if not seeds:
    raise ValueError("run_seeds needs at least one seed")
  configs = [dataclasses.replace(cfg, seed=s) for s in seeds]
  return run_batch(configs, fm, params, model_state, dataset, forget_set, optimizer=optimizer)


def program_config(cfg: UnlearnConfig) -> UnlearnConfig:
  """What the compiled program of a batch of runs depends on: ``cfg`` without its seed and
  its traced numbers (:meth:`~jaxunlearn.engine.config.UnlearnConfig.traced_values`). Runs
  whose program configs are
  equal run together in :func:`run_batch`.

  Examples:
    >>> from jaxunlearn.engine.methods import make_config
    >>> a = make_config("igs", learning_rate=0.03, tolerance=0.1, seed=4)
    >>> program_config(a) == program_config(make_config("igs"))
    True
    >>> program_config(make_config("igs", steps=50)) == program_config(make_config("igs"))
    False
  """
  return cfg.untraced().replace(seed=0)


def run_batch(
  configs,
  fm,
  params,
  model_state,
  dataset: data_lib.Dataset,
  forget_set: data_lib.ForgetSet,
  *,
  optimizer=None,
  memory_budget: int | None = None,
  vectorize: str = "auto",
  say=None,
) -> list[UnlearnResult]:
  """Many runs of one method as one compiled program: ``jax.vmap`` of the step over the
  runs, one compile, one dispatch a step for all of them.

  ``configs`` may differ in ``seed`` and in the numeric hyperparameters of
  :meth:`~jaxunlearn.engine.config.UnlearnConfig.traced_values` (learning rate, tolerance,
  dual learning rate, …), which the program takes as traced arrays: a method's seeds ×
  tuning grid run
  together, and the program is the same for any of their values (so the persistent
  compilation cache serves other values too). Anything else must be equal
  (:func:`program_config`); a mismatch names the key.

  Each run's batches are exactly those of :func:`run_method` with its config, and its result
  equals the one-at-a-time run to float tolerance (batched matrix products may sum in
  another order; ``tests/engine/test_batching.py`` checks every method).

  Memory grows with the number of runs: the program is compiled for all of them, and
  if XLA's memory analysis says it needs more than ``memory_budget`` bytes
  (:func:`jaxunlearn.engine.memory.budget_bytes` by default, ``JAXUNLEARN_MEMORY_BUDGET``)
  the runs go in chunks of as many as fit (the last one padded with repeats, so one
  program serves every chunk), and ``say`` (default: stderr) is told so.

  ``vectorize``: ``"vmap"`` (one vectorised step for all runs), ``"map"`` (a
  ``lax.map`` over the runs inside the one program: compiled and dispatched once, the
  runs' arithmetic one after another) or ``"auto"``: vmap, except for programs with a
  convolution on CPU, where XLA's vmapped convolution is slower than the runs in turn.

  No checkpointing or mesh: a comparison's runs are short and stored whole. ``seconds``
  and ``compile_seconds`` of each result are its share (1/len(configs)) of the batch's wall
  time and of its compile (and first step), so ``seconds − compile_seconds`` is each run's
  share of the step time, as for a single run; ``batched_with`` is its chunk's size.
  """
  if vectorize not in ("auto", "vmap", "map"):
    raise ValueError(f"vectorize must be 'auto', 'vmap' or 'map', got {vectorize!r}")
  configs, base = _one_program(configs, fm, params, model_state, dataset)
  n_retain, n_forget = rows_a_step(base, forget_set)
  layout = LAYOUTS[base.layout]
  table = anchor_table(base, fm, params, model_state, dataset)
  tx_of, programs = _program(base, fm, params, model_state, dataset, forget_set, optimizer)
  device = jax.devices()[0]
  teacher = jax.device_put((params, model_state), device)
  start = time.perf_counter()

  def inputs(chunk, t):
    parts = [layout.batch(dataset, forget_set, t, c, n_retain, n_forget, table) for c in chunk]
    return {k: jnp.asarray(np.stack([b[k] for b in parts])) for k in parts[0]}

  def values(chunk):
    names = chunk[0].traced_values()
    return {k: jnp.asarray([c.get(k) for c in chunk], jnp.float32) for k in names}

  gradient = forget_gradient(base.replace(start_reinit=max(c.start_reinit for c in configs)),
                             fm, params, model_state, dataset, forget_set)  # fmt: skip

  def states(chunk):
    # Each run's optimiser state from its own transformation, eagerly: cheap, and one
    # compile fewer than a vmapped init (0.39 s on mnist-mlp). Each run starts where its
    # config says (the original, or a perturbed copy of it: engine/starts.py).
    inits = [tx_of(c).init(params) for c in chunk]
    starts = [start_params(c, params, gradient) for c in chunk]
    stack = lambda *trees: jax.tree.map(lambda *xs: np.stack([np.asarray(x) for x in xs]), *trees)
    return jax.device_put(
      (stack(*starts), stack(*[model_state] * len(chunk)), stack(*inits)), device
    )

  def program_for(chunk, how):
    p, ms, os_ = states(chunk)
    args = (values(chunk), p, ms, os_, inputs(chunk, 0), teacher, jnp.asarray(0, jnp.int32))
    return programs.compiled(how, args)

  compiled, how, size = _compile_to_fit(
    program_for, configs, vectorize, device, memory_budget, say or _stderr
  )
  compile_seconds = time.perf_counter() - start
  results = []
  for first in range(0, len(configs), size):
    real = configs[first : first + size]
    chunk = real + [real[-1]] * (size - len(real))  # padded: one program for every chunk
    run = functools.partial(compiled.executable, values(chunk))
    history = _History(base.steps)

    def inputs_at(t, chunk=chunk):
      return inputs(chunk, t), teacher, jnp.asarray(t, jnp.int32)

    bar = CompileApartBar(total=base.steps, disable=True)
    (p, ms, os_), first_done = _loop(
      run, states(chunk), inputs_at, range(base.steps), history, bar, stoppable=False
    )
    if first == 0:  # the compile and the first step, as for a single run
      compile_seconds = first_done - start
    results += _runs_of((p, ms, os_), history, len(real), how)
  seconds = time.perf_counter() - start
  for r in results:
    r.seconds, r.compile_seconds = seconds / len(configs), compile_seconds / len(configs)
  return results


def _one_program(configs, fm, params, model_state, dataset):
  """``(configs, program config)``: the runs validated, their held-out level measured once
  (they share one original), or a ValueError naming the key that keeps two of them from
  sharing one compiled program."""
  configs = [c.validate() for c in configs]
  if not configs:
    raise ValueError("run_batch needs at least one config")
  level = None
  for i, c in enumerate(configs):
    if c.forget_objective == "heldout" and c.heldout_loss < 0:
      if level is None:
        level = with_heldout_loss(c, fm, params, model_state, dataset).heldout_loss
      configs[i] = dataclasses.replace(c, heldout_loss=level)
  base = program_config(configs[0])
  methods_lib.get_method(base.method)  # an unknown method fails before any work
  for c in configs[1:]:
    other = program_config(c)
    if other != base:
      mine, theirs = base.to_dict(), other.to_dict()
      key = next(k for k in {**mine, **theirs} if mine.get(k) != theirs.get(k))
      raise ValueError(
        f"runs batched together must differ only in seed and "
        f"{', '.join(configs[0].traced_values())}; {key} differs "
        f"({mine.get(key)!r} vs {theirs.get(key)!r}): run them apart"
      )
  return configs, base


def _runs_of(state, history: _History, n: int, how: str) -> list[UnlearnResult]:
  """The first ``n`` runs of a chunk's stacked state and history, one result each."""
  p, ms, os_ = state
  logs = lambda i: {k: np.ascontiguousarray(h[:, i]) for k, h in history.arrays.items()}
  return [
    UnlearnResult(
      _pick(p, i), _pick(ms, i), logs(i), 0.0, 0.0, _pick(os_, i), batched_with=n, batch_mode=how
    )
    for i in range(n)
  ]


def _compile_to_fit(program_for, configs, vectorize, device, memory_budget, say):
  """``(compiled, how, runs a chunk)``: the batch's program in the form that runs it
  fastest here, for as many runs at once as the memory budget allows."""
  how = vectorize if vectorize != "auto" else "vmap"
  compiled = program_for(configs, how)
  if vectorize == "auto" and device.platform == "cpu" and compiled.convolves:
    # XLA:CPU turns a convolution vmapped over runs (one kernel each) into a grouped
    # convolution that runs 1.6–2× slower than the runs one after another (mnist-cnn,
    # 4 IGS runs × 30 steps: 4.4 s against 2.4 s): there the runs go through a lax.map
    # inside the one program instead (compiled once, dispatched once a step).
    how = "map"
    compiled = program_for(configs, how)
  size = len(configs)
  budget = memory_lib.budget_bytes(device) if memory_budget is None else int(memory_budget)
  needed = memory_lib.program_bytes(compiled.executable)
  fits = memory_lib.runs_that_fit(needed, size, budget)
  if fits < size:
    say(
      f"{configs[0].method}: {size} runs need {needed / 2**20:.0f} MiB at once, over the "
      f"memory budget of {budget / 2**20:.0f} MiB ({memory_lib.ENV}); running them in "
      f"chunks of {fits}"
    )
    size = fits
    compiled = program_for(configs[:size], how)
  return compiled, how, size


def _pick(tree, i):
  return jax.tree.map(lambda x: x[i], tree)


def _stderr(message: str) -> None:
  print(message, file=sys.stderr)


def _program(base, fm, params, model_state, dataset, forget_set, optimizer):
  """``(tx_of, {"vmap": step, "map": step})``: each run's transformation, and the batch's
  step over runs in both forms, jitted; cached unless the method prepares something from
  the model (SalUn's mask)."""
  method = methods_lib.get_method(base.method)
  if method.prepare is None:
    return _cached_program(fm, base, optimizer)
  prepared = method.prepare(
    methods_lib.PrepareContext(fm, params, model_state, dataset, forget_set), base
  )
  return _traced_program(fm, base, prepared, optimizer)


@functools.lru_cache(maxsize=64)
def _cached_program(fm, base, optimizer):
  return _traced_program(fm, base, None, optimizer)


def _traced_program(fm, base, prepared, optimizer):
  """The step of one run with ``values`` (its traced numbers) as arguments, over runs:
  ``step(values, params, model_state, opt_state, batch, teacher, step_index)``."""
  tx_of, step = _run_step(fm, base, prepared, optimizer)

  def mapped(values, params, model_state, opt_state, batch, teacher, step_index):
    one = lambda run: step(*run, teacher, step_index)
    return jax.lax.map(one, (values, params, model_state, opt_state, batch))

  return tx_of, _Programs(
    {
      "vmap": jax.jit(jax.vmap(step, in_axes=(0, 0, 0, 0, 0, None, None))),
      "map": jax.jit(mapped),
    }
  )


def lowers_to_convolution(lowered) -> bool:
  """Whether a lowered program has a convolution (StableHLO's op): on CPU such a program
  runs its runs through a ``lax.map`` rather than a ``vmap`` (see :func:`run_batch`)."""
  return "stablehlo.convolution" in lowered.as_text()


class _Compiled(NamedTuple):
  executable: Any  # jax.stages.Compiled
  convolves: bool  # the program has a convolution (StableHLO's op)


class _Programs:
  """A batch's step in both forms, and what each compiled to, per argument shapes: a
  later batch of the same shapes (the next method's seeds, a chunk) neither traces nor
  compiles again."""

  def __init__(self, jitted: dict):
    self.jitted = jitted
    self.cache: dict = {}

  def compiled(self, how: str, args) -> _Compiled:
    leaves, tree = jax.tree.flatten(args)
    key = (how, tree, tuple((np.shape(x), getattr(x, "dtype", type(x))) for x in leaves))
    if key not in self.cache:
      lowered = self.jitted[how].lower(*args)
      self.cache[key] = _Compiled(lowered.compile(), lowers_to_convolution(lowered))
    return self.cache[key]
