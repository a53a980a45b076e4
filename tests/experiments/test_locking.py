"""One writer per workdir, with real processes (issue 14)."""

import json
import os
import pathlib
import signal
import subprocess
import sys
import time

import pytest

from jaxunlearn import data
from jaxunlearn.engine.config import TrainConfig
from jaxunlearn.engine.training import train

ROOT = pathlib.Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def original(tmp_path_factory):
  base = tmp_path_factory.mktemp("lock")
  data_dir = base / "data"
  data.prepare("digits", data_dir)
  train(TrainConfig(epochs=1, model_kwargs={"hidden": (16,)}), base / "orig", data_dir=data_dir,
        progress=False)  # fmt: skip
  return base, data_dir


def cli(base, data_dir, *extra):
  env = {**os.environ, "JAXUNLEARN_DATA_DIR": str(data_dir), "JAX_PLATFORMS": "cpu"}
  args = ["--method", "ft", "--original", str(base / "orig"), "--forget", "class:0",
          "--workdir", str(base / "w"), "--no-progress", "--set", "steps=20000",
          "--checkpoint-every", "500", *extra]  # fmt: skip
  return subprocess.Popen(
    [sys.executable, "-m", "experiments.unlearn", *args],
    cwd=ROOT,
    env=env,
    stdout=subprocess.PIPE,
    stderr=subprocess.PIPE,
    text=True,
  )


def test_second_writer_is_refused_naming_the_holder_and_a_killed_holder_frees_it(original):
  base, data_dir = original
  first = cli(base, data_dir)
  lock = base / "w" / ".lock"
  deadline = time.time() + 120
  while time.time() < deadline and not (lock.exists() and lock.read_text()):
    time.sleep(0.01)
  holder = json.loads(lock.read_text())
  assert holder["pid"] == first.pid
  second = cli(base, data_dir)
  _, err = second.communicate(timeout=120)
  assert second.returncode == 2, err
  assert f"is in use by pid {first.pid}" in err and len(err.strip().splitlines()) == 1, err
  assert first.poll() is None  # the first one was not disturbed
  # SIGKILL: the kernel drops the lock; --resume takes it (or a fresh start if no
  # checkpoint was written yet) without any stale-lock cleanup.
  ckpts = base / "w" / "checkpoints"
  while time.time() < deadline and not (ckpts.exists() and any(ckpts.iterdir())):
    time.sleep(0.01)
  first.send_signal(signal.SIGKILL)
  first.wait()
  resumed = cli(base, data_dir, "--resume", "--set", "steps=20000")
  deadline = time.time() + 120
  while time.time() < deadline and json.loads(lock.read_text() or "{}").get("pid") != resumed.pid:
    time.sleep(0.01)
  assert json.loads(lock.read_text())["pid"] == resumed.pid
  resumed.send_signal(signal.SIGKILL)
  resumed.wait()
