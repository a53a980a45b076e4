"""Interrupted unlearning runs resume bitwise: SIGTERM mid-run saves a resumable state (the
graceful stop), SIGKILL leaves the last periodic checkpoint; a rerun without --resume is
refused, and each resumed run equals the uninterrupted one bitwise."""

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
ARGS = ["--method", "igs", "--forget", "class:0", "--no-progress", "--set", "steps=2000",
        "--set", "n_retain=16", "--set", "n_forget=4", "--checkpoint-every", "100"]  # fmt: skip


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


def _interrupt_after_the_first_checkpoint(run, workdir, signum):
  lock = workdir / ".lock"
  deadline = time.time() + 120
  while time.time() < deadline and not (lock.exists() and lock.read_text()):
    time.sleep(0.01)
  ckpts = workdir / "checkpoints"
  while time.time() < deadline and not (
    ckpts.exists() and any(p.name.isdigit() for p in ckpts.iterdir())
  ):
    time.sleep(0.005)  # in the loop: the first checkpoint (step 100 of 2,000) is written
  run.send_signal(signum)
  return run.communicate(timeout=120)[1]


def test_stopped_or_killed_runs_resume_bitwise_equal(original):
  base, data_dir = original
  full = cli(base, data_dir, base / "full")
  assert full.wait(timeout=300) == 0, full.stderr.read()
  stopped = cli(base, data_dir, base / "stopped")
  err = _interrupt_after_the_first_checkpoint(stopped, base / "stopped", signal.SIGTERM)
  assert stopped.returncode == 130, err
  assert "continue with --resume" in err and "Traceback" not in err, err
  killed = cli(base, data_dir, base / "killed")
  _interrupt_after_the_first_checkpoint(killed, base / "killed", signal.SIGKILL)
  assert killed.returncode == -signal.SIGKILL
  for workdir in (base / "stopped", base / "killed"):
    assert not (workdir / "metrics.json").exists()
  refused = cli(base, data_dir, base / "killed")
  assert refused.wait(timeout=300) == 2 and "--resume" in refused.stderr.read()
  a = jaxunlearn.load(base / "full")
  ma = json.loads((base / "full" / "metrics.json").read_text())
  assert not ma["resumed"]
  for name in ("stopped", "killed"):
    resumed = cli(base, data_dir, base / name, "--resume")
    out, err = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, (name, err)
    b = jaxunlearn.load(base / name)
    for x, y in zip(jax.tree.leaves(a.params), jax.tree.leaves(b.params)):
      np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
    mb = json.loads((base / name / "metrics.json").read_text())
    assert mb["resumed"], name
    for key in ("UA", "RA", "TA", "MIA", "history"):
      assert ma[key] == mb[key], (name, key)
