"""One results schema for every scenario (issue 23): what every reader may rely on."""

import json
import math
import pathlib

import pytest

from experiments import compare, ddpm, results_schema

ROOT = pathlib.Path(__file__).resolve().parents[2]
RESULTS = ROOT / "docs" / "results"
KEYS = {"schema", "scenario", "forget", "seeds", "metrics", "reference", "summary", "runs"}


def _check(results):
  assert set(results) >= KEYS and results["schema"] == results_schema.SCHEMA
  assert set(results["reference"]) == {"original", "retrain"}
  for name in ("original", "retrain"):
    assert set(results["metrics"]) <= set(results["reference"][name])
  for s in results["summary"].values():
    for k in (*results["metrics"], "AvgGap", "seconds"):
      assert len(s[k]) == 2
  for r in results["runs"]:
    assert {"method", "seed", "metrics", "AvgGap", "seconds"} <= set(r)
    assert set(results["metrics"]) <= set(r["metrics"])


# Audits (docs/results/audit) are per-example scores over populations, not comparisons:
# their own format, read by experiments.audit_report.
COMPARISONS = sorted(p for p in RESULTS.glob("*/*/results.json") if p.parts[-3] != "audit")


@pytest.mark.parametrize(
  "path", COMPARISONS, ids=lambda p: f"{p.parent.parent.name}/{p.parent.name}"
)
def test_every_committed_comparison_reads_in_the_schema(path):
  _check(results_schema.read(path))


def test_the_committed_comparisons_cover_both_kinds():
  kinds = {tuple(results_schema.read(p)["metrics"]) for p in COMPARISONS}
  assert kinds == {("UA", "RA", "TA", "MIA", "LossAUC"), ("UA", "RA", "FID")}


def test_a_ddpm_file_from_before_the_schema_gives_its_own_table():
  for folder in sorted((RESULTS / "ddpm").glob("*")):
    legacy = json.loads((folder / "results.json").read_text())
    assert "schema" not in legacy  # committed before the schema: read through upgrade()
    upgraded = results_schema.upgrade(legacy)
    _check(upgraded)
    assert ddpm.table(upgraded) == (folder / "table.md").read_text()
    # the summary is the mean ± std over seeds of the flat runs, recomputed by hand
    runs = [r for r in legacy["runs"] if r["method"] == "igs"]
    mean = sum(r["FID"] for r in runs) / len(runs)
    assert math.isclose(upgraded["summary"]["igs"]["FID"][0], mean)


def test_a_classifier_file_is_already_in_the_schema_but_for_its_version_field():
  raw = json.loads((RESULTS / "compare" / "digits-class" / "results.json").read_text())
  up = results_schema.upgrade(raw)
  assert up["metrics"] == list(compare.COLUMNS) and up["summary"] is raw["summary"]


def test_something_else_is_refused():
  with pytest.raises(ValueError, match="not a results file"):
    results_schema.upgrade({"rows": []})
