"""Synthetic examples for cost benchmarks: cost does not depend on the values."""

from __future__ import annotations

import numpy as np


def synthetic_examples(rng: np.random.Generator, n: int, input_shape, num_classes: int):
  """``n`` random-normal inputs, random labels and random *wrong* labels (never the true
  class), as numpy ``(float32, int32, int32)``.

  Examples:
    >>> x, y, wrong = synthetic_examples(np.random.default_rng(0), 5, (2, 2, 1), 3)
    >>> x.shape, bool((y != wrong).all())
    ((5, 2, 2, 1), True)
  """
  x = rng.normal(size=(n, *input_shape)).astype(np.float32)
  y = rng.integers(0, num_classes, size=n)
  wrong = (y + rng.integers(1, num_classes, size=n)) % num_classes
  return x, y.astype(np.int32), wrong.astype(np.int32)


def unlearning_batch(
  rng: np.random.Generator, n_retain: int, n_forget: int, input_shape, num_classes: int
) -> dict:
  """A synthetic batch in the engine's split layout (see :mod:`jaxunlearn.engine.steps`)."""
  x_r, y_r, _ = synthetic_examples(rng, n_retain, input_shape, num_classes)
  x_f, y_f, wrong = synthetic_examples(rng, n_forget, input_shape, num_classes)
  return {
    "retain_image": x_r,
    "retain_label": y_r,
    "forget_image": x_f,
    "forget_label": wrong,
    "forget_true_label": y_f,
  }
