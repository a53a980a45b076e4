"""Optax transformations for unlearning; this sub-package imports only optax and JAX.

* :mod:`~jaxunlearn.transforms.implicit` — implicit gradient surgery (IGS), one backprop;
* :mod:`~jaxunlearn.transforms.explicit` — explicit surgery and per-objective gradients;
* :mod:`~jaxunlearn.transforms.aggregators` — MGDA, PCGrad, CAGrad, linear on stacked
  gradients;
* :mod:`~jaxunlearn.transforms.loss_weighting` — FAMO and primal–dual (one backprop);
* :mod:`~jaxunlearn.transforms.masking` — fixed masks on updates (SalUn);
* :mod:`~jaxunlearn.transforms.state_lookup` — read λ and loss weights out of any
  nesting of optimiser states;
* :mod:`~jaxunlearn.transforms.tree_math` — dot products, norms and Gram matrices of
  pytrees.
"""

from jaxunlearn.transforms import aggregators
from jaxunlearn.transforms.explicit import (
  ExplicitSurgeryState,
  explicit_gradient_surgery,
  objective_gradients,
)
from jaxunlearn.transforms.implicit import (
  SIGNALS,
  ImplicitGradientSurgeryState,
  default_dual_optimizer,
  implicit_gradient_surgery,
  retain_decrease,
  with_anchor,
)
from jaxunlearn.transforms.loss_weighting import FAMOState, PrimalDualState, famo, primal_dual
from jaxunlearn.transforms.masking import frozen_except, masked_updates, parameter_path
from jaxunlearn.transforms.state_lookup import (
  check_outermost,
  find_weighting_state,
  loss_weights,
  multiplier,
  register_state,
  scalarized_loss,
)

__all__ = [
  "SIGNALS",
  "ExplicitSurgeryState",
  "FAMOState",
  "ImplicitGradientSurgeryState",
  "PrimalDualState",
  "aggregators",
  "check_outermost",
  "default_dual_optimizer",
  "explicit_gradient_surgery",
  "famo",
  "find_weighting_state",
  "implicit_gradient_surgery",
  "loss_weights",
  "frozen_except",
  "masked_updates",
  "parameter_path",
  "multiplier",
  "objective_gradients",
  "primal_dual",
  "register_state",
  "retain_decrease",
  "scalarized_loss",
  "with_anchor",
]
