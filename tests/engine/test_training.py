"""Real small pretraining and retraining on digits, resume after SIGKILL, bad input."""

import json
import os
import pathlib
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from jaxunlearn import data, metrics
from jaxunlearn.engine.checkpoint import CheckpointError
from jaxunlearn.engine.config import TrainConfig
from jaxunlearn.engine.training import load_trained, train
from jaxunlearn.errors import ConfigError

ROOT = pathlib.Path(__file__).resolve().parents[2]
SMALL = TrainConfig(epochs=8)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
  d = tmp_path_factory.mktemp("data")
  data.prepare("digits", d)
  return d


def test_pretrain_and_retrain_on_digits(tmp_path, data_dir):
  original = train(SMALL, tmp_path / "orig", data_dir=data_dir, progress=False)
  assert original["test_accuracy"] >= 90.0
  retrained = train(
    SMALL,
    tmp_path / "retrain",
    forget_spec="class:3",
    retrain=True,
    data_dir=data_dir,
    progress=False,
  )
  # Never saw a 3: it cannot classify 3s, and keeps the other classes.
  assert retrained["forget_accuracy"] == 0.0
  assert retrained["test_forget_accuracy"] == 0.0
  assert retrained["test_retain_accuracy"] >= 90.0
  lines = (tmp_path / "orig" / "metrics.jsonl").read_text().splitlines()
  assert len(lines) == SMALL.epochs and "val_accuracy" in json.loads(lines[-1])
  restored = load_trained(tmp_path / "orig")
  ds = data.load_dataset("digits", data_dir)
  acc = metrics.accuracy(np.asarray(restored.predict(ds.test.images)), ds.test.labels)
  assert acc == pytest.approx(original["test_accuracy"])
  assert restored.metadata["config"]["epochs"] == SMALL.epochs
  best = load_trained(tmp_path / "orig", which="best")
  assert best.metadata["kind"] == "pretrain"


def run_cli(*args, env_data_dir):
  env = {**os.environ, "JAXUNLEARN_DATA_DIR": str(env_data_dir), "JAX_PLATFORMS": "cpu"}
  return subprocess.Popen(
    [sys.executable, "-m", "experiments.pretrain", "--no-progress", *args],
    cwd=ROOT,
    env=env,
    stdout=subprocess.PIPE,
    stderr=subprocess.PIPE,
    text=True,
  )


def test_kill_and_resume_is_bitwise_equal(tmp_path, data_dir):
  args = ["--set", "epochs=10", "--set", 'model_kwargs={"hidden": [64]}']
  full = run_cli("--workdir", str(tmp_path / "full"), *args, env_data_dir=data_dir)
  assert full.wait(timeout=300) == 0, full.stderr.read()
  killed = run_cli("--workdir", str(tmp_path / "killed"), *args, env_data_dir=data_dir)
  log = tmp_path / "killed" / "metrics.jsonl"
  deadline = time.time() + 120
  while time.time() < deadline:
    if log.exists() and len(log.read_text().splitlines()) >= 3:
      break
    time.sleep(0.01)
  killed.send_signal(signal.SIGKILL)
  killed.wait()
  assert not (tmp_path / "killed" / "metrics.json").exists()  # it really died mid-run
  resumed = run_cli("--workdir", str(tmp_path / "killed"), *args, "--resume", env_data_dir=data_dir)
  out, err = resumed.communicate(timeout=300)
  assert resumed.returncode == 0, err
  result = json.loads(out)
  assert result["resumed_from_epoch"] >= 1
  a, b = load_trained(tmp_path / "full"), load_trained(tmp_path / "killed")
  for x, y in zip(jax.tree.leaves(a.params), jax.tree.leaves(b.params)):
    np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
  ma = json.loads((tmp_path / "full" / "metrics.json").read_text())
  for key in ("train_accuracy", "val_accuracy", "test_accuracy"):
    assert ma[key] == result[key]


def test_bad_input_is_one_line_and_writes_nothing(tmp_path, data_dir):
  # Real processes for two cases (exit status, stderr); the rest run in-process in
  # tests/test_reliability.py and below, which is much faster.
  cases = [
    (["--set", "epochz=3"], "did you mean 'epochs'"),
    (["--set", "batch_size=100000"], "larger than the training set"),
  ]
  for i, (args, message) in enumerate(cases):
    work = tmp_path / f"w{i}"
    proc = run_cli("--workdir", str(work), *args, env_data_dir=data_dir)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 2, (args, err)
    assert message in err and "Traceback" not in err, (args, err)
    assert len(err.strip().splitlines()) == 1, err
    assert not (work / "checkpoints").exists()


@pytest.mark.parametrize(
  "args,message",
  [
    (["--set", "learning_rate=-1"], "learning_rate must be > 0"),
    (["--model", "transformer"], "unknown model"),
    (["--dataset", "imagenet"], "no default recipe"),
    (["--retrain"], "needs --forget"),
    (["--forget", "class:42", "--retrain"], "class"),
  ],
)
def test_bad_input_in_process(args, message, tmp_path, data_dir, capsys, monkeypatch):
  from experiments import pretrain

  monkeypatch.setenv("JAXUNLEARN_DATA_DIR", str(data_dir))
  with pytest.raises(SystemExit) as exc:
    pretrain.main(["--workdir", str(tmp_path / "w"), "--no-progress", *args])
  err = capsys.readouterr().err.strip()
  assert exc.value.code == 2 and message in err and len(err.splitlines()) == 1
  assert not (tmp_path / "w" / "checkpoints").exists()


def test_existing_run_is_not_overwritten_and_mismatch_is_refused(tmp_path, data_dir):
  train(TrainConfig(epochs=1), tmp_path, data_dir=data_dir, progress=False)
  before = sorted(p.name for p in (tmp_path / "checkpoints").rglob("*"))
  with pytest.raises(ConfigError, match="already holds a run"):
    train(TrainConfig(epochs=1), tmp_path, data_dir=data_dir, progress=False)
  with pytest.raises(ConfigError, match="config differs"):
    train(
      TrainConfig(epochs=1, model_kwargs={"hidden": (32,)}),
      tmp_path,
      data_dir=data_dir,
      progress=False,
      resume=True,
    )
  assert sorted(p.name for p in (tmp_path / "checkpoints").rglob("*")) == before


def test_missing_checkpoint_is_a_clear_error(tmp_path):
  with pytest.raises(CheckpointError):
    load_trained(tmp_path / "nothing")
