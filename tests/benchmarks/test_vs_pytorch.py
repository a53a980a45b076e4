"""benchmarks.vs_pytorch: the PyTorch twins compute what the JAX steps compute.

torch is the optional extra vs-pytorch; without it these tests skip, except under CI=true
(.ci/run installs '.[test,vs-pytorch]'), where they fail."""

import jax
import numpy as np
import pytest
from conftest import import_or_skip

torch = import_or_skip("torch", "pip install -e '.[vs-pytorch]'")

import jax.numpy as jnp  # noqa: E402
from flax import nnx  # noqa: E402

from benchmarks import step_cost, twin_steps, vs_pytorch  # noqa: E402
from jaxunlearn.nn import models  # noqa: E402

SHAPE = (16, 16, 3)
WIDTH = 4  # ResNet-18 base width in these tests


def _build(name, shape=SHAPE):
  return step_cost.build_model(name, shape, 10, 0, WIDTH)


def _nchw(x):
  return torch.tensor(np.asarray(x).transpose(0, 3, 1, 2).copy())


def test_batch_norm_settings_match_the_jax_models():
  bn = models._batch_norm(4, nnx.Rngs(0))
  assert bn.epsilon == vs_pytorch.BN_EPS
  assert 1.0 - bn.momentum == pytest.approx(vs_pytorch.BN_MOMENTUM)


@pytest.mark.parametrize("name", vs_pytorch.MODELS)
def test_twin_models_give_the_same_logits(name):
  fm, params, ms, _ = _build(name)
  rng = np.random.default_rng(0)
  if ms:  # ResNet-18: running statistics that are not the init's 0 / 1, to see them copied
    ms = jax.tree_util.tree_map_with_path(
      lambda path, a: jnp.asarray(
        rng.uniform(0.5, 2.0, a.shape) if path[-1].key == "var" else rng.normal(size=a.shape),
        a.dtype,
      ),
      ms,
    )
  x = rng.normal(size=(4, *SHAPE)).astype(np.float32)
  model = vs_pytorch.torch_model(name, params, ms)
  assert model.training  # the benchmark's mode: as the JAX steps' train=True
  for train in (False, True) if ms else (False,):
    want = np.asarray(fm.apply(params, ms, jnp.asarray(x), train=train)[0])
    model.train(train)
    with torch.no_grad():
      got = model(_nchw(x)).numpy()
    np.testing.assert_allclose(got, want, atol=1e-4, rtol=1e-4, err_msg=f"train={train}")
  # every weight made the round trip
  back = vs_pytorch.jax_params(model)
  assert jax.tree.structure(back) == jax.tree.structure(params)
  jax.tree.map(np.testing.assert_array_equal, back, jax.tree.map(np.asarray, params))


@pytest.mark.parametrize("name", ["mlp", "pooled-cnn", "resnet18"])
@pytest.mark.parametrize("method", vs_pytorch.METHODS)
def test_one_step_moves_both_twins_alike(name, method):
  shape = (8, 8, 1) if name == "mlp" else (8, 8, 3)
  fm, params, ms, _ = _build(name, shape)
  batch = twin_steps.make_batch(0, "shared", 32, 32, shape, 10)
  tx, step = twin_steps.make_step(method, twin_steps.Losses(fm, "shared"))
  new_params = step(params, ms, tx.init(params), batch)[0]
  model = vs_pytorch.torch_model(name, params, ms)
  vs_pytorch.torch_step(method, model, "shared", batch)()
  got = model[-1].weight.detach().numpy().T  # the head's kernel
  np.testing.assert_allclose(got, np.asarray(new_params["head"]["kernel"]), atol=2e-5)
  # every parameter moved alike, not only the head
  moved = jax.tree.map(lambda a, b: np.abs(np.asarray(a) - np.asarray(b)).max(), new_params, params)
  assert max(jax.tree.leaves(moved)) > 1e-5
  jax.tree.map(
    lambda a, b: np.testing.assert_allclose(a, np.asarray(b), atol=2e-5),
    vs_pytorch.jax_params(model),
    new_params,
  )
