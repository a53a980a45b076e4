r"""Class-conditional DDPM pieces: the noise schedule, the denoising losses, a DDIM sampler.

The paper's generative setting (its ``DDPM/`` code): an ε-prediction DDPM with a linear β
schedule over T = 1,000 steps, classifier-free guidance with a null label, sampled with
deterministic DDIM steps. A denoiser here is any ``eps_fn(x_t, t, labels) -> ε̂`` with
images in [−1, 1].

* retain loss: the conditional denoising loss ‖ε̂(x_t, t, y) − ε‖² on the other classes;
* forget loss (the paper's "rl"): ‖ε̂(x_t, t, c) − sg(ε̂(x_t, t, c'))‖² on noised images
  of the forgotten class c, c' a different class: asked for c, the model draws c';
* gradient ascent: the negated denoising loss of the forget images.

Ground floor: imports only JAX.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp


class Schedule(NamedTuple):
  """β_t and ᾱ_t = ∏_{s ≤ t} (1 − β_s), t = 0..T−1 (float32 arrays)."""

  betas: jax.Array
  alphas_cumprod: jax.Array

  @property
  def steps(self) -> int:
    return int(self.betas.shape[0])


def linear_schedule(steps: int = 1000, beta_start: float = 1e-4, beta_end: float = 0.02):
  """The DDPM linear β schedule (Ho et al.; the paper's ``linear`` with these values).

  Examples:
    >>> s = linear_schedule(1000)
    >>> round(float(s.alphas_cumprod[0]), 6), float(s.alphas_cumprod[-1]) < 1e-4
    (0.9999, True)
  """
  betas = jnp.linspace(beta_start, beta_end, steps, dtype=jnp.float32)
  return Schedule(betas, jnp.cumprod(1.0 - betas))


def _bcast(a, x):
  return a.reshape(a.shape + (1,) * (x.ndim - a.ndim))


def add_noise(schedule: Schedule, x0, t, noise):
  """x_t = √ᾱ_t · x_0 + √(1 − ᾱ_t) · ε (``t`` one integer per example)."""
  a = _bcast(schedule.alphas_cumprod[t], x0)
  return jnp.sqrt(a) * x0 + jnp.sqrt(1.0 - a) * noise


def per_example_mse(prediction, target):
  """Mean squared difference of each example over its pixels, shape ``(B,)``."""
  d = (prediction - target).reshape(prediction.shape[0], -1)
  return jnp.mean(d * d, axis=-1)


def ddim_sample(
  eps_fn: Callable,
  schedule: Schedule,
  labels,
  key,
  *,
  shape,
  null_label: int,
  sample_steps: int = 50,
  guidance: float = 2.0,
):
  """Deterministic DDIM (η = 0) with classifier-free guidance, one ``lax.scan``.

  ε̂ = (1 + w)·ε̂(x, t, y) − w·ε̂(x, t, ∅); x̂_0 is clipped to [−1, 1] and ε̂ recomputed
  from the clipped x̂_0 (without that recomputation samples overflowed to NaN on
  digits, docs/design.md §9). Jit it with ``eps_fn`` closed over.

  Args:
    eps_fn: ``eps_fn(x_t, t, labels) -> ε̂``.
    schedule: the training schedule.
    labels: the class of each sample, shape ``(N,)``.
    key: PRNG key of the starting noise.
    shape: one sample's shape.
    null_label: the unconditional label.
    sample_steps: DDIM steps, evenly spaced over the T training steps.
    guidance: w; 0 is plain conditional sampling.

  Examples:
    >>> import jax.numpy as jnp
    >>> s = linear_schedule(100)
    >>> x0 = jnp.full((2, 3), 0.5)  # an oracle that knows the answer gives it back
    >>> oracle = lambda x, t, y: (x - jnp.sqrt(s.alphas_cumprod[t])[:, None] * x0) / (
    ...     jnp.sqrt(1 - s.alphas_cumprod[t])[:, None])
    >>> out = ddim_sample(oracle, s, jnp.zeros(2, int), jax.random.key(0), shape=(3,),
    ...                   null_label=1, sample_steps=10, guidance=0.0)
    >>> bool(jnp.allclose(out, x0, atol=1e-4))
    True
  """
  labels = jnp.asarray(labels)
  n = labels.shape[0]
  ts = jnp.linspace(schedule.steps - 1, 0, sample_steps).round().astype(jnp.int32)
  prev = jnp.concatenate([ts[1:], jnp.array([-1], jnp.int32)])
  x = jax.random.normal(key, (n, *shape), jnp.float32)
  null = jnp.full_like(labels, null_label)

  def step(x, tt):
    t, t_prev = tt
    tb = jnp.full((n,), t, jnp.int32)
    eps_c = eps_fn(x, tb, labels)
    eps = eps_c if guidance == 0 else (1 + guidance) * eps_c - guidance * eps_fn(x, tb, null)
    a = schedule.alphas_cumprod[t]
    a_prev = jnp.where(t_prev >= 0, schedule.alphas_cumprod[jnp.maximum(t_prev, 0)], 1.0)
    x0 = jnp.clip((x - jnp.sqrt(1 - a) * eps) / jnp.sqrt(a), -1.0, 1.0)
    eps = (x - jnp.sqrt(a) * x0) / jnp.sqrt(1 - a)
    return jnp.sqrt(a_prev) * x0 + jnp.sqrt(1 - a_prev) * eps, None

  x, _ = jax.lax.scan(step, x, (ts, prev))
  return x


def frechet_distance(mu1, cov1, mu2, cov2) -> float:
  """‖μ₁ − μ₂‖² + tr(Σ₁ + Σ₂ − 2(Σ₁Σ₂)^{1/2}): FID between two Gaussians (numpy/scipy).

  Examples:
    >>> import numpy as np
    >>> round(frechet_distance(np.zeros(2), np.eye(2), np.ones(2), 4 * np.eye(2)), 6)
    4.0
  """
  import numpy as np  # noqa: PLC0415
  from scipy import linalg  # noqa: PLC0415

  mu1, mu2 = np.asarray(mu1, np.float64), np.asarray(mu2, np.float64)
  cov1, cov2 = np.atleast_2d(cov1).astype(np.float64), np.atleast_2d(cov2).astype(np.float64)
  with warnings.catch_warnings():
    # Fewer samples than feature dimensions give singular covariances; sqrtm still returns
    # the root (checked against the closed form in tests/test_diffusion.py).
    warnings.simplefilter("ignore", linalg.LinAlgWarning)
    covmean = linalg.sqrtm(cov1 @ cov2)
  if np.iscomplexobj(covmean):
    covmean = covmean.real
  diff = mu1 - mu2
  return float(diff @ diff + np.trace(cov1) + np.trace(cov2) - 2 * np.trace(covmean))


def fid(features_a, features_b) -> float:
  """FID between two sets of feature vectors (rows), from their means and covariances."""
  import numpy as np  # noqa: PLC0415

  a, b = np.asarray(features_a, np.float64), np.asarray(features_b, np.float64)
  return frechet_distance(a.mean(0), np.cov(a, rowvar=False), b.mean(0), np.cov(b, rowvar=False))
