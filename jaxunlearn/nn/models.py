"""Models (Flax NNX) and a pure functional view of them.

Four classifiers for NHWC image batches:

* :class:`MLP` -- flattens the input; the CPU default (a step is a few ms).
* :class:`StridedCNN` -- stride-2 3x3 convolutions, no pooling, then dense
  layers. Fast on CPU because XLA's CPU weight gradient of *stride-1* 3x3
  convolutions is very slow (see docs/design.md §3).
* :class:`PooledCNN` -- the classic small CNN: stride-1 3x3 convolutions, each
  followed by 2x2 max-pooling, then dense layers. Exactly the slow case above;
  kept to measure it (benchmarks.vs_pytorch), not as a CPU default.
* :class:`ResNet18` -- the CIFAR variant (3x3 stride-1 stem, no max-pool,
  BasicBlocks [2, 2, 2, 2], BatchNorm). Meant for accelerators; on 2 CPU cores a
  full-size step takes seconds, so tests shrink it with ``width``.

Jitted step builders do not hold modules; they use :func:`functional`, which
splits a module into a static :class:`FunctionalModel` and two pytrees::

    fm, params, state = functional(model)
    logits, new_state = fm.apply(params, state, x, train=True)

Representation choice: ``params`` and ``state`` are **pure nested dicts of
arrays** (``nnx.to_pure_dict``), not ``nnx.State`` of ``nnx.Variable``s. Why:

* they are the same kind of object a linen ``init`` returns, so every
  transformation, objective and metric handles NNX and linen models alike;
* optax (``init``/``update``/``apply_updates``, ``optax.masked`` masks),
  ``jax.tree`` ops and Orbax see plain arrays at the leaves -- no Variable
  wrappers, no Variable metadata in checkpoints;
* all keys are strings (our modules avoid ``nnx.List`` int keys), so key paths
  print and checkpoint cleanly.

``nnx.merge`` accepts pure dicts directly (it recreates the Variables from the
graphdef's metadata), so :meth:`FunctionalModel.apply` costs nothing extra once
jitted. ``state`` holds everything that is not an ``nnx.Param`` (BatchNorm
running statistics; empty ``{}`` for the MLP and the CNNs).

Build models with :func:`create_model`: it initialises under one ``jit``.
Constructing a class directly (``ResNet18(rngs=nnx.Rngs(0))``) runs each
initializer eagerly, one XLA compile each -- tens of seconds for a ResNet on CPU.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import math
import operator
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from jaxunlearn.errors import ConfigError
from jaxunlearn.nn import conv as _conv_lib

__all__ = [
  "MLP",
  "StridedCNN",
  "PooledCNN",
  "BasicBlock",
  "ResNet18",
  "MODELS",
  "create_model",
  "FunctionalModel",
  "functional",
  "to_module",
  "count_params",
]

# He (Kaiming) normal, fan-out: the usual init of CIFAR ResNets (torchvision's),
# so our ResNet-18 starts from the same distribution as the PyTorch baselines.
_kaiming_fan_out = nnx.initializers.variance_scaling(2.0, "fan_out", "normal")


def _flatten(x: jax.Array) -> jax.Array:
  return x.reshape((x.shape[0], -1))


class MLP(nnx.Module):
  """Multi-layer perceptron with ReLU; flattens NHWC (or any) input per example.

  Args:
    in_features: number of input features after flattening (H*W*C).
    hidden: widths of the hidden layers.
    num_classes: number of output logits.
    rngs: ``nnx.Rngs`` used for initialisation.

  Examples:
    >>> import jax.numpy as jnp
    >>> m = create_model("mlp", num_classes=10, input_shape=(8, 8, 1), seed=0, hidden=(32,))
    >>> m(jnp.zeros((2, 8, 8, 1))).shape
    (2, 10)
  """

  def __init__(
    self,
    in_features: int,
    hidden: Sequence[int] = (256, 256),
    num_classes: int = 10,
    *,
    rngs: nnx.Rngs,
  ):
    sizes = (int(in_features), *map(int, hidden))
    # Attribute names (not nnx.List) keep every key path a string.
    self._hidden_names = tuple(f"hidden{i}" for i in range(len(hidden)))
    for name, din, dout in zip(self._hidden_names, sizes[:-1], sizes[1:]):
      setattr(self, name, nnx.Linear(din, dout, rngs=rngs))
    self.head = nnx.Linear(sizes[-1], int(num_classes), rngs=rngs)

  def __call__(self, x: jax.Array) -> jax.Array:
    x = _flatten(x)
    for name in self._hidden_names:
      x = nnx.relu(getattr(self, name)(x))
    return self.head(x)


def _conv_out(size: int, stride: int) -> int:
  # 3x3 kernel, padding 1 (PyTorch-style): floor((n + 2 - 3) / s) + 1.
  return (size - 1) // stride + 1


class _ConvStack(nnx.Module):
  """3x3 convolutions, each followed by ReLU and a downsampling, then a dense head.

  The two CNNs differ only in how a block halves H and W: :class:`StridedCNN` by a
  stride-2 convolution, :class:`PooledCNN` by a 2x2 max-pool after a stride-1 one.
  Parameters are named ``conv0, conv1, ..., hidden, head`` in both.
  """

  _stride: int  # the convolutions' stride

  def __init__(
    self,
    input_shape: Sequence[int],
    num_classes: int = 10,
    *,
    channels: Sequence[int] = (32, 64),
    hidden: int | None = 128,
    rngs: nnx.Rngs,
  ):
    h, w, c = _check_input_shape(input_shape)
    self._conv_names = tuple(f"conv{i}" for i in range(len(channels)))
    s = self._stride
    for name, cout in zip(self._conv_names, channels):
      conv = _conv_lib.Conv(
        c, int(cout), kernel_size=(3, 3), strides=(s, s), padding=((1, 1), (1, 1)), rngs=rngs
      )
      setattr(self, name, conv)
      h, w, c = self._halved(h, w, input_shape, len(channels)) + (int(cout),)
    flat = h * w * c
    self.hidden = None if hidden is None else nnx.Linear(flat, int(hidden), rngs=rngs)
    self.head = nnx.Linear(flat if hidden is None else int(hidden), int(num_classes), rngs=rngs)

  def _halved(self, h: int, w: int, input_shape, blocks: int) -> tuple[int, int]:
    raise NotImplementedError

  def _downsample(self, x: jax.Array) -> jax.Array:
    return x

  def __call__(self, x: jax.Array) -> jax.Array:
    for name in self._conv_names:
      x = self._downsample(nnx.relu(getattr(self, name)(x)))
    x = _flatten(x)
    if self.hidden is not None:
      x = nnx.relu(self.hidden(x))
    return self.head(x)


class StridedCNN(_ConvStack):
  """3x3 convolutions with stride 2 (no pooling), then a dense head.

  Stride-2 convolutions downsample instead of pooling, which keeps the CPU
  backward pass fast (docs/design.md §3). Input NHWC of the fixed
  ``input_shape`` (needed to size the first dense layer): 8x8 -> 4x4 -> 2x2,
  28x28 -> 14x14 -> 7x7, 32x32 -> 16x16 -> 8x8 with the default two convs.

  Args:
    input_shape: ``(H, W, C)`` of one example.
    num_classes: number of output logits.
    channels: output channels of each conv (each one halves H and W).
    hidden: width of the dense hidden layer; ``None`` for a linear head.
    rngs: ``nnx.Rngs`` used for initialisation.

  Examples:
    >>> import jax.numpy as jnp
    >>> m = create_model("cnn", num_classes=10, input_shape=(28, 28, 1), seed=0)
    >>> m(jnp.zeros((2, 28, 28, 1))).shape
    (2, 10)
  """

  _stride = 2

  def _halved(self, h, w, input_shape, blocks):
    return _conv_out(h, 2), _conv_out(w, 2)


class PooledCNN(_ConvStack):
  """3x3 stride-1 convolutions, each followed by 2x2 max-pooling, then a dense head.

  The classic small CNN (conv-ReLU-pool blocks, as in the PyTorch tutorials).
  Its stride-1 convolutions are the case whose kernel gradient is slow on XLA
  CPU (docs/design.md §3); they are :class:`jaxunlearn.nn.conv.Conv`, as in
  the other convolutional models, so they get the same CPU kernel gradient.
  Exists to measure that case (benchmarks.vs_pytorch); on CPU prefer
  :class:`StridedCNN`. Each pool halves H and W, rounding down (PyTorch's
  ``MaxPool2d(2)``): 8x8 -> 4x4 -> 2x2, 28x28 -> 14x14 -> 7x7, 32x32 -> 16x16
  -> 8x8 with the default two blocks.

  Args:
    input_shape: ``(H, W, C)`` of one example.
    num_classes: number of output logits.
    channels: output channels of each conv (each block halves H and W).
    hidden: width of the dense hidden layer; ``None`` for a linear head.
    rngs: ``nnx.Rngs`` used for initialisation.

  Examples:
    >>> import jax.numpy as jnp
    >>> m = create_model("pooled-cnn", num_classes=10, input_shape=(28, 28, 1), seed=0)
    >>> m(jnp.zeros((2, 28, 28, 1))).shape
    (2, 10)
  """

  _stride = 1

  def _halved(self, h, w, input_shape, blocks):
    if min(h, w) < 2:
      raise ValueError(f"input_shape {tuple(input_shape)!r} too small for {blocks} pools")
    return h // 2, w // 2

  def _downsample(self, x):
    return nnx.max_pool(x, window_shape=(2, 2), strides=(2, 2), padding="VALID")


def _batch_norm(features: int, rngs: nnx.Rngs) -> nnx.BatchNorm:
  # momentum 0.9 == PyTorch's BatchNorm momentum 0.1 (the paper's setting);
  # flax's default 0.99 would make running stats lag far behind in 5-epoch
  # unlearning runs.
  return nnx.BatchNorm(features, momentum=0.9, epsilon=1e-5, rngs=rngs)


def _conv(cin: int, cout: int, k: int, stride: int, rngs: nnx.Rngs) -> nnx.Conv:
  # jaxunlearn.conv.Conv: nnx.Conv (same params and init) whose kernel gradient is
  # formed as matmuls on CPU (the setting when built, JAXUNLEARN_CONV=xla|im2col|auto|cols
  # by default; docs/design.md §3).
  pad = (k - 1) // 2
  return _conv_lib.Conv(
    cin,
    cout,
    kernel_size=(k, k),
    strides=(stride, stride),
    padding=((pad, pad), (pad, pad)),
    use_bias=False,
    kernel_init=_kaiming_fan_out,
    rngs=rngs,
  )


class BasicBlock(nnx.Module):
  """ResNet BasicBlock: two 3x3 conv-BN layers plus a (projected) shortcut."""

  def __init__(self, cin: int, cout: int, stride: int, *, rngs: nnx.Rngs):
    self.conv1 = _conv(cin, cout, 3, stride, rngs)
    self.bn1 = _batch_norm(cout, rngs)
    self.conv2 = _conv(cout, cout, 3, 1, rngs)
    self.bn2 = _batch_norm(cout, rngs)
    if stride != 1 or cin != cout:
      self.shortcut_conv = _conv(cin, cout, 1, stride, rngs)
      self.shortcut_bn = _batch_norm(cout, rngs)
    else:
      self.shortcut_conv = None
      self.shortcut_bn = None

  def __call__(self, x: jax.Array) -> jax.Array:
    y = nnx.relu(self.bn1(self.conv1(x)))
    y = self.bn2(self.conv2(y))
    if self.shortcut_conv is not None:
      x = self.shortcut_bn(self.shortcut_conv(x))
    return nnx.relu(x + y)


class ResNet18(nnx.Module):
  """ResNet-18, CIFAR variant (3x3 stride-1 stem, no max-pool).

  Stages of BasicBlocks ``stage_sizes`` (default [2, 2, 2, 2]) with widths
  ``width * (1, 2, 4, 8)`` and strides (1, 2, 2, 2), global average pool,
  dense head. ``width=64`` is the standard model (11,173,962 parameters for 10
  classes, as PyTorch's CIFAR ResNet-18); use e.g. ``width=4`` in tests.

  Behaviour of BatchNorm follows NNX modes: ``model.train()`` (the default
  after construction) uses batch statistics and updates the running ones,
  ``model.eval()`` uses the running averages. :meth:`FunctionalModel.apply`
  sets the mode for you from ``train=``.

  Note (docs/design.md §3): on CPU the weight gradient of its stride-1
  3x3 convolutions dominates (seconds per step). Its convolutions are
  :class:`jaxunlearn.nn.conv.Conv`, whose kernel gradient is formed as
  matmuls on CPU (0.86x XLA's ResNet-18 step time, benchmarks/conv_grad.py);
  still, use accelerators for ResNet-18 and MLP/StridedCNN on CPU.

  Examples:
    >>> import jax
    >>> from flax import nnx
    >>> m = nnx.eval_shape(lambda: create_model(
    ...     "resnet18", num_classes=10, input_shape=(32, 32, 3), seed=0))
    >>> fm, params, state = functional(m)  # abstract: shapes only, no compute
    >>> count_params(params)
    11173962
  """

  def __init__(
    self,
    num_classes: int = 10,
    *,
    in_channels: int = 3,
    width: int = 64,
    stage_sizes: Sequence[int] = (2, 2, 2, 2),
    rngs: nnx.Rngs,
  ):
    self.stem_conv = _conv(int(in_channels), width, 3, 1, rngs)
    self.stem_bn = _batch_norm(width, rngs)
    names = []
    cin = width
    for i, n_blocks in enumerate(stage_sizes):
      cout = width * 2**i
      for j in range(n_blocks):
        stride = 2 if (i > 0 and j == 0) else 1
        name = f"layer{i + 1}_{j}"  # PyTorch's layer{i}.{j}
        setattr(self, name, BasicBlock(cin, cout, stride, rngs=rngs))
        names.append(name)
        cin = cout
    self._block_names = tuple(names)
    self.head = nnx.Linear(cin, int(num_classes), rngs=rngs)

  def __call__(self, x: jax.Array) -> jax.Array:
    x = nnx.relu(self.stem_bn(self.stem_conv(x)))
    for name in self._block_names:
      x = getattr(self, name)(x)
    x = jnp.mean(x, axis=(1, 2))  # global average pool
    return self.head(x)


# ----------------------------------------------------------------- factory

MODELS = ("mlp", "cnn", "pooled-cnn", "resnet18")


def _check_input_shape(input_shape: Sequence[int]) -> tuple[int, int, int]:
  try:
    shape = tuple(operator.index(d) for d in input_shape)
  except TypeError:
    shape = ()
  if len(shape) != 3 or min(shape) <= 0:
    raise ValueError(f"input_shape must be (H, W, C) positive ints, got {input_shape!r}")
  return shape  # type: ignore[return-value]


def _builders() -> dict[str, tuple[Callable[..., nnx.Module], Callable[..., dict]]]:
  # name -> (constructor, fn(num_classes, input_shape) -> args create_model fills in)
  return {
    "mlp": (MLP, lambda k, s: dict(in_features=math.prod(s), num_classes=k)),
    "cnn": (StridedCNN, lambda k, s: dict(input_shape=s, num_classes=k)),
    "pooled-cnn": (PooledCNN, lambda k, s: dict(input_shape=s, num_classes=k)),
    "resnet18": (ResNet18, lambda k, s: dict(num_classes=k, in_channels=s[-1])),
  }


def create_model(
  name: str,
  *,
  num_classes: int,
  input_shape: Sequence[int],
  seed: int,
  **kwargs: Any,
) -> nnx.Module:
  """Builds a model by name; same ``seed`` gives bit-identical parameters.

  Args:
    name: one of :data:`MODELS` (``"mlp"``, ``"cnn"``, ``"pooled-cnn"``,
      ``"resnet18"``).
    num_classes: number of output logits.
    input_shape: ``(H, W, C)`` of one example (NHWC batches).
    seed: integer seed of the initialisation (``nnx.Rngs(seed)``).
    **kwargs: options of the model class, e.g. ``hidden=(512,)`` for
      ``"mlp"``, ``channels=(16, 32)`` for ``"cnn"`` and ``"pooled-cnn"``,
      ``width=8`` for ``"resnet18"``.

  An abstract model (``ShapeDtypeStruct`` leaves, no compute), e.g. for
  parameter counts or checkpoint restore templates:
  ``nnx.eval_shape(lambda: create_model(...))``.

  Raises:
    ValueError: unknown ``name`` or bad ``input_shape``.
    TypeError: an option the model does not take.

  Examples:
    >>> m = create_model("cnn", num_classes=10, input_shape=(8, 8, 1), seed=0)
    >>> type(m).__name__
    'StridedCNN'
  """
  builders = _builders()
  if name not in builders:
    raise ConfigError(f"unknown model {name!r}; valid names: {', '.join(MODELS)}")
  shape = _check_input_shape(input_shape)
  cls, fixed = builders[name]
  args = fixed(int(num_classes), shape)
  options = [
    p
    for p in inspect.signature(cls.__init__).parameters
    if p not in ("self", "rngs") and p not in args
  ]
  unknown = sorted(set(kwargs) - set(options))
  if unknown:
    raise TypeError(
      f"create_model({name!r}): unknown option(s) {', '.join(unknown)}; "
      f"valid options: {', '.join(options) or '(none)'}"
    )
  # One jitted initialisation instead of one eager compile per initializer
  # call, and with non-partitionable threefry: on CPU (JAX 0.10) compiling
  # the partitionable threefry of a ResNet-18 init took ~50 s against ~6 s.
  # Deterministic per seed, but values differ from calling the class
  # directly with nnx.Rngs(seed) under the default config. The seed is a
  # traced argument, so new seeds of one configuration reuse the compile.
  config = tuple(sorted({**args, **kwargs}.items()))
  try:
    hash(config)
  except TypeError:  # e.g. a list option: build uncached
    config = None
  # The convolution implementation its layers keep is part of the cache key: a model
  # built after the setting changed must not come from the cache with the old one.
  conv = _conv_lib.get_implementation()
  with jax.threefry_partitionable(False):
    if config is None:
      return nnx.jit(lambda s: cls(**args, **kwargs, rngs=nnx.Rngs(jax.random.key(s))))(seed)
    return _jit_init(cls, config, conv, seed)


@functools.partial(nnx.jit, static_argnums=(0, 1, 2))
def _jit_init(cls: type, config: tuple, conv: str, seed: jax.Array) -> nnx.Module:
  with _conv_lib.implementation(conv):
    return cls(**dict(config), rngs=nnx.Rngs(jax.random.key(seed)))


# -------------------------------------------------------- functional view


@dataclasses.dataclass(frozen=True)
class FunctionalModel:
  """Static half of a split NNX module; :meth:`apply` is a pure function.

  Hashable (it holds only the ``nnx.GraphDef``), so it can be closed over or
  passed as a static argument to ``jax.jit``.

  Examples:
    >>> import jax, jax.numpy as jnp
    >>> m = create_model("resnet18", num_classes=10, input_shape=(8, 8, 3), seed=0,
    ...                  width=2, stage_sizes=(1,))
    >>> fm, params, state = functional(m)
    >>> x = jnp.ones((4, 8, 8, 3))
    >>> logits, new_state = jax.jit(fm.apply, static_argnames="train")(
    ...     params, state, x, train=True)
    >>> logits.shape
    (4, 10)
    >>> _, same = jax.jit(fm.apply, static_argnames="train")(
    ...     params, state, x, train=False)
    >>> # evaluation never touches the running statistics
    >>> all(jax.tree.leaves(jax.tree.map(jnp.array_equal, same, state)))
    True
  """

  graphdef: nnx.GraphDef

  def apply(self, params: Any, state: Any, x: jax.Array, *, train: bool) -> tuple[jax.Array, Any]:
    """Returns ``(logits, new_state)``.

    ``train=True``: BatchNorm normalises with batch statistics and
    ``new_state`` carries the updated running statistics (Dropout, if a
    user module has it, is active). ``train=False``: running averages are
    used and ``state`` is returned unchanged. Keeping or discarding
    ``new_state`` is the caller's decision, so a re-evaluation forward pass
    can use ``train=True`` statistics without committing them.
    """
    model = nnx.merge(self.graphdef, params, state)
    # Static mode flags only (use_running_average / deterministic).
    if train:
      model.train()
    else:
      model.eval()
    logits = model(x)
    if not train:
      return logits, state
    return logits, nnx.to_pure_dict(nnx.state(model, nnx.Not(nnx.Param)))


def functional(model: nnx.Module) -> tuple[FunctionalModel, dict, dict]:
  """Splits ``model`` into ``(FunctionalModel, params, state)``.

  ``params``: pure nested dict of the ``nnx.Param`` arrays (what optax
  optimises). ``state``: pure nested dict of every other variable
  (BatchNorm running statistics), ``{}`` when there is none. The module is
  not modified.

  Examples:
    >>> import optax
    >>> m = create_model("mlp", num_classes=10, input_shape=(8, 8, 1), seed=0, hidden=(16,))
    >>> fm, params, state = functional(m)
    >>> sorted(params), state
    (['head', 'hidden0'], {})
    >>> opt = optax.sgd(0.1)
    >>> updates, _ = opt.update(params, opt.init(params))
    >>> new_params = optax.apply_updates(params, updates)
  """
  graphdef, params, rest = nnx.split(model, nnx.Param, ...)
  return FunctionalModel(graphdef), nnx.to_pure_dict(params), nnx.to_pure_dict(rest)


def to_module(fm: FunctionalModel, params: Any, state: Any) -> nnx.Module:
  """Rebuilds a stateful NNX module from :func:`functional`'s pieces."""
  return nnx.merge(fm.graphdef, params, state)


def count_params(params: Any) -> int:
  """Total number of scalars in a params pytree (works on ShapeDtypeStructs)."""
  return int(sum(math.prod(p.shape) for p in jax.tree.leaves(params)))
