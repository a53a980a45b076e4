"""experiments.jobs: the reference models trained once however many processes ask."""

import json
import threading
import time

from experiments import jobs
from jaxunlearn.engine.config import TrainConfig


def test_concurrent_callers_of_trained_train_once_and_all_get_the_model(tmp_path, monkeypatch):
  # Each caller sees no metrics.json at first; without a lock held across the look and the
  # training, both would train (the real train then refuses one of them: "already holds a run").
  calls = []

  def fake_train(config, workdir, *, resume, **_):
    calls.append(resume)
    (workdir / "checkpoints").mkdir(parents=True)
    time.sleep(0.3)
    (workdir / "metrics.json").write_text(json.dumps({"seconds": 1.0}))

  monkeypatch.setattr(jobs, "train", fake_train)
  monkeypatch.setattr(jobs, "load_trained", lambda workdir: str(workdir))
  workdir = tmp_path / "scenario" / "original"
  got, errors = [], []

  def caller():
    try:
      got.append(jobs.trained(workdir, TrainConfig(), progress=False))
    except Exception as e:  # noqa: BLE001 — any error of a caller fails the test below
      errors.append(e)

  threads = [threading.Thread(target=caller) for _ in range(3)]
  for t in threads:
    t.start()
  for t in threads:
    t.join(timeout=30)
  assert errors == [] and calls == [False] and got == [str(workdir)] * 3


def test_trained_resumes_a_killed_run_it_finds(tmp_path, monkeypatch):
  calls = []

  def fake_train(config, workdir, *, resume, **_):
    calls.append(resume)
    (workdir / "metrics.json").write_text("{}")

  monkeypatch.setattr(jobs, "train", fake_train)
  monkeypatch.setattr(jobs, "load_trained", lambda workdir: "model")
  (tmp_path / "original" / "checkpoints").mkdir(parents=True)
  assert jobs.trained(tmp_path / "original", TrainConfig(), progress=False) == "model"
  assert calls == [True]
