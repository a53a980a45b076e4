"""An interrupted unlearning run resumes bitwise: SIGTERM mid-run saves a resumable state
(the graceful stop), a rerun without --resume is refused, and the resumed run equals the
uninterrupted one bitwise. (SIGKILL, which leaves the last periodic checkpoint, then
--resume: tests/experiments/test_successive.py, on a second deletion request.)"""

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
from experiments import unlearn
from jaxunlearn import data
from jaxunlearn.engine.config import TrainConfig
from jaxunlearn.engine.training import train

ROOT = pathlib.Path(__file__).resolve().parents[2]
ARGS = ["--method", "igs", "--forget", "class:0", "--no-progress", "--set", "steps=1000",
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
    time.sleep(0.005)  # in the loop: the first checkpoint (step 100 of 1,000) is written
  run.send_signal(signum)
  return run.communicate(timeout=120)[1]


def in_process(base, data_dir, workdir, *extra):
  """The same command in this process (``unlearn.main``): its exit status, or 0."""
  argv = ["--original", str(base / "orig"), "--workdir", str(workdir), "--data-dir",
          str(data_dir), *ARGS, *extra]  # fmt: skip
  try:
    unlearn.main(argv)
  except SystemExit as e:
    return e.code
  return 0


def test_a_stopped_run_resumes_bitwise_equal(original, capsys):
  """Only the run stopped needs its own process (a signal); the uninterrupted reference,
  the refused rerun and the resumed run are the same command in this one (6 process
  starts of ~5 s of imports each were half this test's time)."""
  base, data_dir = original
  stopped = cli(base, data_dir, base / "stopped")
  err = _interrupt_after_the_first_checkpoint(stopped, base / "stopped", signal.SIGTERM)
  assert stopped.returncode == 130, err
  assert "continue with --resume" in err and "Traceback" not in err, err
  assert not (base / "stopped" / "metrics.json").exists()
  capsys.readouterr()
  assert in_process(base, data_dir, base / "stopped") == 2
  assert "--resume" in capsys.readouterr().err
  assert in_process(base, data_dir, base / "full") == 0
  assert in_process(base, data_dir, base / "stopped", "--resume") == 0
  a, b = jaxunlearn.load(base / "full"), jaxunlearn.load(base / "stopped")
  for x, y in zip(jax.tree.leaves(a.params), jax.tree.leaves(b.params)):
    np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
  ma = json.loads((base / "full" / "metrics.json").read_text())
  mb = json.loads((base / "stopped" / "metrics.json").read_text())
  assert not ma["resumed"] and mb["resumed"]
  for key in ("UA", "RA", "TA", "MIA", "history"):
    assert ma[key] == mb[key], key
