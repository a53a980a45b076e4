"""Run one unlearning method from an original model: the resumable, jitted loop.

Importable logic behind ``python -m experiments.unlearn`` and ``experiments.compare``.
"""

from __future__ import annotations

import dataclasses
import functools
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxunlearn import data as data_lib
from jaxunlearn import transforms
from jaxunlearn.engine import methods as methods_lib
from jaxunlearn.engine import parallel, stopping
from jaxunlearn.engine.config import UnlearnConfig
from jaxunlearn.engine.layouts import LAYOUTS
from jaxunlearn.engine.progress import CompileApartBar
from jaxunlearn.engine.steps import make_unlearn_step


@dataclasses.dataclass
class UnlearnResult:
  params: Any
  model_state: Any
  history: dict  # name -> np.ndarray over steps
  seconds: float  # wall time of the loop, compile included
  compile_seconds: float  # time of the first step (compile + one step)
  opt_state: Any = None  # the method's optimiser state at the end (λ for IGS)


@functools.lru_cache(maxsize=64)
def _cached_step(fm, cfg: UnlearnConfig, optimizer=None):
  """One compiled step per (model, config up to the seed, optimiser): seeds reuse the
  compile."""
  tx = methods_lib.build_transformation(cfg, optimizer=optimizer)
  return tx, make_unlearn_step(fm, methods_lib.get_method(cfg.method), cfg, tx)


def _step(cfg, fm, params, model_state, dataset, forget_set, optimizer):
  """The method's transformation and jitted step; cached unless the method prepares
  something from the model (SalUn's mask)."""
  method = methods_lib.get_method(cfg.method)
  if method.prepare is None:
    return _cached_step(fm, dataclasses.replace(cfg, seed=0), optimizer)
  prepared = method.prepare(
    methods_lib.PrepareContext(fm, params, model_state, dataset, forget_set), cfg
  )
  tx = methods_lib.build_transformation(cfg, prepared, optimizer)
  return tx, make_unlearn_step(fm, method, cfg, tx)


def unlearn(
  cfg: UnlearnConfig,
  fm,
  params,
  model_state,
  dataset: data_lib.Dataset,
  forget_set: data_lib.ForgetSet,
  *,
  progress: bool = True,
  mesh=None,
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
  sum for mixed) must be divisible by the device count.

  Example:
    >>> from jaxunlearn import data
    >>> from jaxunlearn.engine import training
    >>> from jaxunlearn.engine.config import TrainConfig
    >>> from jaxunlearn.engine.methods import make_config
    >>> ds = data.load_dataset("digits")
    >>> fm, params, state = training.build_model(TrainConfig(), ds)
    >>> forget = data.make_forget_set(ds, "class:0")
    >>> result = unlearn(make_config("igs", steps=5), fm, params, state, ds, forget,
    ...                  progress=False)
    >>> sorted(result.history)
    ['forget_loss', 'multiplier', 'retain_decrease', 'retain_loss', 'skipped', 'weights']
  """
  methods_lib.get_method(cfg.method)  # an unknown method fails before any work
  cfg = cfg.validate()
  n_forget = min(cfg.n_forget, len(forget_set.forget_idx))
  n_retain = min(cfg.n_retain, len(forget_set.retain_idx))
  layout = LAYOUTS[cfg.layout]
  if mesh is not None:
    names = ("n_retain", "n_forget") if cfg.layout == "split" else ("n_retain + n_forget",)
    for rows, name in zip(layout.rows(n_retain, n_forget), names):
      parallel.check_divisible(rows, mesh, name)
  tx, step_fn = _step(cfg, fm, params, model_state, dataset, forget_set, optimizer)
  opt_state = tx.init(params)
  if anchor is not None:
    opt_state = transforms.with_anchor(opt_state, anchor)
  if mesh is not None:
    step_fn = parallel.data_parallel(step_fn, mesh)
    params, model_state, opt_state = parallel.replicate((params, model_state, opt_state), mesh)
  else:
    # Committed to the device like the step's outputs, so the second step reuses the
    # first one's executable (uncommitted inputs made XLA compile the step twice:
    # 0.65 s + 0.63 s on digits, measured with JAX_LOG_COMPILES=1).
    params, model_state, opt_state = jax.device_put(
      (params, model_state, opt_state), jax.devices()[0]
    )
  teacher = (params, model_state)
  # History preallocated from the step's abstract output, so it checkpoints as arrays.
  logs_shape = jax.eval_shape(
    step_fn,
    params,
    model_state,
    opt_state,
    layout.shapes(dataset, n_retain, n_forget),
    teacher,
    jnp.zeros((), jnp.int32),
  )[3].as_dict()
  history = {k: np.zeros((cfg.steps,) + v.shape, v.dtype) for k, v in logs_shape.items()}
  first = 0
  if resume and checkpointer is not None and checkpointer.latest_step() is not None:
    restored = checkpointer.restore(
      {
        "params": params,
        "model_state": model_state,
        "opt_state": opt_state,
        "history": history,
        "step": np.zeros((), np.int32),
      }
    )
    params, model_state, opt_state = (
      restored["params"],
      restored["model_state"],
      restored["opt_state"],
    )
    history = {k: np.array(v) for k, v in restored["history"].items()}
    first = int(restored["step"])
    if mesh is not None:
      params, model_state, opt_state = parallel.replicate((params, model_state, opt_state), mesh)
    else:
      params, model_state, opt_state = jax.device_put(
        (params, model_state, opt_state), jax.devices()[0]
      )

  # Logs stay on device until a save or the end: pulling them to the host every step
  # would force a sync per step and serialise dispatch.
  pending: list = []

  def flush():
    for t_done, logs_done in pending:
      for k, v in logs_done.as_dict().items():
        history[k][t_done] = np.asarray(v)
    pending.clear()

  def save(step):
    flush()
    checkpointer.save(
      step,
      {
        "params": params,
        "model_state": model_state,
        "opt_state": opt_state,
        "history": history,
        "step": np.asarray(step, np.int32),
      },
      metadata={
        "kind": "unlearned",
        "config": cfg.to_dict(),
        "forget_digest": forget_set.digest,
        **(metadata or {}),
      },
    )

  start = time.perf_counter()
  compile_seconds = 0.0
  saved_at = first
  bar = CompileApartBar(
    total=cfg.steps, initial=first, disable=not progress, desc=cfg.method, unit="step", leave=False
  )
  for t in range(first, cfg.steps):
    batch = layout.batch(dataset, forget_set, t, cfg, n_retain, n_forget)
    step_index = jnp.asarray(t, jnp.int32)
    if mesh is None:
      batch = {k: jnp.asarray(v) for k, v in batch.items()}
    else:  # straight from host memory to each device's slice
      batch = parallel.shard_batch(batch, mesh)
      step_index = parallel.replicate(step_index, mesh)
    params, model_state, opt_state, logs = step_fn(
      params, model_state, opt_state, batch, teacher, step_index
    )
    pending.append((t, logs))
    if t == first:
      jax.block_until_ready(params)
      compile_seconds = time.perf_counter() - start
      bar.first_step_done(t + 1, compile_seconds=compile_seconds)
    else:
      bar.update(1)
    if (
      checkpointer is not None
      and checkpoint_every > 0
      and (t + 1) % checkpoint_every == 0
      and t + 1 < cfg.steps
    ):
      save(t + 1)
      saved_at = t + 1
    if stopping.requested() and t + 1 < cfg.steps:
      jax.block_until_ready(params)
      bar.close()
      if checkpointer is None:
        raise stopping.Stopped(f"stopped at step {t + 1} of {cfg.steps}; nothing was saved")
      if saved_at != t + 1:  # not saved by the periodic checkpoint a moment ago
        save(t + 1)
      checkpointer.wait_until_finished()
      raise stopping.Stopped(
        f"stopped at step {t + 1} of {cfg.steps}, checkpoint saved; continue with --resume"
      )
  jax.block_until_ready(params)
  bar.close()
  seconds = time.perf_counter() - start
  flush()
  if checkpointer is not None:
    save(cfg.steps)
    checkpointer.wait_until_finished()
  return UnlearnResult(params, model_state, history, seconds, compile_seconds, opt_state)


def unlearn_seeds(
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
  """``cfg`` run for every seed in ``seeds`` at once: one ``jax.vmap`` of the step over
  the seeds' stacked batches, one compile, one dispatch a step for all of them.

  Each seed's batches are exactly those of :func:`unlearn` with ``cfg.seed`` = that seed,
  and its result equals the one-at-a-time run to float tolerance (the batched matrix
  products may sum in another order; ``tests/engine/test_unlearning.py`` checks). No
  checkpointing or mesh: a comparison's runs are short and stored whole. ``seconds`` and
  ``compile_seconds`` of each result are its share (1/len(seeds)) of the batch's wall
  time and of its first (compiling) step's, so ``seconds − compile_seconds`` is each run's
  share of the step time, as for a single run.

  Example:
    >>> from jaxunlearn import data
    >>> from jaxunlearn.engine import training
    >>> from jaxunlearn.engine.config import TrainConfig
    >>> from jaxunlearn.engine.methods import make_config
    >>> ds = data.load_dataset("digits")
    >>> fm, params, state = training.build_model(TrainConfig(), ds)
    >>> forget = data.make_forget_set(ds, "class:0")
    >>> results = unlearn_seeds(make_config("igs", steps=3), fm, params, state, ds, forget, [0, 1])
    >>> [r.history["multiplier"].shape for r in results]
    [(3,), (3,)]
  """
  seeds = [int(s) for s in seeds]
  if not seeds:
    raise ValueError("unlearn_seeds needs at least one seed")
  methods_lib.get_method(cfg.method)  # an unknown method fails before any work
  cfg = dataclasses.replace(cfg, seed=0).validate()
  n_forget = min(cfg.n_forget, len(forget_set.forget_idx))
  n_retain = min(cfg.n_retain, len(forget_set.retain_idx))
  layout = LAYOUTS[cfg.layout]
  tx, step_fn = _step(cfg, fm, params, model_state, dataset, forget_set, optimizer)
  vstep = _batched(step_fn)
  device = jax.devices()[0]
  teacher = jax.device_put((params, model_state), device)
  stack = lambda tree: jax.device_put(
    jax.tree.map(lambda x: np.broadcast_to(np.asarray(x), (len(seeds),) + np.shape(x)), tree),
    device,
  )
  opt_state = tx.init(params)
  p, ms, os_ = stack(params), stack(model_state), stack(opt_state)
  configs = [dataclasses.replace(cfg, seed=s) for s in seeds]
  pending = []
  start = time.perf_counter()
  compile_seconds = 0.0
  for t in range(cfg.steps):
    parts = [layout.batch(dataset, forget_set, t, c, n_retain, n_forget) for c in configs]
    batch = {k: jnp.asarray(np.stack([b[k] for b in parts])) for k in parts[0]}
    p, ms, os_, logs = vstep(p, ms, os_, batch, teacher, jnp.asarray(t, jnp.int32))
    pending.append(logs)
    if t == 0:
      jax.block_until_ready(p)
      compile_seconds = time.perf_counter() - start
  jax.block_until_ready(p)
  seconds = (time.perf_counter() - start) / len(seeds)
  history = {
    k: np.stack([np.asarray(v) for v in values], axis=1)  # (seeds, steps, ...)
    for k, values in zip(pending[0].as_dict(), zip(*[lg.as_dict().values() for lg in pending]))
  }
  pick = lambda tree, i: jax.tree.map(lambda x: x[i], tree)
  return [
    UnlearnResult(
      pick(p, i),
      pick(ms, i),
      {k: v[i] for k, v in history.items()},
      seconds,
      compile_seconds / len(seeds),
      pick(os_, i),
    )
    for i in range(len(seeds))
  ]


@functools.lru_cache(maxsize=64)
def _batched(step_fn):
  """The step vmapped over runs (params, states, batch); teacher and step index shared."""
  return jax.jit(jax.vmap(step_fn, in_axes=(0, 0, 0, 0, None, None)))
