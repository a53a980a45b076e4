"""A new method is one file: its objective and a register() call (issue 23). The toy
here is fine-tuning plus a weighted forget term; at weight 0 it must be fine-tuning,
bitwise, and every entry point must run it by name."""

import jax
import numpy as np
import pytest

import jaxunlearn
from jaxunlearn.engine import methods
from jaxunlearn.engine.methods import Method, forget_objective, register, retain_objective
from jaxunlearn.errors import ConfigError


def toy_loss(out, cfg):
  # L = L_r + w·L_f, with w the config's retain_loss_weight reused as the forget weight
  return retain_objective(out) + (1.0 - cfg.retain_loss_weight) * forget_objective(out, cfg)


@pytest.fixture
def toy():
  entry = register(
    Method("toy", "single", lambda cfg: "random labels × (1 − w)", loss=toy_loss,
           defaults={"retain_loss_weight": 0.5}, tune={"learning_rate": (0.01, 0.03)})
  )  # fmt: skip
  yield entry
  del methods.METHODS["toy"]


def _data():
  rng = np.random.default_rng(0)
  x = rng.normal(size=(60, 4)).astype(np.float32)
  return x, (x[:, 0] > 0).astype(np.int32), {"w": np.zeros((4, 2), np.float32)}


def test_a_registered_method_runs_by_name_and_at_weight_0_is_fine_tuning(toy):
  x, y, params = _data()
  apply_fn = lambda p, x: x @ p["w"]
  run = dict(x=x, y=y, forget=np.arange(6), steps=4)
  ft = jaxunlearn.unlearn(apply_fn, params, method="ft", **run)
  same = jaxunlearn.unlearn(apply_fn, params, method="toy", retain_loss_weight=1.0, **run)
  for a, b in zip(jax.tree.leaves(ft.params), jax.tree.leaves(same.params)):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
  other = jaxunlearn.unlearn(apply_fn, params, method="toy", **run)  # its default w = 0.5
  assert other.config.retain_loss_weight == 0.5
  assert not np.array_equal(np.asarray(other.params["w"]), np.asarray(ft.params["w"]))
  assert toy.tuning_grid() == [{"learning_rate": 0.01}, {"learning_rate": 0.03}]


def test_registering_a_taken_name_or_an_unknown_key_is_refused(toy):
  with pytest.raises(ConfigError, match="exists already"):
    register(Method("toy", "single", lambda cfg: "", loss=toy_loss))
  with pytest.raises(ConfigError, match="did you mean 'tolerance'"):
    register(Method("toy2", "single", lambda cfg: "", loss=toy_loss, defaults={"tolerence": 1}))
  with pytest.raises(ConfigError, match="needs loss="):
    register(Method("toy3", "single", lambda cfg: ""))
  assert "toy2" not in methods.METHODS and "toy3" not in methods.METHODS
