"""benchmarks.vs_pytorch: the PyTorch twins compute what the JAX steps compute.

torch is an optional extra; without it these tests skip (CI installs only '.[test]')."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import jax.numpy as jnp  # noqa: E402

from benchmarks import step_cost, vs_pytorch  # noqa: E402


@pytest.mark.parametrize("name", ["mlp", "cnn"])
def test_twin_models_give_the_same_logits(name):
  fm, params, ms, _ = step_cost.build_model(name, (32, 32, 3), 10, 0, 8)
  x = np.random.default_rng(0).normal(size=(4, 32, 32, 3)).astype(np.float32)
  want = np.asarray(fm.apply(params, ms, jnp.asarray(x), train=False)[0])
  got = vs_pytorch.torch_model(name, params)(torch.tensor(x.transpose(0, 3, 1, 2).copy()))
  np.testing.assert_allclose(got.detach().numpy(), want, atol=1e-5)


@pytest.mark.parametrize("method", vs_pytorch.METHODS)
def test_one_step_moves_both_twins_alike(method):
  fm, params, ms, _ = step_cost.build_model("mlp", (8, 8, 1), 10, 0, 8)
  batch = step_cost.make_batch(0, "shared", 32, 32, (8, 8, 1), 10)
  tx, step = step_cost.make_step(method, step_cost.Losses(fm, "shared"))
  new_params = step(params, ms, tx.init(params), batch)[0]
  model = vs_pytorch.torch_model("mlp", params)
  vs_pytorch.torch_step(method, model, "shared", batch)()
  got = model[-1].weight.detach().numpy().T  # the head's kernel
  np.testing.assert_allclose(got, np.asarray(new_params["head"]["kernel"]), atol=2e-5)
