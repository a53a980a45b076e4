"""The documentation's results page is what experiments.results_page writes from the
committed JSON, and its tables are those the experiments wrote beside that JSON."""

import json
import pathlib

from experiments import compare, igs_variants, results_page

ROOT = pathlib.Path(__file__).resolve().parents[2]


def test_the_committed_page_is_generated_from_the_committed_results():
  committed = (ROOT / "docs" / "results.md").read_text()
  assert committed == results_page.page(), (
    "docs/results.md is stale: python -m experiments.results_page --out docs/results.md"
  )


def test_tables_rebuilt_from_json_equal_the_ones_the_runs_wrote():
  found = 0
  for path in sorted((ROOT / "docs" / "results").glob("*/*/results.json")):
    results = json.loads(path.read_text())
    if "summary" in results and "reference" in results:
      assert compare.results_table(results) == (path.parent / "results.md").read_text(), path
      found += 1
  assert found >= 6
  variants = ROOT / "docs" / "results" / "igs_variants"
  table = igs_variants.variants_table(json.loads((variants / "igs_variants.json").read_text()))
  assert table == (variants / "igs_variants.md").read_text()


def test_language_model_tables_rebuilt_from_json_equal_the_ones_the_runs_wrote():
  """The TOFU comparisons and the IGS-variant study: each split's table is what
  experiments.tofu.table makes of its JSON, and the scenario's page joins them."""
  from experiments import tofu

  found = 0
  for scenario in sorted((ROOT / "docs" / "results").glob("tofu*/*/")):
    splits = sorted(scenario.glob("forget*/results.json"))
    tables = [tofu.table(json.loads(p.read_text())) for p in splits]
    for path, table in zip(splits, tables):
      assert table == (path.parent / "results.md").read_text(), path
    assert "\n".join(tables) == (scenario / "results.md").read_text(), scenario
    found += len(splits)
  assert found >= 9  # tofu, tofu-tiny and the variant study: three splits each
