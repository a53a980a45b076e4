"""Low-rank adapters (LoRA, Hu et al., 2022) on an NNX module, for every method.

:func:`with_lora` gives a copy of a module whose targeted ``nnx.Linear`` layers compute
``x W + b + (alpha / rank) · (x A) B`` with ``A`` ``(in, rank)`` and ``B`` ``(rank, out)``
(``B`` starts at zero, so the copy computes what the module did), and whose every other
weight is a :class:`Frozen` variable instead of an ``nnx.Param``. The engine optimises a
module's ``nnx.Param``\\ s and carries the rest as state (``nnx.split(m, nnx.Param,
...)``), so only the adapters get gradients and optimiser state: ``jaxunlearn.unlearn``
and every method run it unchanged. :func:`merge_lora` folds the adapters back into plain
``nnx.Linear`` kernels, what a saved model holds.

Examples:
  >>> import jax.numpy as jnp
  >>> from flax import nnx
  >>> from jaxunlearn.nn.llama import Llama, LlamaConfig
  >>> cfg = LlamaConfig(11, 8, 12, 1, 2, 1)
  >>> model = Llama(cfg, rngs=nnx.Rngs(0))
  >>> adapted = with_lora(model, rank=2, targets=("q_proj", "v_proj"), rngs=nnx.Rngs(1))
  >>> params = nnx.state(adapted, nnx.Param)
  >>> sorted(str(k[-1]) for k, _ in nnx.to_flat_state(params))
  ['lora_a', 'lora_a', 'lora_b', 'lora_b']
  >>> tokens = jnp.array([[1, 5, 2, 7]])
  >>> bool(jnp.allclose(adapted(tokens), model(tokens)))  # B = 0: the same function
  True
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from jaxunlearn.errors import ConfigError

# the attention and MLP projections of jaxunlearn.nn.llama (Hugging Face's names)
LLAMA_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


class Frozen(nnx.Variable):
  """A weight LoRA keeps fixed: state, not an ``nnx.Param``, so nothing optimises it."""


class LoRALinear(nnx.Module):
  """``x W + b + scale · (x A) B``: ``W`` and ``b`` frozen, ``A`` and ``B`` trained."""

  def __init__(self, base: nnx.Linear, rank: int, alpha: float, rngs: nnx.Rngs):
    kernel = base.kernel[...]
    n_in, n_out = kernel.shape
    self.kernel = Frozen(kernel)
    self.bias = None if base.bias is None else Frozen(base.bias[...])
    # A as PEFT initialises it (Kaiming-uniform, a = √5: bound 1/√in), B zero
    bound = 1.0 / n_in**0.5
    a = jax.random.uniform(rngs.params(), (n_in, rank), jnp.float32, -bound, bound)
    self.lora_a = nnx.Param(a.astype(kernel.dtype))
    self.lora_b = nnx.Param(jnp.zeros((rank, n_out), kernel.dtype))
    self.scale = alpha / rank

  def __call__(self, x):
    # The scale on the rank-r side, (tokens, r), not on (x A) B, (tokens, out): one
    # product of the layer's width less (the gradient of the base-sized Llama of
    # benchmarks/lm_memory.py on XLA:CPU: temporaries 464 -> 449 MiB).
    y = x @ self.kernel[...] + ((x @ self.lora_a[...]) * self.scale) @ self.lora_b[...]
    return y if self.bias is None else y + self.bias[...]

  def merged(self) -> jax.Array:
    """``W + scale · A B``, in the kernel's dtype."""
    delta = self.lora_a[...].astype(jnp.float32) @ self.lora_b[...].astype(jnp.float32)
    return (self.kernel[...].astype(jnp.float32) + self.scale * delta).astype(self.kernel.dtype)


def _children(module):
  for name, value in vars(module).items():
    if isinstance(value, nnx.List):
      for i, item in enumerate(value):
        yield value, i, item
    else:
      yield module, name, value


def _set(parent, key, value):
  if isinstance(parent, nnx.List):
    parent[key] = value
  else:
    setattr(parent, key, value)


def with_lora(
  model: nnx.Module,
  *,
  rank: int = 8,
  alpha: float = 16.0,
  targets: tuple[str, ...] = LLAMA_TARGETS,
  rngs: nnx.Rngs,
) -> nnx.Module:
  """A copy of ``model`` with rank-``rank`` adapters on every ``nnx.Linear`` whose
  attribute name is in ``targets`` and every other weight frozen; ``model`` is unchanged.
  A target that matches no layer fails with a one-line error naming it."""
  if rank < 1:
    raise ConfigError(f"rank must be at least 1, got {rank}")
  model = nnx.clone(model)
  found = set()

  def visit(module):
    for parent, key, value in list(_children(module)):
      if isinstance(value, nnx.Linear) and key in targets:
        _set(parent, key, LoRALinear(value, rank, alpha, rngs))
        found.add(key)
      elif isinstance(value, nnx.Param):
        _set(parent, key, Frozen(value[...]))
      elif isinstance(value, nnx.Module):
        visit(value)

  visit(model)
  if missing := [t for t in targets if t not in found]:
    raise ConfigError(
      f"no nnx.Linear named {missing[0]!r} in {type(model).__name__}: targets name the "
      "attributes of the layers to adapt (for Llama: " + ", ".join(LLAMA_TARGETS) + ")"
    )
  return model


def _abstract_linear(n_in: int, n_out: int, bias: bool) -> nnx.Linear:
  return nnx.eval_shape(lambda: nnx.Linear(n_in, n_out, use_bias=bias, rngs=nnx.Rngs(0)))


def merge_lora(model: nnx.Module) -> nnx.Module:
  """A copy of ``model`` with each adapter folded into a plain ``nnx.Linear`` kernel and
  every frozen weight an ``nnx.Param`` again: the module :func:`with_lora` was given,
  with the adapters' change in its weights."""
  model = nnx.clone(model)

  def visit(module):
    for parent, key, value in list(_children(module)):
      if isinstance(value, LoRALinear):
        linear = _abstract_linear(*value.kernel.shape, value.bias is not None)
        linear.kernel = nnx.Param(value.merged())
        if value.bias is not None:
          linear.bias = nnx.Param(value.bias[...])
        linear.dtype = linear.param_dtype = value.kernel.dtype
        _set(parent, key, linear)
      elif isinstance(value, Frozen):
        _set(parent, key, nnx.Param(value[...]))
      elif isinstance(value, nnx.Module):
        visit(value)

  visit(model)
  return model
