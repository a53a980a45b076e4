"""Where a run starts: the original model, or a perturbed copy of it.

The NeurIPS 2023 unlearning challenge's top entries all inject diversity before they
recover utility: Gaussian noise on the weights, or the weights that matter least for the
forget set re-initialised (Deep Unlearn's "MSG"), then fine-tuning. Runs from one
original otherwise agree with each other far more than retrained models do, and the
challenge's forget score punishes that (``docs/design.md`` §12: without noise, 30 steps
of fine-tuning score 0.000; with noise 0.3 × each tensor's std, 0.049).

Two keys of every config say how a run starts (both 0 by default: the original):

* ``start_reinit`` — in each weight tensor, that share of its entries with the smallest
  |∇ forget loss| (the layout's :meth:`saliency_gradient`, SalUn's: true-label
  cross-entropy summed over the forget rows) drawn afresh from N(0, std of the tensor);
* ``start_noise`` — then every floating tensor plus ``start_noise`` × its std × N(0, 1).

The draws are a pure function of the run's seed. Only the starting point moves: the
teacher (SCRUB, NPO), SalUn's mask and IGS's budget reference stay the original's.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from jaxunlearn.engine.layouts import LAYOUTS

_STREAM = 0x5EED  # the perturbation's own key stream, apart from batches and labels


def perturbs(cfg) -> bool:
  """Whether ``cfg`` starts anywhere but the original model."""
  return cfg.start_noise > 0 or cfg.start_reinit > 0


def forget_gradient(cfg, fm, params, model_state, dataset, forget_set):
  """What :func:`start_params` ranks entries by (``None`` unless ``start_reinit`` > 0):
  compute it once for many seeds of one original."""
  if cfg.start_reinit <= 0:
    return None
  return LAYOUTS[cfg.layout].saliency_gradient(fm, params, model_state, dataset, forget_set, cfg)


def start_params(cfg, params, gradient=None):
  """``params`` perturbed as ``cfg`` says (``params`` itself when it says nothing).

  Examples:
    >>> import jax.numpy as jnp
    >>> from jaxunlearn.engine.methods import make_config
    >>> p = {"w": jnp.arange(6.0).reshape(2, 3), "b": jnp.zeros(3)}
    >>> start_params(make_config("ft"), p) is p
    True
    >>> q = start_params(make_config("ft", start_noise=0.5, seed=1), p)
    >>> bool(jnp.all(q["b"] == 0)), bool(jnp.any(q["w"] != p["w"]))  # std 0: no noise
    (True, True)
    >>> g = {"w": jnp.array([[9.0, 0.1, 9.0], [9.0, 9.0, 0.2]]), "b": jnp.ones(3)}
    >>> r = start_params(make_config("ft", start_reinit=0.34, seed=0), p, g)
    >>> (r["w"] != p["w"]).astype(int).tolist()  # the two smallest |g| of six redrawn
    [[0, 1, 0], [0, 0, 1]]
  """
  if not perturbs(cfg):
    return params
  leaves, treedef = jax.tree.flatten(params)
  grads = jax.tree.leaves(gradient) if gradient is not None else [None] * len(leaves)
  key = jax.random.fold_in(jax.random.key(cfg.seed), _STREAM)
  out = []
  for i, (x, g) in enumerate(zip(leaves, grads)):
    if not jnp.issubdtype(jnp.result_type(x), jnp.floating):
      out.append(x)
      continue
    k_reinit, k_noise = jax.random.split(jax.random.fold_in(key, i))
    x = jnp.asarray(x)
    std = jnp.std(x)
    if cfg.start_reinit > 0 and g is not None and x.size > 1:
      magnitude = np.abs(np.asarray(g)).ravel()
      count = int(round(cfg.start_reinit * x.size))
      chosen = np.zeros(x.size, bool)
      chosen[np.argsort(magnitude, kind="stable")[:count]] = True
      fresh = std * jax.random.normal(k_reinit, x.shape, x.dtype)
      x = jnp.where(jnp.asarray(chosen.reshape(x.shape)), fresh, x)
    if cfg.start_noise > 0:
      x = x + cfg.start_noise * std * jax.random.normal(k_noise, x.shape, x.dtype)
    out.append(x)
  return jax.tree.unflatten(treedef, out)
