"""Where a run starts (jaxunlearn.engine.starts): noise of the asked size, the smallest-
gradient entries redrawn, a pure function of the seed, and only the start moves — the
teacher and IGS's budget stay the original's; a batch of runs starts each where its own
run would."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxunlearn import data
from jaxunlearn.engine import training
from jaxunlearn.engine.config import TrainConfig
from jaxunlearn.engine.methods import make_config
from jaxunlearn.engine.starts import start_params
from jaxunlearn.engine.unlearning import run_batch, run_method
from jaxunlearn.errors import ConfigError


def test_noise_has_the_asked_size_per_tensor_and_is_a_function_of_the_seed():
  rng = np.random.default_rng(0)
  p = {"big": jnp.asarray(rng.normal(0, 3.0, (200, 300)), jnp.float32), "b": jnp.ones(7)}
  q = start_params(make_config("ft", start_noise=0.5, seed=3), p)
  moved = np.asarray(q["big"] - p["big"])
  assert moved.std() == pytest.approx(0.5 * float(jnp.std(p["big"])), rel=0.01)
  assert abs(moved.mean()) < 0.01
  np.testing.assert_array_equal(np.asarray(q["b"]), np.ones(7))  # std 0: nothing to scale
  again = start_params(make_config("ft", start_noise=0.5, seed=3), p)
  other = start_params(make_config("ft", start_noise=0.5, seed=4), p)
  np.testing.assert_array_equal(np.asarray(again["big"]), np.asarray(q["big"]))
  assert not np.allclose(np.asarray(other["big"]), np.asarray(q["big"]))


def test_reinit_redraws_the_share_of_smallest_gradient_entries_of_each_tensor():
  rng = np.random.default_rng(1)
  p = {"a": jnp.asarray(rng.normal(size=(10, 10)), jnp.float32), "c": jnp.ones((4, 5))}
  g = {
    "a": jnp.asarray(rng.normal(size=(10, 10)), jnp.float32),
    "c": jnp.arange(20.0).reshape(4, 5),
  }
  q = start_params(make_config("ft", start_reinit=0.25), p, g)
  changed = np.asarray(q["a"] != p["a"])
  smallest = np.abs(np.asarray(g["a"])) <= np.sort(np.abs(np.asarray(g["a"])).ravel())[24]
  np.testing.assert_array_equal(changed, smallest)  # 25 of 100, those of smallest |g|
  # the all-ones tensor (std 0) redraws its 5 smallest-|g| entries from N(0, 0): zeros
  assert (np.asarray(q["c"]).ravel()[:5] == 0).all() and (np.asarray(q["c"]).ravel()[5:] == 1).all()


@pytest.mark.parametrize("bad", [{"start_noise": -0.1}, {"start_reinit": 1.5}])
def test_bad_start_keys_are_refused(bad):
  with pytest.raises(ConfigError, match="start_noise must be ≥ 0 and start_reinit in"):
    make_config("ft", **bad).validate()


@pytest.fixture(scope="module")
def digits():
  ds = data.load_dataset("digits")
  fm, params, state = training.build_model(TrainConfig(model_kwargs={"hidden": (16,)}), ds)
  return ds, fm, params, state, data.make_forget_set(ds, "random:0.1")


def test_igs_from_a_noisy_start_holds_its_budget_against_the_original(digits):
  ds, fm, params, state, fs = digits
  cfg = make_config("igs", steps=3, start_noise=0.3)
  result = run_method(cfg, fm, params, state, ds, fs, progress=False)
  for ref, p in zip(jax.tree.leaves(result.opt_state.start_params), jax.tree.leaves(params)):
    np.testing.assert_array_equal(np.asarray(ref), np.asarray(p))
  plain = run_method(make_config("igs", steps=3), fm, params, state, ds, fs, progress=False)
  assert not np.allclose(
    np.asarray(jax.tree.leaves(result.params)[0]), np.asarray(jax.tree.leaves(plain.params)[0])
  )


def test_a_batch_of_noisy_runs_starts_each_where_its_own_run_would(digits):
  ds, fm, params, state, fs = digits
  configs = [make_config("msg", steps=2, start_noise=0.2, seed=s) for s in (0, 1, 2)]
  batched = run_batch(configs, fm, params, state, ds, fs)
  for cfg, got in zip(configs, batched):
    alone = run_method(cfg, fm, params, state, ds, fs, progress=False)
    for a, b in zip(jax.tree.leaves(got.params), jax.tree.leaves(alone.params)):
      np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-6)
  first = [np.asarray(jax.tree.leaves(r.params)[0]) for r in batched]
  assert not np.allclose(first[0], first[1])  # seeds start apart
