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


def _fit(module, variables, x, y, steps):
  """A user's own training loop: Adam, full batch, cross-entropy."""
  tx = optax.adam(1e-2)

  @jax.jit
  def step(v, s):
    g = jax.grad(
      lambda v: optax.softmax_cross_entropy_with_integer_labels(module.apply(v, x), y).mean()
    )(v)
    u, s = tx.update(g, s, v)
    return optax.apply_updates(v, u), s

  state = tx.init(variables)
  for _ in range(steps):
    variables, state = step(variables, state)
  return variables


def _trained_linen():
  """A user's model trained by the user's own loop."""
  module = LinenMLP()
  return module, _fit(module, module.init(jax.random.key(0), X[:1]), X, Y, 100)


MODULE, VARIABLES = _trained_linen()


def test_linen_model_on_tabular_data_end_to_end():
  report = jaxunlearn.unlearn(
    MODULE, VARIABLES, X, Y, forget=np.arange(40), test=(X_TEST, Y_TEST), epochs=3
  )
  assert jax.tree.structure(report.params) == jax.tree.structure(VARIABLES)  # its own form
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
  logits = MODULE.apply(report.params, X[40:])
  after = float(objectives.cross_entropy(logits, Y[40:]))
  assert report.budget["retain_loss_after"] == pytest.approx(after, rel=1e-4)
  assert report.budget["held"] == (after <= report.budget["retain_loss_before"] + 0.02)


def test_igs_runs_with_its_rows_defaults_for_rows_and_its_own_for_a_class():
  val = (X_TEST, Y_TEST)
  rows = jaxunlearn.unlearn(MODULE, VARIABLES, X, Y, forget=np.arange(40), val=val, steps=3)
  whole = jaxunlearn.unlearn(MODULE, VARIABLES, X, Y, forget=Y == 0, val=val, steps=3)
  assert (rows.config.start_noise, rows.config.forget_objective) == (0.45, "heldout")
  assert (whole.config.start_noise, whole.config.forget_objective) == (0.0, "rl")
  # the report's config holds the held-out level the run used: the original's mean
  # cross-entropy on the validation rows
  original = MODULE.apply(VARIABLES, X_TEST)
  level = float(objectives.cross_entropy(original, Y_TEST))
  assert rows.config.heldout_loss == pytest.approx(level, rel=1e-5)
  assert not [n for n in rows.notes + whole.notes if "validation" in n]
  # the user's key wins over the request's
  mine = jaxunlearn.unlearn(
    MODULE, VARIABLES, X, Y, forget=np.arange(40), val=val, steps=3, start_noise=0.2
  )
  assert (mine.config.start_noise, mine.config.tolerance) == (0.2, 0.01)
  # no validation rows to measure the held-out loss: the class defaults, and a note
  blind = jaxunlearn.unlearn(MODULE, VARIABLES, X, Y, forget=np.arange(40), steps=3)
  assert (blind.config.start_noise, blind.config.forget_objective) == (0.0, "rl")
  assert blind.notes == [
    "no validation rows to measure the held-out loss: igs ran with its defaults, not those "
    "for rows (pass val=(x_val, y_val); docs/design.md §12)"
  ]
  assert blind.notes[0] in blind.summary()


def test_an_exceeded_budget_says_by_how_much_and_why():
  report = jaxunlearn.unlearn(
    MODULE, VARIABLES, X, Y, forget=Y == 0, steps=2, tolerance=-0.5
  )  # a bound under the original's own loss: never held
  b = report.budget
  assert not b["held"]
  bound = b["retain_loss_before"] - 0.5
  assert report.notes == [
    f"retained loss {b['retain_loss_after']:.4f} over its bound {bound:.4f} (held on the "
    "batches the run saw, not at its last step; more steps or a lower learning_rate let λ "
    "settle)"
  ]
  assert "budget exceeded; retained loss" in report.summary()


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
    apply_fn, None, X, Y, forget=np.arange(5, 20), steps=4, previous=first
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
    jaxunlearn.unlearn(apply_fn, None, X, Y, forget=np.arange(15), steps=2, previous=second)
  with pytest.raises(DataError, match="other data"):
    jaxunlearn.unlearn(apply_fn, None, X + 1, Y, forget=[30], steps=2, previous=second)


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


# ------------------------------------------------ issue 22: what a user meets


def _wine():
  """scikit-learn's wine (3 classes), a user's MLP trained by the user's own loop."""
  from sklearn.datasets import load_wine

  x, y = load_wine(return_X_y=True)
  order = np.random.default_rng(0).permutation(len(y))
  x = ((x - x.mean(0)) / x.std(0)).astype(np.float32)[order]
  y = y[order].astype(np.int32)
  module = LinenMLP3()
  xt, yt = x[:120], y[:120]
  variables = _fit(module, module.init(jax.random.key(1), x[:1]), xt, yt, 150)
  return module, variables, (xt, yt), (x[120:], y[120:])


class LinenMLP3(linen.Module):
  @linen.compact
  def __call__(self, x):
    return linen.Dense(3)(linen.relu(linen.Dense(16)(x)))


WINE = _wine()


def _accuracy(logits, labels):
  return 100.0 * float(np.mean(np.asarray(logits).argmax(-1) == labels))


def test_class_wise_request_reports_test_accuracy_on_the_remaining_classes():
  module, variables, (x, y), (xt, yt) = WINE
  report = jaxunlearn.unlearn(module, variables, x, y, forget="class:0", test=(xt, yt), steps=20)
  assert report.forgotten.tolist() == np.flatnonzero(y == 0).tolist()
  logits = module.apply(report.params, xt)
  keep = yt != 0
  # TA by hand: the test rows of classes 1 and 2 only (the commands' definition)
  assert report.metrics["TA"] == pytest.approx(_accuracy(logits[keep], yt[keep]))
  assert report.metrics["TA"] != pytest.approx(_accuracy(logits, yt))
  train_logits = module.apply(report.params, x)
  assert report.metrics["UA"] == pytest.approx(100 - _accuracy(train_logits[y == 0], y[y == 0]))
  # LossAUC compares the forgotten rows with unseen rows of the same class (test class 0)
  assert 0 <= report.metrics["LossAUC"] <= 100


def test_every_forget_spec_of_the_commands_works_in_the_api(tmp_path):
  module, variables, (x, y), _ = WINE
  ids = np.arange(len(y)) * 3 + 1
  rows = np.array([4, 9, 30, 31])
  (tmp_path / "ids.txt").write_text("".join(f"{i}\n" for i in ids[rows]))
  (tmp_path / "rows.txt").write_text("# rows\n4\n9\n30\n31\n")
  kinds = {
    "class:1,2": np.flatnonzero(np.isin(y, [1, 2])),
    "random:0.1": np.sort(np.random.default_rng(3).choice(len(y), 12, replace=False)),
    "random:5": np.sort(np.random.default_rng(3).choice(len(y), 5, replace=False)),
    f"ids:{tmp_path / 'ids.txt'}": rows,
    f"rows:{tmp_path / 'rows.txt'}": rows,
  }
  for spec, expected in kinds.items():
    # one batch shape for every spec (4 forget rows a step): one compile for all five
    report = jaxunlearn.unlearn(
      module, variables, x, y, ids=ids, forget=spec, forget_seed=3, steps=1, batch_size=20
    )
    assert report.forgotten.tolist() == expected.tolist(), spec
    assert report.requests[0]["spec"] == spec


def test_one_number_as_forget_is_refused_not_read_as_row_0():
  module, variables, (x, y), _ = WINE
  with pytest.raises(ConfigError, match=r"forget=\[0\].*forget='class:0'"):
    jaxunlearn.unlearn(module, variables, x, y, forget=0, steps=1)


def test_evaluate_gives_exactly_the_reported_metrics_and_retrained_adds_the_gaps():
  module, variables, (x, y), (xt, yt) = WINE
  spec = "class:2"
  # "retrained": the user's model refit on the retained rows only (same loop, fewer rows)
  keep = y != 2
  retrained = _fit(module, variables, x[keep], y[keep], 60)
  report = jaxunlearn.unlearn(
    module, variables, x, y, forget=spec, test=(xt, yt), steps=10, retrained=(module, retrained)
  )
  mine = jaxunlearn.evaluate(module, report.params, x, y, forget=spec, test=(xt, yt))
  assert mine == report.metrics  # the same attack on the same members: equal, not close
  theirs = jaxunlearn.evaluate(module, retrained, x, y, forget=spec, test=(xt, yt))
  assert report.retrained_metrics == theirs
  # and by hand from the models' logits, not through the evaluation both share
  for metrics, v in ((mine, report.params), (theirs, retrained)):
    train, test = np.asarray(module.apply(v, x)), np.asarray(module.apply(v, xt))
    assert metrics["UA"] == pytest.approx(100 - _accuracy(train[~keep], y[~keep]))
    assert metrics["RA"] == pytest.approx(_accuracy(train[keep], y[keep]))
    assert metrics["TA"] == pytest.approx(_accuracy(test[yt != 2], yt[yt != 2]))
  for k in ("UA", "RA", "TA", "MIA", "LossAUC"):
    assert report.gaps[k] == pytest.approx(abs(mine[k] - theirs[k]))
  by_hand = np.mean([abs(mine[k] - theirs[k]) for k in ("UA", "RA", "TA", "MIA")])
  assert report.gaps["AvgGap"] == pytest.approx(by_hand)
  assert "Avg. Gap" in report.summary()
  with pytest.raises(ConfigError, match="retrained= takes"):
    jaxunlearn.unlearn(module, variables, x, y, forget=spec, steps=1, retrained=retrained)


@pytest.mark.parametrize("method", ["salun", "ft", "igs_paper", "explicit"])
def test_a_method_without_a_run_budget_reports_none(method):
  module, variables, (x, y), _ = WINE
  report = jaxunlearn.unlearn(module, variables, x, y, forget=np.arange(5), steps=2, method=method)
  assert report.budget == {}
  assert "budget" not in report.summary()


def test_pdu_reports_its_own_threshold_and_igs_its_tolerance():
  module, variables, (x, y), _ = WINE
  report = jaxunlearn.unlearn(
    module, variables, x, y, forget=np.arange(5), steps=5, method="pdu", pdu_threshold=0.3
  )
  retained = np.arange(5, len(y))
  after = float(objectives.cross_entropy(module.apply(report.params, x[retained]), y[retained]))
  assert report.budget["kind"] == "level" and report.budget["threshold"] == 0.3
  assert report.budget["retain_loss_after"] == pytest.approx(after, rel=1e-4)
  assert report.budget["held"] == (after <= 0.3)
  igs = jaxunlearn.unlearn(module, variables, x, y, forget=np.arange(5), steps=2)
  assert igs.budget["kind"] == "increase" and igs.budget["tolerance"] == igs.config.tolerance


def test_a_successive_request_reports_its_own_rows_beside_the_union():
  module, variables, (x, y), (xt, yt) = WINE
  first = jaxunlearn.unlearn(module, variables, x, y, forget="class:0", test=(xt, yt), steps=30)
  new = np.flatnonzero(y != 0)[:10]
  second = jaxunlearn.unlearn(
    module, None, x, y, forget=new, test=(xt, yt), steps=5, previous=first
  )
  logits = np.asarray(second.predict(x))
  assert second.request_metrics["UA"] == pytest.approx(100 - _accuracy(logits[new], y[new]))
  union = second.forgotten
  assert second.metrics["UA"] == pytest.approx(100 - _accuracy(logits[union], y[union]))
  assert second.requests[1]["request_metrics"] == second.request_metrics
  assert "this request's UA" in second.summary()
  # a class-wise union still leaves the forgotten class out of TA
  keep = yt != 0
  assert second.metrics["TA"] == pytest.approx(
    _accuracy(np.asarray(second.predict(xt))[keep], yt[keep])
  )


def test_report_model_is_a_model_of_the_kind_passed():
  module, variables, (x, y), _ = WINE
  linen_report = jaxunlearn.unlearn(module, variables, x, y, forget=np.arange(5), steps=2)
  np.testing.assert_allclose(linen_report.model(x), module.apply(linen_report.params, x), rtol=1e-6)
  apply_fn = lambda p, x: module.apply(p, x)
  fn_report = jaxunlearn.unlearn(apply_fn, variables, x, y, forget=np.arange(5), steps=2)
  np.testing.assert_allclose(fn_report.model(x), apply_fn(fn_report.params, x), rtol=1e-6)

  class Net(nnx.Module):
    def __init__(self, rngs):
      self.a = nnx.Linear(13, 8, rngs=rngs)
      self.norm = nnx.BatchNorm(8, rngs=rngs)
      self.b = nnx.Linear(8, 3, rngs=rngs)

    def __call__(self, x):
      return self.b(nnx.relu(self.norm(self.a(x))))

  net = Net(nnx.Rngs(0))
  before = nnx.state(net, nnx.Param)
  report = jaxunlearn.unlearn(net, None, x, y, forget=np.arange(5), steps=3, method="rl")
  back = report.model
  assert isinstance(back, Net)
  back.eval()
  np.testing.assert_allclose(back(x), report.predict(x), rtol=1e-5, atol=1e-6)
  np.testing.assert_array_equal(
    np.asarray(back.norm.mean.get_value()), np.asarray(report.model_state["norm"]["mean"])
  )
  # the module the user passed is unchanged
  for u, v in zip(jax.tree.leaves(nnx.state(net, nnx.Param)), jax.tree.leaves(before)):
    np.testing.assert_array_equal(np.asarray(u), np.asarray(v))


def test_a_language_model_forgets_an_author_through_the_api():
  from flax import nnx

  from jaxunlearn import objectives
  from jaxunlearn.data import tofu
  from jaxunlearn.nn.transformer import Decoder

  ds = tofu.make_dataset(authors=4, facts=3, world=2)
  make = lambda seed: Decoder(len(ds.tokenizer), ds.tokens_per_row, size="tiny",
                              rngs=nnx.Rngs(seed))  # fmt: skip
  model, retrained = make(0), make(1)
  report = jaxunlearn.unlearn(
    model, dataset=ds, forget="class:3", loss=objectives.answer_losses, method="npo", steps=3,
    batch_size=8, retrained=(retrained, None),
  )  # fmt: skip
  assert report.config.layout == "answers"
  assert report.forgotten.tolist() == np.flatnonzero(ds.train.labels == 3).tolist()
  for key in ("forget_prob", "forget_rouge", "forget_truth_ratio", "model_utility", "mia_auc"):
    assert 0.0 <= report.metrics[key] <= 1.0, key
  assert 0.0 <= report.metrics["forget_quality"] <= 1.0
  assert "forget_quality" not in report.retrained_metrics  # it is the reference
  assert set(report.gaps) == {"forget_prob", "forget_rouge", "forget_truth_ratio",
                              "model_utility", "AvgGap"}  # fmt: skip
  assert "model_utility" in report.summary()
  with pytest.raises(ConfigError, match="not both"):
    jaxunlearn.unlearn(model, x=ds.train.images, y=ds.train.labels, dataset=ds, forget="class:3")
