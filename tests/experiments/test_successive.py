"""Successive deletion requests through the CLI: each applied exactly once (issue 11)."""

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
STEPS = ["--set", "steps=600", "--set", "n_retain=16", "--set", "n_forget=4"]


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
  base = tmp_path_factory.mktemp("successive")
  data_dir = base / "data"
  data.prepare("digits", data_dir)
  train(
    TrainConfig(epochs=1, model_kwargs={"hidden": (16,)}),
    base / "orig",
    data_dir=data_dir,
    progress=False,
  )
  ds = data.load_dataset("digits", data_dir)
  files = {}
  for name, rows in (("a", range(0, 30)), ("b", range(20, 60)), ("c", range(60, 80))):
    files[name] = base / f"{name}.txt"
    data.write_ids_file(files[name], ds.train.ids[list(rows)])
  return base, data_dir, files


def cli(*args, data_dir):
  env = {**os.environ, "JAXUNLEARN_DATA_DIR": str(data_dir), "JAX_PLATFORMS": "cpu"}
  return subprocess.Popen(
    [sys.executable, "-m", "experiments.unlearn", "--no-progress", "--method", "igs", *args],
    cwd=ROOT,
    env=env,
    stdout=subprocess.PIPE,
    stderr=subprocess.PIPE,
    text=True,
  )


def request(base, data_dir, start, ids_file, workdir, *extra):
  unlearn.main(
    [
      "--method", "igs", "--original", str(start), "--forget", f"ids:{ids_file}",
      "--workdir", str(base / workdir), "--data-dir", str(data_dir), "--no-progress",
      "--checkpoint-every", "100", *STEPS, *extra,
    ]
  )  # fmt: skip
  return json.loads((base / workdir / "metrics.json").read_text())


def test_three_requests_exactly_once_after_a_kill(setup, capsys):
  base, data_dir, files = setup
  first = request(base, data_dir, base / "orig", files["a"], "r1")
  assert first["forgotten_examples"] == 30 and len(first["requests"]) == 1
  # rows, not a class: the command takes IGS's defaults for rows, as jaxunlearn.unlearn does
  assert (first["config"]["start_noise"], first["config"]["tolerance"]) == (0.45, 0.01)

  # The second request, uninterrupted: the reference.
  reference = request(base, data_dir, base / "r1", files["b"], "r2-ref")
  assert reference["forgotten_examples"] == 60  # 20..29 were forgotten already

  # The same request killed mid-run (SIGKILL after its first checkpoint), then resumed.
  args = [
    "--original", str(base / "r1"), "--forget", f"ids:{files['b']}",
    "--workdir", str(base / "r2"), "--checkpoint-every", "100", *STEPS,
  ]  # fmt: skip
  killed = cli(*args, data_dir=data_dir)
  ckpts = base / "r2" / "checkpoints"
  deadline = time.time() + 120
  while time.time() < deadline and killed.poll() is None:
    if ckpts.exists() and any(p.name.isdigit() for p in ckpts.iterdir()):
      break
    time.sleep(0.005)
  killed.send_signal(signal.SIGKILL)
  killed.wait()
  assert not (base / "r2" / "metrics.json").exists(), "the run finished before the kill"
  # the rest in this process: only the killed run needs its own
  second = request(base, data_dir, base / "r1", files["b"], "r2", "--resume")
  assert second["resumed"] is True
  a, b = jaxunlearn.load(base / "r2-ref"), jaxunlearn.load(base / "r2")
  for x, y in zip(jax.tree.leaves(a.params), jax.tree.leaves(b.params)):
    np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
  for key in ("UA", "RA", "TA", "MIA"):
    assert second[key] == reference[key]

  # Applied once: rerunning the finished request, or sending it again, is refused.
  for argv, message in (
    (args + ["--resume"], "already holds an unlearning result"),
    (
      ["--original", str(base / "r2"), "--forget", f"ids:{files['b']}",
       "--workdir", str(base / "again")],
      "was applied already",
    ),
  ):  # fmt: skip
    capsys.readouterr()
    with pytest.raises(SystemExit) as refused:
      unlearn.main([*argv, "--method", "igs", "--data-dir", str(data_dir), "--no-progress"])
    err = capsys.readouterr().err
    assert refused.value.code == 2 and message in err, err
    assert not (base / "again").exists()

  third = request(base, data_dir, base / "r2", files["c"], "r3")
  specs = [r["spec"] for r in third["requests"]]
  assert specs == [f"ids:{files[k]}" for k in "abc"]
  assert len({r["digest"] for r in third["requests"]}) == 3
  assert third["forgotten_examples"] == 80
  # every forgotten example is in UA's denominator: the model was evaluated on the union
  loaded = jaxunlearn.load(base / "r3", optimizer_state=True)
  assert loaded.kind == "unlearned" and len(loaded.metadata["ledger"]["requests"]) == 3
  assert float(loaded.multiplier) == pytest.approx(third["multiplier"])
  ds = data.load_dataset("digits", data_dir)
  pred = np.asarray(loaded.predict(ds.train.images)).argmax(-1)
  forgotten = np.arange(80)
  ua = 100 * np.mean(pred[forgotten] != ds.train.labels[forgotten])
  assert third["UA"] == pytest.approx(ua)
  assert (base / "r3" / "history.png").stat().st_size > 0
  capsys.readouterr()
