"""Comparison scenarios: which data, model recipe, forget set and unlearning budget."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

from jaxunlearn.errors import ConfigError


@dataclasses.dataclass(frozen=True)
class Scenario:
  name: str
  pretrain_config: str  # a name in experiments.configs.PRETRAIN_CONFIGS
  forget: str  # forget-set spec
  unlearn: Mapping = dataclasses.field(default_factory=dict)  # UnlearnConfig overrides
  # Sweeps drawn as curves in the UA–TA plot: method -> (key, values).
  sweeps: Mapping = dataclasses.field(default_factory=dict)
  description: str = ""


# An epoch of the paper's mixed batches (n_retain + n_forget = 80 rows, the last partial
# batch dropped): 1,259 digits train rows -> 15 steps; 3,500 MNIST-subset rows -> 43.
DIGITS_STEPS_PER_EPOCH = 1259 // 80
MNIST_STEPS_PER_EPOCH = 3500 // 80

_SWEEPS = {
  "igs": ("tolerance", (-0.05, -0.01, 0.0, 0.01, 0.05)),
  "explicit": ("tolerance", (-0.5, -0.1, 0.0, 0.1, 0.5)),
  "pdu": ("pdu_threshold", (0.01, 0.05, 0.2, 0.5)),
}

SCENARIOS = {
  s.name: s
  for s in [
    Scenario(
      "digits-class",
      "digits-mlp",
      "class:0",
      {"steps": 5 * DIGITS_STEPS_PER_EPOCH},
      _SWEEPS,
      "forget every 0 of scikit-learn digits (MLP), 5 epochs",
    ),
    Scenario(
      "mnist-class",
      "mnist-mlp",
      "class:0",
      {"steps": 5 * MNIST_STEPS_PER_EPOCH},
      _SWEEPS,
      "forget every 0 of the 5,000-image MNIST subset (MLP), 5 epochs",
    ),
    Scenario(
      "mnist-random10",
      "mnist-mlp",
      "random:0.1",
      {"steps": 5 * MNIST_STEPS_PER_EPOCH},
      _SWEEPS,
      "forget a random 10% of the MNIST subset (MLP), 5 epochs",
    ),
    # CNN scenarios on real MNIST (the literature's regime: docs/design.md §7).
    Scenario(
      "mnist-cnn-class",
      "mnist-cnn",
      "class:0",
      {"steps": 5 * MNIST_STEPS_PER_EPOCH},
      _SWEEPS,
      "forget every 0 of the MNIST subset (strided CNN), 5 epochs",
    ),
    *[
      Scenario(
        f"mnist-cnn-random{p}",
        "mnist-cnn",
        f"random:0.{p // 10}",
        {"steps": 5 * MNIST_STEPS_PER_EPOCH},
        _SWEEPS,
        f"forget a random {p}% of the MNIST subset (strided CNN), 5 epochs",
      )
      for p in (10, 30, 50)
    ],
    # The paper's settings, for accelerators (CIFAR-10 prepared in the data dir).
    Scenario(
      "cifar10-class",
      "cifar10-resnet18",
      "class:0",
      {
        "steps": 5 * 176,
        "learning_rate": 1e-3,
        "tolerance": -0.01,
        "n_retain": 256,
        "n_forget": 64,
        "augment": True,  # the recipe's augmentation, as the paper's unlearning keeps it on
      },
      _SWEEPS,
      "paper: class-wise CIFAR-10, ResNet-18, 5 epochs",
    ),
    Scenario(
      "cifar10-random10",
      "cifar10-resnet18",
      "random:0.1",
      {
        "steps": 5 * 176,
        "learning_rate": 1e-3,
        "tolerance": -0.01,
        "n_retain": 256,
        "n_forget": 64,
        "augment": True,  # the recipe's augmentation, as the paper's unlearning keeps it on
      },
      _SWEEPS,
      "paper: random 10% CIFAR-10, ResNet-18, 5 epochs",
    ),
  ]
}

DEFAULT_SCENARIOS = ("digits-class", "mnist-random10")


def get_scenario(name: str) -> Scenario:
  if name not in SCENARIOS:
    raise ConfigError(f"unknown scenario {name!r}; valid: {', '.join(SCENARIOS)}")
  return SCENARIOS[name]
