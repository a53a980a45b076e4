"""A new method is one file: its config, its objective and a register() call (issue 23).
The toy here is fine-tuning plus a weighted forget term; at weight 0 it must be
fine-tuning, bitwise, and every entry point must run it by name, its own key included."""

import dataclasses

import jax
import numpy as np
import pytest

import jaxunlearn
from jaxunlearn import data
from jaxunlearn.engine import methods
from jaxunlearn.engine.config import MethodConfig, traced
from jaxunlearn.engine.methods import Method, forget_objective, register, retain_objective
from jaxunlearn.engine.unlearning import program_config, run_batch, run_method
from jaxunlearn.errors import ConfigError
from jaxunlearn.nn.adapters import as_functional


@dataclasses.dataclass(frozen=True)
class ToyConfig(MethodConfig):
  forget_weight: float = traced(0.5)


def toy_loss(out, cfg):
  # L = L_r + w·L_f
  return retain_objective(out) + cfg.hparams.forget_weight * forget_objective(out, cfg)


@dataclasses.dataclass(frozen=True)
class Clash(MethodConfig):
  steps: int = 3  # a budget key


@pytest.fixture
def toy():
  entry = register(
    Method("toy", "single", lambda cfg: "random labels × w", loss=toy_loss, hparams=ToyConfig,
           tune={"learning_rate": (0.01, 0.03), "forget_weight": (0.5, 1.0)})
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
  same = jaxunlearn.unlearn(apply_fn, params, method="toy", forget_weight=0.0, **run)
  for a, b in zip(jax.tree.leaves(ft.params), jax.tree.leaves(same.params)):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
  other = jaxunlearn.unlearn(apply_fn, params, method="toy", **run)  # its default w = 0.5
  assert other.config.forget_weight == 0.5 and other.config.to_dict()["forget_weight"] == 0.5
  assert not np.array_equal(np.asarray(other.params["w"]), np.asarray(ft.params["w"]))
  assert len(toy.tuning_grid()) == 4 and {"learning_rate": 0.03, "forget_weight": 1.0} in (
    toy.tuning_grid()
  )
  with pytest.raises(ConfigError, match="did you mean 'forget_weight'"):
    jaxunlearn.unlearn(apply_fn, params, method="toy", forget_wieght=0.0, **run)


def test_the_toys_own_key_is_traced_in_a_batch(toy):
  """Two runs that differ only in the toy's traced key share one program and each equals
  its run alone."""
  x, y, params = _data()
  ds = data.from_arrays(x, y)
  fs = data.forget_set_from_rows(ds, np.arange(6))
  fm, params, state = as_functional(lambda p, x: x @ p["w"], params)
  cfgs = [methods.make_config("toy", steps=3, n_retain=8, n_forget=2, forget_weight=w)
          for w in (0.0, 1.0)]  # fmt: skip
  both = run_batch(cfgs, fm, params, state, ds, fs)
  assert both[0].batched_with == 2
  assert program_config(cfgs[0]) == program_config(cfgs[1])
  for cfg, got in zip(cfgs, both):
    want = run_method(cfg, fm, params, state, ds, fs, progress=False)
    np.testing.assert_allclose(got.params["w"], want.params["w"], rtol=1e-5, atol=1e-7)


def test_registering_a_taken_name_or_an_unknown_key_is_refused(toy):
  with pytest.raises(ConfigError, match="exists already"):
    register(Method("toy", "single", lambda cfg: "", loss=toy_loss))
  with pytest.raises(ConfigError, match="did you mean 'learning_rate'"):
    register(Method("toy2", "single", lambda cfg: "", loss=toy_loss, defaults={"learning_rat": 1}))
  with pytest.raises(ConfigError, match="did you mean 'forget_weight'"):
    register(Method("toy2", "single", lambda cfg: "", loss=toy_loss, hparams=ToyConfig,
                    tune={"forget_wieght": (1.0,)}))  # fmt: skip
  with pytest.raises(ConfigError, match="unknown toy2's request kinds key 'row'"):
    register(Method("toy2", "single", lambda cfg: "", loss=toy_loss,
                    request_defaults={"row": {"steps": 3}}))  # fmt: skip
  with pytest.raises(ConfigError, match="did you mean 'start_noise'"):
    register(Method("toy2", "single", lambda cfg: "", loss=toy_loss,
                    request_defaults={"rows": {"start_nois": 0.1}}))  # fmt: skip
  with pytest.raises(ConfigError, match="budget key"):
    register(Method("toy2", "single", lambda cfg: "", loss=toy_loss, hparams=Clash))
  with pytest.raises(ConfigError, match="needs loss="):
    register(Method("toy3", "single", lambda cfg: ""))
  assert "toy2" not in methods.METHODS and "toy3" not in methods.METHODS
