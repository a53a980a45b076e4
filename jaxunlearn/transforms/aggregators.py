r"""Multi-objective aggregators: per-objective gradients in, one direction out.

Every aggregator is an ``optax.GradientTransformation`` whose input is a pytree of
per-objective gradients with a leading objective axis (row i = ∇L_i; for
unlearning row 0 is the retain gradient, row 1 the forget gradient), as made by
:func:`jaxunlearn.objective_gradients`, and whose output is an ordinary gradient
pytree, so it chains in front of any optax optimiser::

    tx = optax.chain(jaxunlearn.aggregators.mgda(), optax.sgd(1e-3))

As in TorchJD, each aggregator computes weights from the k×k Gram matrix
K_ij = ⟨g_i, g_j⟩ (cheap: k² inner products leaf by leaf) and returns Σ_i w_i g_i.
"""

from __future__ import annotations

import numbers

import jax
import jax.numpy as jnp
import optax

from jaxunlearn.transforms import tree_math


def _aggregator(weighting) -> optax.GradientTransformation:
  """Wraps ``weighting(K) -> w`` into a stateless transformation returning Σ w_i g_i."""

  def init_fn(params):
    del params
    return optax.EmptyState()

  def update_fn(updates, state, params=None):
    del params
    tree_math.num_objectives(updates)
    w = weighting(tree_math.stacked_gram(updates))
    return tree_math.combine(w, updates), state

  return optax.GradientTransformation(init_fn, update_fn)


def linear(weights) -> optax.GradientTransformation:
  r"""Linear scalarisation: d = Σ_i w_i g_i with fixed weights.

  Examples:
    >>> import jax.numpy as jnp, jaxunlearn
    >>> tx = jaxunlearn.aggregators.linear([1.0, 0.5])
    >>> d, _ = tx.update({"w": jnp.array([[2.0], [4.0]])}, tx.init(None))
    >>> d["w"].tolist()
    [4.0]
  """
  w = jnp.asarray(weights, jnp.float32)
  if w.ndim != 1:
    raise ValueError(f"linear weights must be a vector, got shape {w.shape}")

  def weighting(gram):
    if gram.shape[0] != w.shape[0]:
      raise ValueError(f"{w.shape[0]} weights for {gram.shape[0]} objectives")
    return w

  return _aggregator(weighting)


def mgda_weights(gram, *, iterations: int = 250):
  """Min-norm weights of MGDA: argmin_{w ∈ simplex} wᵀ K w.

  Two objectives: exact closed form γ = clip((K₁₁ − K₀₁)/(K₀₀ + K₁₁ − 2K₀₁), 0, 1) on
  g_0. More: Frank–Wolfe with exact line search (Sener & Koltun, 2018, Alg. 2).
  """
  k = gram.shape[0]
  if k == 2:
    denom = gram[0, 0] + gram[1, 1] - 2 * gram[0, 1]
    gamma = jnp.where(denom > 0, (gram[1, 1] - gram[0, 1]) / jnp.where(denom > 0, denom, 1.0), 0.5)
    gamma = jnp.clip(gamma, 0.0, 1.0)
    return jnp.stack([gamma, 1.0 - gamma])

  def body(_, w):
    kw = gram @ w
    t = jnp.argmin(kw)
    vv, vt, tt = w @ kw, kw[t], gram[t, t]
    denom = vv - 2 * vt + tt
    gamma = jnp.clip(
      jnp.where(denom > 0, (vv - vt) / jnp.where(denom > 0, denom, 1.0), 0.0), 0.0, 1.0
    )
    return (1 - gamma) * w + gamma * jax.nn.one_hot(t, k, dtype=w.dtype)

  return jax.lax.fori_loop(0, iterations, body, jnp.full((k,), 1.0 / k, gram.dtype))


def mgda(*, iterations: int = 250) -> optax.GradientTransformation:
  r"""MGDA (Désidéri 2012; Sener & Koltun 2018): the min-norm point of the convex hull.

  d = Σ_i w_i g_i with w = argmin_{w ∈ Δ} ‖Σ_i w_i g_i‖². d is a common descent
  direction: ⟨g_i, d⟩ ≥ ‖d‖² for all i. Exact for two objectives, Frank–Wolfe beyond.

  Examples:
    >>> import jax.numpy as jnp, jaxunlearn
    >>> tx = jaxunlearn.aggregators.mgda()
    >>> d, _ = tx.update({"w": jnp.array([[1.0, 0.0], [0.0, 1.0]])}, tx.init(None))
    >>> d["w"].tolist()
    [0.5, 0.5]
  """
  return _aggregator(lambda gram: mgda_weights(gram, iterations=iterations))


def pcgrad_weights(gram):
  """PCGrad weights in Gram space: row i of C expresses the projected g_i' = Σ_m C_im g_m.

  Each g_i' is projected, in the fixed order j = 0, 1, …, onto the normal plane of every
  original g_j (j ≠ i) it conflicts with (⟨g_i', g_j⟩ < 0). For two objectives the order
  does not matter; for more, the original samples a random order each step — we use a
  fixed one so the step is deterministic.
  """
  k = gram.shape[0]
  coeffs = jnp.eye(k, dtype=gram.dtype)
  for i in range(k):
    row = coeffs[i]
    for j in range(k):
      if i == j:
        continue
      dot = row @ gram[:, j]
      safe = jnp.where(gram[j, j] > 0, gram[j, j], 1.0)
      row = row - jnp.where((dot < 0) & (gram[j, j] > 0), dot / safe, 0.0) * jnp.eye(k)[j]
    coeffs = coeffs.at[i].set(row)
  return coeffs


def pcgrad(*, reduction: str = "sum") -> optax.GradientTransformation:
  r"""PCGrad (Yu et al., 2020): project away pairwise conflicts, then add.

  g_i' = g_i − min(0, ⟨g_i, g_j⟩)/‖g_j‖² g_j for each j ≠ i; d = Σ_i g_i' (``"sum"``, as in
  the paper) or the mean (``"mean"``). For two objectives no conflict remains:
  ⟨g_0', g_1⟩ ≥ 0 and ⟨g_1', g_0⟩ ≥ 0.

  Examples:
    >>> import jax.numpy as jnp, jaxunlearn
    >>> tx = jaxunlearn.aggregators.pcgrad()
    >>> d, _ = tx.update({"w": jnp.array([[1.0, 0.0], [-1.0, 1.0]])}, tx.init(None))
    >>> [round(v, 4) for v in d["w"].tolist()]
    [0.5, 1.5]
  """
  if reduction not in ("sum", "mean"):
    raise ValueError(f"reduction must be 'sum' or 'mean', got {reduction!r}")

  def weighting(gram):
    w = pcgrad_weights(gram).sum(axis=0)
    return w / gram.shape[0] if reduction == "mean" else w

  return _aggregator(weighting)


def cagrad_objective(w, gram, c):
  """F(w) = ⟨g_w, g_0⟩ + c‖g_0‖·‖g_w‖, the CAGrad dual objective, in Gram form."""
  k = gram.shape[0]
  b = jnp.full((k,), 1.0 / k, gram.dtype)
  g0_norm = jnp.sqrt(b @ gram @ b + 1e-8)
  return w @ gram @ b + c * g0_norm * jnp.sqrt(w @ gram @ w + 1e-8)


def cagrad_weights(gram, c: float = 0.4, rescale: int = 1, *, iterations: int = 500):
  """Final CAGrad combination weights (on the raw g_i) for the direction d."""
  k = gram.shape[0]
  objective = lambda w: cagrad_objective(w, gram, c)
  if k == 2:
    # F is convex on the segment w = (p, 1 − p): golden-section search is exact enough.
    ratio = (jnp.sqrt(5.0) - 1) / 2
    f = lambda p: objective(jnp.stack([p, 1 - p]))

    def body(_, ab):
      a, b = ab
      x1, x2 = b - ratio * (b - a), a + ratio * (b - a)
      left = f(x1) < f(x2)
      return jnp.where(left, a, x1), jnp.where(left, x2, b)

    a, b = jax.lax.fori_loop(0, 80, body, (jnp.zeros((), gram.dtype), jnp.ones((), gram.dtype)))
    p = (a + b) / 2
    w = jnp.stack([p, 1 - p])
  else:
    grad_f = jax.grad(objective)

    def body(t, w):
      vertex = jax.nn.one_hot(jnp.argmin(grad_f(w)), k, dtype=w.dtype)
      step = 2.0 / (t + 2.0)
      return (1 - step) * w + step * vertex

    w = jax.lax.fori_loop(0, iterations, body, jnp.full((k,), 1.0 / k, gram.dtype))
  b = jnp.full((k,), 1.0 / k, gram.dtype)
  g0_norm = jnp.sqrt(b @ gram @ b + 1e-8)
  gw_norm = jnp.sqrt(w @ gram @ w)
  lam = c * g0_norm / (gw_norm + 1e-8)
  weights = b + lam * w
  scale = {0: 1.0, 1: 1.0 / (1 + c**2), 2: 1.0 / (1 + c)}[rescale]
  return weights * scale


def cagrad(c: float = 0.4, *, rescale: int = 1) -> optax.GradientTransformation:
  r"""CAGrad (Liu et al., 2021): conflict-averse gradient descent.

  Finds d maximising min_i ⟨g_i, d⟩ within the ball ‖d − g_0‖ ≤ c‖g_0‖ around the mean
  gradient g_0. Through its dual, w = argmin_{w∈Δ} ⟨g_w, g_0⟩ + c‖g_0‖‖g_w‖ with
  g_w = Σ w_i g_i, and d = g_0 + (c‖g_0‖/‖g_w‖) g_w, divided by 1 + c² (``rescale=1``,
  the authors' default), 1 + c (``2``) or left as is (``0``).

  Examples:
    >>> import jax.numpy as jnp, jaxunlearn
    >>> tx = jaxunlearn.aggregators.cagrad(c=0.0)  # c = 0 is the plain mean
    >>> d, _ = tx.update({"w": jnp.array([[1.0, 0.0], [0.0, 3.0]])}, tx.init(None))
    >>> [round(v, 4) for v in d["w"].tolist()]
    [0.5, 1.5]
  """
  if isinstance(c, numbers.Real) and c < 0:  # a traced c (a batch of runs) is not checked
    raise ValueError(f"CAGrad's c must be ≥ 0, got {c}")
  if rescale not in (0, 1, 2):
    raise ValueError(f"rescale must be 0, 1 or 2, got {rescale}")
  return _aggregator(lambda gram: cagrad_weights(gram, c, rescale))
