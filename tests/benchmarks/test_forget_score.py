"""benchmarks.forget_score: a quick run writes its JSON and markdown."""

import json

from benchmarks import forget_score


def test_quick_run_writes_its_report(tmp_path):
  forget_score.main(["--quick", "--out", str(tmp_path / "f.json")])
  report = json.loads((tmp_path / "f.json").read_text())
  assert [(r["models"], r["examples"]) for r in report["rows"]] == [(16, 8), (32, 8)]
  assert all(r["forget_score_seconds"] > 0 and 0 <= r["score"] <= 1 for r in report["rows"])
  assert "| 16 × 8 |" in (tmp_path / "f.md").read_text()
