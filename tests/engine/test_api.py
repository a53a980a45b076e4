"""jaxunlearn.unlearn on a user's own model and data (issue 11)."""

import flax.linen as linen
import jax
import numpy as np
import optax
import pytest
from flax import nnx
from sklearn.datasets import load_breast_cancer

import jaxunlearn
from jaxunlearn import objectives
from jaxunlearn.errors import ConfigError, DataError, ForgetSpecError


def _tabular():
  x, y = load_breast_cancer(return_X_y=True)
  x = ((x - x.mean(0)) / x.std(0)).astype(np.float32)
  return x[:400], y[:400], x[400:], y[400:]


X, Y, X_TEST, Y_TEST = _tabular()


class LinenMLP(linen.Module):
  @linen.compact
  def __call__(self, x):
    return linen.Dense(2)(linen.relu(linen.Dense(16)(x)))


def _trained_linen():
  """A user's model trained by the user's own loop (Adam, full batch)."""
  module = LinenMLP()
  variables = module.init(jax.random.key(0), X[:1])
  tx = optax.adam(1e-2)

  @jax.jit
  def step(v, s):
    g = jax.grad(
      lambda v: optax.softmax_cross_entropy_with_integer_labels(module.apply(v, X), Y).mean()
    )(v)
    u, s = tx.update(g, s, v)
    return optax.apply_updates(v, u), s

  state = tx.init(variables)
  for _ in range(100):
    variables, state = step(variables, state)
  return module, variables


MODULE, VARIABLES = _trained_linen()


def test_linen_model_on_tabular_data_end_to_end():
  report = jaxunlearn.unlearn(
    MODULE, VARIABLES, X, Y, forget=np.arange(40), test=(X_TEST, Y_TEST), epochs=3
  )
  assert jax.tree.structure(report.params) == jax.tree.structure(VARIABLES["params"])
  assert {"UA", "RA", "TA", "MIA", "LossAUC"} <= set(report.metrics)
  assert report.original_metrics["UA"] < report.metrics["UA"]  # it forgot something
  assert report.metrics["RA"] > 90
  steps = report.config.steps
  assert report.history["multiplier"].shape == (steps,)
  assert set(report.budget) == {
    "kind",
    "retain_loss_before",
    "retain_loss_after",
    "tolerance",
    "log_losses",
    "held",
  }
  # the budget fields are what they say: mean CE of each model on the retained rows
  logits = MODULE.apply({"params": report.params}, X[40:])
  after = float(objectives.cross_entropy(logits, Y[40:]))
  assert report.budget["retain_loss_after"] == pytest.approx(after, rel=1e-4)
  assert report.budget["held"] == (after <= report.budget["retain_loss_before"] + 0.02)


def test_apply_fn_mask_indices_and_ids_give_the_same_run():
  apply_fn = lambda p, x: MODULE.apply({"params": p}, x)
  params = VARIABLES["params"]
  rows = np.array([3, 10, 11, 200])
  mask = np.isin(np.arange(len(Y)), rows)
  ids = np.arange(len(Y))[::-1] * 7 + 5  # the user's ids, unsorted
  a = jaxunlearn.unlearn(apply_fn, params, X, Y, forget=rows, steps=4)
  b = jaxunlearn.unlearn(apply_fn, params, X, Y, forget=mask, steps=4)
  c = jaxunlearn.unlearn(apply_fn, params, X, Y, forget_ids=ids[rows], ids=ids, steps=4)
  for other in (b, c):
    for u, v in zip(jax.tree.leaves(a.params), jax.tree.leaves(other.params)):
      np.testing.assert_array_equal(np.asarray(u), np.asarray(v))


def test_custom_loss_and_optimizer_are_used():
  apply_fn = lambda p, x: MODULE.apply({"params": p}, x)
  params = VARIABLES["params"]
  base = jaxunlearn.unlearn(apply_fn, params, X, Y, forget=np.arange(8), steps=1, method="ft")
  double = jaxunlearn.unlearn(
    apply_fn,
    params,
    X,
    Y,
    forget=np.arange(8),
    steps=1,
    method="ft",
    loss=lambda logits, labels: 2 * objectives.per_example_cross_entropy(logits, labels),
  )
  # same batch, same params: the first step's retain loss doubles with the loss
  np.testing.assert_allclose(double.history["retain_loss"][0], 2 * base.history["retain_loss"][0])
  # optax.sgd(0) leaves the model where it was, whatever the method
  frozen = jaxunlearn.unlearn(
    apply_fn, params, X, Y, forget=np.arange(8), steps=3, method="ga", optimizer=optax.sgd(0.0)
  )
  for u, v in zip(jax.tree.leaves(frozen.params), jax.tree.leaves(params)):
    np.testing.assert_array_equal(np.asarray(u), np.asarray(v))


def test_nnx_module_and_images_of_rank_four():
  class Net(nnx.Module):
    def __init__(self, rngs):
      self.dense = nnx.Linear(16, 3, rngs=rngs)

    def __call__(self, x):
      return self.dense(x.reshape(x.shape[0], -1))

  rng = np.random.default_rng(0)
  x = rng.normal(size=(90, 4, 4, 1)).astype(np.float32)
  y = np.arange(90) % 3
  report = jaxunlearn.unlearn(Net(nnx.Rngs(0)), None, x, y, forget=y == 2, steps=3, method="rl")
  assert report.params["dense"]["kernel"].shape == (16, 3)
  assert len(report.forgotten) == 30


def test_successive_requests_apply_once_and_hold_the_budget_against_the_original():
  apply_fn = lambda p, x: MODULE.apply({"params": p}, x)
  params = VARIABLES["params"]
  first = jaxunlearn.unlearn(apply_fn, params, X, Y, forget=np.arange(10), steps=4)
  second = jaxunlearn.unlearn(
    apply_fn, params, X, Y, forget=np.arange(5, 20), steps=4, previous=first
  )
  assert second.forgotten.tolist() == list(range(20))
  assert second.requests[0]["rows"] == list(range(10))
  assert second.requests[1]["rows"] == list(range(10, 20))  # rows 5..9 were gone already
  # the anchor of the second request's budget is the original model, not the first result
  from jaxunlearn.transforms.implicit import ImplicitGradientSurgeryState

  state = second.opt_state
  assert isinstance(state, ImplicitGradientSurgeryState)
  for u, v in zip(jax.tree.leaves(state.start_params), jax.tree.leaves(params)):
    np.testing.assert_array_equal(np.asarray(u), np.asarray(v))
  with pytest.raises(ForgetSpecError, match="forgotten already by an earlier request"):
    jaxunlearn.unlearn(apply_fn, params, X, Y, forget=np.arange(15), steps=2, previous=second)
  with pytest.raises(DataError, match="other data"):
    jaxunlearn.unlearn(apply_fn, params, X + 1, Y, forget=[30], steps=2, previous=second)


@pytest.mark.parametrize(
  "kwargs,error,match",
  [
    ({"forget": None}, ConfigError, "exactly one of forget="),
    ({"forget": [500]}, ForgetSpecError, "outside the train split"),
    ({"forget": [1], "y": np.eye(2)[Y]}, DataError, "one-hot labels: pass labels.argmax"),
    ({"forget": [1], "y": Y[:10]}, DataError, "400 inputs but 10 labels"),
    ({"forget": [1], "batch_size": 1}, ConfigError, "batch_size must be in 2..400"),
    ({"forget": [1], "method": "magic"}, ConfigError, "unknown method 'magic'"),
    ({"forget": [1], "tolerances": 0.1}, ConfigError, "tolerance"),
  ],
)
def test_bad_input_is_one_clear_error(kwargs, error, match):
  apply_fn = lambda p, x: MODULE.apply({"params": p}, x)
  args = {"x": X, "y": Y, "steps": 1, **kwargs}
  with pytest.raises(error, match=match):
    jaxunlearn.unlearn(apply_fn, VARIABLES["params"], **args)


def test_package_attributes_resolve():
  assert callable(jaxunlearn.unlearn) and callable(jaxunlearn.load)
  for name in ("data", "metrics", "engine", "nn", "objectives", "errors"):
    assert getattr(jaxunlearn, name).__name__ == f"jaxunlearn.{name}"
  with pytest.raises(AttributeError, match="no attribute 'unlearning'"):
    jaxunlearn.unlearning  # noqa: B018 - moved to jaxunlearn.engine.unlearning
