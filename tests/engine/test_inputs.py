"""What a user hands jaxunlearn.unlearn and jaxunlearn.evaluate is checked before any
work (issue 34): non-finite inputs and params, labels past the model's head; a run that
diverges says so; what goes in comes back in its own form."""

import flax.linen as linen
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from sklearn.datasets import load_wine

import jaxunlearn
from jaxunlearn.engine.inputs import check_finite_params, check_labels_fit_head
from jaxunlearn.errors import ConfigError, DataError


def _wine():
  x, y = load_wine(return_X_y=True)
  x = ((x - x.mean(0)) / x.std(0)).astype(np.float32)
  return x, y.astype(np.int32)


X, Y = _wine()
MODULE = linen.Sequential([linen.Dense(16), linen.relu, linen.Dense(3)])
VARIABLES = MODULE.init(jax.random.key(0), X[:1])


class BatchNormNet(linen.Module):
  @linen.compact
  def __call__(self, x, train: bool = False):
    x = linen.BatchNorm(use_running_average=not train)(linen.Dense(8)(x))
    return linen.Dense(3)(linen.relu(x))


def test_check_finite_params_names_the_leaf_by_its_key_path():
  tree = {"a": jnp.ones(3), "b": [jnp.ones(2), jnp.array([1.0, jnp.inf, jnp.nan])]}
  with pytest.raises(DataError, match=r"^params\['b'\]\[1\] holds 2 non-finite values of 3"):
    check_finite_params(tree)
  check_finite_params({"ints": jnp.arange(3), "w": jnp.zeros(2)})  # integers are skipped


def test_check_labels_fit_head_names_the_array_and_the_width():
  with pytest.raises(DataError, match="val holds label 5, but the model's head has 3 outputs"):
    check_labels_fit_head(3, 3, {"y": 2, "val": 5})
  with pytest.raises(DataError, match="num_classes=4, but the model's head has 3"):
    check_labels_fit_head(3, 4, {"y": 2})


@pytest.mark.parametrize(
  "where,match",
  [
    ("x", r"train inputs hold NaN or infinity in row 3;"),
    ("x_all", r"train inputs hold NaN or infinity in row 0 \(and 177 more rows\)"),
    ("test", r"test inputs hold NaN or infinity in row 3;"),
    ("params", r"params\['params'\]\['layers_0'\]\['kernel'\] holds 1 non-finite value of 208"),
    ("label", r"y holds label 12, but the model's head has 3 outputs"),
  ],
)
def test_bad_data_is_refused_before_any_work_and_nothing_is_written(tmp_path, where, match):
  x, y, variables, test = X.copy(), Y.copy(), VARIABLES, (X[:20].copy(), Y[:20])
  if where == "x":
    x[3, 2] = np.inf
  elif where == "x_all":
    x[:, 0] = np.nan
  elif where == "test":
    test[0][3, 0] = np.nan
  elif where == "params":
    kernel = variables["params"]["layers_0"]["kernel"]
    variables = jax.tree.map(lambda a: a, variables)
    variables["params"]["layers_0"]["kernel"] = kernel.at[0, 0].set(jnp.nan)
  elif where == "label":
    y[5] = 12
  workdir = tmp_path / "run"
  with pytest.raises(DataError, match=match):
    jaxunlearn.unlearn(
      MODULE, variables, x, y, forget="class:0", steps=3, test=test, workdir=workdir
    )
  assert not workdir.exists()
  with pytest.raises(DataError, match=match):
    jaxunlearn.evaluate(MODULE, variables, x, y, forget="class:0", test=test)


def test_a_diverged_run_keeps_its_metrics_as_nan_and_says_why():
  report = jaxunlearn.unlearn(
    MODULE, VARIABLES, X, Y, forget="class:0", test=(X[::5], Y[::5]), steps=30, method="ga",
    learning_rate=1e3,
  )  # fmt: skip
  skipped = int(report.history["skipped"].sum())
  assert skipped > 0
  assert set(report.metrics) == {"UA", "RA", "TA", "MIA", "LossAUC"}
  assert all(np.isnan(v) for v in report.metrics.values())
  line = report.summary()
  assert f"{skipped} of 30 steps skipped (non-finite loss or update" in line
  assert "UA, RA, TA, MIA, LossAUC not computed: the model outputs NaN or infinity" in line
  assert line.endswith("; ".join(report.notes)) and len(report.notes) == 2


def test_a_sound_run_has_no_notes():
  report = jaxunlearn.unlearn(MODULE, VARIABLES, X, Y, forget="class:0", steps=3)
  assert report.notes == [] and ";" not in report.summary()
  assert not report.history["skipped"].any()


def test_linen_variables_come_back_as_variables_from_unlearn_and_load(tmp_path):
  report = jaxunlearn.unlearn(
    MODULE, VARIABLES, X, Y, forget="class:0", steps=3, workdir=tmp_path / "w"
  )
  assert jax.tree.structure(report.params) == jax.tree.structure(VARIABLES)
  np.testing.assert_allclose(MODULE.apply(report.params, X), report.predict(X), rtol=1e-6)
  loaded = jaxunlearn.load(tmp_path / "w", like=VARIABLES)
  assert jax.tree.structure(loaded.params) == jax.tree.structure(VARIABLES)
  for a, b in zip(jax.tree.leaves(loaded.params), jax.tree.leaves(report.params)):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
  assert list(jaxunlearn.load(tmp_path / "w").params) == ["params"]  # without like= too
  # the state readers take what load returns (the method's state classes, rebuilt)
  state = jaxunlearn.load(tmp_path / "w", optimizer_state=True).opt_state
  assert float(jaxunlearn.multiplier(state)) == float(report.history["multiplier"][-1])
  w_r, w_f = jaxunlearn.loss_weights(state)
  lam = float(report.history["multiplier"][-1])
  assert (float(w_r), float(w_f)) == pytest.approx((lam / (1 + lam), 1 / (1 + lam)))
  # a request after the saved one starts from it, and keeps the form
  second = jaxunlearn.unlearn(MODULE, None, X, Y, forget=[100], steps=2, previous=tmp_path / "w")
  assert jax.tree.structure(second.params) == jax.tree.structure(VARIABLES)


def test_the_users_own_optimiser_state_is_read_by_multiplier_after_load(tmp_path):
  tx = optax.adam(1e-3)  # the inner optimiser, under the method's transformation
  report = jaxunlearn.unlearn(
    MODULE, VARIABLES, X, Y, forget="class:0", steps=3, optimizer=tx, workdir=tmp_path / "w"
  )
  state = jaxunlearn.load(tmp_path / "w", optimizer_state=True).opt_state
  assert float(jaxunlearn.multiplier(state)) == pytest.approx(
    float(jaxunlearn.multiplier(report.opt_state))
  )


def test_linen_batch_norm_variables_round_trip_with_their_statistics():
  module = BatchNormNet()
  variables = module.init(jax.random.key(0), X[:2])
  report = jaxunlearn.unlearn(module, variables, X, Y, forget="class:0", steps=3)
  assert set(report.params) == {"params", "batch_stats"}
  mean = report.params["batch_stats"]["BatchNorm_0"]["mean"]
  assert not np.allclose(mean, variables["batch_stats"]["BatchNorm_0"]["mean"])  # trained
  np.testing.assert_allclose(module.apply(report.params, X), report.predict(X), rtol=1e-5)


def test_previous_with_params_is_refused_instead_of_ignored():
  first = jaxunlearn.unlearn(MODULE, VARIABLES, X, Y, forget="class:0", steps=2)
  with pytest.raises(ConfigError, match="params= would be ignored: pass params=None"):
    jaxunlearn.unlearn(MODULE, VARIABLES, X, Y, forget=[100], steps=2, previous=first)


@pytest.mark.parametrize("optimizer", ["adam", optax.adam])
def test_an_optimizer_that_is_not_an_optax_one_is_refused_with_an_example(optimizer):
  with pytest.raises(ConfigError, match=r"optimizer= takes an optax optimiser, e\.g\. optax"):
    jaxunlearn.unlearn(MODULE, VARIABLES, X, Y, forget="class:0", steps=2, optimizer=optimizer)
