import json

from benchmarks import lm_memory


def test_quick_run_writes_the_table(tmp_path):
  out = tmp_path / "lm_memory.json"
  lm_memory.main(["--quick", "--out", str(out)])
  [result] = json.loads(out.read_text())["results"]
  rows = result["methods"]["npo"]
  assert rows["all"]["trainable_parameters"] == result["parameters"]
  assert 0 < rows["last block"]["trainable_parameters"] < result["parameters"]
  for row in rows.values():
    assert row["program_bytes"] >= row["temp_bytes"] > 0 and row["median_ms"] > 0
  assert "| tiny (0.02 M) | npo | last block |" in out.with_suffix(".md").read_text()
