"""The comparison on a tiny budget writes every file; completed runs are reused."""

import json
import os
import pathlib
import subprocess
import sys

from experiments import compare
from jaxunlearn import data

ROOT = pathlib.Path(__file__).resolve().parents[2]
METHODS = ["igs", "explicit", "pdu", "ft"]


def test_tiny_comparison_writes_all_files(tmp_path):
  data_dir = tmp_path / "data"
  data.prepare("digits", data_dir)
  kwargs = dict(
    seeds=2,
    methods=METHODS,
    overrides=["steps=3"],
    pretrain_overrides=["epochs=2"],
    data_dir=data_dir,
    progress=False,
    sweeps=2,
  )
  results = compare.run_scenario("digits-class", tmp_path / "w", **kwargs)
  out = tmp_path / "w" / "digits-class"
  for name in (
    "results.md",
    "results.csv",
    "results.json",
    "ua_ta.png",
    "multiplier.png",
    "retain_loss.png",
  ):
    assert (out / name).stat().st_size > 1000 or name.endswith((".md", ".csv")), name
    assert (out / name).stat().st_size > 0
  table = (out / "results.md").read_text()
  for m in METHODS + ["Original", "Retrain"]:
    assert f"| {m}" in table or f"| **{m}**" in table
  assert set(results["summary"]) == set(METHODS)
  assert results["summary"]["igs"]["n"] == 2
  sweep_runs = [r for r in results["runs"] if r["sweep"]]
  assert {r["method"] for r in sweep_runs} == {"igs", "explicit", "pdu"}
  csv_rows = (out / "results.csv").read_text().strip().splitlines()
  assert len(csv_rows) == 1 + 2 + len(METHODS)
  # A second call reuses every completed run (same numbers, no recomputation).
  mtimes = {p.name: p.stat().st_mtime_ns for p in (out / "runs").iterdir()}
  again = compare.run_scenario("digits-class", tmp_path / "w", **kwargs)
  assert {p.name: p.stat().st_mtime_ns for p in (out / "runs").iterdir()} == mtimes
  assert again["summary"] == json.loads(json.dumps(results["summary"]))


def test_compare_cli_rejects_unknown_scenario(tmp_path):
  out = subprocess.run(
    [
      sys.executable,
      "-m",
      "experiments.compare",
      "--scenario",
      "cifar11",
      "--workdir",
      str(tmp_path / "w"),
    ],
    capture_output=True,
    text=True,
    cwd=ROOT,
    timeout=120,
  )
  assert out.returncode == 2
  assert "unknown scenario 'cifar11'" in out.stderr and "digits-class" in out.stderr
  assert not (tmp_path / "w").exists()


def test_pareto_sweep_writes_table_and_plot(tmp_path):
  from experiments import pareto

  data_dir = tmp_path / "data"
  data.prepare("digits", data_dir)
  result = pareto.sweep(
    "digits-class",
    tmp_path / "p",
    [-0.05, 0.05],
    seeds=1,
    overrides=["steps=3"],
    pretrain_overrides=["epochs=2"],
    data_dir=data_dir,
    progress=False,
  )
  out = tmp_path / "p" / "digits-class"
  assert [r["tolerance"] for r in result["rows"]] == [-0.05, 0.05]
  assert (out / "pareto.png").stat().st_size > 1000
  assert (out / "pareto.md").read_text().count("\n| ") == 3


def test_killed_comparison_resumes_without_recomputing(tmp_path):
  import signal
  import time

  data_dir = tmp_path / "data"
  data.prepare("digits", data_dir)
  env = {**os.environ, "JAXUNLEARN_DATA_DIR": str(data_dir), "JAX_PLATFORMS": "cpu"}
  cmd = [
    sys.executable,
    "-m",
    "experiments.compare",
    "--scenario",
    "digits-class",
    "--workdir",
    str(tmp_path / "w"),
    "--seeds",
    "2",
    "--methods",
    "ft,rl",
    "--set",
    "steps=3",
    "--pretrain-set",
    "epochs=2",
    "--no-sweeps",
    "--no-progress",
  ]
  proc = subprocess.Popen(
    cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
  )
  runs = tmp_path / "w" / "digits-class" / "runs"
  deadline = time.time() + 240
  while time.time() < deadline and proc.poll() is None:
    if runs.exists() and len(list(runs.glob("*.json"))) >= 1:
      break
    time.sleep(0.01)
  proc.send_signal(signal.SIGKILL)
  proc.wait()
  done = {p.name: p.stat().st_mtime_ns for p in runs.glob("*.json")}
  assert 1 <= len(done) < 4 and not list(runs.glob("*.tmp*"))
  out = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
  assert out.returncode == 0, out.stderr
  after = {p.name: p.stat().st_mtime_ns for p in runs.glob("*.json")}
  assert len(after) == 4
  assert all(after[name] == mtime for name, mtime in done.items())  # not recomputed
