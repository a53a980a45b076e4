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
ARGS = ["--scenario", "digits-class", "--seeds", "2", "--methods", "igs,ft,rl",
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
  assert len(records) == 6
  return data_dir, records


def test_a_sigkilled_worker_of_workers_2_is_named_and_its_jobs_done_once(
  tmp_path, reference, capsys
):
  """--workers 2 starts two processes on one workdir; one is killed once runs are stored:
  the parent names it, the survivor takes over the killed worker's claimed jobs, and a
  rerun recomputes nothing; every job once, equal to one process."""
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
  stored = {p.name: p.stat().st_mtime_ns for p in runs.glob("*.json")}
  assert len(stored) == 6  # the survivor finished the killed worker's claimed job too
  capsys.readouterr()  # the rerun's parent in this process (its workers are processes)
  compare.main([*ARGS, "--workdir", str(tmp_path / "w"), "--no-progress", "--data-dir",
                str(data_dir), "--workers", "2"])  # fmt: skip
  assert "[2 workers:" in capsys.readouterr().err
  assert {p.name: p.stat().st_mtime_ns for p in runs.glob("*.json")} == stored
  assert _records(tmp_path / "w") == reference
