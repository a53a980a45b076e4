"""Two processes with jax.distributed on localhost (CPU collectives) run data-parallel
unlearning on one global mesh (examples/multihost.py): one is killed after their first
checkpoint, the other names it and exits, and the two rerun with --resume end where one
process ends. (The resumed run is an uninterrupted one from the checkpoint on: one test
covers both, to keep the suite short.)"""

import os
import pathlib
import runpy
import socket
import subprocess
import sys
import time

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "examples" / "multihost.py"


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("localhost", 0))
    return s.getsockname()[1]


def _start(cmd, env, process_ids=(0, 1)):
  return [
    subprocess.Popen(
      [*cmd, "--process-id", str(i)],
      cwd=ROOT,
      env=env,
      text=True,
      stdout=subprocess.PIPE,
      stderr=subprocess.PIPE,
    )  # fmt: skip
    for i in process_ids
  ]


def test_two_processes_killed_and_resumed_match_one_process(tmp_path):
  """SIGKILL one of two processes after their first checkpoint: the other exits with one
  line naming it; both rerun with --resume finish from the checkpoint, at the numbers of
  one process (float rounding: the halves' gradients sum in another order)."""
  env = {**os.environ, "JAX_PLATFORMS": "cpu", "XLA_FLAGS": ""}
  steps = ["--steps", "100"]
  # the one-process reference in this process: the script's main, without a process start
  runpy.run_path(str(SCRIPT))["main"]([*steps, "--out", str(tmp_path / "one.npz")])
  workdir, out = tmp_path / "run", tmp_path / "two.npz"

  def cmd():
    return [sys.executable, str(SCRIPT), "--processes", "2", "--coordinator",
            f"localhost:{_free_port()}", *steps, "--workdir", str(workdir),
            "--checkpoint-every", "10", "--out", str(out)]  # fmt: skip

  procs = _start(cmd(), env)
  ckpts, deadline = workdir / "checkpoints", time.time() + 180
  while time.time() < deadline and not (
    ckpts.is_dir() and any(p.name.isdigit() for p in ckpts.iterdir())
  ):
    time.sleep(0.01)
  procs[1].kill()
  procs[1].communicate(timeout=60)
  _, err = procs[0].communicate(timeout=120)
  assert procs[0].returncode == 3, err[-3000:]
  said = [line for line in err.splitlines() if line.startswith("multihost:")]
  assert len(said) == 1 and "lost process 1" in said[0] and "--resume" in said[0], err[-3000:]
  assert "Traceback" not in err and not out.exists()
  procs = _start([*cmd(), "--resume"], env)
  outs = [p.communicate(timeout=300) for p in procs]
  for p, (_, err) in zip(procs, outs):
    assert p.returncode == 0, err[-2000:]
  assert "2 processes, 2 devices" in outs[0][0]
  alone, two = np.load(tmp_path / "one.npz"), np.load(out)
  assert sorted(alone.files) == sorted(two.files) and "multiplier" in alone.files
  assert alone["multiplier"].max() > 0.1  # λ moved, so the dual steps are compared too
  for key in alone.files:
    np.testing.assert_allclose(two[key], alone[key], rtol=1e-4, atol=1e-5, err_msg=key)
