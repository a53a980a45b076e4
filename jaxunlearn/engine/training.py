"""Train the original model, or retrain without the forget set (the gold standard).

Importable train logic behind ``python -m experiments.pretrain``. Deterministic: the
batch order of epoch e is a pure function of (seed, e) and the initialisation of the
seed, so a run killed at any point and resumed from its latest checkpoint ends with
parameters bitwise equal (on CPU) to an uninterrupted run.

Checkpoints (Orbax, under ``workdir/checkpoints``) hold params, model state (BatchNorm
statistics), optimiser state and the epoch, with metadata (config, dataset, forget-set
digest, package versions); the latest and the best-by-validation are kept.
"""

from __future__ import annotations

import dataclasses
import json
import pathlib
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxunlearn import data as data_lib
from jaxunlearn import metrics as metrics_lib
from jaxunlearn.engine import checkpoint as ckpt
from jaxunlearn.engine import parallel, steps, stopping
from jaxunlearn.engine.config import TrainConfig
from jaxunlearn.engine.evaluation import evaluate
from jaxunlearn.engine.locking import WorkdirLock
from jaxunlearn.engine.progress import CompileApartBar
from jaxunlearn.engine.records import check_workdir, write_json_atomic
from jaxunlearn.errors import ConfigError
from jaxunlearn.nn import models


def make_optimizer(config: TrainConfig, steps_per_epoch: int) -> optax.GradientTransformation:
  """SGD (or Adam) with step-wise decay at epoch milestones and coupled L2 weight decay."""
  schedule = optax.piecewise_constant_schedule(
    config.learning_rate, {int(m) * steps_per_epoch: config.lr_gamma for m in config.lr_milestones}
  )
  if config.optimizer == "adam":
    base = optax.adam(schedule)
  else:
    base = optax.sgd(schedule, momentum=config.momentum or None)
  return optax.chain(optax.add_decayed_weights(config.weight_decay), base)


def build_model(config: TrainConfig, dataset: data_lib.Dataset):
  model = models.create_model(
    config.model,
    num_classes=dataset.num_classes,
    input_shape=dataset.image_shape,
    seed=config.seed,
    **dict(config.model_kwargs),
  )
  return models.functional(model)


def _split_accuracy(predict, params, model_state, split) -> float:
  return metrics_lib.accuracy(np.asarray(predict(params, model_state, split.images)), split.labels)


def _metadata(config, dataset, forget_set, retrain) -> dict:
  return {
    "kind": "retrain" if retrain else "pretrain",
    "config": config.to_dict(),
    "dataset": dataset.name,
    "num_classes": dataset.num_classes,
    "image_shape": list(dataset.image_shape),
    "forget_spec": forget_set.spec if forget_set else None,
    "forget_digest": forget_set.digest if forget_set else None,
    "versions": ckpt.package_versions(),
  }


def train(
  config: TrainConfig,
  workdir,
  *,
  forget_spec: str | None = None,
  retrain: bool = False,
  resume: bool = False,
  data_dir=None,
  forget_seed: int = 0,
  progress: bool = True,
  mesh=None,
) -> dict:
  """Trains (or retrains on the retain set) and returns the final metrics.

  ``mesh`` (a :class:`jax.sharding.Mesh`, see :mod:`jaxunlearn.parallel`): data-parallel
  steps — each batch split across the mesh's devices, params and optimiser state
  replicated; ``batch_size`` must be divisible by the device count.

  Writes ``workdir/metrics.jsonl`` (one line an epoch), ``workdir/metrics.json`` and
  checkpoints. Refuses to overwrite an existing run unless ``resume``.

  Examples:
    >>> import tempfile
    >>> from jaxunlearn.engine.config import TrainConfig
    >>> m = train(TrainConfig(epochs=2), tempfile.mkdtemp(), progress=False)
    >>> m["test_accuracy"] > 50
    True
  """
  config = config.validate()
  if mesh is not None:
    parallel.check_divisible(config.batch_size, mesh, "batch_size")
  if retrain and not forget_spec:
    raise ConfigError("--retrain needs --forget SPEC (the data to leave out)")
  workdir = check_workdir(workdir)
  lock = WorkdirLock(workdir)
  if workdir.exists():  # refuse at once if another process writes here
    lock.acquire()
  try:
    return _train(config, workdir, lock, forget_spec, retrain, resume, data_dir, forget_seed,
                  progress, mesh)  # fmt: skip
  finally:
    lock.release()


def _resumed(workdir, resume: bool, metadata: dict, state):
  """``(manager, state, first epoch)``: a new run's, or the saved run's when resuming
  one with the same config, data and forget set (anything else is refused)."""
  checkpoints = workdir / "checkpoints"
  if not (checkpoints.exists() and any(checkpoints.iterdir())):
    return None, state, 0
  if not resume:
    raise ConfigError(
      f"{workdir} already holds a run; pass --resume to continue it or choose a new --workdir"
    )
  manager = ckpt.Checkpointer(checkpoints)
  saved = manager.metadata()
  for key in ("config", "dataset", "forget_digest", "kind"):
    if saved.get(key) != metadata.get(key):
      raise ConfigError(
        f"cannot resume: the saved run's {key} differs from this one's "
        f"({saved.get(key)!r} vs {metadata.get(key)!r})"
      )
  params, model_state, opt_state = state
  template = {
    "params": params,
    "model_state": model_state,
    "opt_state": opt_state,
    "epoch": jnp.zeros((), jnp.int32),
  }
  got = manager.restore(template)
  return manager, (got["params"], got["model_state"], got["opt_state"]), int(got["epoch"])


def _training_rows(config, dataset, forget_spec, forget_seed, retrain):
  """``(forget set or None, the train rows trained on)``: all of them, or the retained
  ones for a retrain; a batch larger than them is refused."""
  forget_set = (
    data_lib.make_forget_set(dataset, forget_spec, seed=forget_seed) if forget_spec else None
  )
  train_idx = forget_set.retain_idx if retrain else np.arange(len(dataset.train.labels))
  if config.batch_size > len(train_idx):
    raise ConfigError(
      f"batch_size {config.batch_size} is larger than the training set ({len(train_idx)} examples)"
    )
  return forget_set, train_idx


def _end_epoch(predict, state, dataset, epoch, losses, accs, log_path, manager, metadata):
  """An epoch's record (mean loss, batch accuracy, validation accuracy), appended to the
  log; the state saved as the checkpoint of epoch ``epoch + 1`` (ranked by validation)."""
  params, model_state, opt_state = state
  val_acc = _split_accuracy(predict, params, model_state, dataset.val)
  record = {
    "epoch": epoch + 1,
    "loss": float(np.mean(losses)),
    "train_batch_accuracy": 100 * float(np.mean(accs)),
    "val_accuracy": val_acc,
  }
  with log_path.open("a") as f:
    f.write(json.dumps(record) + "\n")
  manager.save(
    epoch + 1,
    {
      "params": params,
      "model_state": model_state,
      "opt_state": opt_state,
      "epoch": jnp.asarray(epoch + 1, jnp.int32),
    },
    metadata=metadata,
    metrics={"val_accuracy": val_acc},
  )
  return record


def _batch(config, images, labels, idx, aug_rng, mesh):
  """One training batch of rows ``idx``, augmented when the recipe says so, on device
  (or straight from host memory to each device's slice of ``mesh``)."""
  x = images[idx]
  if config.augment:
    x = data_lib.augment(x, aug_rng)
  y = labels[idx]
  if mesh is None:
    return jnp.asarray(x), jnp.asarray(y)
  return parallel.shard_batch((x, y), mesh)


def _placed(step_fn, state, mesh):
  """The train step and its state, data-parallel over ``mesh`` (replicated state) if given."""
  if mesh is None:
    return step_fn, state
  return parallel.data_parallel(step_fn, mesh), parallel.replicate(state, mesh)


def _train(
  config, workdir, lock, forget_spec, retrain, resume, data_dir, forget_seed, progress, mesh
):
  dataset = data_lib.load_dataset(config.dataset, data_dir)
  forget_set, train_idx = _training_rows(config, dataset, forget_spec, forget_seed, retrain)
  per_epoch = data_lib.steps_per_epoch(len(train_idx), config.batch_size)

  fm, params, model_state = build_model(config, dataset)
  tx = make_optimizer(config, per_epoch)
  opt_state = tx.init(params)
  metadata = _metadata(config, dataset, forget_set, retrain)

  manager, (params, model_state, opt_state), start_epoch = _resumed(
    workdir, resume, metadata, (params, model_state, opt_state)
  )
  lock.ensure()  # before the first write (creates the workdir)
  if manager is None:
    manager = ckpt.Checkpointer(workdir / "checkpoints")

  step_fn, state = _placed(steps.make_train_step(fm, tx), (params, model_state, opt_state), mesh)
  predict = steps.make_predict(fm)
  log_path = workdir / "metrics.jsonl"
  if start_epoch == 0 and log_path.exists():
    log_path.unlink()
  bar = CompileApartBar(
    total=config.epochs * per_epoch,
    initial=start_epoch * per_epoch,
    disable=not progress,
    desc="retrain" if retrain else "pretrain",
    unit="step",
  )
  ticks = _Ticks(bar, start_epoch * per_epoch)
  for epoch in range(start_epoch, config.epochs):
    state, losses, accs = _epoch(config, dataset, train_idx, epoch, step_fn, state, mesh, ticks)
    params, model_state, opt_state = state
    record = _end_epoch(predict, state, dataset, epoch, losses, accs, log_path, manager, metadata)
    bar.set_postfix_str(f"loss {record['loss']:.3f}, val {record['val_accuracy']:.1f}%")
    _stop_if_requested(epoch, config.epochs, bar, manager)
  bar.close()
  manager.wait_until_finished()
  final = evaluate(fm, params, model_state, dataset, forget_set, unlearning=False)
  run = dict(epochs=config.epochs, seconds=time.perf_counter() - ticks.start)
  run.update(compile_seconds=ticks.compile_seconds, resumed_from_epoch=start_epoch)
  final.update(kind=metadata["kind"], **run, forget_spec=forget_spec)
  write_json_atomic(workdir / "metrics.json", final, indent=2)
  manager.close()
  return final


class _Ticks:
  """Moves the bar after each step, the first one (the compile) timed apart."""

  def __init__(self, bar, done: int):
    self.bar, self.done = bar, done
    self.start, self.compile_seconds = time.perf_counter(), None

  def __call__(self, state) -> None:
    if self.compile_seconds is None:
      jax.block_until_ready(state[0])
      self.compile_seconds = time.perf_counter() - self.start
      self.bar.first_step_done(self.done + 1, compile_seconds=self.compile_seconds)
    else:
      self.bar.update(1)


def _epoch(config, dataset, train_idx, epoch, step_fn, state, mesh, tick):
  """One epoch's steps: ``(state, losses, accuracies)``, a value a step (on device)."""
  losses, accs = [], []
  images, labels = dataset.train.images, dataset.train.labels
  aug_rng = np.random.default_rng([config.seed, epoch, 7])
  for batch in data_lib.epoch_batches(len(train_idx), config.batch_size, config.seed, epoch):
    x, y = _batch(config, images, labels, train_idx[batch], aug_rng, mesh)
    *state, m = step_fn(*state, x, y)
    losses.append(m["loss"])
    accs.append(m["accuracy"])
    tick(state)
  return state, losses, accs


def _stop_if_requested(epoch: int, epochs: int, bar, manager) -> None:
  """After an epoch's checkpoint: the graceful stop (SIGINT/SIGTERM), unless it was the last."""
  if stopping.requested() and epoch + 1 < epochs:
    bar.close()
    manager.close()
    raise stopping.Stopped(
      f"stopped after epoch {epoch + 1} of {epochs}, checkpoint saved; continue with --resume"
    )


@dataclasses.dataclass
class TrainedModel:
  """A restored model, ready to predict: ``model.predict(images)`` gives logits."""

  fm: models.FunctionalModel
  params: Any
  model_state: Any
  metadata: dict

  def predict(self, images):
    return steps.make_predict(self.fm)(self.params, self.model_state, images)

  def module(self):
    return models.to_module(self.fm, self.params, self.model_state)


def load_trained(workdir, *, which: str = "latest") -> TrainedModel:
  """Restores a pretrained or retrained model from ``workdir`` for users' own scripts.

  The model is rebuilt from the checkpoint's own config, so the restore cannot mismatch.

  Examples:
    >>> import tempfile
    >>> from jaxunlearn.engine.config import TrainConfig
    >>> workdir = tempfile.mkdtemp()
    >>> _ = train(TrainConfig(epochs=1), workdir, progress=False)
    >>> model = load_trained(workdir)
    >>> model.predict(np.zeros((3, 8, 8, 1), np.float32)).shape
    (3, 10)
  """
  manager = ckpt.Checkpointer(pathlib.Path(workdir) / "checkpoints", create=False)
  meta = manager.metadata(which=which)
  if meta.get("kind") not in ("pretrain", "retrain"):
    manager.close()
    raise ConfigError(
      f"{workdir} holds a {meta.get('kind')!r} run, not a trained model; "
      "use jaxunlearn.load(workdir), which reads every kind"
    )
  fm, template = restore_template(meta)
  restored = manager.restore(template, which=which)
  manager.close()
  return TrainedModel(fm, restored["params"], restored["model_state"], meta)


def restore_template(meta: dict) -> tuple:
  """``(fm, template)``: a trained run's model and the structure its checkpoints restore
  into (params, model state, optimiser state, epoch), from the run's metadata."""
  config, fm, params, model_state = model_from_metadata(meta)
  # The optimiser state's structure does not depend on the schedule's length.
  template = {
    "params": params,
    "model_state": model_state,
    "opt_state": make_optimizer(config, 1).init(params),
    "epoch": jnp.zeros((), jnp.int32),
  }
  return fm, template


def model_description(meta: dict) -> dict:
  """What rebuilds a run's model: its training config, classes and input shape.

  Stored by pretraining at the top of its metadata and by unlearning under ``"model"``.
  """
  if "model" in meta:
    return meta["model"]
  return {k: meta[k] for k in ("config", "num_classes", "image_shape")}


def model_from_metadata(meta: dict):
  """``(TrainConfig, fm, params, model_state)``: the freshly initialised model a
  checkpoint's metadata describes, the template its arrays restore into."""
  desc = model_description(meta)
  config = TrainConfig(
    **{**desc["config"], "lr_milestones": tuple(desc["config"]["lr_milestones"])}
  )
  model = models.create_model(
    config.model,
    num_classes=desc["num_classes"],
    input_shape=tuple(desc["image_shape"]),
    seed=config.seed,
    **dict(config.model_kwargs),
  )
  fm, params, model_state = models.functional(model)
  return config, fm, params, model_state
