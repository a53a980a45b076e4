"""CIFAR-style augmentation in numpy: random crop from a zero-padded image + h-flip.

For the CIFAR/SVHN-style configs only (the paper's ResNet-18 pretraining); the small
digit datasets are not augmented (a flipped digit is a different glyph).

Example:
  >>> import numpy as np
  >>> from jaxunlearn.data import augment
  >>> x = np.random.default_rng(0).random((5, 32, 32, 3), dtype=np.float32)
  >>> augment(x, rng=0).shape
  (5, 32, 32, 3)
"""

from __future__ import annotations

import numpy as np

__all__ = ["augment"]


def augment(images: np.ndarray, rng, pad: int = 4, flip: bool = True) -> np.ndarray:
  """Per image: pad by `pad` zeros, crop a random HxW window, flip left-right w.p. 1/2.

  Args:
    images: NHWC array.
    rng: a `np.random.Generator` or a seed (same seed -> same augmentation).
    pad: padding on each side; offsets are uniform in [0, 2 * pad].
    flip: whether to apply random horizontal flips.
  """
  images = np.asarray(images)
  if images.ndim != 4:
    raise ValueError(f"expected NHWC images, got shape {images.shape}")
  if pad < 0:
    raise ValueError(f"pad must be >= 0, got {pad}")
  rng = np.random.default_rng(rng)
  n, h, w, _ = images.shape
  padded = np.pad(images, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
  dy = rng.integers(0, 2 * pad + 1, size=n)
  dx = rng.integers(0, 2 * pad + 1, size=n)
  rows = dy[:, None] + np.arange(h)  # (N, H)
  cols = dx[:, None] + np.arange(w)  # (N, W)
  if flip:
    flipped = rng.random(n) < 0.5
    cols = np.where(flipped[:, None], cols[:, ::-1], cols)  # flip = read columns reversed
  # One gather does crop and flip together: out[i, y, x] = padded[i, rows[i,y], cols[i,x]].
  return padded[np.arange(n)[:, None, None], rows[:, :, None], cols[:, None, :]]
