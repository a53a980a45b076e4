"""Training configurations: plain frozen dataclasses, JSON-serialisable, checked on override."""

from __future__ import annotations

import dataclasses
import difflib
import json
import math
from typing import Any, Mapping


class ConfigError(ValueError):
  """A bad configuration value or key; the message is one line."""


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

  def validate(self) -> "TrainConfig":
    for f in dataclasses.fields(self):
      value = getattr(self, f.name)
      if isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(f"{f.name} must be finite, got {value}")
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
  except (TypeError, ValueError):
    raise ConfigError(f"{key}={value!r} is not a valid {type(current).__name__}") from None
  return value


def override(config, assignments: Mapping[str, str] | list[str]):
  """Returns ``config`` with ``key=value`` strings applied (values parsed as JSON, else str).

  Unknown keys raise :class:`ConfigError` naming the closest valid key.
  """
  if not isinstance(assignments, Mapping):
    pairs = {}
    for item in assignments:
      if "=" not in item:
        raise ConfigError(f"override {item!r} is not KEY=VALUE")
      key, value = item.split("=", 1)
      pairs[key.strip()] = value
    assignments = pairs
  fields = {f.name: f for f in dataclasses.fields(config)}
  changes = {}
  for key, raw in assignments.items():
    if key not in fields:
      close = difflib.get_close_matches(key, fields, n=1)
      hint = f"; did you mean {close[0]!r}?" if close else f"; valid keys: {', '.join(fields)}"
      raise ConfigError(f"unknown config key {key!r}{hint}")
    try:
      value = json.loads(raw) if isinstance(raw, str) else raw
    except json.JSONDecodeError:
      value = raw
    changes[key] = _coerce(key, getattr(config, key), value)
  return dataclasses.replace(config, **changes)
