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
from jaxunlearn.transforms.implicit import DUALS, REFERENCES, SIGNALS, VARIANTS

FORGET_OBJECTIVES = ("rl", "ga", "heldout")
LAYOUTS = ("mixed", "split", "denoise")  # jaxunlearn.engine.layouts.LAYOUTS (tested equal)


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


def traced(default):
  """A numeric field that every method reads by arithmetic only (never in a Python
  ``if``, a shape, or what ``Method.prepare`` computes), so a batch of runs may pass it as
  a traced array: one compiled program for every value of it
  (:func:`jaxunlearn.engine.unlearning.run_batch`; tests/engine/test_unlearning.py runs
  every method with them traced). Not traced: ``momentum`` and ``weight_decay`` (a zero
  leaves a transformation out), ``aggregate_scale``, ``clip_norm`` (same), and
  ``salun_sparsity`` (it sizes SalUn's mask before the loop)."""
  return dataclasses.field(default=default, metadata={"traced": True})


# The paper's update is the config's IGS default (the igs method's own defaults, in the
# registry, are the anchored variant's): one source of truth, implicit.VARIANTS.
_PAPER = VARIANTS["paper"]


@dataclasses.dataclass(frozen=True)
class UnlearnConfig:
  """Hyperparameters of one unlearning run; every method reads the keys it needs.

  Shared budget: ``steps`` steps of ``n_retain`` retain and ``n_forget`` forget examples,
  SGD with ``learning_rate`` and ``momentum`` (constant, as in the paper). The forget
  objective of the surgery, multi-objective and weighting methods is
  ``forget_objective``: ``"rl"`` (cross-entropy to random labels, the paper's) or
  ``"ga"`` (negative cross-entropy on true labels).
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
  seed: int = 0
  # implicit gradient surgery (defaults: the paper's update, from implicit.VARIANTS)
  tolerance: float = traced(_PAPER.tolerance)  # tolerated increase of φ(L_r)
  signal: str = "reevaluate"
  reference: str = _PAPER.reference  # "previous" (per step, the paper's) or "start" (θ_0)
  normalize_weights: bool = _PAPER.normalize_weights  # weights (λ, 1)/(1+λ), not (λ, 1)
  dual_optimizer: str = _PAPER.dual  # "adam" (the paper's) or "sgd"
  dual_lr: float = traced(_PAPER.dual_lr)
  dual_weight_decay: float = traced(_PAPER.dual_weight_decay)
  init_multiplier: float = traced(0.0)
  log_losses: bool = _PAPER.log_losses
  # explicit surgery
  retain_weight: float = traced(0.0)  # β in d = g_f + λ* g_r + β g_r
  # two-gradient methods: the aggregated direction × aggregate_scale, then clipped to
  # clip_norm (0: no clipping)
  aggregate_scale: float = 1.0
  clip_norm: float = 0.0
  # linear scalarisation, GradDiff
  retain_loss_weight: float = traced(1.0)  # S = w·L_r + L_f
  graddiff_alpha: float = traced(1.0)  # L = L_r − α·CE_forget
  # FAMO, PDU
  famo_lr: float = traced(0.025)
  pdu_threshold: float = traced(0.05)  # absolute retain-loss level ε_abs
  pdu_dual_lr: float = traced(0.1)
  # CAGrad
  cagrad_c: float = traced(0.4)
  # SalUn, ℓ1-sparse, SCRUB, NPO
  salun_sparsity: float = 0.5  # share of weights updated (largest |∇L_f|)
  l1_gamma: float = traced(1e-4)  # γ, decayed linearly to 0 over the run
  scrub_alpha: float = traced(1.0)  # weight of KL to the teacher on retain
  scrub_gamma: float = traced(1.0)  # weight of CE on retain
  scrub_max_fraction: float = traced(0.5)  # max-steps (−KL on forget) in this first share
  npo_beta: float = traced(0.1)

  def to_dict(self) -> dict:
    return dataclasses.asdict(self)

  def validate(self) -> UnlearnConfig:
    """Checks every value (the method name is checked by the registry)."""
    check_finite(self)
    if not (self.learning_rate > 0):
      raise ConfigError(f"learning_rate must be > 0, got {self.learning_rate}")
    if self.steps <= 0 or self.n_retain <= 0 or self.n_forget <= 0:
      raise ConfigError("steps, n_retain and n_forget must be > 0")
    if self.layout not in LAYOUTS:
      raise ConfigError(f"layout must be one of {', '.join(LAYOUTS)}, got {self.layout!r}")
    if self.weight_decay < 0 or self.clip_norm < 0:
      raise ConfigError("weight_decay and clip_norm must be ≥ 0")
    if self.forget_labels not in ("random_wrong", "random_all"):
      raise ConfigError(
        f"forget_labels must be 'random_wrong' or 'random_all', got {self.forget_labels!r}"
      )
    if self.forget_objective not in FORGET_OBJECTIVES:
      raise ConfigError(
        f"forget_objective must be one of {', '.join(FORGET_OBJECTIVES)}, "
        f"got {self.forget_objective!r}"
      )
    if self.signal not in SIGNALS:
      raise ConfigError(f"unknown signal {self.signal!r}; valid: {', '.join(SIGNALS)}")
    if self.reference not in REFERENCES:
      raise ConfigError(f"unknown reference {self.reference!r}; valid: {', '.join(REFERENCES)}")
    if self.dual_optimizer not in DUALS:
      raise ConfigError(
        f"unknown dual_optimizer {self.dual_optimizer!r}; valid: {', '.join(DUALS)}"
      )
    for key in ("dual_lr", "famo_lr", "pdu_dual_lr"):
      if getattr(self, key) < 0:
        raise ConfigError(f"{key} must be ≥ 0, got {getattr(self, key)}")
    if not 0 < self.salun_sparsity <= 1:
      raise ConfigError(f"salun_sparsity must be in (0, 1], got {self.salun_sparsity}")
    return self


# The traced fields (:func:`traced`), in declaration order.
TRACEABLE = tuple(f.name for f in dataclasses.fields(UnlearnConfig) if f.metadata.get("traced"))


def check_finite(config) -> None:
  """Refuses NaN and infinite float fields, naming the first."""
  for f in dataclasses.fields(config):
    value = getattr(config, f.name)
    if isinstance(value, float) and not math.isfinite(value):
      raise ConfigError(f"{f.name} must be finite, got {value}")


def check_keys(keys, config_cls, what: str = "config") -> None:
  """Refuses keys that are not fields of ``config_cls``, naming the closest valid one."""
  fields = [f.name for f in dataclasses.fields(config_cls)]
  unknown = sorted(set(keys) - set(fields))
  if unknown:
    close = difflib.get_close_matches(unknown[0], fields, n=1)
    hint = f"; did you mean {close[0]!r}?" if close else f"; valid keys: {', '.join(fields)}"
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


def override(config, assignments: Mapping[str, str] | list[str]):
  """Returns ``config`` with ``key=value`` strings applied (values parsed as JSON, else str).

  Unknown keys raise :class:`ConfigError` naming the closest valid key.

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
  check_keys(assignments, type(config))
  changes = {}
  for key, raw in assignments.items():
    try:
      value = json.loads(raw) if isinstance(raw, str) else raw
    except json.JSONDecodeError:
      value = raw
    changes[key] = _coerce(key, getattr(config, key), value)
  return dataclasses.replace(config, **changes)
