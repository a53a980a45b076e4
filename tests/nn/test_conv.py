"""Tests for jaxunlearn.conv: the im2col kernel-gradient convolution is exact.

Every gradient is checked against ``jax.grad`` of the plain
``lax.conv_general_dilated``; models built with it are checked against the same
models run with XLA's convolution (same parameters).
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from jaxunlearn.nn import conv
from jaxunlearn.nn.models import create_model, functional

DN = ("NHWC", "HWIO", "NHWC")

# (N, H, W, Cin, Cout, k, stride, padding)
SHAPES = [
  (4, 8, 8, 1, 4, 3, 1, ((1, 1), (1, 1))),
  (4, 8, 8, 3, 16, 3, 2, ((1, 1), (1, 1))),
  (2, 9, 7, 16, 16, 3, 1, ((1, 1), (1, 1))),
  (2, 6, 6, 64, 64, 3, 1, ((1, 1), (1, 1))),
  (2, 8, 8, 64, 16, 1, 2, ((0, 0), (0, 0))),  # ResNet projection shortcut
  (2, 8, 8, 3, 4, 3, 2, "SAME"),
  (2, 7, 8, 3, 5, 3, 2, ((0, 2), (1, 0))),  # asymmetric padding
]


def _plain(x, w, s, pad):
  return jax.lax.conv_general_dilated(x, w, (s, s), pad, dimension_numbers=DN)


def _data(shape, seed=0):
  # numpy RNG: no eager XLA compiles for the test data
  n, h, w, cin, cout, k, s, pad = shape
  rng = np.random.default_rng(seed)
  x = rng.standard_normal((n, h, w, cin), dtype=np.float32)
  wt = rng.standard_normal((k, k, cin, cout), dtype=np.float32)
  out = jax.eval_shape(lambda x, w: _plain(x, w, s, pad), x, wt).shape
  return jnp.asarray(x), jnp.asarray(wt), jnp.asarray(rng.standard_normal(out, dtype=np.float32))


def _assert_close(got, want, rtol=1e-4):
  # Relative to the largest entry: sums of many products carry float32 rounding.
  for g, w in zip(jax.tree.leaves(got), jax.tree.leaves(want)):
    assert g.shape == w.shape and g.dtype == w.dtype
    scale = float(jnp.max(jnp.abs(w))) or 1.0
    np.testing.assert_allclose(np.asarray(g), np.asarray(w), rtol=0, atol=rtol * scale)


def check(f, x, w, ct):
  """``f(x, w)``, the gradient of ``⟨f(x, w), ct⟩`` in both arguments, and a jvp."""
  loss = lambda x, w: jnp.sum(f(x, w) * ct)
  return f(x, w), jax.grad(loss, (0, 1))(x, w), jax.jvp(f, (x, w), (x, w))[1]


def test_value_grad_and_jvp_match_plain_conv():
  # Every shape in one jit: one XLA compile instead of one per shape.
  data = [_data(shape, seed) for seed, shape in enumerate(SHAPES)]

  @jax.jit
  def run(data):
    out = []
    for shape, (x, w, ct) in zip(SHAPES, data):
      s, pad = shape[6], shape[7]
      out.append(
        {
          "plain": check(lambda x, w: _plain(x, w, s, pad), x, w, ct),
          **{
            kg: check(lambda x, w, kg=kg: conv.conv2d(x, w, (s, s), pad, kernel_grad=kg), x, w, ct)
            for kg in ("taps", "matmul")
          },
        }
      )
    return out

  for shape, res in zip(SHAPES, run(data)):
    want = res["plain"]
    for kg in ("taps", "matmul"):
      got = res[kg]
      np.testing.assert_array_equal(got[0], want[0], err_msg=f"{shape} {kg}")
      _assert_close(got[1], want[1])
      _assert_close(got[2], want[2])


def test_only_kernel_or_only_input_tangent():
  x, w, ct = _data(SHAPES[1])
  loss = lambda f: lambda x, w: jnp.sum(f(x, w) * ct)
  plain = loss(lambda x, w: _plain(x, w, 2, ((1, 1), (1, 1))))
  ours = loss(lambda x, w: conv.conv2d(x, w, (2, 2), ((1, 1), (1, 1))))
  for argnum in (0, 1):
    _assert_close(jax.grad(ours, argnum)(x, w), jax.grad(plain, argnum)(x, w))
  # Second order (Hessian-vector product in w) goes through ordinary primitives.
  hvp = lambda f: jax.jvp(jax.grad(lambda w: f(x, w) ** 2), (w,), (w,))[1]
  _assert_close(jax.jit(lambda: hvp(ours))(), jax.jit(lambda: hvp(plain))())


def test_kernel_gradient_is_a_matmul_not_a_conv():
  x, w, ct = _data(SHAPES[2])
  pad = ((1, 1), (1, 1))
  jaxpr = jax.make_jaxpr(jax.grad(lambda w: jnp.sum(conv.conv2d(x, w, (1, 1), pad) * ct)))(w)
  text = str(jaxpr)
  # x is not differentiated: the only conv left is the forward one.
  assert text.count("conv_general_dilated") == 1 and "dot_general" in text


def test_drop_in_dispatch_and_fallback():
  x, w, _ = _data(SHAPES[0])
  pad = ((1, 1), (1, 1))
  with conv.implementation("im2col"):
    assert conv.resolve() == "im2col"
    jaxpr = str(
      jax.make_jaxpr(
        lambda x, w: conv.conv_general_dilated(x, w, (1, 1), pad, dimension_numbers=DN)
      )(x, w)
    )
    assert "custom_jvp_call" in jaxpr
    # Unsupported configurations go to lax unchanged.
    dil = str(
      jax.make_jaxpr(
        lambda x, w: conv.conv_general_dilated(
          x, w, (1, 1), pad, rhs_dilation=(2, 2), dimension_numbers=DN
        )
      )(x, w)
    )
    nchw = str(
      jax.make_jaxpr(
        lambda x, w: conv.conv_general_dilated(
          x, w, (1, 1), pad, dimension_numbers=("NCHW", "OIHW", "NCHW")
        )
      )(x.transpose(0, 3, 1, 2), w.transpose(3, 2, 0, 1))
    )
    assert "custom_jvp_call" not in dil and "custom_jvp_call" not in nchw
  with conv.implementation("xla"):
    jaxpr = str(
      jax.make_jaxpr(
        lambda x, w: conv.conv_general_dilated(x, w, (1, 1), pad, dimension_numbers=DN)
      )(x, w)
    )
    assert "custom_jvp_call" not in jaxpr
  with conv.implementation("auto"):
    assert conv.resolve() == ("im2col" if jax.default_backend() == "cpu" else "xla")
  with pytest.raises(ValueError, match="implementation"):
    conv.set_implementation("cudnn")
  with pytest.raises(ValueError, match="kernel_grad"):
    conv.conv2d(x, w, (1, 1), pad, kernel_grad="fft")


def test_conv_module_has_nnx_conv_params_and_init():
  kw = dict(kernel_size=(3, 3), strides=(2, 2), padding=((1, 1), (1, 1)))
  a = conv.Conv(3, 8, **kw, rngs=nnx.Rngs(0))
  b = nnx.Conv(3, 8, **kw, rngs=nnx.Rngs(0))
  assert isinstance(a, nnx.Conv)
  pa, pb = nnx.to_pure_dict(nnx.state(a)), nnx.to_pure_dict(nnx.state(b))
  assert sorted(pa) == sorted(pb) == ["bias", "kernel"]
  for k in pa:
    np.testing.assert_array_equal(pa[k], pb[k])
  x = jnp.asarray(np.random.default_rng(0).standard_normal((2, 8, 8, 3), dtype=np.float32))
  np.testing.assert_array_equal(a(x), b(x))


SMALL = {
  "cnn": ((8, 8, 1), dict(channels=(4, 8), hidden=16)),
  "resnet18": ((8, 8, 3), dict(width=2, stage_sizes=(1, 1))),
}


@pytest.mark.parametrize("name", sorted(SMALL))
def test_models_same_outputs_and_gradients_with_either_conv(name):
  shape, kwargs = SMALL[name]
  x = jnp.asarray(np.random.default_rng(1).standard_normal((8, *shape), dtype=np.float32))
  y = jnp.arange(8) % 10

  def run(fm, params, state):
    def loss(p):
      logits, new_state = fm.apply(p, state, x, train=True)
      return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean(), (logits, new_state)

    (l, (logits, new_state)), g = jax.value_and_grad(loss, has_aux=True)(params)
    # forward mode through the model (the "jvp" signal of implicit surgery)
    tangent = jax.jvp(lambda p: loss(p)[0], (params,), (g,))[1]
    return l, logits, new_state, g, tangent

  out, n_convs = {}, {}
  for impl in ("xla", "im2col"):
    with conv.implementation(impl):  # kept by the layers when built: same seed, same params
      model = functional(create_model(name, num_classes=10, input_shape=shape, seed=0, **kwargs))
    fm, params, state = model
    traced = lambda p, s, fm=fm: run(fm, p, s)
    out[impl] = jax.jit(traced)(params, state)
    # convs: XLA's grad has forward + input + kernel convs, ours no kernel convs
    n_convs[impl] = str(jax.make_jaxpr(traced)(params, state)).count("conv_general_dilated")
  assert n_convs["im2col"] < n_convs["xla"]
  xla, ours = out["xla"], out["im2col"]
  np.testing.assert_array_equal(ours[1], xla[1])  # logits: same forward convs
  _assert_close(ours[0], xla[0])
  _assert_close(ours[2], xla[2])
  _assert_close(ours[3], xla[3])  # every parameter's gradient, leaf by leaf
  _assert_close(ours[4], xla[4])
  assert jax.tree.structure(ours[3]) == jax.tree.structure(params)


def test_cols_value_and_gradients_match_plain_conv():
  """The whole convolution as one matmul over the patches (JAX differentiates it): value,
  both gradients and the jvp equal the plain convolution's, with no convolution op left."""
  data = [_data(shape, seed) for seed, shape in enumerate(SHAPES)]

  def every(f):
    return [check(f(shape[6], shape[7]), *xs) for shape, xs in zip(SHAPES, data)]

  dispatched = lambda s, pad: (
    lambda x, w: conv.conv_general_dilated(x, w, (s, s), pad, dimension_numbers=DN)
  )
  with conv.implementation("cols"):
    assert conv.resolve() == "cols"
    got = jax.jit(lambda: every(dispatched))()
    text = str(jax.make_jaxpr(lambda: every(dispatched))())
  want = jax.jit(lambda: every(lambda s, pad: lambda x, w: _plain(x, w, s, pad)))()
  _assert_close(got, want)
  assert "conv_general_dilated" not in text and "dot_general" in text


def test_models_with_cols_match_xla():
  for name, (shape, kwargs) in SMALL.items():
    fm, params, state = functional(
      create_model(name, num_classes=10, input_shape=shape, seed=0, **kwargs)
    )
    x = jnp.asarray(np.random.default_rng(1).standard_normal((8, *shape), dtype=np.float32))
    loss = lambda p, fm=fm, state=state, x=x: jnp.sum(fm.apply(p, state, x, train=True)[0] ** 2)
    out = {}
    for impl in ("xla", "cols"):
      with conv.implementation(impl):
        out[impl] = jax.jit(jax.value_and_grad(loss))(params)
    _assert_close(out["cols"], out["xla"])


def test_a_layer_keeps_the_implementation_it_was_built_with():
  """The implementation is a static attribute of a built layer (of its graph, so of every
  compiled step's cache key); a later setting changes only layers built after it."""
  from flax import nnx

  from jaxunlearn.nn.models import create_model

  x = jnp.ones((2, 8, 8, 3))
  built = {}
  for how in ("xla", "im2col"):
    with conv.implementation(how):
      built[how] = conv.Conv(3, 4, (3, 3), rngs=nnx.Rngs(0))
  assert nnx.graphdef(built["xla"]) != nnx.graphdef(built["im2col"])
  with conv.implementation("xla"):  # built alike: one graph, compiled steps shared
    assert nnx.graphdef(conv.Conv(3, 4, (3, 3), rngs=nnx.Rngs(1))) == nnx.graphdef(built["xla"])

  def convs_in_kernel_gradient(layer) -> int:
    graphdef, state = nnx.split(layer)

    def loss(state):
      return jnp.sum(nnx.merge(graphdef, state)(x) ** 2)

    return str(jax.make_jaxpr(jax.grad(loss))(state)).count("conv_general_dilated")

  # traced under the other setting, each layer still computes its own kernel gradient:
  # XLA's is a convolution (2 with the forward), im2col's is matmuls (the forward only)
  with conv.implementation("im2col"):
    assert convs_in_kernel_gradient(built["xla"]) == 2
  with conv.implementation("xla"):
    assert convs_in_kernel_gradient(built["im2col"]) == 1
  # create_model's cached initialisation is keyed on the setting too
  graphs = {}
  for how in ("xla", "im2col"):
    with conv.implementation(how):
      m = create_model("cnn", num_classes=3, input_shape=(8, 8, 1), seed=0, channels=(4,))
      graphs[how] = nnx.graphdef(m)
  assert graphs["xla"] != graphs["im2col"]
