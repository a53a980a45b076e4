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
"""

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

__all__ = [
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
