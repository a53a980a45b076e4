"""Tests for jaxunlearn.models.

Shape checks run abstractly (nnx.eval_shape / jax.eval_shape: tracing only, no
XLA compile) so every model x input size stays cheap on 2 CPU cores; numeric
checks use small models (ResNet with width 2 and short stages).
"""

import flax.linen as linen
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from jaxunlearn.nn import models
from jaxunlearn.nn.models import (
  MODELS,
  FunctionalModel,
  count_params,
  create_model,
  functional,
  to_module,
)

INPUT_SHAPES = [(8, 8, 1), (28, 28, 1), (32, 32, 3)]
SMALL = {
  "mlp": dict(hidden=(16,)),
  "cnn": dict(channels=(4, 8), hidden=16),
  "pooled-cnn": dict(channels=(4, 8), hidden=16),
  "resnet18": dict(width=2, stage_sizes=(1, 1)),
}


def _tree_equal(a, b):
  return jax.tree.structure(a) == jax.tree.structure(b) and all(
    jax.tree.leaves(jax.tree.map(lambda x, y: np.array_equal(x, y), a, b))
  )


@pytest.fixture(scope="module")
def small_resnet():
  model = create_model(
    "resnet18", num_classes=10, input_shape=(8, 8, 3), seed=0, **SMALL["resnet18"]
  )
  return functional(model)


@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("input_shape", INPUT_SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_output_shapes(name, input_shape):
  # Full-size models, abstractly: exercises the real layer arithmetic for free.
  model = nnx.eval_shape(lambda: create_model(name, num_classes=7, input_shape=input_shape, seed=0))
  fm, params, state = functional(model)
  x = jax.ShapeDtypeStruct((5, *input_shape), jnp.float32)
  for train in (True, False):
    logits, new_state = jax.eval_shape(
      lambda p, s, x: fm.apply(p, s, x, train=train), params, state, x
    )
    assert logits.shape == (5, 7) and logits.dtype == jnp.float32
    assert jax.tree.structure(new_state) == jax.tree.structure(state)


def test_params_are_pure_string_keyed_dicts(small_resnet):
  fm, params, state = small_resnet
  assert isinstance(fm, FunctionalModel) and hash(fm) == hash(fm)
  for tree in (params, state):
    assert type(tree) is dict
    for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
      assert isinstance(leaf, jax.Array)
      assert all(isinstance(k, jax.tree_util.DictKey) and isinstance(k.key, str) for k in path)
  assert set(state["stem_bn"]) == {"mean", "var"}
  assert "stem_bn" in params and "kernel" in params["stem_conv"]


def test_mlp_and_cnns_have_empty_state():
  for name in ("mlp", "cnn", "pooled-cnn"):
    _, _, state = functional(
      nnx.eval_shape(lambda: create_model(name, num_classes=10, input_shape=(8, 8, 1), seed=0))
    )
    assert state == {}


def test_batchnorm_stats_only_change_in_train_mode(small_resnet):
  fm, params, state = small_resnet
  apply = jax.jit(fm.apply, static_argnames="train")
  x = jax.random.normal(jax.random.key(0), (16, 8, 8, 3)) * 3.0 + 1.0
  before = jax.tree.map(np.asarray, state)

  logits_eval, state_eval = apply(params, state, x, train=False)
  assert _tree_equal(state_eval, state)

  logits_train, state_train = apply(params, state, x, train=True)
  assert jax.tree.structure(state_train) == jax.tree.structure(state)
  flat_old = jax.tree_util.tree_flatten_with_path(state)[0]
  flat_new = jax.tree.leaves(state_train)
  assert len(flat_old) == 2 * 6  # stem + 2 blocks x 2 BNs + 1 projection shortcut
  for (path, old), new in zip(flat_old, flat_new):
    assert not np.allclose(new, old), jax.tree_util.keystr(path)
  # Batch statistics vs running averages give different outputs.
  assert not np.allclose(logits_train, logits_eval)
  # Running mean moves with momentum 0.9: new = 0.9*old + 0.1*batch_mean.
  stem_out = jax.lax.conv_general_dilated(
    x,
    params["stem_conv"]["kernel"],
    (1, 1),
    ((1, 1), (1, 1)),
    dimension_numbers=("NHWC", "HWIO", "NHWC"),
  )
  np.testing.assert_allclose(
    state_train["stem_bn"]["mean"], 0.1 * stem_out.mean(axis=(0, 1, 2)), rtol=1e-4, atol=1e-6
  )
  # Pure: the inputs were not mutated.
  assert _tree_equal(state, before)
  # Eval with the new stats differs from eval with the old ones.
  logits_eval2, _ = apply(params, state_train, x, train=False)
  assert not np.allclose(logits_eval2, logits_eval)


def test_jit_grad_and_optax_step(small_resnet):
  fm, params, state = small_resnet
  x = jax.random.normal(jax.random.key(1), (8, 8, 8, 3))
  y = jnp.arange(8) % 10
  opt = optax.sgd(0.1, momentum=0.9)
  opt_state = opt.init(params)

  @jax.jit
  def step(params, state, opt_state):
    def loss_fn(p):
      logits, new_state = fm.apply(p, state, x, train=True)
      return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean(), new_state

    (loss, new_state), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
    updates, opt_state = opt.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), new_state, opt_state, loss

  losses = []
  for _ in range(5):
    params, state, opt_state, loss = step(params, state, opt_state)
    losses.append(float(loss))
  assert jax.tree.structure(params) == jax.tree.structure(small_resnet[1])
  assert losses[-1] < losses[0]


def test_to_module_roundtrip():
  model = create_model("cnn", num_classes=4, input_shape=(8, 8, 1), seed=3, **SMALL["cnn"])
  fm, params, state = functional(model)
  params2 = jax.tree.map(lambda p: p + 1.0, params)
  rebuilt = to_module(fm, params2, state)
  assert isinstance(rebuilt, models.StridedCNN)
  _, p3, s3 = functional(rebuilt)
  assert _tree_equal(p3, params2) and _tree_equal(s3, state)
  # functional() did not touch the original module.
  _, p0, _ = functional(model)
  assert _tree_equal(p0, params)


def test_deterministic_init():
  def params_of(name, seed):
    return functional(
      create_model(name, num_classes=10, input_shape=(8, 8, 1), seed=seed, **SMALL[name])
    )[1]

  for name in ("mlp", "cnn", "pooled-cnn"):
    a, b, c = params_of(name, 0), params_of(name, 0), params_of(name, 1)
    assert _tree_equal(a, b)
    assert not any(
      jax.tree.leaves(jax.tree.map(lambda u, v: u.ndim > 1 and np.array_equal(u, v), a, c))
    )
    assert all(bool(jnp.all(jnp.isfinite(p))) for p in jax.tree.leaves(c))


def test_resnet18_cifar_param_count():
  model = nnx.eval_shape(
    lambda: create_model("resnet18", num_classes=10, input_shape=(32, 32, 3), seed=0)
  )
  _, params, state = functional(model)
  assert count_params(params) == 11_173_962  # PyTorch CIFAR ResNet-18, 10 classes
  # BatchNorms: stem + 8 blocks x 2 + 3 projection shortcuts, each (mean, var).
  assert len(jax.tree.leaves(state)) == 2 * (1 + 16 + 3)
  # width scales every stage
  small = nnx.eval_shape(
    lambda: create_model("resnet18", num_classes=10, input_shape=(32, 32, 3), seed=0, width=32)
  )
  assert count_params(functional(small)[1]) < 11_173_962 / 3.5


@pytest.mark.parametrize(
  "input_shape, channels, hidden",
  [((32, 32, 3), (32, 64), 128), ((28, 28, 1), (32, 64), 128), ((9, 7, 2), (3, 5), None)],
)
def test_pooled_cnn_param_count(input_shape, channels, hidden):
  h, w, c = input_shape
  want = 0
  for cout in channels:  # 3x3 kernel + bias, then a 2x2 pool (floor)
    want += 9 * c * cout + cout
    h, w, c = h // 2, w // 2, cout
  flat = h * w * c
  want += flat * hidden + hidden + hidden * 10 + 10 if hidden else flat * 10 + 10
  model = nnx.eval_shape(
    lambda: create_model(
      "pooled-cnn", num_classes=10, input_shape=input_shape, seed=0, channels=channels,
      hidden=hidden,
    )
  )  # fmt: skip
  assert count_params(functional(model)[1]) == want
  if input_shape == (32, 32, 3):
    assert want == 545_098  # 896 + 18,496 + 4096*128+128 + 1,290


def test_pooled_cnn_forward_is_conv_relu_pool():
  # Stride-1 SAME conv + ReLU + floor 2x2 max-pool (odd sizes drop the last row/column).
  fm, params, state = functional(
    create_model("pooled-cnn", num_classes=3, input_shape=(7, 6, 2), seed=0, channels=(4,),
                 hidden=None)
  )  # fmt: skip
  assert isinstance(to_module(fm, params, state), models.PooledCNN)
  x = jax.random.normal(jax.random.key(0), (2, 7, 6, 2))
  y = jax.lax.conv_general_dilated(
    x, params["conv0"]["kernel"], (1, 1), ((1, 1), (1, 1)),
    dimension_numbers=("NHWC", "HWIO", "NHWC"),
  ) + params["conv0"]["bias"]  # fmt: skip
  y = jnp.maximum(y, 0.0)[:, :6, :6].reshape(2, 3, 2, 3, 2, 4).max(axis=(2, 4))
  want = y.reshape(2, -1) @ params["head"]["kernel"] + params["head"]["bias"]
  got, _ = fm.apply(params, state, x, train=True)
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_create_model_errors():
  with pytest.raises(ValueError, match="valid names: mlp, cnn, pooled-cnn, resnet18"):
    create_model("vgg", num_classes=10, input_shape=(8, 8, 1), seed=0)
  with pytest.raises(TypeError, match="widht.*valid options: width, stage_sizes"):
    create_model("resnet18", num_classes=10, input_shape=(8, 8, 1), seed=0, widht=4)
  with pytest.raises(TypeError, match="width.*valid options: channels, hidden"):
    create_model("pooled-cnn", num_classes=10, input_shape=(8, 8, 1), seed=0, width=4)
  with pytest.raises(ValueError, match="too small"):
    create_model("pooled-cnn", num_classes=10, input_shape=(2, 2, 1), seed=0)
  with pytest.raises(TypeError, match="valid options: hidden"):
    create_model("mlp", num_classes=10, input_shape=(8, 8, 1), seed=0, channels=(2,))
  with pytest.raises(ValueError, match="input_shape"):
    create_model("mlp", num_classes=10, input_shape=(64,), seed=0)


def test_linen_params_go_through_optax():
  # Transformations must not need FunctionalModel: a linen params pytree works.
  class TinyMLP(linen.Module):
    @linen.compact
    def __call__(self, x):
      x = x.reshape((x.shape[0], -1))
      return linen.Dense(3)(linen.relu(linen.Dense(8)(x)))

  net = TinyMLP()
  x = jnp.ones((4, 8, 8, 1))
  params = jax.jit(net.init)(jax.random.key(0), x)["params"]
  loss = jax.jit(lambda p: net.apply({"params": p}, x).sum())
  opt = optax.sgd(0.5)
  opt_state = opt.init(params)
  updates, opt_state = opt.update(jax.grad(loss)(params), opt_state, params)
  new_params = optax.apply_updates(params, updates)
  assert jax.tree.structure(new_params) == jax.tree.structure(params)
  assert float(loss(new_params)) < float(loss(params))
