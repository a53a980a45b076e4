"""Parallel workers on one comparison: jobs claimed once, a killed worker's jobs redone."""

import json
import os
import pathlib
import signal
import subprocess
import sys
import time

import pytest

from experiments import compare
from jaxunlearn import data

ROOT = pathlib.Path(__file__).resolve().parents[2]
ARGS = ["--scenario", "digits-class", "--seeds", "3", "--methods", "igs,ft,rl,explicit",
        "--set", "steps=400", "--pretrain-set", "epochs=1", "--no-sweeps",
        "--sequential"]  # fmt: skip


def _records(folder):
  runs = pathlib.Path(folder) / "digits-class" / "runs"
  out = {}
  for p in sorted(runs.glob("*.json")):
    r = json.loads(p.read_text())
    out[p.name] = (r["metrics"], r["history"])
  return out


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
  """The data, and the comparison's runs from one process: what every split must give."""
  base = tmp_path_factory.mktemp("workers")
  data_dir = base / "data"
  data.prepare("digits", data_dir)
  compare.main([*ARGS, "--workdir", str(base / "one"), "--data-dir", str(data_dir),
                "--no-progress"])  # fmt: skip
  records = _records(base / "one")
  assert len(records) == 12
  return data_dir, records


def test_killed_worker_then_rerun_gives_every_job_once_and_identical_results(
  tmp_path, capsys, reference
):
  data_dir, reference = reference
  # Two processes by hand on one workdir; one is killed once it has stored a run.
  env = {**os.environ, "JAXUNLEARN_DATA_DIR": str(data_dir), "JAX_PLATFORMS": "cpu"}
  cmd = [sys.executable, "-m", "experiments.compare", *ARGS, "--workdir", str(tmp_path / "two"),
         "--no-progress"]  # fmt: skip
  a = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
  b = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
  runs = tmp_path / "two" / "digits-class" / "runs"
  deadline = time.time() + 240
  while time.time() < deadline and len(list(runs.glob("*.json"))) < 2:
    time.sleep(0.02)
  b.send_signal(signal.SIGKILL)
  b.wait()
  assert a.wait(timeout=300) == 0, a.stderr.read().decode()[-2000:]
  # The survivor took over the killed worker's claimed jobs; a rerun recomputes nothing.
  stored = {p.name: p.stat().st_mtime_ns for p in runs.glob("*.json")}
  assert len(stored) == 12
  compare.main([*ARGS, "--workdir", str(tmp_path / "two"), "--data-dir", str(data_dir),
                "--no-progress"])  # fmt: skip
  assert {p.name: p.stat().st_mtime_ns for p in runs.glob("*.json")} == stored
  assert _records(tmp_path / "two") == reference
  capsys.readouterr()


def test_a_sigkilled_worker_of_workers_2_then_a_rerun_finishes_every_job_once(tmp_path, reference):
  """--workers 2 starts two processes; one is killed, the parent says so, and a rerun
  finishes every job once, equal to one process."""
  data_dir, reference = reference
  env = {**os.environ, "JAXUNLEARN_DATA_DIR": str(data_dir), "JAX_PLATFORMS": "cpu"}
  cmd = [sys.executable, "-m", "experiments.compare", *ARGS, "--workdir", str(tmp_path / "w"),
         "--no-progress"]  # fmt: skip
  parent = subprocess.Popen([*cmd, "--workers", "2"], cwd=ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)  # fmt: skip
  runs = tmp_path / "w" / "digits-class" / "runs"
  pid_file = tmp_path / "w" / "workers" / "worker-1.pid"
  deadline = time.time() + 240
  while time.time() < deadline and not (pid_file.exists() and len(list(runs.glob("*.json"))) >= 2):
    time.sleep(0.02)
  os.kill(int(pid_file.read_text()), signal.SIGKILL)
  _, err = parent.communicate(timeout=300)
  assert parent.returncode == 2 and "worker 1 exited with status -9" in err.decode()
  assert len(sorted((tmp_path / "w" / "workers").glob("worker-*.log"))) == 2
  rerun = subprocess.run([*cmd, "--workers", "2"], cwd=ROOT, env=env, capture_output=True,
                         timeout=300)  # fmt: skip
  assert rerun.returncode == 0, rerun.stderr.decode()[-2000:]
  assert "[2 workers:" in rerun.stderr.decode()
  names = sorted(p.name for p in runs.glob("*.json"))
  assert len(names) == 12 == len(set(names))
  assert _records(tmp_path / "w") == reference
