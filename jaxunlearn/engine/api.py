"""``jaxunlearn.unlearn`` and ``jaxunlearn.evaluate``: unlearning for your own model and
data, in one call, and the metrics it reports for any model.

The model is an apply function, a linen or an NNX module (:mod:`jaxunlearn.nn.adapters`),
or a workdir's model (``jaxunlearn.load(...)``); the data are arrays of any rank; the
forget set a spec the commands take (``class:K[,K2]``, ``random:F``, ``ids:PATH``,
``rows:PATH``), row indices, a boolean mask or ids; the optimiser any optax optimiser;
the loss any per-example loss; the method any entry of the catalogue
(:data:`jaxunlearn.engine.methods.METHODS`). The run is the engine's: batches a pure
function of (seed, step), one jitted step, the method's transformation.

Successive deletion requests: pass the previous report (or the workdir it was saved to,
by this function or by ``python -m experiments.unlearn``) as ``previous``; the new
request starts from its model, rows forgotten earlier are neither forgotten again nor
retained, the metrics are over every forgotten row (and, in ``request_metrics``, over
this request's rows), and IGS's budget is held against the *original* model
(``budget_from="original"``), so ten small requests cannot each spend the budget again.
The requests are kept in one :class:`~jaxunlearn.data.DeletionLedger`; a request sent
twice, or whose rows are all forgotten already, raises.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import os
import pathlib
from collections.abc import Callable
from typing import Any

import jax
import numpy as np
from flax import linen, nnx

from jaxunlearn import data as data_lib
from jaxunlearn import metrics as metrics_lib
from jaxunlearn.data.ledger import DeletionLedger, data_digest, request_only
from jaxunlearn.data.tofu import QADataset
from jaxunlearn.engine import checkpoint as ckpt
from jaxunlearn.engine import methods as methods_lib
from jaxunlearn.engine.answers import evaluate_qa
from jaxunlearn.engine.evaluation import budget_notes, evaluate_sets, retain_budget, run_notes
from jaxunlearn.engine.inputs import check_finite_params, check_labels_fit_head
from jaxunlearn.engine.loading import Loaded, load
from jaxunlearn.engine.records import check_workdir
from jaxunlearn.engine.steps import make_predict
from jaxunlearn.engine.training import model_description
from jaxunlearn.engine.unlearning import run_method, with_heldout_loss
from jaxunlearn.errors import ConfigError
from jaxunlearn.nn.adapters import as_functional, engine_params, in_form, params_form
from jaxunlearn.nn.models import FunctionalModel, to_module

BUDGETS = ("original", "request")
REPORTED = ("UA", "RA", "TA", "MIA", "LossAUC", "val_accuracy")
QA_GAP_KEYS = ("forget_prob", "forget_rouge", "forget_truth_ratio", "model_utility")
QA_SUMMARY = ("forget_quality", "model_utility", "forget_prob", "forget_rouge")


@dataclasses.dataclass
class UnlearnReport:
  """What :func:`unlearn` returns.

  Attributes:
    params, model_state: the unlearned model, ``params`` in the form you passed (a linen
      module's whole variables, ``{"params": ..., "batch_stats": ...}``, come back as
      variables, so ``module.apply(report.params, x)`` works; an NNX module's or a
      function's params as their own tree); :attr:`model` is it as a callable
      ``x -> logits`` of the kind you passed.
    metrics: percentages on the splits given — ``UA`` (100 − accuracy on every row
      forgotten so far), ``RA`` (accuracy on the rest of train), and with ``test``:
      ``TA``, ``MIA`` (SalUn's attack), ``LossAUC``; with ``val``: ``val_accuracy``.
      A class-wise request (``forget="class:K"``) reports TA, MIA and LossAUC on the
      remaining classes. :func:`evaluate` gives exactly these numbers for any model.
    request_metrics: the same over this request's rows only (differs from ``metrics``
      from the second request of a series on).
    original_metrics: the same for the model the request started from.
    retrained_metrics, gaps: with ``retrained=``, that model's metrics, and per metric
      ``|unlearned − retrained|`` with ``AvgGap`` (their mean over UA, RA, TA, MIA).
    history: per step — ``retain_loss``, ``forget_loss``, ``skipped`` (the step was not
      applied: its loss or update was not finite) and, for methods that keep one,
      ``multiplier`` (λ).
    notes: what went wrong in the run, one line each (steps skipped, a model whose
      outputs are no longer finite so that some metrics are NaN); :meth:`summary` ends
      with them. Empty for a sound run.
    budget: for a method that promises a bound on the retain loss over the run (IGS
      anchored: ``tolerance``; PDU: ``threshold``), whether it held on the whole
      retained set (:func:`~jaxunlearn.engine.evaluation.retain_budget`); ``{}`` for a
      method that promises none.
    config: the :class:`~jaxunlearn.engine.config.UnlearnConfig` that ran.
    forgotten: train rows forgotten by this and every earlier request (sorted).
    ledger: the :class:`~jaxunlearn.data.DeletionLedger` of every request so far;
      ``requests`` its records as dicts.
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
  ledger: DeletionLedger
  seconds: float
  compile_seconds: float
  request_metrics: dict = dataclasses.field(default_factory=dict)
  retrained_metrics: dict | None = None
  gaps: dict | None = None
  opt_state: Any = None
  # what a following request needs
  original: Any = None  # (params, model_state) before the first request
  fm: Any = None
  source_model: Any = None  # the model as the user passed it
  description: dict | None = None  # how to rebuild a catalogue model (workdirs)
  params_form: str = "params"  # "variables": linen variables, split for the engine
  notes: list = dataclasses.field(default_factory=list)

  @property
  def engine_params(self):
    """The params as the engine holds them (a linen model's ``"params"`` collection)."""
    return engine_params(self.params_form, self.params)

  @property
  def requests(self) -> list[dict]:
    """The ledger's requests, oldest first, as dicts."""
    return [r.to_dict() for r in self.ledger.requests]

  @property
  def model(self):
    """The unlearned model as a callable ``x -> logits``, of the kind you passed: an NNX
    module (a new one; yours is unchanged), a bound linen module, or your apply function
    with the unlearned params bound."""
    m = self.source_model
    if isinstance(m, nnx.Module):
      return nnx.merge(nnx.split(m, nnx.Param, ...)[0], self.params, self.model_state)
    if isinstance(self.fm, FunctionalModel):
      return to_module(self.fm, self.params, self.model_state)
    if isinstance(m, linen.Module):
      return m.bind({"params": self.engine_params, **self.model_state})
    if callable(m):
      return functools.partial(m, self.params)
    raise ConfigError("this report holds no model to rebuild; use report.predict(x)")

  def predict(self, x):
    """Logits of ``x`` in eval mode."""
    return make_predict(self.fm)(self.engine_params, self.model_state, x)

  def summary(self) -> str:
    """One line: the metrics, this request's UA in a series, λ, for a method with a
    budget whether it held, and what went wrong (:attr:`notes`)."""
    parts = [f"{k} {v:.1f}" for k, v in self.metrics.items() if k[0].isupper()]
    parts += [f"{k} {self.metrics[k]:.3g}" for k in QA_SUMMARY if k in self.metrics]
    if len(self.ledger) > 1 and "UA" in self.request_metrics:
      parts.append(f"this request's UA {self.request_metrics['UA']:.1f}")
    if self.gaps:
      parts.append(f"Avg. Gap {self.gaps['AvgGap']:.2f}")
    if "multiplier" in self.history:
      parts.append(f"λ {float(self.history['multiplier'][-1]):.3f}")
    if self.budget:
      parts.append(f"budget {'held' if self.budget['held'] else 'exceeded'}")
    return "; ".join([", ".join(parts), *self.notes])


def _request(dataset, forget, forget_ids, seed: int):
  """The forget set of one request, from any of the forms :func:`unlearn` takes."""
  if (forget is None) == (forget_ids is None):
    raise ConfigError(
      "pass exactly one of forget= (a spec such as 'class:0', row indices or a boolean "
      "mask) or forget_ids="
    )
  if forget_ids is not None:
    rows = data_lib.rows_of_ids(dataset.train.ids, np.asarray(forget_ids).reshape(-1), "forget_ids")
    return data_lib.forget_set_from_rows(dataset, rows, spec="forget_ids")
  if isinstance(forget, str):
    return data_lib.make_forget_set(dataset, forget, seed=seed)
  rows = np.asarray(forget)
  if rows.ndim == 0:
    raise ConfigError(
      f"forget={forget!r} is one number, which could mean a row or a class: pass rows as "
      f"an array (forget=[{forget}]) or a class as forget='class:{forget}'"
    )
  return data_lib.forget_set_from_rows(dataset, rows, spec="forget")


def _config(method, seed, config, pool, batch_size, steps, epochs, dataset=None, rows=None):
  """The run's config: the method's, with its defaults for this kind of request (the
  forget set ``rows``: whole classes or rows; a language model's: neither), the batch and
  the budget in rows or epochs of the ``pool`` rows in play (a language model's rows: the
  ``answers`` layout unless the config names another), and a note if the request's
  defaults could not apply."""
  request, notes = None, []
  if isinstance(dataset, QADataset):
    config = {"layout": "answers", **config}
  elif rows is not None:
    request = data_lib.request_kind(dataset, rows)
  cfg = methods_lib.make_config(method, seed=seed, request=request, **config)
  if (
    request is not None
    and cfg.forget_objective == "heldout"
    and cfg.heldout_loss < 0
    and "forget_objective" not in config
    and not len(dataset.val)
  ):  # the request's defaults measure the held-out loss on rows the user did not give
    notes.append(
      f"no validation rows to measure the held-out loss: {method} ran with its defaults, "
      f"not those for {request} (pass val=(x_val, y_val); docs/design.md §12)"
    )
    request = None
    cfg = methods_lib.make_config(method, seed=seed, **config)
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
  cfg = methods_lib.make_config(method, seed=seed, request=request, **{**overrides, **config})
  return cfg.validate(), notes


def _qa_metrics(fm, params, model_state, dataset, forget_set, reference) -> dict:
  """:func:`~jaxunlearn.engine.answers.evaluate_qa`'s numbers (``forget_quality`` when
  ``reference`` holds the retrained model's forget truth ratios)."""
  ratios = None if reference is None else reference["forget_ratios"]
  found = evaluate_qa(fm, params, model_state, dataset, forget_set, ratios)
  return {k: (v if k == "forget_ratios" else float(v)) for k, v in found.items()}


def _dataset(x, y, ids, val, test, num_classes, dataset=None):
  if dataset is not None:
    if x is not None or y is not None:
      raise ConfigError("pass the data as x, y or as dataset=, not both")
    return dataset
  if x is None or y is None:
    raise ConfigError("pass the training data: unlearn(model, params, x, y, forget=...)")
  return data_lib.from_arrays(x, y, ids=ids, val=val, test=test, num_classes=num_classes)


def _metrics(fm, params, model_state, dataset, *forget_sets, reference=None):
  """The reported metrics for each forget set (one prediction of the data for all); for
  a language model's question–answer set, the TOFU metrics (:func:`_qa_metrics`)."""
  if isinstance(dataset, QADataset):
    out = [_qa_metrics(fm, params, model_state, dataset, f, reference) for f in forget_sets]
    return out[0] if len(out) == 1 else out
  found = evaluate_sets(fm, params, model_state, dataset, forget_sets)
  # A diverged model's metrics stay, as NaN: dropping them left an empty dict and a
  # summary that read like a success (run_notes says why they are NaN). A metric whose
  # split is absent (TA without test=) is left out.
  needs = {
    "TA": dataset.test,
    "MIA": dataset.test,
    "LossAUC": dataset.test,
    "val_accuracy": dataset.val,
  }
  out = [
    {
      k: float(m[k])
      for k in REPORTED
      if k in m and (np.isfinite(m[k]) or (m.get("diverged") and len(needs.get(k, [0]))))
    }
    for m in found
  ]
  return out[0] if len(out) == 1 else out


def _model(model, params, model_state, loss):
  """``(fm, params, model_state, description)``: a workdir's model (``load(...)``) or
  one of the kinds :func:`~jaxunlearn.nn.adapters.as_functional` takes."""
  if isinstance(model, Loaded):
    if model.fm is None:
      raise ConfigError(
        "that workdir holds your own model; pass your model and its .params instead"
      )
    fm, p, s = as_functional(model.fm, model.params, model.model_state, loss=loss)
    return fm, p, s, _describe(model)
  return (*as_functional(model, params, model_state, loss=loss), None)


def _given_model(previous, model, params, model_state, loss):
  """``(fm, params, model_state, description)`` of the model passed; all ``None`` but the
  params when it comes with ``previous`` (the parameters are the earlier request's: the
  model alone will do)."""
  if previous is not None and params is not None:
    raise ConfigError(
      "previous= continues from that request's unlearned params, so params= would be "
      "ignored: pass params=None (unlearn(model, None, ..., previous=...))"
    )
  from_previous = previous is not None and (
    model is None or not isinstance(model, (nnx.Module, Loaded))
  )
  if from_previous:
    return None, params, model_state, None
  if model is None:
    raise ConfigError("pass the model (an apply function, a linen or NNX module)")
  return _model(model, params, model_state, loss)


def _budget_reference(series, budget_from: str):
  """The ``(params, model_state)`` the retain budget is measured against."""
  reference = series.original if budget_from == "original" else series.start
  if reference is None:
    raise ConfigError(
      "the model before the first request was not saved with that workdir; pass "
      "budget_from='request'"
    )
  return reference


def _describe(loaded: Loaded) -> dict:
  """What rebuilds a workdir's catalogue model, so a run from it is a workdir the
  commands continue."""
  return {"model": model_description(loaded.metadata), "dataset": loaded.metadata.get("dataset")}


def _retrained(retrained, loss, dataset, union) -> dict:
  if isinstance(retrained, (str, os.PathLike)):
    retrained = load(retrained)
  if isinstance(retrained, Loaded):
    fm, params, state, _ = _model(retrained, None, None, loss)
  elif isinstance(retrained, tuple) and len(retrained) in (2, 3):
    fm, params, state, _ = _model(*retrained, *([None] * (3 - len(retrained))), loss)
  else:
    raise ConfigError(
      "retrained= takes (model, params), (model, params, model_state), a workdir or "
      "jaxunlearn.load(workdir)"
    )
  return _metrics(fm, params, state, dataset, union)


def _gaps(metrics: dict, reference: dict, dataset=None) -> dict:
  if isinstance(dataset, QADataset):  # TOFU's numbers, each in [0, 1]
    gaps = {k: abs(metrics[k] - reference[k]) for k in QA_GAP_KEYS}
    return {**gaps, "AvgGap": float(np.mean(list(gaps.values())))}
  keys = [k for k in metrics_lib.REPORTED_KEYS if k in metrics and k in reference]
  gaps = {k: abs(metrics[k] - reference[k]) for k in keys}
  avg = [k for k in metrics_lib.METRIC_KEYS if k in gaps]
  if not all(np.isfinite(gaps[k]) for k in avg):  # a diverged model: its notes say so
    return {**gaps, "AvgGap": float("nan")}
  gaps["AvgGap"] = metrics_lib.avg_gap(metrics, reference, avg)
  return gaps


@dataclasses.dataclass
class _Series:
  """Where a request starts: the model, the model before the first request, the ledger,
  and the form the user's params come in."""

  start: tuple
  original: tuple | None
  ledger: DeletionLedger
  description: dict | None = None
  form: str = "params"


def _series(previous, fm, params, model_state, description, dataset, model, loss, form) -> tuple:
  """``(fm, _Series)`` for a request after ``previous`` (``None``, a report, a workdir
  or ``load(workdir)``); ``fm`` is ``None`` when the model comes with ``previous``."""

  def view(start, fallback):  # the functional view, over the earlier request's params
    if fm is not None:
      return fm
    if model is not None:
      return as_functional(model, start[0], start[1], loss=loss)[0]
    if fallback is None:
      raise ConfigError("that workdir holds your own model; pass your model as well")
    return fallback

  if previous is None:
    anchor = None
    if isinstance(model, Loaded) and model.workdir is not None:
      anchor = str(model.workdir.resolve())
    ledger = DeletionLedger(anchor=anchor, data_digest=data_digest(dataset))
    start = (params, model_state)
    return fm, _Series(start, start, ledger, description, form)
  if isinstance(previous, UnlearnReport):
    ledger = previous.ledger
    ledger.check_data(dataset)
    start = (previous.engine_params, previous.model_state)
    series = _Series(
      start, previous.original, ledger, previous.description or description, previous.params_form
    )
    return view(start, previous.fm), series
  if isinstance(previous, (str, os.PathLike)):
    previous = load(previous)
  if not isinstance(previous, Loaded):
    raise ConfigError(
      "previous= takes the report of an earlier request, its workdir, or load(workdir)"
    )
  ledger = DeletionLedger.from_metadata(previous.metadata)
  if not len(ledger):
    raise ConfigError(
      f"{previous.workdir} holds no deletion request; pass it as the model, not previous="
    )
  ledger.check_data(dataset)
  start = (previous.engine_params, previous.model_state)
  if fm is None and model is None and previous.fm is not None:  # a catalogue model
    description = _describe(previous)
  original = _original_of(previous, ledger)
  series = _Series(start, original, ledger, description, previous.params_form)
  return view(start, previous.fm), series


def _original_of(previous: Loaded, ledger: DeletionLedger) -> tuple | None:
  """The model before the first request: its workdir, or the one the API stored."""
  if ledger.anchor:
    anchor = load(ledger.anchor)
    return anchor.engine_params, anchor.model_state
  stored = previous.metadata.get("original_stored")
  if stored and previous.workdir is not None:
    with ckpt.Checkpointer(previous.workdir / "checkpoints", create=False) as manager:
      raw = manager.restore_raw()
    return raw["original"]["params"], raw["original"].get("model_state", {})
  return None


def _check_arguments(budget_from: str, steps, epochs, optimizer) -> None:
  if budget_from not in BUDGETS:
    raise ConfigError(f"budget_from must be one of {', '.join(BUDGETS)}, got {budget_from!r}")
  if steps is not None and epochs is not None:
    raise ConfigError("pass steps or epochs, not both")
  if optimizer is not None and not (hasattr(optimizer, "init") and hasattr(optimizer, "update")):
    raise ConfigError(
      f"optimizer= takes an optax optimiser, e.g. optax.adam(1e-3), got {optimizer!r} "
      "(or leave it out for the config's SGD: learning_rate=..., momentum=...)"
    )


def _check_model_fits(fm, params, model_state, dataset, form: str = "params") -> None:
  """Before any work: the starting model's arrays are finite and, for class labels, the
  head is wide enough (one forward of one row)."""
  check_finite_params(params, "params['params']" if form == "variables" else "params")
  check_finite_params(model_state, "model_state")
  if isinstance(dataset, QADataset) or not len(dataset.train):
    return
  width = jax.eval_shape(
    lambda p, s, x: fm.apply(p, s, x, train=False)[0], params, model_state,
    dataset.train.images[:1],
  ).shape[-1]  # fmt: skip
  splits = {"y": dataset.train, "val": dataset.val, "test": dataset.test}
  largest = {name: int(s.labels.max()) for name, s in splits.items() if len(s)}
  check_labels_fit_head(width, dataset.num_classes, largest)


def unlearn(
  model,
  params=None,
  x=None,
  y=None,
  *,
  forget=None,
  forget_ids=None,
  ids=None,
  forget_seed: int = 0,
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
  previous=None,
  budget_from: str = "original",
  retrained=None,
  workdir=None,
  progress: bool = False,
  dataset=None,
  mesh=None,
  fsdp: bool = False,
  **config,
) -> UnlearnReport:
  """Makes ``model`` forget rows of ``(x, y)`` with ``method`` (IGS by default).

  Args:
    model: ``apply_fn(params, x) -> logits``, a ``flax.linen`` module (``params`` its
      variables), a ``flax.nnx`` module (``params=None``), or ``jaxunlearn.load(workdir)``
      of a pretrained model (then ``params=None``, and the result is a workdir that
      ``python -m experiments.unlearn`` continues). ``None`` with ``previous`` a
      workdir of a catalogue model: that workdir's model.
    params: the trained parameters.
    x: training inputs (any rank, examples first).
    y: their integer class labels.
    forget: a forget spec — ``"class:K[,K2]"`` (class-wise: TA, MIA and LossAUC on the
      remaining classes), ``"random:F"`` (seeded by ``forget_seed``), ``"ids:PATH"``,
      ``"rows:PATH"`` — or row indices (an array, not one number) or a boolean mask over
      ``x``; or ``forget_ids`` with ``ids`` (one unique id per row, any order).
    model_state: mutable state (BatchNorm statistics) of a linen model given params only.
    method: a catalogue name (``igs``, ``igs_paper``, ``explicit``, ``famo``, ``ga``, …).
    optimizer: any optax optimiser (default: the config's SGD, lr 0.01, momentum 0.9).
    loss: ``loss(logits, labels) -> per-example losses`` (default cross-entropy); the
      retain loss is its mean over retain rows, random-label forgetting its mean to
      random wrong labels, gradient ascent its negation.
    steps: the budget in steps (default: the config's 100 steps).
    epochs: the budget in epochs over the rows in play, instead of ``steps``.
    batch_size: rows a step (default 80 or the data size, if smaller).
    val: an optional ``(x, y)`` pair of validation rows (``val_accuracy``).
    test: an optional ``(x, y)`` pair of test rows: TA, the MIA and LossAUC.
    num_classes: default ``max(label) + 1``.
    seed: seeds the batches and random labels (same seed, same numbers on one machine).
    previous: the report of an earlier deletion request on the same data, or the
      workdir it was saved to (by this function or ``experiments.unlearn``).
    budget_from: ``"original"`` (IGS's budget against the model before the first
      request) or ``"request"`` (against this request's starting model).
    retrained: your model retrained without every forgotten row — ``(model, params)``,
      ``(model, params, model_state)``, a workdir or ``load(workdir)``: the report adds
      its metrics, the gap per metric and the Avg. Gap.
    workdir: save the result there (Orbax; :func:`jaxunlearn.load` reads it back).
    progress: show a progress bar.
    dataset: the data as a :class:`~jaxunlearn.data.Dataset` instead of ``x, y``: a
      language model's question–answer set (:class:`~jaxunlearn.data.tofu.QADataset`,
      ``forget="class:K"`` its author K) runs the ``answers`` layout with the model's
      ``loss`` (e.g. :func:`~jaxunlearn.objectives.answer_losses`) and reports the TOFU
      metrics (:func:`~jaxunlearn.engine.answers.evaluate_qa`; ``forget_quality`` with
      ``retrained=``).
    mesh: a :class:`jax.sharding.Mesh` (:func:`jaxunlearn.engine.parallel.make_mesh`):
      each step's batch split across its devices, the model replicated on each.
    fsdp: with ``mesh``, the params, optimiser state and teacher split across the
      devices too (fully sharded data parallel), about ``1/N`` of them on each.
    **config: any :class:`~jaxunlearn.engine.config.UnlearnConfig` key (e.g.
      ``tolerance=0.05``, ``layout="split"``).

  Examples:
    >>> import jax, jax.numpy as jnp, numpy as np
    >>> x = np.random.default_rng(0).normal(size=(60, 4)).astype(np.float32)
    >>> y = (x[:, 0] > 0).astype(np.int32)
    >>> apply_fn = lambda p, x: x @ p["w"]
    >>> report = unlearn(apply_fn, {"w": jnp.zeros((4, 2))}, x, y, forget=np.arange(6),
    ...                  steps=5)
    >>> sorted(report.metrics), report.params["w"].shape
    (['RA', 'UA'], (4, 2))
  """
  _check_arguments(budget_from, steps, epochs, optimizer)
  dataset = _dataset(x, y, ids, val, test, num_classes, dataset)
  request = _request(dataset, forget, forget_ids, forget_seed)
  form = params_form(model, params, model_state)
  fm, params, model_state, description = _given_model(previous, model, params, model_state, loss)
  fm, series = _series(previous, fm, params, model_state, description, dataset, model, loss, form)
  _check_model_fits(fm, *series.start, dataset, series.form)
  step_set, union = series.ledger.begin(dataset, request)

  pool = len(step_set.forget_idx) + len(step_set.retain_idx)
  cfg, config_notes = _config(
    method, seed, config, pool, batch_size, steps, epochs, dataset, step_set
  )
  reference = _budget_reference(series, budget_from)
  reference_metrics = None
  if retrained is not None:  # before the work, so a bad argument costs nothing
    reference_metrics = _retrained(retrained, loss, dataset, union)

  first = not len(series.ledger)
  anchor = None if (first or budget_from != "original") else reference[0]
  # the held-out level measured here, as run_method would, so the report's config says it
  measured_on = series.start[0] if anchor is None else anchor
  cfg = with_heldout_loss(cfg, fm, measured_on, series.start[1], dataset)
  result = run_method(
    cfg, fm, *series.start, dataset, step_set, progress=progress, optimizer=optimizer,
    anchor=anchor, mesh=mesh, fsdp=fsdp,
  )  # fmt: skip
  final = (result.params, result.model_state)
  metrics, request_metrics = _metrics(
    fm, *final, dataset, union, request_only(step_set, union), reference=reference_metrics
  )
  budget = retain_budget(cfg, fm, reference, final, dataset, union.retain_idx)
  ledger = series.ledger.add(
    dataset,
    request,
    step_set,
    method=method,
    workdir=None if workdir is None else pathlib.Path(workdir).resolve(),
    metrics=metrics,
    request_metrics=request_metrics,
  )
  history = {k: np.asarray(v) for k, v in result.history.items()}
  report = UnlearnReport(
    params=in_form(series.form, result.params, result.model_state),
    model_state=result.model_state,
    metrics=metrics,
    original_metrics=_metrics(fm, *series.start, dataset, union, reference=reference_metrics),
    history=history,
    budget=budget,
    config=cfg,
    forgotten=union.forget_idx,
    ledger=ledger,
    seconds=result.seconds,
    compile_seconds=result.compile_seconds,
    request_metrics=request_metrics,
    retrained_metrics=reference_metrics,
    gaps=None if reference_metrics is None else _gaps(metrics, reference_metrics, dataset),
    opt_state=result.opt_state,
    original=series.original,
    fm=fm,
    source_model=model if model is not None else getattr(previous, "source_model", None),
    description=series.description,
    params_form=series.form,
    notes=[*config_notes, *run_notes(history, metrics), *budget_notes(budget)],
  )
  if workdir is not None:
    save_report(report, workdir)
  return report


def evaluate(
  model,
  params=None,
  x=None,
  y=None,
  *,
  forget=None,
  forget_ids=None,
  ids=None,
  forget_seed: int = 0,
  model_state=None,
  val=None,
  test=None,
  num_classes: int | None = None,
) -> dict:
  """The metrics :func:`unlearn` reports, for any model: the same attack, the same
  members, the same classes left out (``forget`` takes what :func:`unlearn` takes).

  Use it on your retrained model, or on ``report.model`` after a series of requests
  with ``forget=report.forgotten``.

  Examples:
    >>> import jax.numpy as jnp, numpy as np
    >>> x = np.random.default_rng(0).normal(size=(60, 4)).astype(np.float32)
    >>> y = (x[:, 0] > 0).astype(np.int32)
    >>> m = evaluate(lambda p, x: x @ p, jnp.eye(4, 2), x, y, forget="class:1",
    ...              test=(x[:20], y[:20]))
    >>> sorted(m)
    ['LossAUC', 'MIA', 'RA', 'TA', 'UA']
    >>> keep = y[:20] == 0  # class 1 is forgotten: TA is over class 0's test rows only
    >>> bool(m["TA"] == 100 * np.mean((x[:20] @ np.eye(4, 2)).argmax(1)[keep] == 0))
    True
  """
  dataset = _dataset(x, y, ids, val, test, num_classes)
  forget_set = _request(dataset, forget, forget_ids, forget_seed)
  form = params_form(model, params, model_state)
  fm, params, model_state, _ = _model(model, params, model_state, None)
  _check_model_fits(fm, params, model_state, dataset, form)
  return _metrics(fm, params, model_state, dataset, forget_set)


def save_report(report: UnlearnReport, workdir) -> pathlib.Path:
  """Writes ``report``'s model, optimiser state, history and deletion ledger as an Orbax
  checkpoint that :func:`jaxunlearn.load` reads back (and ``previous=`` or, for a
  catalogue model, ``python -m experiments.unlearn --original`` continues); refuses a
  workdir that already holds a run."""
  workdir = check_workdir(workdir)
  directory = workdir / "checkpoints"
  if directory.exists() and any(directory.iterdir()):
    raise ConfigError(f"{workdir} already holds a run; choose a new workdir")
  state = {
    "params": report.engine_params,
    "model_state": report.model_state,
    "opt_state": report.opt_state,
    "history": report.history,
  }
  # Without an anchor workdir the model before the first request travels with the run,
  # so a later request (from this workdir) holds IGS's budget against it.
  stored = report.ledger.anchor is None and report.original is not None
  if stored:
    state["original"] = {"params": report.original[0], "model_state": report.original[1]}
  metadata = {
    "kind": "unlearned",
    "source": "api",
    "method": report.config.method,
    "config": report.config.to_dict(),
    "metrics": report.metrics,
    "request_metrics": report.request_metrics,
    "budget": report.budget,
    "ledger": report.ledger.to_dict(),
    "forgotten_rows": report.forgotten.tolist(),
    "original_stored": stored,
    "params_form": report.params_form,
    "versions": ckpt.package_versions(),
  }
  if report.description is not None:
    metadata.update(report.description)
  with ckpt.Checkpointer(directory, keep_best=False) as manager:
    manager.save(int(report.config.steps), jax.device_get(state), metadata=metadata)
  return workdir
