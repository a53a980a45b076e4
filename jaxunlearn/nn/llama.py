"""A Llama-family decoder in Flax NNX, computed as Hugging Face's ``LlamaForCausalLM`` does.

RMSNorm (in float32, scaled in the model's dtype), rotary embeddings with the half-split
rotation (``rotate_half``) and the ``default`` or ``llama3`` frequencies, grouped-query
attention (query head h reads key/value head ``h // (heads // kv_heads)``), a SwiGLU MLP
(``down(silu(gate(x)) * up(x))``) and a tied or untied head. The module and parameter
names mirror the checkpoint's (``layers[i].self_attn.q_proj`` holds
``model.layers.i.self_attn.q_proj.weight`` transposed), so
:func:`jaxunlearn.nn.pretrained.from_pretrained` maps one to the other by name.
``tests/nn/test_llama.py`` holds the logits within 1e-4 of transformers' on a committed
checkpoint.
"""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
from flax import nnx

from jaxunlearn.errors import ConfigError

_ROPE_TYPES = ("default", "llama3")
# config.json's llama3 rope_scaling fields, in LlamaConfig.rope_scaling's order
_LLAMA3_SCALING = (
  "factor",
  "low_freq_factor",
  "high_freq_factor",
  "original_max_position_embeddings",
)


@dataclasses.dataclass(frozen=True)
class LlamaConfig:
  """The fields of a checkpoint's ``config.json`` the forward pass reads.

  Examples:
    >>> cfg = LlamaConfig(vocab_size=11, hidden_size=8, intermediate_size=12,
    ...                   num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=1)
    >>> cfg.head_dim, cfg.rope_type
    (4, 'default')
  """

  vocab_size: int
  hidden_size: int
  intermediate_size: int
  num_hidden_layers: int
  num_attention_heads: int
  num_key_value_heads: int | None = None
  head_dim: int | None = None
  rms_norm_eps: float = 1e-6
  rope_theta: float = 10000.0
  rope_type: str = "default"
  rope_scaling: tuple = ()  # llama3's (factor, low, high, original context) when used
  tie_word_embeddings: bool = False
  attention_bias: bool = False
  mlp_bias: bool = False

  def __post_init__(self):
    if self.num_key_value_heads is None:
      object.__setattr__(self, "num_key_value_heads", self.num_attention_heads)
    if self.head_dim is None:
      object.__setattr__(self, "head_dim", self.hidden_size // self.num_attention_heads)
    if self.num_attention_heads % self.num_key_value_heads:
      raise ConfigError(
        f"num_attention_heads {self.num_attention_heads} is not a multiple of "
        f"num_key_value_heads {self.num_key_value_heads}: grouped-query attention needs one"
      )
    if self.rope_type not in _ROPE_TYPES:
      raise ConfigError(
        f"rope type {self.rope_type!r} is not supported: this decoder computes "
        f"{' and '.join(_ROPE_TYPES)} rotary frequencies"
      )

  @classmethod
  def from_hf(cls, config: dict) -> LlamaConfig:
    """From a parsed ``config.json``: ``rope_theta`` read from the top level (transformers
    4) or from ``rope_parameters`` (transformers 5), the scaling from ``rope_scaling`` or
    ``rope_parameters``."""
    rope = dict(config.get("rope_scaling") or {})
    rope.update(config.get("rope_parameters") or {})
    theta = rope.get("rope_theta", config.get("rope_theta", 10000.0))
    kind = rope.get("rope_type", rope.get("type", "default"))
    scaling = tuple(float(rope[k]) for k in _LLAMA3_SCALING) if kind == "llama3" else ()
    fields = {f.name for f in dataclasses.fields(cls)} - {"rope_theta", "rope_type", "rope_scaling"}
    kept = {k: config[k] for k in fields if config.get(k) is not None}
    return cls(**kept, rope_theta=float(theta), rope_type=kind, rope_scaling=scaling)


def to_hf(cfg: LlamaConfig, dtype=jnp.float32) -> dict:
  """``config.json``'s fields for ``cfg``, as transformers writes them for
  ``LlamaForCausalLM`` (``rope_theta`` at the top level, llama3 frequencies in
  ``rope_scaling``: what transformers 4 writes and 5 still reads); :meth:`LlamaConfig.from_hf`
  reads it back to ``cfg``.

  Examples:
    >>> cfg = LlamaConfig(vocab_size=11, hidden_size=8, intermediate_size=12,
    ...                   num_hidden_layers=1, num_attention_heads=2)
    >>> LlamaConfig.from_hf(to_hf(cfg)) == cfg
    True
  """
  out = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_act": "silu"}
  out.update({f.name: getattr(cfg, f.name) for f in dataclasses.fields(cfg)})
  del out["rope_type"]
  out["rope_scaling"] = None
  if cfg.rope_type == "llama3":
    factor, low, high, context = cfg.rope_scaling
    out["rope_scaling"] = dict(zip(_LLAMA3_SCALING, (factor, low, high, int(context))))
    out["rope_scaling"]["rope_type"] = "llama3"
  out["torch_dtype"] = jnp.dtype(dtype).name
  return out


def inverse_frequencies(cfg: LlamaConfig) -> jax.Array:
  """The rotary inverse frequencies (``head_dim / 2``), float32, as transformers computes
  them for ``default`` and ``llama3`` (long wavelengths divided by ``factor``, the middle
  band interpolated).

  Examples:
    >>> cfg = LlamaConfig(11, 8, 12, 1, 2, rope_theta=100.0)
    >>> [round(float(f), 4) for f in inverse_frequencies(cfg)]
    [1.0, 0.1]
  """
  d = cfg.head_dim
  inv = 1.0 / (cfg.rope_theta ** (jnp.arange(0, d, 2, dtype=jnp.float32) / d))
  if cfg.rope_type == "llama3":
    factor, low, high, context = cfg.rope_scaling
    wavelength = 2 * math.pi / inv
    scaled = jnp.where(wavelength > context / low, inv / factor, inv)
    smooth = (context / wavelength - low) / (high - low)
    smoothed = (1 - smooth) * scaled / factor + smooth * scaled
    medium = ~(wavelength < context / high) & ~(wavelength > context / low)
    inv = jnp.where(medium, smoothed, scaled)
  return inv


def _rotate_half(x):
  half = x.shape[-1] // 2
  return jnp.concatenate([-x[..., half:], x[..., :half]], axis=-1)


class RMSNorm(nnx.Module):
  def __init__(self, width: int, eps: float, dtype):
    self.weight = nnx.Param(jnp.ones((width,), dtype))
    self.eps = eps

  def __call__(self, x):
    h = x.astype(jnp.float32)
    h = h * jax.lax.rsqrt(jnp.mean(h * h, axis=-1, keepdims=True) + self.eps)
    return self.weight[...] * h.astype(x.dtype)


def _linear(n_in, n_out, bias, dtype, rngs):
  return nnx.Linear(n_in, n_out, use_bias=bias, dtype=dtype, param_dtype=dtype, rngs=rngs)


class Attention(nnx.Module):
  def __init__(self, cfg: LlamaConfig, dtype, rngs: nnx.Rngs):
    h, kv, d, b = cfg.num_attention_heads, cfg.num_key_value_heads, cfg.head_dim, cfg.attention_bias
    self.q_proj = _linear(cfg.hidden_size, h * d, b, dtype, rngs)
    self.k_proj = _linear(cfg.hidden_size, kv * d, b, dtype, rngs)
    self.v_proj = _linear(cfg.hidden_size, kv * d, b, dtype, rngs)
    self.o_proj = _linear(h * d, cfg.hidden_size, b, dtype, rngs)
    self.heads, self.kv_heads, self.head_dim = h, kv, d

  def __call__(self, x, cos, sin, mask):
    B, T, _ = x.shape
    q = self.q_proj(x).reshape(B, T, self.heads, self.head_dim)
    k = self.k_proj(x).reshape(B, T, self.kv_heads, self.head_dim)
    v = self.v_proj(x).reshape(B, T, self.kv_heads, self.head_dim)
    q, k = q * cos + _rotate_half(q) * sin, k * cos + _rotate_half(k) * sin
    groups = self.heads // self.kv_heads
    k, v = jnp.repeat(k, groups, axis=2), jnp.repeat(v, groups, axis=2)  # head h ← h // groups
    scores = jnp.einsum("bqhd,bkhd->bhqk", q, k) * (self.head_dim**-0.5)
    scores = jnp.where(mask, scores, jnp.finfo(scores.dtype).min)
    weights = jax.nn.softmax(scores.astype(jnp.float32), axis=-1).astype(x.dtype)
    out = jnp.einsum("bhqk,bkhd->bqhd", weights, v).reshape(B, T, self.heads * self.head_dim)
    return self.o_proj(out)


class MLP(nnx.Module):
  def __init__(self, cfg: LlamaConfig, dtype, rngs: nnx.Rngs):
    w, m, b = cfg.hidden_size, cfg.intermediate_size, cfg.mlp_bias
    self.gate_proj = _linear(w, m, b, dtype, rngs)
    self.up_proj = _linear(w, m, b, dtype, rngs)
    self.down_proj = _linear(m, w, b, dtype, rngs)

  def __call__(self, x):
    return self.down_proj(jax.nn.silu(self.gate_proj(x)) * self.up_proj(x))


class DecoderLayer(nnx.Module):
  def __init__(self, cfg: LlamaConfig, dtype, rngs: nnx.Rngs):
    self.input_layernorm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps, dtype)
    self.self_attn = Attention(cfg, dtype, rngs)
    self.post_attention_layernorm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps, dtype)
    self.mlp = MLP(cfg, dtype, rngs)

  def __call__(self, x, cos, sin, mask):
    x = x + self.self_attn(self.input_layernorm(x), cos, sin, mask)
    return x + self.mlp(self.post_attention_layernorm(x))


class Llama(nnx.Module):
  """``model(tokens) -> logits``: int tokens ``(B, T)`` to ``(B, T, vocab_size)`` in the
  model's dtype (float32 or bfloat16); causal, positions ``0..T-1`` (right padding needs
  no mask, as for :class:`~jaxunlearn.nn.transformer.Decoder`).

  Examples:
    >>> cfg = LlamaConfig(vocab_size=11, hidden_size=8, intermediate_size=12,
    ...                   num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=1)
    >>> m = Llama(cfg, rngs=nnx.Rngs(0))
    >>> tokens = jnp.array([[1, 5, 2, 7]])
    >>> m(tokens).shape
    (1, 4, 11)
    >>> bool(jnp.allclose(m(tokens)[:, :3], m(tokens.at[:, 3].set(9))[:, :3]))  # causal
    True
  """

  def __init__(self, cfg: LlamaConfig, *, dtype=jnp.float32, rngs: nnx.Rngs):
    self.config, self.dtype = cfg, dtype
    self.embed_tokens = nnx.Embed(
      cfg.vocab_size, cfg.hidden_size, dtype=dtype, param_dtype=dtype, rngs=rngs
    )
    self.layers = nnx.List([DecoderLayer(cfg, dtype, rngs) for _ in range(cfg.num_hidden_layers)])
    self.norm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps, dtype)
    self.lm_head = (
      None
      if cfg.tie_word_embeddings
      else _linear(cfg.hidden_size, cfg.vocab_size, False, dtype, rngs)
    )

  def __call__(self, tokens):
    tokens = jnp.asarray(tokens, jnp.int32)
    T = tokens.shape[1]
    angles = jnp.arange(T, dtype=jnp.float32)[:, None] * inverse_frequencies(self.config)
    angles = jnp.concatenate([angles, angles], axis=-1)[None, :, None, :]  # (1, T, 1, D)
    cos, sin = jnp.cos(angles).astype(self.dtype), jnp.sin(angles).astype(self.dtype)
    mask = jnp.tril(jnp.ones((T, T), bool))[None, None]
    x = self.embed_tokens(tokens)
    for layer in self.layers:
      x = layer(x, cos, sin, mask)
    x = self.norm(x)
    return self.embed_tokens.attend(x) if self.lm_head is None else self.lm_head(x)
