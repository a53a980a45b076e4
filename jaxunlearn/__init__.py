"""jaxunlearn: machine unlearning in JAX.

Implicit gradient surgery (Zhou et al., NeurIPS 2025) as an optax transformation,
explicit surgery, multi-objective aggregators and weighting baselines, plus the data,
models, metrics and checkpoints to run unlearning experiments.

Layers (imports point down only; ``tests/test_layout.py`` enforces it):

* ground floor — :mod:`jaxunlearn.transforms` (optax only), :mod:`jaxunlearn.nn`
  (Flax models), :mod:`jaxunlearn.data`, :mod:`jaxunlearn.objectives`,
  :mod:`jaxunlearn.metrics`, :mod:`jaxunlearn.errors`;
* :mod:`jaxunlearn.engine` — configs, the method registry, jitted steps, the training
  and unlearning loops, evaluation, checkpoints, data parallelism;
* ``experiments/`` and ``benchmarks/`` on top wire and report.

Your own model and data in one call: :func:`jaxunlearn.unlearn` (any apply function,
linen or NNX module, arrays of any rank), and :func:`jaxunlearn.evaluate` for the same
metrics on any model (your retrained one); everything saved loads with
:func:`jaxunlearn.load`. Both, and the sub-packages (``jaxunlearn.data``,
``jaxunlearn.metrics``, ``jaxunlearn.engine``, …), are imported on first use, so
``import jaxunlearn`` stays as light as the transformations.
"""

import importlib

from jaxunlearn.transforms import (
  ExplicitSurgeryState,
  FAMOState,
  ImplicitGradientSurgeryState,
  PrimalDualState,
  aggregators,
  default_dual_optimizer,
  explicit_gradient_surgery,
  famo,
  find_weighting_state,
  implicit_gradient_surgery,
  loss_weights,
  multiplier,
  objective_gradients,
  primal_dual,
  scalarized_loss,
)

__version__ = "0.1.0"

_LAZY = {
  "unlearn": ("jaxunlearn.engine.api", "unlearn"),
  "evaluate": ("jaxunlearn.engine.api", "evaluate"),
  "UnlearnReport": ("jaxunlearn.engine.api", "UnlearnReport"),
  "load": ("jaxunlearn.engine.loading", "load"),
}
_SUBMODULES = ("data", "engine", "errors", "metrics", "nn", "objectives", "transforms")


def __getattr__(name):
  if name in _LAZY:
    module, attr = _LAZY[name]
    return getattr(importlib.import_module(module), attr)
  if name in _SUBMODULES:
    return importlib.import_module(f"jaxunlearn.{name}")
  raise AttributeError(f"module 'jaxunlearn' has no attribute {name!r}")


def __dir__():
  return sorted(list(globals()) + list(_LAZY) + list(_SUBMODULES))


__all__ = [
  "UnlearnReport",
  "evaluate",
  "load",
  "unlearn",
  "ExplicitSurgeryState",
  "FAMOState",
  "ImplicitGradientSurgeryState",
  "PrimalDualState",
  "aggregators",
  "default_dual_optimizer",
  "explicit_gradient_surgery",
  "famo",
  "find_weighting_state",
  "implicit_gradient_surgery",
  "loss_weights",
  "multiplier",
  "objective_gradients",
  "primal_dual",
  "scalarized_loss",
]
