"""A tiny audit end to end: every file written, the numbers' invariants, and a rerun that
reuses the retrained population and the stored methods."""

import json
import math
import pathlib

import numpy as np
import pytest
from forget_score_reference import _reference_epsilon

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
  fractions=(0.34, 1.0),
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
  for name in (
    "results.json", "results.md", "report.md", "epsilons.png", "confidences.png", "frontier.png"
  ):  # fmt: skip
    assert (out / name).stat().st_size > 0, name
  stored = json.loads((out / "results.json").read_text())
  assert stored["models"] == 8 and set(stored["methods"]) == {"igs", "ft", "igs-tol0.0"}
  assert stored["methods"]["igs-tol0.0"]["config"]["tolerance"] == 0.0
  # random rows: IGS's defaults for rows (the variant's own key over them)
  igs = stored["methods"]["igs"]["config"]
  assert (igs["tolerance"], igs["start_noise"]) == (0.01, 0.45)
  assert stored["methods"]["igs-tol0.0"]["config"]["start_noise"] == 0.45
  retrained = _stored(root / "w" / "digits-class@random-0.1" / "retrained" / "seeds-0-7" / "scores")
  for label, row in stored["methods"].items():
    unlearned = _stored(out / label)
    assert len(row["epsilons"]) == stored["forget_rows"] == unlearned["confidences"].shape[1]
    _row_matches_its_populations(row, unlearned, retrained)
  # Doing nothing: 8 copies of one model, a point mass every rule tells apart
  assert results["original"]["forget_score"] == 0.0
  table = (out / "results.md").read_text()
  assert "| **igs** |" in table
  # the frontier: work as rows through a backward pass over retraining's, by hand
  retained = 1259 - 126  # digits' train rows less the forget set (random 10 %)
  for label, row in stored["methods"].items():
    assert row["work"] == pytest.approx(4 * 80 / (3 * retained)), label  # 4 steps of 80 rows
  assert set(stored["frontier"]) == {"0.34", "1"}
  assert [stored["frontier"][f]["epochs"] for f in ("0.34", "1")] == [1, 3]
  assert stored["frontier"]["1"]["work"] == 1.0
  assert "| *retraining, 1 of its epochs (fresh init)* |" in table
  partial = _stored(root / "w" / "digits-class@random-0.1" / "partial" / "epochs-1-N8" / "scores")
  _row_matches_its_populations(stored["frontier"]["0.34"], partial, retrained)
  # The halves are scored at the ceiling row's N (issue 34: once called "a lower ceiling",
  # while halves score higher than the whole population)
  assert stored["ceiling"]["models"] == 4
  assert "(4 unlearned against 4 retrained, the N of the ceiling row)" in table
  assert "lower ceiling" not in table
  assert "![Per-example ε](epsilons.png)" in (out / "report.md").read_text()


def _stored(path) -> dict:
  with np.load(f"{path}.npz") as z:
    return {k: z[k] for k in z.files}


# Examples recomputed by the brute-force reference (about a second each): spread over the
# forget set, so the examples of every ε bucket are not all one kind.
CHECKED = (0, 17, 42, 63, 88, 125)


def _row_matches_its_populations(row, unlearned, retrained):
  """A method's stored row against its stored populations, by independent paths: ε per
  example by the brute-force transcription of the challenge (tests/forget_score_reference),
  the score from all stored ε by the challenge's buckets, the final score from the stored
  accuracies."""
  u, r = unlearned["confidences"], retrained["confidences"]
  for i in CHECKED:
    pos, neg = (r[:, i], u[:, i]) if np.median(r[:, i]) > np.median(u[:, i]) else (u[:, i], r[:, i])
    assert row["epsilons"][i] == pytest.approx(_reference_epsilon(pos, neg), abs=1e-6), i
  eps = np.asarray(row["epsilons"])
  top = math.ceil(math.log(len(u) - 1))  # buckets of 0.5 scored 2^-k up to ceil(ln(N − 1))
  points = np.where(eps < top, 0.5 ** np.floor(eps / 0.5), 0.0)
  assert row["forget_score"] == pytest.approx(points.mean(), abs=1e-12)
  want = (
    row["forget_score"]
    * (unlearned["RA"].mean() / retrained["RA"].mean())
    * (unlearned["TA"].mean() / retrained["TA"].mean())
  )
  assert row["final_score"] == pytest.approx(want, rel=1e-9)
  assert row["UA"] == pytest.approx(unlearned["UA"].mean())


def test_the_check_of_a_row_fails_on_a_swapped_population(done):
  """The deliberate bug: a row scored against another population (here igs's row read
  against ft's unlearned population) fails the independent check."""
  root, _ = done
  out = root / "w" / "digits-class@random-0.1" / "audit-N8"
  stored = json.loads((out / "results.json").read_text())
  retrained = _stored(root / "w" / "digits-class@random-0.1" / "retrained" / "seeds-0-7" / "scores")
  with pytest.raises(AssertionError):
    _row_matches_its_populations(stored["methods"]["igs"], _stored(out / "ft"), retrained)


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


def test_the_summary_table_reads_each_cell_from_its_audit():
  from experiments import audit_report

  root = pathlib.Path(__file__).resolve().parents[2] / "docs" / "results" / "audit"
  names = ("digits-class@random-0.1", "mnist-random10")
  results = [json.loads((root / n / "results.json").read_text()) for n in names]
  lines = audit_report.summary_table(results, ["ft", "igs"]).splitlines()
  assert [line.split(" | ")[0] for line in lines[2:]] == [
    "| " + (f"**{m}**" if m == "igs" else m)
    for m in audit_report.ranked(results[0])
    if m in ("ft", "igs")
  ] + ["| *retraining with 20 % of its epochs (fresh init)*", "| original (no unlearning)",
       "| *retrain vs retrain, N/2 each (ceiling)*"]  # fmt: skip
  for line, key in ((lines[-3], None), (lines[-1], "ceiling")):
    for cell, r in zip(line.strip("| ").split(" | ")[1:], results):
      row = r["frontier"]["0.2"] if key is None else r[key]
      assert cell == f"{row['forget_score']:.3f} ({row['lira_accuracy']:.0f})"
  igs = next(line for line in lines if line.startswith("| **igs**"))
  assert igs.split(" | ")[2] == f"{results[1]['methods']['igs']['forget_score']:.3f} " + (
    f"({results[1]['methods']['igs']['lira_accuracy']:.0f}) |"
  )
  with pytest.raises(ValueError, match="no audit here has 'igz'"):
    audit_report.summary_table(results, ["igz"])
