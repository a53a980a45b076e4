"""Graceful stop: SIGTERM mid-run saves a resumable state; the resumed run is bitwise equal."""

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

import jaxunlearn
from jaxunlearn import data
from jaxunlearn.engine.config import TrainConfig
from jaxunlearn.engine.training import train

ROOT = pathlib.Path(__file__).resolve().parents[2]
ARGS = ["--method", "igs", "--forget", "class:0", "--no-progress", "--set", "steps=5000",
        "--set", "n_retain=16", "--set", "n_forget=4", "--checkpoint-every", "250"]  # fmt: skip


@pytest.fixture(scope="module")
def original(tmp_path_factory):
  base = tmp_path_factory.mktemp("stop")
  data_dir = base / "data"
  data.prepare("digits", data_dir)
  train(TrainConfig(epochs=1, model_kwargs={"hidden": (16,)}), base / "orig", data_dir=data_dir,
        progress=False)  # fmt: skip
  return base, data_dir


def cli(base, data_dir, workdir, *extra):
  env = {**os.environ, "JAXUNLEARN_DATA_DIR": str(data_dir), "JAX_PLATFORMS": "cpu"}
  return subprocess.Popen(
    [sys.executable, "-m", "experiments.unlearn", "--original", str(base / "orig"),
     "--workdir", str(workdir), *ARGS, *extra],
    cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
  )  # fmt: skip


def test_sigterm_saves_and_the_resumed_run_is_bitwise_equal(original):
  base, data_dir = original
  full = cli(base, data_dir, base / "full")
  assert full.wait(timeout=300) == 0, full.stderr.read()
  stopped = cli(base, data_dir, base / "stopped")
  lock = base / "stopped" / ".lock"
  deadline = time.time() + 120
  while time.time() < deadline and not (lock.exists() and lock.read_text()):
    time.sleep(0.01)
  ckpts = base / "stopped" / "checkpoints"
  while time.time() < deadline and not (ckpts.exists() and any(ckpts.iterdir())):
    time.sleep(0.005)  # in the loop: the first checkpoint (step 250 of 5,000) is written
  stopped.send_signal(signal.SIGTERM)
  _, err = stopped.communicate(timeout=120)
  assert stopped.returncode == 130, err
  assert "continue with --resume" in err and "Traceback" not in err, err
  assert not (base / "stopped" / "metrics.json").exists()
  resumed = cli(base, data_dir, base / "stopped", "--resume")
  out, err = resumed.communicate(timeout=300)
  assert resumed.returncode == 0, err
  a, b = jaxunlearn.load(base / "full"), jaxunlearn.load(base / "stopped")
  for x, y in zip(jax.tree.leaves(a.params), jax.tree.leaves(b.params)):
    np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
  ma = json.loads((base / "full" / "metrics.json").read_text())
  mb = json.loads((base / "stopped" / "metrics.json").read_text())
  assert ma["history"] == mb["history"] and ma["UA"] == mb["UA"]
