"""2-D convolution whose kernel gradient is formed from matmuls (fast on CPU).

XLA's CPU weight gradient of stride-1 3x3 convolutions is very slow
(docs/design.md §3): the step of a small stride-1 CNN is an order of magnitude slower
than its forward pass. This module gives a drop-in replacement of
``jax.lax.conv_general_dilated`` for the 2-D NHWC / HWIO case that

* computes the **forward** with ``lax.conv_general_dilated`` (bit-identical
  outputs);
* differentiates the **input** exactly as JAX does (the tangent ``conv(dx, w)``
  is a plain conv, so reverse mode uses XLA's transposed convolution);
* expresses the **kernel** tangent through the input patches, so the kernel
  gradient JAX derives from it (its transpose) is matmuls: by default
  (:data:`KERNEL_GRAD` ``"taps"``) one ``x_shifted^T @ grad_out`` per kernel
  tap over shifted views of the input, no patch matrix; with ``"matmul"`` one
  ``im2col(x)^T @ grad_out`` over the im2col patch matrix, reshaped to HWIO.

It is a ``jax.custom_jvp`` (not ``custom_vjp``), so forward mode still works:
``jax.jvp`` through a model (the ``"jvp"`` signal of implicit gradient
surgery) and ``jax.grad`` both go through the same rule, and every op in it is
an ordinary differentiable primitive (higher orders work too). The im2col
patches are wrapped in ``jax.checkpoint``: reverse mode recomputes them in the
backward pass from ``x`` instead of saving a 9x copy of every activation.

Which implementation runs is decided **when a layer is built** (:class:`Conv` keeps it as
a static attribute, part of the model's graph and so of every compiled step's cache key),
and for the bare functions **when they are traced** (or by their ``implementation=``):

* ``"auto"`` (default): the im2col kernel gradient on the CPU backend
  (``jax.default_backend() == "cpu"``), plain ``lax.conv_general_dilated``
  everywhere else -- accelerator graphs are unchanged;
* ``"xla"`` / ``"im2col"``: force one everywhere;
* ``"cols"``: no convolution op at all: the forward is one matmul over the im2col patch
  matrix and JAX differentiates that (the kernel gradient ``patches^T @ grad_out``, the
  input gradient the patches' transpose). Faster than ``"im2col"`` on CPU for our CNNs
  (docs/results/conv_cpu_cols.md), at the memory of the patch matrix kept for the backward
  pass (kh*kw copies of each convolution's input); opt-in, not the default (see
  docs/benchmarks.md).

Set the default with the environment variable ``JAXUNLEARN_CONV`` (read at import),
:func:`set_implementation`, or the context manager :func:`implementation`; a
:class:`Conv` takes it when it is built, or its own ``implementation=``. A model built
under one setting keeps it, whatever the setting when it is traced: two models that
differ only in it are two graphs, so no compiled step of one is reused for the other.

:class:`Conv` is ``flax.nnx.Conv`` with this function plugged in (nnx.Conv's
own ``conv_general_dilated`` hook): same constructor, same parameters
(``kernel`` HWIO, ``bias``), same initialisation for the same ``rngs``, so
checkpoints and parameter names do not depend on the implementation.

Example:
  >>> import jax, jax.numpy as jnp
  >>> x, w = jnp.ones((2, 8, 8, 3)), jnp.ones((3, 3, 3, 4))
  >>> f = lambda x, w: conv2d(x, w, (1, 1), ((1, 1), (1, 1))).sum()
  >>> g = jax.grad(f, argnums=1)(x, w)
  >>> g.shape
  (3, 3, 3, 4)
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import os
from collections.abc import Iterator, Sequence
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx
from jax import lax
from jax.custom_derivatives import SymbolicZero

__all__ = [
  "IMPLEMENTATIONS",
  "KERNEL_GRAD",
  "Conv",
  "ConvFunction",
  "conv2d",
  "conv_general_dilated",
  "get_implementation",
  "implementation",
  "resolve",
  "set_implementation",
]

IMPLEMENTATIONS = ("auto", "xla", "im2col", "cols")
_ENV = "JAXUNLEARN_CONV"
_NHWC = ("NHWC", "HWIO", "NHWC")

#: How the kernel gradient is formed: ``"taps"`` (kh*kw matmuls over shifted
#: views of the input, no patch matrix) or ``"matmul"`` (one matmul over the
#: im2col patch matrix). Both are exact; see benchmarks/conv_grad.py.
KERNEL_GRAD = "taps"


def _check(name: str) -> str:
  if name not in IMPLEMENTATIONS:
    raise ValueError(f"conv implementation must be one of {IMPLEMENTATIONS}, got {name!r}")
  return name


_implementation = _check(os.environ.get(_ENV, "auto").strip().lower() or "auto")


def get_implementation() -> str:
  """The current setting: ``"auto"``, ``"xla"``, ``"im2col"`` or ``"cols"``."""
  return _implementation


def set_implementation(name: str) -> None:
  """Sets the implementation for functions traced from now on."""
  global _implementation
  _implementation = _check(name)


@contextlib.contextmanager
def implementation(name: str) -> Iterator[None]:
  """Context manager: ``with implementation("xla"): ...`` (trace inside it)."""
  global _implementation
  old, _implementation = _implementation, _check(name)
  try:
    yield
  finally:
    _implementation = old


def resolve(name: str | None = None) -> str:
  """``"xla"``, ``"im2col"`` or ``"cols"``: what ``name`` (default: the setting) means here."""
  name = _check(_implementation if name is None else name)
  if name == "auto":
    return "im2col" if jax.default_backend() == "cpu" else "xla"
  return name


# ------------------------------------------------------------------ core


def _pads(
  padding: str | Sequence[tuple[int, int]],
  in_hw: Sequence[int],
  kernel_hw: Sequence[int],
  strides: Sequence[int],
) -> tuple[tuple[int, int], ...]:
  if isinstance(padding, str):
    return tuple(tuple(p) for p in lax.padtype_to_pads(in_hw, kernel_hw, strides, padding))
  return tuple((int(lo), int(hi)) for lo, hi in padding)


def _plain(x, w, strides, padding, precision=None):
  return lax.conv_general_dilated(
    x, w, strides, padding, dimension_numbers=_NHWC, precision=precision
  )


def _im2col(
  x: jax.Array,
  kernel_hw: tuple[int, int],
  strides: tuple[int, int],
  padding: tuple[tuple[int, int], ...],
) -> jax.Array:
  """Patches ``(N*Ho*Wo, kh*kw*C)``, column order (kh, kw, C) as in HWIO."""
  kh, kw = kernel_hw
  sh, sw = strides
  (plo, phi), (qlo, qhi) = padding
  n, h, w, c = x.shape
  x = lax.pad(x, jnp.zeros((), x.dtype), ((0, 0, 0), (plo, phi, 0), (qlo, qhi, 0), (0, 0, 0)))
  ho = (h + plo + phi - kh) // sh + 1
  wo = (w + qlo + qhi - kw) // sw + 1
  if kh == kw == 1 and sh == sw == 1:
    return x.reshape(n * ho * wo, c)
  taps = [
    lax.slice(x, (0, i, j, 0), (n, i + sh * (ho - 1) + 1, j + sw * (wo - 1) + 1, c), (1, sh, sw, 1))
    for i in range(kh)
    for j in range(kw)
  ]
  return jnp.stack(taps, axis=3).reshape(n * ho * wo, kh * kw * c)


def _out_hw(x_shape, kernel_hw, strides, padding) -> tuple[int, int]:
  (plo, phi), (qlo, qhi) = padding
  return (
    (x_shape[1] + plo + phi - kernel_hw[0]) // strides[0] + 1,
    (x_shape[2] + qlo + qhi - kernel_hw[1]) // strides[1] + 1,
  )


def _kernel_tangent(x, dw, strides, padding, precision, kernel_grad):
  """``conv(x, dw)`` written so that its transpose in ``dw`` is a matmul.

  Linear in ``dw``; JAX transposes it into the kernel gradient:

  * ``"matmul"``: ``im2col(x) @ dw`` -> ``im2col(x)^T @ grad_out``, one
    matmul over the ``(N*Ho*Wo, kh*kw*C)`` patch matrix;
  * ``"taps"``: ``sum_ij x_ij @ dw[i, j]`` over the kh*kw shifted (strided)
    views ``x_ij`` of the padded input -> ``dw[i, j] = x_ij^T @ grad_out``:
    the same products as the one matmul, split by kernel tap, so the patch
    matrix is never built (less memory; faster on CPU in our measurements).
  """
  kh, kw, cin, cout = dw.shape
  n = x.shape[0]
  ho, wo = _out_hw(x.shape, (kh, kw), strides, padding)
  if kernel_grad == "matmul":
    patches = _im2col(x, (kh, kw), strides, padding)
    y = jnp.dot(patches, dw.reshape(kh * kw * cin, cout), precision=precision)
    return y.reshape(n, ho, wo, cout)
  sh, sw = strides
  (plo, phi), (qlo, qhi) = padding
  xp = lax.pad(x, jnp.zeros((), x.dtype), ((0, 0, 0), (plo, phi, 0), (qlo, qhi, 0), (0, 0, 0)))
  y = None
  for i in range(kh):
    for j in range(kw):
      tap = lax.slice(
        xp, (0, i, j, 0), (n, i + sh * (ho - 1) + 1, j + sw * (wo - 1) + 1, cin), (1, sh, sw, 1)
      )
      term = jnp.dot(tap.reshape(n * ho * wo, cin), dw[i, j], precision=precision)
      y = term if y is None else y + term
  return y.reshape(n, ho, wo, cout)


# Recompute the patches in the backward pass; save only x (not 9 copies of it).
_kernel_tangent_remat = jax.checkpoint(_kernel_tangent, static_argnums=(2, 3, 4, 5))


def _cols(x, w, strides, padding, precision):
  """The convolution itself as one matmul over the im2col patch matrix, differentiated by
  JAX: the kernel gradient is ``patches^T @ grad_out`` and the input gradient the patches'
  transpose (each tap's ``grad_out @ w[i, j]^T`` padded back into place and added), no
  convolution op at all. The patch matrix (kh*kw copies of ``x``) is kept for the
  backward pass: recomputing it there (``jax.checkpoint``) made the strided CNN's step
  8 % slower (92.7 against 85.4 ms, batch 256, interleaved in one process)."""
  return _kernel_tangent(x, w, strides, padding, precision, "matmul")


@functools.partial(jax.custom_jvp, nondiff_argnums=(2, 3, 4, 5))
def _conv2d(x, w, strides, padding, precision, kernel_grad):
  return _plain(x, w, strides, padding, precision)


@functools.partial(_conv2d.defjvp, symbolic_zeros=True)
def _conv2d_jvp(strides, padding, precision, kernel_grad, primals, tangents):
  x, w = primals
  dx, dw = tangents
  y = _plain(x, w, strides, padding, precision)
  parts = []
  if not isinstance(dx, SymbolicZero):
    parts.append(_plain(dx, w, strides, padding, precision))
  if not isinstance(dw, SymbolicZero):
    parts.append(_kernel_tangent_remat(x, dw, strides, padding, precision, kernel_grad))
  if not parts:
    return y, jnp.zeros_like(y)
  return y, functools.reduce(jnp.add, parts)


def conv2d(
  x: jax.Array,
  w: jax.Array,
  strides: Sequence[int] = (1, 1),
  padding: str | Sequence[tuple[int, int]] = "SAME",
  precision: Any = None,
  kernel_grad: str | None = None,
) -> jax.Array:
  """NHWC x HWIO -> NHWC convolution with the im2col kernel gradient.

  Forward identical to ``lax.conv_general_dilated(x, w, strides, padding,
  dimension_numbers=("NHWC", "HWIO", "NHWC"))``; always the im2col rule,
  whatever the setting (see :func:`conv_general_dilated` for the switch).

  Args:
    x: input ``(N, H, W, C)``.
    w: kernel ``(kh, kw, C, O)``.
    strides: ``(sh, sw)``.
    padding: ``"SAME"``, ``"VALID"`` or ``((lo, hi), (lo, hi))``.
    precision: passed to the conv and the matmuls.
    kernel_grad: ``"taps"`` or ``"matmul"`` (see :data:`KERNEL_GRAD`);
      default :data:`KERNEL_GRAD`.
  """
  if x.ndim != 4 or w.ndim != 4 or x.shape[-1] != w.shape[2]:
    raise ValueError(f"conv2d wants NHWC x HWIO with matching C, got {x.shape} x {w.shape}")
  strides = tuple(int(s) for s in strides)
  pads = _pads(padding, x.shape[1:3], w.shape[:2], strides)
  kernel_grad = KERNEL_GRAD if kernel_grad is None else kernel_grad
  if kernel_grad not in ("taps", "matmul"):
    raise ValueError(f"kernel_grad must be 'taps' or 'matmul', got {kernel_grad!r}")
  return _conv2d(x, w, strides, pads, precision, kernel_grad)


def _is_nhwc(lhs, rhs, dimension_numbers) -> bool:
  if lhs.ndim != 4 or rhs.ndim != 4 or dimension_numbers is None:
    return False
  try:
    got = lax.conv_dimension_numbers(lhs.shape, rhs.shape, dimension_numbers)
  except (TypeError, ValueError):
    return False
  return got == lax.conv_dimension_numbers(lhs.shape, rhs.shape, _NHWC)


def conv_general_dilated(
  lhs,
  rhs,
  window_strides,
  padding,
  lhs_dilation=None,
  rhs_dilation=None,
  dimension_numbers=None,
  feature_group_count=1,
  batch_group_count=1,
  precision=None,
  preferred_element_type=None,
  implementation: str | None = None,
  **kwargs,
):
  """Drop-in for ``lax.conv_general_dilated`` (same signature).

  Uses :func:`conv2d` when ``implementation`` (default: the setting when traced)
  resolves to ``"im2col"`` or ``"cols"`` and the call is a plain 2-D NHWC/HWIO
  convolution (no dilation, one feature group, no ``preferred_element_type``/sharding);
  otherwise calls ``lax.conv_general_dilated`` unchanged.
  """
  how = resolve(implementation)
  simple = (
    how in ("im2col", "cols")
    and _is_nhwc(lhs, rhs, dimension_numbers)
    and all(d in (None, 1) for d in (lhs_dilation or ()))
    and all(d in (None, 1) for d in (rhs_dilation or ()))
    and feature_group_count == 1
    and batch_group_count == 1
    and preferred_element_type is None
    and all(v is None for v in kwargs.values())
    and lhs.dtype == rhs.dtype
  )
  if not simple:
    return lax.conv_general_dilated(
      lhs,
      rhs,
      window_strides,
      padding,
      lhs_dilation,
      rhs_dilation,
      dimension_numbers,
      feature_group_count,
      batch_group_count,
      precision,
      preferred_element_type,
      **kwargs,
    )
  if how == "cols":
    strides = tuple(int(v) for v in window_strides)
    pads = _pads(padding, lhs.shape[1:3], rhs.shape[:2], strides)
    return _cols(lhs, rhs, strides, pads, precision)
  return conv2d(lhs, rhs, window_strides, padding, precision)


@dataclasses.dataclass(frozen=True)
class ConvFunction:
  """:func:`conv_general_dilated` with its implementation fixed: the hook a :class:`Conv`
  holds. Equal for equal implementations, so two layers built alike are one graph."""

  implementation: str

  def __call__(self, *args: Any, **kwargs: Any):
    return conv_general_dilated(*args, implementation=self.implementation, **kwargs)


class Conv(nnx.Conv):
  """``flax.nnx.Conv`` that convolves with :func:`conv_general_dilated`.

  Same arguments, parameters (``kernel`` HWIO, optional ``bias``) and
  initialisation as ``nnx.Conv``; ``implementation`` (default: the setting now) is
  fixed when the layer is built, a static part of its graph.

  Example:
    >>> with implementation("xla"):
    ...   layer = Conv(3, 4, (3, 3), rngs=nnx.Rngs(0))
    >>> with implementation("im2col"):  # later settings do not change a built layer
    ...   layer.conv_general_dilated.implementation
    'xla'
  """

  def __init__(self, *args: Any, implementation: str | None = None, **kwargs: Any):
    how = _check(_implementation if implementation is None else implementation)
    kwargs.setdefault("conv_general_dilated", ConvFunction(how))
    super().__init__(*args, **kwargs)
