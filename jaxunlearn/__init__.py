"""jaxunlearn: machine unlearning in JAX.

Implicit gradient surgery (Zhou et al., NeurIPS 2025) as an optax transformation,
explicit surgery, multi-objective aggregators and weighting baselines, plus the data,
models, metrics and checkpoints to run unlearning experiments.
"""

from jaxunlearn import aggregators
from jaxunlearn.state_lookup import find_weighting_state, loss_weights, multiplier, scalarized_loss
from jaxunlearn.surgery import (
    ExplicitSurgeryState,
    ImplicitGradientSurgeryState,
    default_dual_optimizer,
    explicit_gradient_surgery,
    implicit_gradient_surgery,
    objective_gradients,
)
from jaxunlearn.weighting import FAMOState, PrimalDualState, famo, primal_dual

__version__ = "0.1.0"

__all__ = [
    "aggregators",
    "default_dual_optimizer",
    "explicit_gradient_surgery",
    "ExplicitSurgeryState",
    "famo",
    "FAMOState",
    "find_weighting_state",
    "implicit_gradient_surgery",
    "ImplicitGradientSurgeryState",
    "loss_weights",
    "multiplier",
    "objective_gradients",
    "primal_dual",
    "PrimalDualState",
    "scalarized_loss",
]
