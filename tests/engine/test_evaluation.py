"""evaluate() against the metrics computed by hand from the model's own predictions."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxunlearn import data, metrics
from jaxunlearn.data.splits import hash_order
from jaxunlearn.engine.config import TrainConfig
from jaxunlearn.engine.evaluation import evaluate
from jaxunlearn.engine.training import build_model


@pytest.fixture(scope="module")
def model(tmp_path_factory):
  d = tmp_path_factory.mktemp("data")
  data.prepare("digits", d)
  ds = data.load_dataset("digits", d)
  fm, params, state = build_model(TrainConfig(model_kwargs={"hidden": (16,)}), ds)
  return ds, fm, params, state


@pytest.mark.parametrize("spec", ["class:3", "random:0.2"])
def test_metrics_equal_hand_computation(model, spec):
  ds, fm, params, state = model
  fs = data.make_forget_set(ds, spec, seed=0)
  m = evaluate(fm, params, state, ds, fs)
  predict = lambda x: np.asarray(fm.apply(params, state, jnp.asarray(x), train=False)[0])
  train, test = predict(ds.train.images), predict(ds.test.images)
  y, yt = ds.train.labels, ds.test.labels
  f, r, k = fs.forget_idx, fs.retain_idx, fs.test_retain_idx
  assert m["UA"] == pytest.approx(100 - metrics.accuracy(train[f], y[f]))
  assert m["RA"] == pytest.approx(metrics.accuracy(train[r], y[r]))
  assert m["TA"] == pytest.approx(metrics.accuracy(test[k], yt[k]))
  members = r[hash_order(ds.train.ids[r], 0)]
  mia = metrics.mia_efficacy(train[members], y[members], test[k], yt[k], train[f], y[f])
  assert m["MIA"] == pytest.approx(mia, abs=1e-9)
  unseen = fs.test_forget_idx if len(fs.test_forget_idx) else k
  assert m["LossAUC"] == pytest.approx(metrics.loss_auc(train[f], y[f], test[unseen], yt[unseen]))
  if spec.startswith("class"):  # validation accuracy on the remaining classes only
    keep = ds.val.labels != 3
    val = predict(ds.val.images)
    assert m["val_retain_accuracy"] == pytest.approx(
      metrics.accuracy(val[keep], ds.val.labels[keep])
    )


def test_diverged_model_gets_nan_metrics(model):
  ds, fm, params, state = model
  bad = jax.tree.map(lambda x: jnp.full_like(x, jnp.nan), params)
  m = evaluate(fm, bad, state, ds, data.make_forget_set(ds, "class:0"))
  assert m["diverged"] and all(np.isnan(m[k]) for k in ("UA", "RA", "TA", "MIA", "LossAUC"))
