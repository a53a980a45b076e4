"""A tiny audit end to end: every file written, the numbers' invariants, and a rerun that
reuses the retrained population and the stored methods."""

import json

import numpy as np
import pytest

from experiments import audit
from jaxunlearn import data
from jaxunlearn.errors import ConfigError

KW = dict(
  models=8,
  methods=["igs", "ft"],
  variants=["igs-tol0.0=igs:tolerance=0.0"],
  overrides=["steps=4"],
  pretrain_overrides=["epochs=3", 'model_kwargs={"hidden": [32]}'],
  progress=False,
)


@pytest.fixture(scope="module")
def done(tmp_path_factory):
  root = tmp_path_factory.mktemp("audit")
  data.prepare("digits", root / "data")
  results = audit.run_audit(
    "digits-class", root / "w", forget="random:0.1", data_dir=root / "data", **KW
  )
  return root, results


def test_every_file_and_number(done):
  root, results = done
  out = root / "w" / "digits-class@random-0.1" / "audit-N8"
  for name in ("results.json", "results.md", "report.md", "epsilons.png", "confidences.png"):
    assert (out / name).stat().st_size > 0, name
  stored = json.loads((out / "results.json").read_text())
  assert stored["models"] == 8 and set(stored["methods"]) == {"igs", "ft", "igs-tol0.0"}
  assert stored["methods"]["igs-tol0.0"]["config"]["tolerance"] == 0.0
  assert stored["methods"]["igs"]["config"]["tolerance"] == 0.02
  for row in stored["methods"].values():
    assert 0 <= row["forget_score"] <= 1 and len(row["epsilons"]) == stored["forget_rows"]
    assert row["final_score"] <= row["forget_score"] * 1.05
    assert 0 <= row["lira_accuracy"] <= 100
  # Doing nothing: 8 copies of one model, a point mass every rule tells apart
  assert results["original"]["forget_score"] == 0.0
  table = (out / "results.md").read_text()
  assert "| **igs** |" in table
  # The halves are scored at the ceiling row's N (issue 34: once called "a lower ceiling",
  # while halves score higher than the whole population)
  assert stored["ceiling"]["models"] == 4
  assert "(4 unlearned against 4 retrained, the N of the ceiling row)" in table
  assert "lower ceiling" not in table
  assert "![Per-example ε](epsilons.png)" in (out / "report.md").read_text()


def test_a_rerun_reuses_everything_and_recomputes_a_removed_method(done):
  root, results = done
  folder = root / "w" / "digits-class@random-0.1"
  chunk = folder / "retrained" / "seeds-0-7" / "scores.npz"
  ft = folder / "audit-N8" / "ft.npz"
  before = chunk.stat().st_mtime_ns, ft.stat().st_mtime_ns
  (folder / "audit-N8" / "igs.json").unlink()
  again = audit.run_audit(
    "digits-class", root / "w", forget="random:0.1", data_dir=root / "data", **KW
  )
  assert (chunk.stat().st_mtime_ns, ft.stat().st_mtime_ns) == before
  for m in ("igs", "ft"):
    np.testing.assert_allclose(
      again["methods"][m]["epsilons"], results["methods"][m]["epsilons"], atol=1e-9
    )


def test_bad_input_fails_before_any_work(tmp_path):
  with pytest.raises(ConfigError, match="at least 8"):
    audit.run_audit("digits-class", tmp_path, models=4, methods=["igs"], progress=False)
  with pytest.raises(ConfigError, match="unknown method"):
    audit.run_audit("digits-class", tmp_path, models=8, methods=["nope"], progress=False)
  with pytest.raises(ConfigError, match="LABEL=METHOD"):
    audit.run_audit("digits-class", tmp_path, models=8, variants=["igs"], progress=False)
  assert not any(tmp_path.iterdir())


def test_a_population_stored_before_a_config_key_existed_is_reused(done):
  # a key added to UnlearnConfig since (at its default) does not make the stored run stale
  root, results = done
  path = root / "w" / "digits-class@random-0.1" / "audit-N8" / "ft.json"
  meta = json.loads(path.read_text())
  del meta["config"]["heldout_loss"]
  path.write_text(json.dumps(meta))
  again = audit.run_audit(
    "digits-class", root / "w", forget="random:0.1", data_dir=root / "data", **KW
  )
  assert again["methods"]["ft"]["epsilons"] == results["methods"]["ft"]["epsilons"]
  meta["config"]["learning_rate"] = 0.5
  path.write_text(json.dumps(meta))
  with pytest.raises(ConfigError, match="another config"):
    audit.run_audit("digits-class", root / "w", forget="random:0.1", data_dir=root / "data", **KW)
