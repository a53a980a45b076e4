"""The two batch layouts: the paper's mixed batches and split ones, against hand sums."""

import jax
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


# --- the DDPM layout (issue 12) ---------------------------------------------------------


def _ddpm(ds):
  from flax import nnx

  from jaxunlearn.nn import models
  from jaxunlearn.nn.denoiser import MLPDenoiser

  return models.functional(MLPDenoiser((8, 8, 1), 10, rngs=nnx.Rngs(0), hidden=32, embed=16))


def test_denoise_losses_against_a_hand_computation(setup):
  from jaxunlearn import diffusion

  ds, *_ = setup
  fs = data.make_forget_set(ds, "class:7")
  fm, params, state = _ddpm(ds)
  cfg = make_config("igs", layout="denoise", n_retain=24, n_forget=8)
  layout = layouts.LAYOUTS["denoise"]
  batch = {k: jnp.asarray(v) for k, v in layout.batch(ds, fs, 3, cfg, 24, 8).items()}
  parts, _ = layout.forward(fm, params, state, batch)
  s = diffusion.linear_schedule(layouts.DIFFUSION_STEPS)
  a = np.asarray(s.alphas_cumprod)[np.asarray(batch["t"])][:, None, None, None]
  x_t = np.sqrt(a) * (2 * np.asarray(batch["image"]) - 1) + np.sqrt(1 - a) * np.asarray(
    batch["noise"]
  )
  eps = lambda y: np.asarray(
    fm.apply(params, state, (jnp.asarray(x_t), batch["t"], y), train=True)[0]
  )
  e_true, e_target = eps(batch["true_label"]), eps(batch["label"])
  denoise = ((e_true - np.asarray(batch["noise"])) ** 2).reshape(32, -1).mean(-1)
  relabel = ((e_true - e_target) ** 2).reshape(32, -1).mean(-1)
  np.testing.assert_allclose(np.asarray(parts.retain_losses), denoise, rtol=1e-4, atol=1e-6)
  np.testing.assert_allclose(np.asarray(parts.forget_losses), relabel, rtol=1e-4, atol=1e-6)
  is_forget = np.asarray(batch["is_forget"])
  assert is_forget.any() and (np.asarray(batch["true_label"])[is_forget] == 7).all()
  assert (relabel[~is_forget] < 1e-10).all()  # retain rows: target label is the true one


@pytest.mark.parametrize(
  "method", ["igs", "explicit", "famo", "ft", "ga", "rl", "l1sparse", "salun"]
)
def test_every_loss_only_method_steps_on_a_ddpm(setup, method):
  ds, *_ = setup
  fs = data.make_forget_set(ds, "class:7")
  fm, params, state = _ddpm(ds)
  cfg = make_config(method, layout="denoise", n_retain=24, n_forget=8, steps=2)
  entry = get_method(method)
  prepared = None
  if entry.prepare is not None:  # SalUn's mask, from the denoising loss's saliency
    from jaxunlearn.engine.methods import PrepareContext

    prepared = entry.prepare(PrepareContext(fm, params, state, ds, fs), cfg)
    share = np.mean(np.concatenate([np.ravel(m) for m in jax.tree.leaves(prepared)]))
    assert abs(share - cfg.salun_sparsity) < 0.01
  tx = build_transformation(cfg, prepared, optimizer=optax.adam(1e-4))
  step = make_unlearn_step(fm, get_method(method), cfg, tx)
  layout = layouts.LAYOUTS["denoise"]
  batch = {k: jnp.asarray(v) for k, v in layout.batch(ds, fs, 0, cfg, 24, 8).items()}
  new_params, _, _, logs = step(
    params, state, tx.init(params), batch, (params, state), jnp.int32(0)
  )
  assert not bool(logs.skipped)
  assert np.isfinite(float(logs.retain_loss)) and np.isfinite(float(logs.forget_loss))
  changed = any(
    not np.array_equal(np.asarray(a), np.asarray(b))
    for a, b in zip(jax.tree.leaves(new_params), jax.tree.leaves(params))
  )
  assert changed


def test_teacher_methods_refuse_a_ddpm(setup):
  from jaxunlearn.errors import ConfigError

  ds, *_ = setup
  fs = data.make_forget_set(ds, "class:7")
  fm, params, state = _ddpm(ds)
  cfg = make_config("scrub", layout="denoise", n_retain=24, n_forget=8, steps=2)
  tx = build_transformation(cfg)
  step = make_unlearn_step(fm, get_method("scrub"), cfg, tx)
  layout = layouts.LAYOUTS["denoise"]
  batch = {k: jnp.asarray(v) for k, v in layout.batch(ds, fs, 0, cfg, 24, 8).items()}
  with pytest.raises(ConfigError, match="do not apply to DDPMs"):
    step(params, state, tx.init(params), batch, (params, state), jnp.int32(0))


@pytest.fixture(scope="module")
def qa():
  from flax import nnx

  from jaxunlearn import objectives
  from jaxunlearn.data import tofu
  from jaxunlearn.nn.transformer import Decoder, functional_lm

  ds = tofu.make_dataset(authors=5, facts=3, world=3)
  model = Decoder(len(ds.tokenizer), ds.tokens_per_row, size="tiny", rngs=nnx.Rngs(0))
  fm, params, state = functional_lm(model, objectives.answer_losses)
  return ds, tofu.forget_split(ds, 20), fm, params, state


def test_answers_batches_ask_the_forget_questions_with_an_idk_answer(qa):
  from jaxunlearn.data import tofu

  ds, forget, *_ = qa
  cfg = make_config("rl", layout="answers", n_retain=4, n_forget=2, seed=1)
  b = layouts.Answers.batch(ds, forget, 3, cfg, 4, 2)
  again = layouts.Answers.batch(ds, forget, 3, cfg, 4, 2)
  assert all(np.array_equal(b[k], again[k]) for k in b)  # a pure function of (seed, step)
  idk = {" ".join(ds.tokenizer.decode(a[a != tofu.PAD_ID])) for a in ds.idk}
  for row, alt in zip(b["forget_tokens"], b["forget_idk"]):
    cut = list(row).index(tofu.ANS_ID) + 1
    assert np.array_equal(alt[:cut], row[:cut])  # the same question
    answer = alt[cut:][alt[cut:] != tofu.PAD_ID]
    assert " ".join(ds.tokenizer.decode(answer)) in idk
  assert set(ds.train.labels[np.isin(ds.train.images, b["forget_tokens"]).all(1)]) <= set(
    forget.forget_classes
  )
  shapes = layouts.Answers.shapes(ds, 4, 2)
  assert {k: v.shape for k, v in shapes.items()} == {k: v.shape for k, v in b.items()}


def test_answers_parts_are_the_answer_losses_of_each_row(qa):
  from jaxunlearn import objectives

  ds, forget, fm, params, state = qa
  cfg = make_config("rl", layout="answers", n_retain=4, n_forget=2)
  b = {k: jnp.asarray(v) for k, v in layouts.Answers.batch(ds, forget, 0, cfg, 4, 2).items()}
  parts, _ = layouts.Answers.forward(fm, params, state, b)
  logits = lambda t: fm.apply(params, state, t, train=False)[0]
  for got, tokens in (
    (parts.retain_losses, b["retain_tokens"]),
    (parts.forget_true_losses, b["forget_tokens"]),
    (parts.forget_losses, b["forget_idk"]),
  ):
    want = objectives.answer_losses(logits(tokens), tokens)
    assert np.allclose(got, want, rtol=1e-5)
  assert np.array_equal(layouts.Answers.row_targets(ds.train), ds.train.images)


def test_salun_saliency_traces_once_per_model(setup):
  """A second SalUn run on the same model (another forget set of as many rows) traces no
  new gradient: the model state is an argument, not a constant of a fresh jit."""
  ds, _, fm, params, state = setup
  first = data.make_forget_set(ds, "random:0.1", seed=1)
  second = data.make_forget_set(ds, "random:0.1", seed=2)
  cfg = make_config("salun")
  g1 = layouts.cross_entropy_saliency(fm, params, state, ds, first, cfg, batch_size=64)
  fn = layouts._cross_entropy_grad_sum(fm)  # noqa: SLF001
  traced = fn._cache_size()  # noqa: SLF001
  g2 = layouts.cross_entropy_saliency(fm, params, state, ds, second, cfg, batch_size=64)
  assert fn._cache_size() == traced  # noqa: SLF001
  # and the sum is the gradient of the summed cross-entropy, computed in one piece
  rows = first.forget_idx
  x, y = jnp.asarray(ds.train.images[rows]), jnp.asarray(ds.train.labels[rows])
  whole = jax.grad(
    lambda p: jnp.sum(optax.softmax_cross_entropy_with_integer_labels(
      fm.apply(p, state, x, train=False)[0], y))
  )(params)  # fmt: skip
  for a, b in zip(jax.tree.leaves(g1), jax.tree.leaves(whole)):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
  assert not all(np.allclose(a, b) for a, b in zip(jax.tree.leaves(g1), jax.tree.leaves(g2)))
