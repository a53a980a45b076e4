"""Surgery on convex logistic regression against scipy's SLSQP constrained optimum."""

import numpy as np
import pytest

from benchmarks import convex

PROBLEM = convex.make_problem(seed=0)
STEPS, LR = 3000, 0.5


def test_explicit_surgery_keeps_retain_loss_and_reaches_constrained_optimum():
  losses, step_norms = convex.run_explicit(PROBLEM, steps=STEPS, lr=LR)
  rises = np.diff(losses[:, 0])
  # Logistic loss has Hessian ⪯ XᵀX/(4n): a step of length s can raise L_r by at most
  # (its first-order term, ≤ 0 here) + ½·s²·λ_max(XᵀX)/(4n).
  x = PROBLEM.x_r
  curvature = np.linalg.eigvalsh(x.T @ x / (4 * len(x))).max()
  bound = 0.5 * curvature * step_norms**2
  assert np.all(rises <= bound + 1e-6)
  l_r, l_f = losses[-1]
  assert l_f < losses[0, 1] - 0.1  # it did forget
  optimum = convex.slsqp_optimum(PROBLEM, float(l_r))
  assert l_f == pytest.approx(optimum, rel=0.01)


@pytest.mark.parametrize("signal", ["reevaluate", "jvp", "consecutive"])
def test_igs_reaches_constrained_optimum_of_its_retain_level(signal):
  losses, lams = convex.run_igs(PROBLEM, signal=signal, steps=STEPS, lr=LR, dual_weight_decay=0.0)
  l_r, l_f = losses[-1]
  assert l_f < losses[0, 1] - 0.1
  assert l_r - losses[0, 0] < 0.02  # the dual held the retain loss
  assert np.all(lams >= 0) and lams[-1] > 0
  assert l_f == pytest.approx(convex.slsqp_optimum(PROBLEM, float(l_r)), rel=0.01)


def test_dual_weight_decay_lets_retain_loss_drift():
  """With L2 on λ (the paper's dual) a fixed point needs a steady retain rise of 0.01·λ."""
  with_decay, _ = convex.run_igs(PROBLEM, signal="reevaluate", steps=STEPS, lr=LR)
  without, _ = convex.run_igs(
    PROBLEM, signal="reevaluate", steps=STEPS, lr=LR, dual_weight_decay=0.0
  )
  assert with_decay[-1, 0] - with_decay[0, 0] > 10 * (without[-1, 0] - without[0, 0])


@pytest.mark.parametrize("signal", ["reevaluate", "jvp", "consecutive"])
def test_anchored_igs_holds_its_bound_and_reaches_the_constrained_optimum(signal):
  losses, lams = convex.run_igs(PROBLEM, signal=signal, steps=STEPS, lr=LR, variant="anchored")
  l_r, l_f = losses[-1]
  assert l_f < losses[0, 1] - 0.1  # it forgot
  assert l_r - losses[0, 0] <= 0.02 + 2e-3  # L_r ≤ L_r(θ_0) + ε (ε = 0.02), held
  assert lams[-1] > 0  # the bound is active
  assert l_f == pytest.approx(convex.slsqp_optimum(PROBLEM, float(l_r)), rel=0.01)
