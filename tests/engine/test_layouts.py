"""The two batch layouts: the paper's mixed batches and split ones, against hand sums."""

import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxunlearn import data
from jaxunlearn.engine import config, layouts
from jaxunlearn.engine.config import TrainConfig
from jaxunlearn.engine.methods import build_transformation, get_method, make_config
from jaxunlearn.engine.steps import make_unlearn_step
from jaxunlearn.engine.training import build_model


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
  data_dir = tmp_path_factory.mktemp("data")
  data.prepare("digits", data_dir)
  ds = data.load_dataset("digits", data_dir)
  fm, params, state = build_model(TrainConfig(model_kwargs={"hidden": (32,)}), ds)
  return ds, data.make_forget_set(ds, "random:0.2", seed=0), fm, params, state


def test_config_knows_every_layout():
  assert set(config.LAYOUTS) == set(layouts.LAYOUTS)


def test_mixed_batches_cover_an_epoch_once_with_labels_redrawn_each_epoch(setup):
  ds, fs, *_ = setup
  cfg = make_config("rl", layout="mixed", n_retain=60, n_forget=20)
  per_epoch = len(ds.train.labels) // 80
  rows = [data.union_batch(ds, fs, t, seed=0, batch_size=80)["index"] for t in range(2 * per_epoch)]
  first = np.concatenate(rows[:per_epoch])
  assert len(np.unique(first)) == len(first) == per_epoch * 80  # each example at most once
  b0 = [layouts.Mixed.batch(ds, fs, t, cfg, 60, 20) for t in (0, per_epoch)]
  assert set(b0[0]) == set(layouts.Mixed.shapes(ds, 60, 20))
  forget_share = np.mean(np.concatenate([b["is_forget"] for b in b0]))
  assert 0.05 < forget_share < 0.4  # about the forget set's share of train (20 %)
  # A forget example's random label is never its true label.
  for b in b0:
    f = b["is_forget"]
    assert np.all(b["label"][f] != b["true_label"][f])
    assert np.all(b["label"][~f] == b["true_label"][~f])


@pytest.mark.parametrize("method", ["rl", "igs", "explicit"])
def test_mixed_losses_are_part_sums_over_the_batch(method, setup):
  ds, fs, fm, params, state = setup
  cfg = make_config(method, layout="mixed", n_retain=60, n_forget=20, steps=3)
  tx = build_transformation(cfg)
  step = make_unlearn_step(fm, get_method(method), cfg, tx)
  batch = {k: jnp.asarray(v) for k, v in layouts.Mixed.batch(ds, fs, 1, cfg, 60, 20).items()}
  _, _, _, logs = step(params, state, tx.init(params), batch, (params, state), jnp.asarray(1))
  # Hand computation: per-row cross-entropies of one forward, summed over each part / B.
  logits, _ = fm.apply(params, state, batch["image"], train=True)
  ce = np.asarray(optax.softmax_cross_entropy_with_integer_labels(logits, batch["label"]))
  f = np.asarray(batch["is_forget"])
  assert f.any() and (~f).any()
  np.testing.assert_allclose(float(logs.retain_loss), ce[~f].sum() / 80, rtol=1e-5)
  np.testing.assert_allclose(float(logs.forget_loss), ce[f].sum() / 80, rtol=1e-5)
  if method == "rl":  # RL: the mean cross-entropy of the batch against its targets
    np.testing.assert_allclose(float(logs.loss), ce.mean(), rtol=1e-5)


def test_split_losses_are_part_means(setup):
  ds, fs, fm, params, state = setup
  cfg = make_config("rl", layout="split", n_retain=32, n_forget=8, steps=3)
  tx = build_transformation(cfg)
  step = make_unlearn_step(fm, get_method("rl"), cfg, tx)
  batch = {k: jnp.asarray(v) for k, v in layouts.Split.batch(ds, fs, 0, cfg, 32, 8).items()}
  _, _, _, logs = step(params, state, tx.init(params), batch, (params, state), jnp.asarray(0))
  r = optax.softmax_cross_entropy_with_integer_labels(
    fm.apply(params, state, batch["retain_image"], train=True)[0], batch["retain_label"]
  )
  f = optax.softmax_cross_entropy_with_integer_labels(
    fm.apply(params, state, batch["forget_image"], train=True)[0], batch["forget_label"]
  )
  np.testing.assert_allclose(float(logs.retain_loss), float(r.mean()), rtol=1e-5)
  np.testing.assert_allclose(float(logs.forget_loss), float(f.mean()), rtol=1e-5)


@pytest.mark.parametrize("layout", ["mixed", "split"])
def test_augmentation_is_deterministic_and_changes_only_images(layout, setup):
  ds, fs, *_ = setup
  plain = make_config("rl", layout=layout, n_retain=60, n_forget=20)
  aug = make_config("rl", layout=layout, n_retain=60, n_forget=20, augment=True)
  lay = layouts.LAYOUTS[layout]
  a, b, p = (lay.batch(ds, fs, 3, c, 60, 20) for c in (aug, aug, plain))
  for k in p:
    np.testing.assert_array_equal(a[k], b[k])  # a pure function of (seed, step)
    if k.endswith("image"):
      assert not np.array_equal(a[k], p[k])
    else:
      np.testing.assert_array_equal(a[k], p[k])
