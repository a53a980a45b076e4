"""Two processes with jax.distributed on localhost (CPU collectives) run data-parallel
unlearning on one global mesh and end where one process ends (examples/multihost.py)."""

import os
import pathlib
import socket
import subprocess
import sys

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "examples" / "multihost.py"


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("localhost", 0))
    return s.getsockname()[1]


def test_two_processes_on_one_mesh_match_one_process(tmp_path):
  env = {**os.environ, "JAX_PLATFORMS": "cpu", "XLA_FLAGS": ""}  # one CPU device each
  one = subprocess.run(
    [sys.executable, str(SCRIPT), "--out", str(tmp_path / "one.npz")],
    cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
  )  # fmt: skip
  assert one.returncode == 0, one.stderr[-2000:]
  port = _free_port()
  cmd = [sys.executable, str(SCRIPT), "--processes", "2", "--coordinator", f"localhost:{port}",
         "--out", str(tmp_path / "two.npz")]  # fmt: skip
  procs = [
    subprocess.Popen(
      [*cmd, "--process-id", str(i)],
      cwd=ROOT,
      env=env,
      text=True,
      stdout=subprocess.PIPE,
      stderr=subprocess.PIPE,
    )  # fmt: skip
    for i in range(2)
  ]
  outs = [p.communicate(timeout=300) for p in procs]
  for p, (_, err) in zip(procs, outs):
    assert p.returncode == 0, err[-2000:]
  assert "2 processes, 2 devices" in outs[0][0]
  alone, two = np.load(tmp_path / "one.npz"), np.load(tmp_path / "two.npz")
  assert sorted(alone.files) == sorted(two.files) and "multiplier" in alone.files
  assert alone["multiplier"].max() > 0.1  # λ moved, so the dual steps are compared too
  for key in alone.files:  # the two halves' gradients summed in another order: rounding
    np.testing.assert_allclose(two[key], alone[key], rtol=1e-4, atol=1e-5, err_msg=key)
