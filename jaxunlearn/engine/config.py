"""Run configurations: pretraining (:class:`TrainConfig`) and unlearning (:class:`UnlearnConfig`).

Plain frozen dataclasses, JSON-serialisable, validated in one place: unknown keys name
the closest valid key, non-finite numbers are refused, overrides are coerced to the
field's type.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import math
from collections.abc import Mapping
from typing import Any

from jaxunlearn.errors import ConfigError

FORGET_OBJECTIVES = ("rl", "ga", "heldout")
LAYOUTS = (
  "mixed",
  "split",
  "denoise",
  "answers",
)  # jaxunlearn.engine.layouts.LAYOUTS (tested equal)


@dataclasses.dataclass(frozen=True)
class TrainConfig:
  """Recipe for pretraining the original model and retraining without the forget set.

  The learning rate is multiplied by ``lr_gamma`` at each epoch in ``lr_milestones``;
  weight decay is added to the gradient before momentum (PyTorch's SGD coupling).
  """

  dataset: str = "digits"
  model: str = "mlp"
  model_kwargs: Mapping[str, Any] = dataclasses.field(default_factory=dict)
  optimizer: str = "sgd"
  learning_rate: float = 0.05
  momentum: float = 0.9
  weight_decay: float = 5e-4
  batch_size: int = 64
  epochs: int = 40
  lr_milestones: tuple = ()
  lr_gamma: float = 0.1
  augment: bool = False
  seed: int = 0

  def keys(self) -> tuple[str, ...]:
    return tuple(f.name for f in dataclasses.fields(self))

  def replace(self, **changes) -> TrainConfig:
    check_keys(changes, self.keys())
    return dataclasses.replace(self, **changes)

  def to_dict(self) -> dict:
    d = dataclasses.asdict(self)
    d["model_kwargs"] = dict(self.model_kwargs)
    d["lr_milestones"] = list(self.lr_milestones)
    return json.loads(json.dumps(d))  # plain JSON types only

  def validate(self) -> TrainConfig:
    check_finite(self)
    if not (self.learning_rate > 0):
      raise ConfigError(f"learning_rate must be > 0, got {self.learning_rate}")
    if self.batch_size <= 0:
      raise ConfigError(f"batch_size must be > 0, got {self.batch_size}")
    if self.epochs <= 0:
      raise ConfigError(f"epochs must be > 0, got {self.epochs}")
    if self.optimizer not in ("sgd", "adam"):
      raise ConfigError(f"optimizer must be 'sgd' or 'adam', got {self.optimizer!r}")
    if self.weight_decay < 0 or self.momentum < 0:
      raise ConfigError("weight_decay and momentum must be ≥ 0")
    return self


def traced(default, *, at_least: float | None = None):
  """A numeric field that every method reads by arithmetic only (never in a Python
  ``if``, a shape, or what ``Method.prepare`` computes), so a batch of runs may pass it as
  a traced array: one compiled program for every value of it
  (:func:`jaxunlearn.engine.unlearning.run_batch`; tests/engine/test_unlearning.py runs
  every method with them traced). Not traced: ``momentum`` and ``weight_decay`` (a zero
  leaves a transformation out), ``aggregate_scale``, ``clip_norm`` (same), and
  ``salun_sparsity`` (it sizes SalUn's mask before the loop). ``at_least``: the smallest
  valid value (:meth:`MethodConfig.validate` checks it)."""
  return dataclasses.field(default=default, metadata={"traced": True, "at_least": at_least})


def bounded(default, *, at_least: float):
  """A field that is not traced, with the smallest valid value ``at_least``."""
  return dataclasses.field(default=default, metadata={"at_least": at_least})


def traced_names(config) -> tuple[str, ...]:
  """The :func:`traced` fields of a dataclass (instance or class), in declaration order."""
  return tuple(f.name for f in dataclasses.fields(config) if f.metadata.get("traced"))


@dataclasses.dataclass(frozen=True)
class MethodConfig:
  """Base of a method's own hyper-parameters: a frozen dataclass next to its registry
  entry (:attr:`jaxunlearn.engine.methods.Method.hparams`), one per method; fields marked
  :func:`traced` may differ between the runs of one compiled batch. This base has none
  (FT, GA, RL). ``validate`` checks every field's ``at_least`` bound (:func:`traced`,
  :func:`bounded`); a subclass with other rules extends it."""

  def validate(self) -> MethodConfig:
    for f in dataclasses.fields(self):
      bound = f.metadata.get("at_least")
      if bound is not None and getattr(self, f.name) < bound:
        raise ConfigError(f"{f.name} must be ≥ {bound:g}, got {getattr(self, f.name)}")
    return self


@dataclasses.dataclass(frozen=True)
class UnlearnConfig:
  """One unlearning run: the budget every method shares, and ``hparams``, the method's
  own hyper-parameters (a :class:`MethodConfig` subclass, built by
  :func:`jaxunlearn.engine.methods.make_config` from the method's registry entry).

  Shared budget: ``steps`` steps of ``n_retain`` retain and ``n_forget`` forget examples,
  SGD with ``learning_rate`` and ``momentum`` (constant, as in the paper). The forget
  objective of the surgery, multi-objective and weighting methods is
  ``forget_objective``: ``"rl"`` (cross-entropy to random labels, the paper's) or
  ``"ga"`` (negative cross-entropy on true labels).

  A config reads and writes as one flat set of keys (the budget's and the method's:
  ``cfg.tolerance`` is ``cfg.hparams.tolerance``; :meth:`replace`, :meth:`to_dict` and
  ``--set KEY=VALUE`` route each key to where it lives), so commands, JSON records and
  tuning grids name a key the same way whichever method owns it.
  """

  method: str = "igs"
  steps: int = 100
  learning_rate: float = traced(0.01)
  momentum: float = 0.9
  weight_decay: float = 5e-4  # the paper's unlearning SGD (coupled L2, before momentum)
  # "mixed": the paper's protocol — shuffled batches of n_retain + n_forget rows over
  # forget ∪ retain, each example once an epoch; "split": n_retain retain and n_forget
  # forget rows every step, in separate forwards (docs/design.md §2).
  layout: str = "mixed"
  augment: bool = False  # the training augmentation (crop + flip) on unlearning batches
  n_retain: int = 64
  n_forget: int = 16
  forget_labels: str = "random_wrong"  # random targets: "random_wrong" or "random_all"
  forget_objective: str = "rl"  # L_f of surgery/MOO/weighting methods: "rl" | "ga" | "heldout"
  # "heldout": gradient ascent on the forget rows' true-label loss until their mean reaches
  # this held-out level (< 0: the original model's mean loss on the validation split,
  # measured when the run starts; retrain-blind)
  heldout_loss: float = traced(-1.0)
  # Parameter-efficient unlearning: comma-separated dotted prefixes of the parameters a
  # run may change (e.g. "blocks.1,norm"); "" changes every parameter.
  trainable: str = ""
  # Where the run starts (jaxunlearn.engine.starts): the original, or a copy with that
  # share of each weight tensor's entries of smallest |∇ forget loss| redrawn (MSG), then
  # Gaussian noise of start_noise × each tensor's std; seeded by ``seed``.
  start_noise: float = traced(0.0)
  start_reinit: float = traced(0.0)
  seed: int = 0
  hparams: MethodConfig = dataclasses.field(default_factory=MethodConfig)

  def __getattr__(self, name):
    # Only reached when ``name`` is not a budget field: the method's own key.
    if name.startswith("__") or name == "hparams":
      raise AttributeError(name)
    try:
      return getattr(self.hparams, name)
    except AttributeError:
      raise AttributeError(
        f"{type(self.hparams).__name__} ({self.method}'s hyper-parameters) has no {name!r}"
      ) from None

  def keys(self) -> tuple[str, ...]:
    """Every key of this run: the budget's, then the method's."""
    return _BUDGET + tuple(f.name for f in dataclasses.fields(self.hparams))

  def get(self, key):
    return getattr(self, key)

  def replace(self, **changes) -> UnlearnConfig:
    """This config with ``changes``, each routed to the budget or the method's
    hyper-parameters; a key of neither names the closest valid one."""
    check_keys(changes, self.keys(), f"{self.method} config")
    own = {k: v for k, v in changes.items() if k not in _BUDGET}
    hparams = dataclasses.replace(self.hparams, **own) if own else self.hparams
    budget = {k: v for k, v in changes.items() if k in _BUDGET}
    return dataclasses.replace(self, **budget, hparams=hparams)

  def to_dict(self) -> dict:
    """The flat record: budget keys, then the method's (JSON types)."""
    d = {k: getattr(self, k) for k in _BUDGET}
    return {**d, **dataclasses.asdict(self.hparams)}

  def traced_values(self) -> dict:
    """The :func:`traced` keys of this run (budget's and method's) and their values."""
    names = traced_names(UnlearnConfig) + traced_names(self.hparams)
    return {k: getattr(self, k) for k in names}

  def untraced(self) -> UnlearnConfig:
    """This config with its traced keys at their fields' defaults: what a compiled
    program that takes them as arguments depends on."""
    blank = {}
    for config in (self, self.hparams):
      blank.update(
        {f.name: f.default for f in dataclasses.fields(config) if f.metadata.get("traced")}
      )
    return self.replace(**blank)

  def validate(self) -> UnlearnConfig:
    """Checks every value (the method name is checked by the registry)."""
    check_finite(self)
    check_finite(self.hparams)
    if not (self.learning_rate > 0):
      raise ConfigError(f"learning_rate must be > 0, got {self.learning_rate}")
    if self.steps <= 0 or self.n_retain <= 0 or self.n_forget <= 0:
      raise ConfigError("steps, n_retain and n_forget must be > 0")
    if self.layout not in LAYOUTS:
      raise ConfigError(f"layout must be one of {', '.join(LAYOUTS)}, got {self.layout!r}")
    if self.weight_decay < 0:
      raise ConfigError("weight_decay must be ≥ 0")
    if self.start_noise < 0 or not (0 <= self.start_reinit <= 1):
      raise ConfigError(
        f"start_noise must be ≥ 0 and start_reinit in [0, 1], got {self.start_noise} and "
        f"{self.start_reinit}"
      )
    if self.forget_labels not in ("random_wrong", "random_all"):
      raise ConfigError(
        f"forget_labels must be 'random_wrong' or 'random_all', got {self.forget_labels!r}"
      )
    if self.forget_objective not in FORGET_OBJECTIVES:
      raise ConfigError(
        f"forget_objective must be one of {', '.join(FORGET_OBJECTIVES)}, "
        f"got {self.forget_objective!r}"
      )
    self.hparams.validate()
    return self


_BUDGET = tuple(f.name for f in dataclasses.fields(UnlearnConfig) if f.name != "hparams")


def check_finite(config) -> None:
  """Refuses NaN and infinite float fields, naming the first."""
  for f in dataclasses.fields(config):
    value = getattr(config, f.name)
    if isinstance(value, float) and not math.isfinite(value):
      raise ConfigError(f"{f.name} must be finite, got {value}")


def check_keys(keys, valid, what: str = "config") -> None:
  """Refuses keys not in ``valid`` (names, or a dataclass whose fields they are), naming
  the closest valid one."""
  if dataclasses.is_dataclass(valid):
    valid = [f.name for f in dataclasses.fields(valid)]
  valid = list(valid)
  unknown = sorted(set(keys) - set(valid))
  if unknown:
    close = difflib.get_close_matches(unknown[0], valid, n=1)
    hint = f"; did you mean {close[0]!r}?" if close else f"; valid keys: {', '.join(valid)}"
    raise ConfigError(f"unknown {what} key {unknown[0]!r}{hint}")


def _coerce(key, current, value):
  """Converts an override to the type of the field's current value, or says why not."""
  try:
    if isinstance(current, bool):
      if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
      if not isinstance(value, bool):
        raise ValueError
      return value
    if isinstance(current, float):
      if isinstance(value, bool):
        raise ValueError
      return float(value)  # accepts "nan", "inf": validation decides
    if isinstance(current, int):
      if isinstance(value, bool) or float(value) != int(float(value)):
        raise ValueError
      return int(value)
    if isinstance(current, tuple):
      return tuple(value) if isinstance(value, (list, tuple)) else (value,)
  except (TypeError, ValueError) as e:
    raise ConfigError(f"{key}={value!r} is not a valid {type(current).__name__}") from e
  return value


def override(config, assignments: Mapping[str, str] | list[str], *, elsewhere=()):
  """Returns ``config`` with ``key=value`` strings applied (values parsed as JSON, else str).

  Unknown keys raise :class:`ConfigError` naming the closest valid key; keys in
  ``elsewhere`` that ``config`` lacks are skipped (another method's key, given to every
  method of a comparison: :func:`jaxunlearn.engine.methods.every_key`).

  Examples:
    >>> cfg = override(TrainConfig(), ["epochs=5", "learning_rate=0.01"])
    >>> cfg.epochs, cfg.learning_rate
    (5, 0.01)
    >>> override(TrainConfig(), ["epoch=5"])
    Traceback (most recent call last):
    jaxunlearn.errors.ConfigError: unknown config key 'epoch'; did you mean 'epochs'?
  """
  if not isinstance(assignments, Mapping):
    pairs = {}
    for item in assignments:
      if "=" not in item:
        raise ConfigError(f"override {item!r} is not KEY=VALUE")
      key, value = item.split("=", 1)
      pairs[key.strip()] = value
    assignments = pairs
  mine = config.keys()
  assignments = {k: v for k, v in assignments.items() if k in mine or k not in elsewhere}
  check_keys(assignments, mine)
  changes = {}
  for key, raw in assignments.items():
    try:
      value = json.loads(raw) if isinstance(raw, str) else raw
    except json.JSONDecodeError:
      value = raw
    changes[key] = _coerce(key, getattr(config, key), value)
  return config.replace(**changes)
