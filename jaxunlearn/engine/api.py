"""``jaxunlearn.unlearn``: unlearning for your own model and data, in one call.

The model is an apply function, a linen or an NNX module (:mod:`jaxunlearn.nn.adapters`);
the data are arrays of any rank; the forget set is row indices, a boolean mask or ids;
the optimiser any optax optimiser; the loss any per-example loss; the method any entry
of the catalogue (:data:`jaxunlearn.engine.methods.METHODS`). The run is the engine's:
batches a pure function of (seed, step), one jitted step, the method's transformation.

Successive deletion requests: pass the previous report as ``previous``; the new request
starts from its model, rows forgotten earlier are neither forgotten again nor retained,
the metrics are over every forgotten row, and IGS's budget is held against the
*original* model (``budget_from="original"``), so ten small requests cannot each spend
the budget again. A request whose rows are all forgotten already raises.
"""

from __future__ import annotations

import dataclasses
import datetime
import hashlib
import math
import pathlib
from collections.abc import Callable
from typing import Any

import jax
import numpy as np

from jaxunlearn import data as data_lib
from jaxunlearn.engine import checkpoint as ckpt
from jaxunlearn.engine import methods as methods_lib
from jaxunlearn.engine.evaluation import evaluate
from jaxunlearn.engine.layouts import example_loss
from jaxunlearn.engine.records import check_workdir
from jaxunlearn.engine.steps import make_predict
from jaxunlearn.engine.unlearning import unlearn as run_unlearning
from jaxunlearn.errors import ConfigError, DataError
from jaxunlearn.nn.adapters import as_functional

BUDGETS = ("original", "request")


@dataclasses.dataclass
class UnlearnReport:
  """What :func:`unlearn` returns.

  Attributes:
    params, model_state: the unlearned model (``params`` has the input's structure).
    metrics: percentages on the splits given — ``UA`` (100 − accuracy on every row
      forgotten so far), ``RA`` (accuracy on the rest of train), and with ``test``:
      ``TA``, ``MIA`` (SalUn's attack), ``LossAUC``; with ``val``: ``val_accuracy``.
    original_metrics: the same for the model the request started from.
    history: per step — ``retain_loss``, ``forget_loss`` and, for methods that keep
      one, ``multiplier`` (λ).
    budget: ``retain_loss_before`` (the reference model's mean loss on the retained
      rows), ``retain_loss_after``, ``tolerance`` and ``held``: after ≤ before + ε (on
      log losses when the method weights logs) — the bounded increase IGS promises, here
      over the whole retained set.
    config: the :class:`~jaxunlearn.engine.config.UnlearnConfig` that ran.
    forgotten: train rows forgotten by this and every earlier request (sorted).
    requests: one record per request so far (rows, when, method, metrics after).
    seconds, compile_seconds: wall time of the loop, and of its first (compiling) step.
  """

  params: Any
  model_state: Any
  metrics: dict
  original_metrics: dict
  history: dict
  budget: dict
  config: Any
  forgotten: np.ndarray
  requests: list
  seconds: float
  compile_seconds: float
  opt_state: Any = None
  # what a following request needs
  original: Any = None  # (params, model_state) before the first request
  data_digest: str = ""
  fm: Any = None

  def summary(self) -> str:
    """One line: the metrics, λ and whether the budget held."""
    parts = [f"{k} {v:.1f}" for k, v in self.metrics.items() if k[0].isupper()]
    if "multiplier" in self.history:
      parts.append(f"λ {float(self.history['multiplier'][-1]):.3f}")
    parts.append(f"budget {'held' if self.budget['held'] else 'exceeded'}")
    return ", ".join(parts)


def _data_digest(dataset) -> str:
  h = hashlib.sha256()
  for a in (dataset.train.images, dataset.train.labels, dataset.train.ids):
    h.update(np.ascontiguousarray(a).tobytes())
  return h.hexdigest()


def _forget_set(dataset, forget, forget_ids):
  if (forget is None) == (forget_ids is None):
    raise ConfigError("pass exactly one of forget= (row indices or a boolean mask) or forget_ids=")
  if forget_ids is not None:
    rows = data_lib.rows_of_ids(dataset.train.ids, np.asarray(forget_ids).reshape(-1), "forget_ids")
    return data_lib.forget_set_from_rows(dataset, rows, spec="forget_ids")
  return data_lib.forget_set_from_rows(dataset, np.asarray(forget), spec="forget")


def _mean_loss(fm, params, model_state, x, y) -> float:
  logits = make_predict(fm)(params, model_state, x)
  return float(np.mean(np.asarray(example_loss(fm)(logits, y))))


def _budget(cfg, fm, reference, final, dataset, rows) -> dict:
  x, y = dataset.train.images[rows], dataset.train.labels[rows]
  before = _mean_loss(fm, *reference, x, y)
  after = _mean_loss(fm, *final, x, y)
  log = methods_lib.uses_log_losses(cfg)
  phi = (lambda v: math.log(max(v, 1e-8))) if log else (lambda v: v)
  return {
    "retain_loss_before": before,
    "retain_loss_after": after,
    "tolerance": cfg.tolerance,
    "log_losses": bool(log),
    "held": bool(phi(after) <= phi(before) + cfg.tolerance),
  }


def _metrics(fm, params, model_state, dataset, forget_set) -> dict:
  m = evaluate(fm, params, model_state, dataset, forget_set)
  keep = ("UA", "RA", "TA", "MIA", "LossAUC", "val_accuracy")
  return {k: float(m[k]) for k in keep if k in m and np.isfinite(m[k])}


def unlearn(
  model,
  params=None,
  x=None,
  y=None,
  *,
  forget=None,
  forget_ids=None,
  ids=None,
  model_state=None,
  method: str = "igs",
  optimizer=None,
  loss: Callable | None = None,
  steps: int | None = None,
  epochs: float | None = None,
  batch_size: int | None = None,
  val=None,
  test=None,
  num_classes: int | None = None,
  seed: int = 0,
  previous: UnlearnReport | None = None,
  budget_from: str = "original",
  workdir=None,
  progress: bool = False,
  **config,
) -> UnlearnReport:
  """Makes ``model`` forget rows of ``(x, y)`` with ``method`` (IGS by default).

  Args:
    model: ``apply_fn(params, x) -> logits``, a ``flax.linen`` module (``params`` its
      variables) or a ``flax.nnx`` module (``params=None``).
    params: the trained parameters.
    x, y: training inputs (any rank, examples first) and integer class labels.
    forget: row indices or a boolean mask over ``x``; or ``forget_ids`` with ``ids``
      (one unique id per row, any order).
    model_state: mutable state (BatchNorm statistics) of a linen model given params only.
    method: a catalogue name (``igs``, ``igs_paper``, ``explicit``, ``famo``, ``ga``, …).
    optimizer: any optax optimiser (default: the config's SGD, lr 0.01, momentum 0.9).
    loss: ``loss(logits, labels) -> per-example losses`` (default cross-entropy); the
      retain loss is its mean over retain rows, random-label forgetting its mean to
      random wrong labels, gradient ascent its negation.
    steps, epochs: the budget, in steps or in epochs over the rows in play (default:
      the config's 100 steps).
    batch_size: rows a step (default 80 or the data size, if smaller).
    val, test: optional ``(x, y)`` pairs; ``test`` gives TA and the MIA.
    num_classes: default ``max(label) + 1``.
    seed: seeds the batches and random labels (same seed, same numbers on one machine).
    previous: the report of an earlier deletion request on the same data.
    budget_from: ``"original"`` (IGS's budget against the model before the first
      request) or ``"request"`` (against this request's starting model).
    workdir: save the result there (Orbax; :func:`jaxunlearn.load` reads it back).
    progress: show a progress bar.
    **config: any :class:`~jaxunlearn.engine.config.UnlearnConfig` key (e.g.
      ``tolerance=0.05``, ``layout="split"``).

  Example:
    >>> import jax, jax.numpy as jnp, numpy as np
    >>> x = np.random.default_rng(0).normal(size=(60, 4)).astype(np.float32)
    >>> y = (x[:, 0] > 0).astype(np.int32)
    >>> apply_fn = lambda p, x: x @ p["w"]
    >>> report = unlearn(apply_fn, {"w": jnp.zeros((4, 2))}, x, y, forget=np.arange(6),
    ...                  steps=5)
    >>> sorted(report.metrics), report.params["w"].shape
    (['RA', 'UA'], (4, 2))
  """
  if budget_from not in BUDGETS:
    raise ConfigError(f"budget_from must be one of {', '.join(BUDGETS)}, got {budget_from!r}")
  if x is None or y is None:
    raise ConfigError("pass the training data: unlearn(model, params, x, y, forget=...)")
  if steps is not None and epochs is not None:
    raise ConfigError("pass steps or epochs, not both")
  dataset = data_lib.from_arrays(x, y, ids=ids, val=val, test=test, num_classes=num_classes)
  request = _forget_set(dataset, forget, forget_ids)
  fm, params, model_state = as_functional(model, params, model_state, loss=loss)
  digest = _data_digest(dataset)
  if previous is None:
    original = (params, model_state)
    step_set = union = request
    start, requests = (params, model_state), []
  else:
    if previous.data_digest != digest:
      raise DataError("previous= was unlearned on other data; pass the same x, y (and ids)")
    before = data_lib.forget_set_from_rows(dataset, previous.forgotten, spec="earlier requests")
    step_set, union = data_lib.successive(dataset, before, request)
    original = previous.original
    start, requests = (previous.params, previous.model_state), list(previous.requests)

  cfg = methods_lib.make_config(method, seed=seed, **config)
  pool = len(step_set.forget_idx) + len(step_set.retain_idx)
  if batch_size is None:
    batch_size = min(cfg.n_retain + cfg.n_forget, pool)
  if batch_size < 2 or batch_size > pool:
    raise ConfigError(f"batch_size must be in 2..{pool} (the rows in play), got {batch_size}")
  # The config's 64 + 16 rows split (for the split layout) kept in proportion.
  n_forget = max(1, min(cfg.n_forget, batch_size // 5))
  overrides = {"n_retain": batch_size - n_forget, "n_forget": n_forget}
  if epochs is not None:
    steps = max(1, math.ceil(epochs * pool / batch_size))
  if steps is not None:
    overrides["steps"] = int(steps)
  cfg = methods_lib.make_config(method, seed=seed, **{**overrides, **config}).validate()

  anchor = original[0] if (budget_from == "original" and previous is not None) else None
  result = run_unlearning(
    cfg, fm, *start, dataset, step_set, progress=progress, optimizer=optimizer, anchor=anchor
  )
  metrics = _metrics(fm, result.params, result.model_state, dataset, union)
  original_metrics = _metrics(fm, *start, dataset, union)
  reference = original if budget_from == "original" else start
  budget = _budget(
    cfg, fm, reference, (result.params, result.model_state), dataset, union.retain_idx
  )
  requests.append(
    {
      "rows": step_set.forget_idx.tolist(),
      "ids": dataset.train.ids[step_set.forget_idx].tolist(),
      "digest": step_set.digest,
      "time": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
      "method": method,
      "metrics": metrics,
    }
  )
  report = UnlearnReport(
    params=result.params,
    model_state=result.model_state,
    metrics=metrics,
    original_metrics=original_metrics,
    history={k: np.asarray(v) for k, v in result.history.items()},
    budget=budget,
    config=cfg,
    forgotten=union.forget_idx,
    requests=requests,
    seconds=result.seconds,
    compile_seconds=result.compile_seconds,
    opt_state=result.opt_state,
    original=original,
    data_digest=digest,
    fm=fm,
  )
  if workdir is not None:
    save_report(report, workdir)
  return report


def save_report(report: UnlearnReport, workdir) -> pathlib.Path:
  """Writes ``report``'s model, optimiser state and history as an Orbax checkpoint that
  :func:`jaxunlearn.load` reads back; refuses a workdir that already holds a run."""
  workdir = check_workdir(workdir)
  directory = workdir / "checkpoints"
  if directory.exists() and any(directory.iterdir()):
    raise ConfigError(f"{workdir} already holds a run; choose a new workdir")
  state = {
    "params": report.params,
    "model_state": report.model_state,
    "opt_state": report.opt_state,
    "history": report.history,
  }
  with ckpt.Checkpointer(directory, keep_best=False) as manager:
    manager.save(
      int(report.config.steps),
      jax.device_get(state),
      metadata={
        "kind": "unlearned",
        "source": "api",
        "config": report.config.to_dict(),
        "metrics": report.metrics,
        "budget": report.budget,
        "requests": report.requests,
        "forgotten_rows": report.forgotten.tolist(),
        "versions": ckpt.package_versions(),
      },
    )
  return workdir
