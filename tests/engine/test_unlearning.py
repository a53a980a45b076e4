"""Every unlearning method end to end on digits, the CLI, and the non-finite skip."""

import json
import os
import pathlib
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxunlearn import data
from jaxunlearn.engine import memory as memory_lib
from jaxunlearn.engine.config import TrainConfig
from jaxunlearn.engine.evaluation import evaluate
from jaxunlearn.engine.layouts import LAYOUTS
from jaxunlearn.engine.methods import (
  METHODS,
  PrepareContext,
  build_transformation,
  get_method,
  make_config,
  salun_mask,
)
from jaxunlearn.engine.steps import make_unlearn_step
from jaxunlearn.engine.training import build_model, load_trained, train
from jaxunlearn.engine.unlearning import run_batch, run_method
from jaxunlearn.errors import ConfigError

ROOT = pathlib.Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
  base = tmp_path_factory.mktemp("unlearn")
  data_dir = base / "data"
  data.prepare("digits", data_dir)
  train(
    TrainConfig(epochs=4, model_kwargs={"hidden": (64,)}),
    base / "orig",
    data_dir=data_dir,
    progress=False,
  )
  ds = data.load_dataset("digits", data_dir)
  return base, data_dir, load_trained(base / "orig"), ds, data.make_forget_set(ds, "class:1")


@pytest.mark.parametrize("method", list(METHODS))
def test_every_method_runs_and_moves(method, setup):
  _, _, orig, ds, fs = setup
  cfg = make_config(method, steps=4, n_retain=32, n_forget=8)
  res = run_method(cfg, orig.fm, orig.params, orig.model_state, ds, fs, progress=False)
  moved = max(
    float(jnp.max(jnp.abs(a - b)))
    for a, b in zip(jax.tree.leaves(res.params), jax.tree.leaves(orig.params))
  )
  assert moved > 0
  assert res.history["retain_loss"].shape == (4,)
  assert not res.history["skipped"].any()
  ev = evaluate(orig.fm, res.params, res.model_state, ds, fs)
  assert set(ev) >= {"UA", "RA", "TA", "MIA"}
  assert all(0 <= ev[k] <= 100 for k in ("UA", "RA", "TA", "MIA"))
  if "multiplier" in res.history:
    assert np.all(res.history["multiplier"] >= 0)


def test_igs_forgets_the_class_and_keeps_utility(setup):
  _, _, orig, ds, fs = setup
  before = evaluate(orig.fm, orig.params, orig.model_state, ds, fs)
  res = run_method(
    make_config("igs", steps=60, learning_rate=0.003),
    orig.fm,
    orig.params,
    orig.model_state,
    ds,
    fs,
    progress=False,
  )
  after = evaluate(orig.fm, res.params, res.model_state, ds, fs)
  assert before["UA"] < 20 and after["UA"] >= 95
  assert after["TA"] >= before["TA"] - 5


def test_same_seed_same_numbers(setup):
  _, _, orig, ds, fs = setup
  runs = [
    run_method(
      make_config("igs", steps=5, seed=s),
      orig.fm,
      orig.params,
      orig.model_state,
      ds,
      fs,
      progress=False,
    )
    for s in (3, 3, 4)
  ]
  same = [
    np.array_equal(np.asarray(a), np.asarray(b))
    for a, b in zip(jax.tree.leaves(runs[0].params), jax.tree.leaves(runs[1].params))
  ]
  assert all(same)
  assert not np.array_equal(runs[0].history["retain_loss"], runs[2].history["retain_loss"])


def test_salun_mask_keeps_the_requested_share(setup):
  _, _, orig, ds, fs = setup
  ctx = PrepareContext(orig.fm, orig.params, orig.model_state, ds, fs)
  mask = salun_mask(ctx, make_config("salun", salun_sparsity=0.5))
  kept = sum(float(m.sum()) for m in jax.tree.leaves(mask))
  total = sum(m.size for m in jax.tree.leaves(mask))
  assert kept / total == pytest.approx(0.5, abs=0.01)


@pytest.mark.parametrize("layout", ["split", "mixed"])
@pytest.mark.parametrize("method", ["igs", "explicit", "ft"])
def test_non_finite_batch_skips_the_step(method, layout, setup):
  _, _, orig, ds, fs = setup
  cfg = make_config(method, steps=3, layout=layout, n_retain=16, n_forget=8)
  m = get_method(method)
  tx = build_transformation(cfg)
  step = make_unlearn_step(orig.fm, m, cfg, tx)
  batch = {k: jnp.asarray(v) for k, v in LAYOUTS[layout].batch(ds, fs, 0, cfg, 16, 8).items()}
  opt_state = tx.init(orig.params)
  for bad in (jnp.nan, jnp.inf):
    for key in [k for k in batch if k.endswith("image")]:
      poisoned = dict(batch, **{key: batch[key].at[0].set(bad)})
      params, _, new_opt, logs = step(
        orig.params,
        orig.model_state,
        opt_state,
        poisoned,
        (orig.params, orig.model_state),
        jnp.asarray(0),
      )
      assert bool(logs.skipped)
      for a, b2 in zip(
        jax.tree.leaves((params, new_opt)), jax.tree.leaves((orig.params, opt_state))
      ):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b2))


@pytest.mark.parametrize("layout", ["mixed", "split"])
def test_cached_anchor_losses_give_the_run_of_a_forward_of_the_start(layout, setup, monkeypatch):
  """Anchored IGS with θ_0's per-row losses cached (no forward of θ_0 a step) runs the
  trajectory of the one that re-evaluates θ_0 on every batch, to float rounding."""
  from jaxunlearn.engine import unlearning

  _, _, orig, ds, forget = setup
  # a negative tolerance: λ must rise, so the anchor decides every step
  cfg = make_config("igs", steps=40, layout=layout, tolerance=-0.01)
  args = (orig.fm, orig.params, orig.model_state, ds, forget)
  assert unlearning.anchor_table(cfg, *args[:3], ds).shape == (len(ds.train),)
  cached = run_method(cfg, *args, progress=False)
  batched = run_batch([cfg], *args)[0]
  monkeypatch.setattr(unlearning, "anchor_table", lambda *a, **k: None)
  forward = run_method(cfg, *args, progress=False)
  assert forward.history["multiplier"].max() > 0.1, forward.history["multiplier"]  # it moved
  # The anchor's rows evaluated in other batches round differently (≈ 2e-7 in Δ), and the
  # dual step multiplies that by its rate (30): λ agrees to 3e-5.
  np.testing.assert_allclose(cached.history["multiplier"], forward.history["multiplier"],
                             rtol=1e-4, atol=3e-5)  # fmt: skip
  for got in (cached, batched):
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5),
                 got.params, forward.params)  # fmt: skip


def test_no_anchor_table_where_a_row_does_not_fix_its_loss(setup):
  from jaxunlearn.engine.unlearning import anchor_table

  _, _, orig, ds, _ = setup
  args = (orig.fm, orig.params, orig.model_state, ds)
  assert anchor_table(make_config("igs"), *args) is not None
  assert anchor_table(make_config("igs", augment=True), *args) is None  # rows change
  assert anchor_table(make_config("igs", reference="previous"), *args) is None  # no anchor
  assert anchor_table(make_config("explicit"), *args) is None
  with_state = (orig.fm, orig.params, {"batch_stats": jnp.zeros(3)}, ds)  # BatchNorm
  assert anchor_table(make_config("igs"), *with_state) is None


def test_bad_unlearning_config():
  with pytest.raises(ConfigError, match="unknown method"):
    make_config("forgetall")
  with pytest.raises(ConfigError, match="did you mean 'tolerance'"):
    make_config("igs", tolerence=0.1)


def test_unlearn_cli_end_to_end(setup, tmp_path):
  base, data_dir, _, _, _ = setup
  train(
    TrainConfig(epochs=4, model_kwargs={"hidden": (64,)}),
    base / "retrain",
    forget_spec="class:1",
    retrain=True,
    data_dir=data_dir,
    progress=False,
  ) if not (base / "retrain" / "metrics.json").exists() else None
  env = {**os.environ, "JAXUNLEARN_DATA_DIR": str(data_dir)}
  cmd = [
    sys.executable,
    "-m",
    "experiments.unlearn",
    "--method",
    "igs",
    "--original",
    str(base / "orig"),
    "--forget",
    "class:1",
    "--workdir",
    str(tmp_path / "u"),
    "--retrained",
    str(base / "retrain"),
    "--set",
    "steps=5",
    "--no-progress",
  ]
  out = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env=env, timeout=300)
  assert out.returncode == 0, out.stderr
  metrics = json.loads((tmp_path / "u" / "metrics.json").read_text())
  assert metrics["method"] == "igs" and len(metrics["history"]["multiplier"]) == 5
  assert "AvgGap" in metrics and metrics["retrain"]["UA"] == 100.0
  assert (tmp_path / "u" / "checkpoints").exists()
  again = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env=env, timeout=300)
  assert again.returncode == 2 and "already holds" in again.stderr
  bad = subprocess.run(
    cmd[:5]
    + ["--original", str(tmp_path / "missing")]
    + cmd[7:9]
    + ["--workdir", str(tmp_path / "v")],
    capture_output=True,
    text=True,
    cwd=ROOT,
    env=env,
    timeout=300,
  )
  assert bad.returncode == 2 and "no checkpoint" in bad.stderr and "Traceback" not in bad.stderr


# Killed (SIGKILL) and stopped (SIGTERM) unlearning runs resume bitwise:
# tests/experiments/test_stopping.py.


# --- runs batched over seeds and hyperparameters (issue 13) ------------------------------


def _grid_pair(method):
  """Two runs of ``method`` that differ in seed, learning rate and, where it is traceable,
  the method's own tuning knob: what one program of its tuning grid runs together."""
  entry, traced = get_method(method), make_config(method).traced_values()
  knobs = {k: v for k, v in entry.tune.items() if k != "learning_rate" and k in traced}
  lr = make_config(method).learning_rate
  a = make_config(method, steps=6, seed=0)
  b = make_config(method, steps=6, seed=3, learning_rate=3 * lr)
  for key, values in knobs.items():
    a, b = a.replace(**{key: values[0]}), b.replace(**{key: values[-1]})
  return [a, b]


@pytest.mark.parametrize("method", list(METHODS))
def test_grid_batched_equals_one_at_a_time(method, setup):
  """Seeds × hyperparameters as one vmapped program with the numbers traced equals each
  run alone with them as constants (float tolerance: sums may run in another order)."""
  _, _, orig, ds, fs = setup
  configs = _grid_pair(method)
  assert configs[0] != configs[1]
  batched = run_batch(configs, orig.fm, orig.params, orig.model_state, ds, fs)
  for cfg, got in zip(configs, batched):
    want = run_method(cfg, orig.fm, orig.params, orig.model_state, ds, fs, progress=False)
    assert got.batched_with == 2
    # atol 1e-5 against parameter moves of ~3e-2: CAGrad's weights amplify the rounding of
    # batched sums (5e-6 measured on one weight here).
    for a, b in zip(jax.tree.leaves(got.params), jax.tree.leaves(want.params)):
      np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=2e-5, atol=1e-5)
    for a, b in zip(jax.tree.leaves(got.opt_state), jax.tree.leaves(want.opt_state)):
      np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=2e-5, atol=1e-5)
    assert set(got.history) == set(want.history)
    for k in want.history:
      np.testing.assert_allclose(got.history[k], want.history[k], rtol=2e-5, atol=2e-6, err_msg=k)
  # the two runs really differ (different seeds and numbers made different models)
  assert not np.allclose(
    jax.tree.leaves(batched[0].params)[0], jax.tree.leaves(batched[1].params)[0]
  )


def test_batch_chunked_to_the_memory_budget_equals_unchunked(setup, monkeypatch):
  """Over the budget, the runs go in chunks (the last one padded with a repeat), the user
  is told, and every run's result is the one it has in a single chunk."""
  _, _, orig, ds, fs = setup
  configs = [make_config("igs", steps=4, seed=s, learning_rate=0.01 * (1 + s)) for s in range(5)]
  args = (orig.fm, orig.params, orig.model_state, ds, fs)
  said = []
  whole = run_batch(configs, *args, memory_budget=10**15, say=said.append)
  assert not said and [r.batched_with for r in whole] == [5] * 5
  one_each = run_batch(configs, *args, memory_budget=1, say=said.append)
  assert len(said) == 1 and "chunks of 1" in said[0] and "JAXUNLEARN_MEMORY_BUDGET" in said[0]
  assert [r.batched_with for r in one_each] == [1] * 5
  # chunks of 2: 2 + 2 + 1 padded to 2
  monkeypatch.setattr(memory_lib, "runs_that_fit", lambda needed, runs, budget: 2)
  pairs = run_batch(configs, *args, memory_budget=1, say=said.append)
  assert "chunks of 2" in said[-1] and [r.batched_with for r in pairs] == [2, 2, 2, 2, 1]
  for a, b, c in zip(whole, one_each, pairs):
    for x, y, z in zip(*(jax.tree.leaves(r.params) for r in (a, b, c))):
      np.testing.assert_allclose(np.asarray(y), np.asarray(x), rtol=2e-5, atol=2e-6)
      np.testing.assert_allclose(np.asarray(z), np.asarray(x), rtol=2e-5, atol=2e-6)
    np.testing.assert_allclose(b.history["multiplier"], a.history["multiplier"], rtol=2e-5)
    np.testing.assert_allclose(c.history["multiplier"], a.history["multiplier"], rtol=2e-5)


@pytest.mark.parametrize("model, vectorize, mode", [("mlp", "map", "map"), ("cnn", "auto", "map")])
def test_runs_mapped_inside_one_program_equal_one_at_a_time(model, vectorize, mode, setup):
  """``lax.map`` over the runs (what ``auto`` picks for convolutions on CPU) equals each
  run alone, like ``vmap``."""
  _, _, _, ds, fs = setup
  fm, params, state = build_model(TrainConfig(model=model), ds)
  configs = [make_config("igs", steps=4, seed=s, tolerance=0.01 * s) for s in (0, 2)]
  batched = run_batch(configs, fm, params, state, ds, fs, vectorize=vectorize)
  assert [r.batch_mode for r in batched] == [mode, mode]
  for cfg, got in zip(configs, batched):
    want = run_method(cfg, fm, params, state, ds, fs, progress=False)
    for a, b in zip(jax.tree.leaves(got.params), jax.tree.leaves(want.params)):
      np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=2e-5, atol=1e-5)
    np.testing.assert_allclose(got.history["multiplier"], want.history["multiplier"], rtol=2e-5)


def test_batch_refuses_runs_of_different_programs(setup):
  _, _, orig, ds, fs = setup
  configs = [make_config("igs", steps=3), make_config("igs", steps=4)]
  with pytest.raises(ValueError, match="steps differs"):
    run_batch(configs, orig.fm, orig.params, orig.model_state, ds, fs)
  with pytest.raises(ValueError, match="vectorize must be"):
    run_batch(configs[:1], orig.fm, orig.params, orig.model_state, ds, fs, vectorize="pmap")


@pytest.mark.parametrize("method", ["explicit", "igs", "npo"])
def test_trainable_leaves_the_other_parameters_alone(setup, method):
  _, _, orig, ds, fs = setup
  names = sorted(orig.params)
  head = names[-1]
  cfg = make_config(method, steps=4, trainable=head)
  result = run_method(cfg, orig.fm, orig.params, orig.model_state, ds, fs, progress=False)
  for name in names:
    same = all(
      np.array_equal(a, b)
      for a, b in zip(jax.tree.leaves(orig.params[name]), jax.tree.leaves(result.params[name]))
    )
    assert same == (name != head), name
  with pytest.raises(ValueError, match="names no parameter"):
    run_method(cfg.replace(trainable="nothing"), orig.fm, orig.params, orig.model_state, ds, fs,
               progress=False)  # fmt: skip


def _step_compiles(records) -> int:
  return sum("Compiling jit(step)" in r.getMessage() for r in records)


@pytest.mark.parametrize("method", ["igs", "pcgrad", "npo"])
def test_a_learning_rate_tolerance_seed_or_other_rows_compile_nothing(setup, caplog, method):
  """optax's _common_test habit: log the compilations. A second run that differs only in
  its traced numbers, its seed and which rows it forgets (as many) compiles no step."""
  _, _, m, ds, _ = setup
  first_rows = data.make_forget_set(ds, "random:0.1", seed=0)
  other_rows = data.make_forget_set(ds, "random:0.1", seed=1)
  assert len(first_rows.forget_idx) == len(other_rows.forget_idx)
  shape = dict(steps=3, n_retain=24, n_forget=8)  # a program no other test compiled
  changed = dict(learning_rate=0.003, seed=5)
  if method == "igs":
    changed["tolerance"] = 0.2
  caplog.set_level("WARNING", logger="jax")
  with jax.log_compiles():
    run_method(make_config(method, **shape), m.fm, m.params, m.model_state, ds, first_rows,
               progress=False)  # fmt: skip
    first = _step_compiles(caplog.records)
    caplog.clear()
    run_method(make_config(method, **shape, **changed), m.fm, m.params, m.model_state, ds,
               other_rows, progress=False)  # fmt: skip
  assert first == 1
  assert _step_compiles(caplog.records) == 0
