"""Any model as the engine's functional view (jaxunlearn.nn.adapters)."""

import flax.linen as linen
import jax
import jax.numpy as jnp
import numpy as np

from jaxunlearn.engine import unlearning
from jaxunlearn.engine.methods import make_config
from jaxunlearn.nn.adapters import as_functional


def test_the_same_model_gives_the_same_adapter_and_reuses_the_compiled_step():
  module = linen.Sequential([linen.Dense(4), linen.relu, linen.Dense(2)])  # unhashable
  variables = module.init(jax.random.key(0), jnp.ones((1, 3)))
  a, b = as_functional(module, variables)[0], as_functional(module, variables)[0]
  assert a == b and hash(a) == hash(b)
  other = linen.Sequential([linen.Dense(4), linen.relu, linen.Dense(2)])
  assert as_functional(other, variables)[0] != a  # equal fields, another model
  fn = lambda p, x: x @ p
  assert as_functional(fn, jnp.ones((3, 2)))[0] == as_functional(fn, jnp.zeros((3, 2)))[0]
  cfg = make_config("ft")
  assert unlearning._cached_step(a, cfg) is unlearning._cached_step(b, cfg)


def test_linen_train_mode_returns_updated_batch_statistics():
  class Net(linen.Module):
    @linen.compact
    def __call__(self, x, train: bool = False):
      return linen.BatchNorm(use_running_average=not train)(linen.Dense(2)(x))

  net = Net()
  variables = net.init(jax.random.key(0), jnp.ones((4, 3)))
  fm, params, state = as_functional(net, variables)
  x = np.random.default_rng(0).normal(size=(8, 3)).astype(np.float32)
  _, new_state = fm.apply(params, state, x, train=True)
  want = net.apply(variables, x, train=True, mutable=["batch_stats"])[1]
  np.testing.assert_allclose(new_state["batch_stats"]["BatchNorm_0"]["mean"],
                             want["batch_stats"]["BatchNorm_0"]["mean"])  # fmt: skip
  logits, same = fm.apply(params, state, x, train=False)
  assert same is state
  np.testing.assert_allclose(logits, net.apply(variables, x), rtol=1e-6)
