"""jaxunlearn.load round-trips every workdir kind (issue 11)."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxunlearn
from experiments import unlearn as unlearn_cli
from jaxunlearn import data
from jaxunlearn.engine.config import TrainConfig
from jaxunlearn.engine.training import load_trained, train
from jaxunlearn.errors import CheckpointError, ConfigError, DataError

SMALL = TrainConfig(epochs=1, model_kwargs={"hidden": (16,)})


def _command(base, data_dir, original, forget, workdir, *extra, method="igs"):
  """python -m experiments.unlearn from workdir ``original`` into ``workdir``; returns
  its metrics.json."""
  unlearn_cli.main(
    ["--method", method, "--original", str(base / original), "--forget", forget,
     "--workdir", str(base / workdir), "--data-dir", str(data_dir), "--no-progress", *extra]
  )  # fmt: skip
  return json.loads((base / workdir / "metrics.json").read_text())


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
  base = tmp_path_factory.mktemp("load")
  data_dir = base / "data"
  data.prepare("digits", data_dir)
  train(SMALL, base / "orig", data_dir=data_dir, progress=False)
  train(
    SMALL, base / "retrain", data_dir=data_dir, progress=False, retrain=True, forget_spec="class:1"
  )
  _command(base, data_dir, "orig", "class:1", "cli", "--set", "steps=20")
  return base, data_dir


def _equal(a, b):
  la, lb = jax.tree.leaves(a), jax.tree.leaves(b)
  assert len(la) == len(lb)
  for x, y in zip(la, lb):
    np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


@pytest.mark.parametrize("kind", ["orig", "retrain"])
def test_trained_workdirs(runs, kind):
  base, _ = runs
  loaded = jaxunlearn.load(base / kind, optimizer_state=True)
  assert loaded.kind == ("pretrain" if kind == "orig" else "retrain")
  _equal(loaded.params, load_trained(base / kind).params)
  assert loaded.opt_state is not None
  assert loaded.predict(np.zeros((2, 8, 8, 1), np.float32)).shape == (2, 10)


def test_cli_unlearned_workdir_with_lambda(runs, capsys):
  base, data_dir = runs
  capsys.readouterr()
  loaded = jaxunlearn.load(base / "cli", optimizer_state=True)
  assert loaded.kind == "unlearned" and loaded.step == 20
  metrics = json.loads((base / "cli" / "metrics.json").read_text())
  assert float(loaded.multiplier) == pytest.approx(metrics["history"]["multiplier"][-1])
  ds = data.load_dataset("digits", data_dir)
  fs = data.make_forget_set(ds, "class:1")
  pred = np.asarray(loaded.predict(ds.train.images)).argmax(-1)
  ua = 100 * np.mean(pred[fs.forget_idx] != ds.train.labels[fs.forget_idx])
  assert metrics["UA"] == pytest.approx(ua)
  # the old reader names the new one
  with pytest.raises(ConfigError, match="use jaxunlearn.load"):
    load_trained(base / "cli")


def test_api_workdir_round_trip(tmp_path):
  x = np.random.default_rng(0).normal(size=(40, 3)).astype(np.float32)
  y = (x[:, 0] > 0).astype(np.int32)
  params = {"layer": {"w": jnp.ones((3, 2)) * 0.1, "b": jnp.zeros(2)}}
  apply_fn = lambda p, x: x @ p["layer"]["w"] + p["layer"]["b"]
  report = jaxunlearn.unlearn(
    apply_fn, params, x, y, forget=[0, 1, 2], steps=3, workdir=tmp_path / "api"
  )
  loaded = jaxunlearn.load(tmp_path / "api", optimizer_state=True)
  _equal(loaded.params, report.params)
  # λ survives the save (the state comes back as saved dicts; issue 22, point 1)
  assert float(loaded.multiplier) == pytest.approx(float(report.history["multiplier"][-1]))
  assert loaded.metadata["ledger"]["requests"][0]["rows"] == [0, 1, 2]
  same = jaxunlearn.load(tmp_path / "api", like=params)
  assert jax.tree.structure(same.params) == jax.tree.structure(params)
  with pytest.raises(ConfigError, match="call your apply function"):
    loaded.predict(x)
  with pytest.raises(ConfigError, match="already holds a run"):
    jaxunlearn.unlearn(apply_fn, params, x, y, forget=[5], steps=1, workdir=tmp_path / "api")


def test_a_directory_without_checkpoints_is_one_clear_error(tmp_path):
  with pytest.raises(CheckpointError, match="holds no checkpoints"):
    jaxunlearn.load(tmp_path)


def test_one_ledger_a_series_continues_across_the_api_and_the_command(runs, capsys):
  """orig → command (class 1, the fixture) → API (class 2) → command (class 3) → API:
  each continues the other's workdir; a request sent again is refused by both (issue 22)."""

  from jaxunlearn.errors import ForgetSpecError
  from jaxunlearn.transforms.implicit import ImplicitGradientSurgeryState

  base, data_dir = runs
  ds = data.load_dataset("digits", data_dir)
  arrays = dict(
    x=ds.train.images, y=ds.train.labels, ids=ds.train.ids, test=(ds.test.images, ds.test.labels)
  )
  second = jaxunlearn.unlearn(
    None, previous=base / "cli", forget="class:2", steps=5, workdir=base / "api2", **arrays
  )
  classes = lambda *k: np.flatnonzero(np.isin(ds.train.labels, k)).tolist()
  assert second.forgotten.tolist() == classes(1, 2)
  assert [r["spec"] for r in second.requests] == ["class:1", "class:2"]
  # the budget holds against the model before the first request (the command's anchor)
  assert isinstance(second.opt_state, ImplicitGradientSurgeryState)
  _equal(second.opt_state.start_params, jaxunlearn.load(base / "orig").params)
  with pytest.raises(ForgetSpecError, match="applied already"):
    jaxunlearn.unlearn(None, previous=base / "api2", forget="class:1", steps=1, **arrays)

  capsys.readouterr()
  out = _command(base, data_dir, "api2", "class:3", "cli3", "--set", "steps=5")
  assert out["forgotten_examples"] == len(classes(1, 2, 3))
  assert [r["spec"] for r in out["requests"]] == ["class:1", "class:2", "class:3"]
  assert out["budget"]["kind"] == "increase" and isinstance(out["budget"]["held"], bool)
  pred = np.asarray(jaxunlearn.load(base / "cli3").predict(ds.train.images)).argmax(-1)
  rows = classes(3)  # this request's UA, on its rows only
  assert out["request_metrics"]["UA"] == pytest.approx(
    100 * np.mean(pred[rows] != ds.train.labels[rows])
  )
  with pytest.raises(SystemExit) as exit_:
    _command(base, data_dir, "cli3", "class:2", "again")
  assert exit_.value.code == 2 and "applied already" in capsys.readouterr().err
  assert not (base / "again").exists()

  fourth = jaxunlearn.unlearn(None, previous=base / "cli3", forget="class:4", steps=2, **arrays)
  assert len(fourth.ledger) == 4 and fourth.forgotten.tolist() == classes(1, 2, 3, 4)
  with pytest.raises(DataError, match="other data"):
    jaxunlearn.unlearn(
      None,
      previous=base / "cli3",
      forget="class:4",
      steps=2,
      **{**arrays, "y": ds.train.labels[::-1]},
    )


def test_an_api_series_from_a_pretrained_workdir_continues_with_the_command(runs, capsys):
  """model=jaxunlearn.load(pretrained): the API's workdir names the model, the dataset and
  the anchor, so the command takes it as --original (issue 22)."""

  base, data_dir = runs
  ds = data.load_dataset("digits", data_dir)
  first = jaxunlearn.unlearn(
    jaxunlearn.load(base / "orig"), x=ds.train.images, y=ds.train.labels, ids=ds.train.ids,
    test=(ds.test.images, ds.test.labels), forget="class:5", steps=3, workdir=base / "api1",
  )  # fmt: skip
  assert first.ledger.anchor == str((base / "orig").resolve())
  assert jaxunlearn.load(base / "api1").fm is not None  # the model is rebuilt, not raw dicts
  capsys.readouterr()
  out = _command(base, data_dir, "api1", "class:6", "cli2", "--set", "steps=3", method="ft")
  assert [r["spec"] for r in out["requests"]] == ["class:5", "class:6"]
  assert out["budget"] == {}  # fine-tuning promises nothing about the retain loss
  assert out["forgotten_examples"] == int(np.isin(ds.train.labels, [5, 6]).sum())
