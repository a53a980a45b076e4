"""Retrain-blind tuning: pick each method's configuration as the paper's authors do.

Every method tries the same number of configurations (its registry entry's ``tune``
grid, :data:`jaxunlearn.engine.methods.TUNING_BUDGET`) on seed 0, and the choice looks
only at the original model and the training and validation splits, never at the
retrained model or the test set:

* class-wise forgetting: full forgetting of the forget set (forget accuracy 0), and
  among those the best validation accuracy on the remaining classes; if no configuration
  forgets fully, the lowest forget accuracy (then the best validation accuracy);
* random forgetting: the smallest |Δ retain accuracy| + |Δ validation accuracy| +
  |forget accuracy − the original's test accuracy|, Δ against the original model (a
  forget set that looks like unseen data, with utility unchanged).

The chosen configuration then runs on every seed and is reported on the test set.
"""

from __future__ import annotations

import math

# What selection looks at (recorded beside each candidate).
SELECTION_KEYS = ("forget_accuracy", "retain_accuracy", "val_retain_accuracy")


def score(metrics: dict, original: dict, class_wise: bool) -> tuple:
  """Sort key of one tuning run (lower is better); diverged runs sort last.

  Examples:
    >>> orig = {"retain_accuracy": 100.0, "val_retain_accuracy": 97.0, "test_accuracy": 96.0}
    >>> a = {"forget_accuracy": 0.0, "retain_accuracy": 99.0, "val_retain_accuracy": 95.0}
    >>> b = {"forget_accuracy": 2.0, "retain_accuracy": 100.0, "val_retain_accuracy": 97.0}
    >>> score(a, orig, True) < score(b, orig, True)  # full forgetting comes first
    True
  """
  values = (metrics.get("forget_accuracy"), metrics.get("val_retain_accuracy"))
  if metrics.get("diverged") or not all(v is not None and math.isfinite(v) for v in values):
    return (math.inf, math.inf)
  forget, val = values
  if class_wise:
    return (forget, -val)
  gap = (
    abs(metrics["retain_accuracy"] - original["retain_accuracy"])
    + abs(val - original["val_retain_accuracy"])
    + abs(forget - original["test_accuracy"])
  )
  return (gap, 0.0)


def select(records: list[dict], original: dict, class_wise: bool) -> int:
  """Index of the chosen tuning run among ``records`` (ties: the first)."""
  keys = [score(r["metrics"], original, class_wise) for r in records]
  return min(range(len(keys)), key=keys.__getitem__)
