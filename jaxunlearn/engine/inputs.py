"""Checks of what a user hands the engine, made before any work: a model's parameters are
finite, and the labels fit the model's head.

Without them a NaN parameter or a label past the head ran a whole unlearning run and
then came back as an empty metrics dict (every step skipped as non-finite) or as an
accuracy error after the run. Each check raises one line naming the leaf or the array
and the fix; nothing is written before it.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from jaxunlearn.errors import DataError


def check_finite_params(tree, what: str = "params") -> None:
  """Raises :class:`~jaxunlearn.errors.DataError` naming the first leaf of ``tree`` (by
  its key path) that holds NaN or infinity.

  Examples:
    >>> check_finite_params({"w": np.ones(3)})
    >>> check_finite_params({"dense": {"w": np.array([1.0, np.nan])}})
    Traceback (most recent call last):
    ...
    jaxunlearn.errors.DataError: params['dense']['w'] holds 1 non-finite value of 2 (NaN); ...
  """
  leaves = jax.tree_util.tree_flatten_with_path(tree)[0]
  floats = [(p, x) for p, x in leaves if jnp.issubdtype(jnp.result_type(x), jnp.inexact)]
  # One device transfer of one bool per leaf, not of the arrays.
  finite = jax.device_get([jnp.all(jnp.isfinite(x)) for _, x in floats])
  for (path, leaf), ok in zip(floats, finite):
    if ok:
      continue
    values = np.asarray(jax.device_get(leaf))
    bad = ~np.isfinite(values)
    kinds = " and ".join(
      k for k, m in (("NaN", np.isnan(values)), ("infinity", np.isinf(values))) if m.any()
    )
    raise DataError(
      f"{what}{jax.tree_util.keystr(path)} holds {int(bad.sum())} non-finite value"
      f"{'s' if bad.sum() > 1 else ''} of {values.size} ({kinds}); unlearning starts from "
      "a trained model: check how it was trained or loaded"
    )


def check_labels_fit_head(logits_width: int, num_classes: int, largest: dict) -> None:
  """Raises :class:`~jaxunlearn.errors.DataError` when a label is past the model's head
  (``logits_width`` outputs, from one forward of one row) or the data declare more
  classes than the head has; ``largest`` maps each labelled array's name to its largest
  label.

  Examples:
    >>> check_labels_fit_head(10, 10, {"y": 9})
    >>> check_labels_fit_head(10, 13, {"y": 9, "test": 12})
    Traceback (most recent call last):
    ...
    jaxunlearn.errors.DataError: test holds label 12, but the model's head has 10 outputs ...
  """
  for name, label in largest.items():
    if label >= logits_width:
      raise DataError(
        f"{name} holds label {label}, but the model's head has {logits_width} outputs "
        f"(classes 0..{logits_width - 1}): fix the labels or pass a model with "
        f"{label + 1} outputs"
      )
  if num_classes > logits_width:
    raise DataError(
      f"num_classes={num_classes}, but the model's head has {logits_width} outputs: pass "
      f"num_classes={logits_width} or a model with {num_classes} outputs"
    )
