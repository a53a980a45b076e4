"""A small decoder-only transformer in Flax NNX: causal attention, learned positions.

Pre-norm blocks (LayerNorm → causal multi-head attention → residual, LayerNorm → GELU MLP
→ residual), a final LayerNorm and an output head tied to the token embedding. Small
enough to memorise a TOFU-style set on two CPU cores in minutes (:data:`SIZES`); the
functional view (:func:`functional_lm`) carries its per-example loss, so every engine
step and :func:`jaxunlearn.unlearn` runs it like the classifiers.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import jax
import jax.numpy as jnp
from flax import nnx

from jaxunlearn.nn.models import FunctionalModel

# width, heads, layers: "tiny" for tests and CI, "small" the 2-core default, "base" for
# accelerators.
SIZES = {"tiny": (32, 2, 1), "small": (128, 4, 2), "base": (512, 8, 6)}


class Block(nnx.Module):
  def __init__(self, width: int, heads: int, *, rngs: nnx.Rngs):
    self.norm1 = nnx.LayerNorm(width, rngs=rngs)
    self.attention = nnx.MultiHeadAttention(
      num_heads=heads, in_features=width, decode=False, rngs=rngs
    )
    self.norm2 = nnx.LayerNorm(width, rngs=rngs)
    self.up = nnx.Linear(width, 4 * width, rngs=rngs)
    self.down = nnx.Linear(4 * width, width, rngs=rngs)

  def __call__(self, x, mask):
    x = x + self.attention(self.norm1(x), mask=mask)
    return x + self.down(jax.nn.gelu(self.up(self.norm2(x))))


class Decoder(nnx.Module):
  """``model(tokens) -> logits``: ``(B, T)`` int token ids to ``(B, T, vocab)``; the
  logits at position t predict token t + 1 (right padding needs no mask: nothing before
  a row's end attends to its padding).

  Examples:
    >>> m = Decoder(vocab=11, length=6, size="tiny", rngs=nnx.Rngs(0))
    >>> tokens = jnp.array([[1, 5, 2, 7, 3, 0]])
    >>> m(tokens).shape
    (1, 6, 11)
    >>> # causal: changing the last token leaves every earlier position's logits alone
    >>> bool(jnp.allclose(m(tokens)[:, :5], m(tokens.at[:, 5].set(9))[:, :5]))
    True
  """

  def __init__(self, vocab: int, length: int, *, size: str = "small", rngs: nnx.Rngs):
    width, heads, layers = SIZES[size]
    self.embed = nnx.Embed(vocab, width, rngs=rngs)
    self.position = nnx.Param(0.02 * jax.random.normal(rngs.params(), (length, width)))
    self.blocks = nnx.List([Block(width, heads, rngs=rngs) for _ in range(layers)])
    self.norm = nnx.LayerNorm(width, rngs=rngs)

  def __call__(self, tokens):
    tokens = jnp.asarray(tokens, jnp.int32)
    x = self.embed(tokens) + self.position[None, : tokens.shape[1]]
    mask = nnx.make_causal_mask(tokens)
    for block in self.blocks:
      x = block(x, mask)
    return self.embed.attend(self.norm(x))


@dataclasses.dataclass(frozen=True)
class LossModel(FunctionalModel):
  """A :class:`~jaxunlearn.nn.models.FunctionalModel` that carries its per-example loss
  (``example_loss(logits, labels) -> (B,)``), which the engine's steps use instead of
  cross-entropy. Hashable while the loss is (a module-level function is)."""

  example_loss: Callable | None = None


def functional_lm(model: nnx.Module, loss: Callable) -> tuple[LossModel, dict, dict]:
  """``(fm, params, state)`` of ``model`` as :func:`~jaxunlearn.nn.models.functional`
  gives them, with ``loss`` as the model's per-example loss."""
  graphdef, params, rest = nnx.split(model, nnx.Param, ...)
  return LossModel(graphdef, loss), nnx.to_pure_dict(params), nnx.to_pure_dict(rest)
