import json

from benchmarks import lm_memory
from jaxunlearn.nn.transformer import SIZES


def test_quick_run_writes_the_table(tmp_path):
  out = tmp_path / "lm_memory.json"
  lm_memory.main(["--quick", "--out", str(out)])
  [result] = json.loads(out.read_text())["results"]
  rows = result["methods"]["npo"]
  assert rows["all"]["trainable_parameters"] == result["parameters"]
  assert 0 < rows["last block"]["trainable_parameters"] < result["parameters"]
  # LoRA trains r·(in + out) per adapted projection: q, k, v, o (width → width, as many
  # key-value heads as heads) and gate, up, down (width ↔ 4·width), in every layer
  width, _, layers = SIZES["tiny"]
  per_layer = 4 * (width + width) + 3 * (width + 4 * width)
  assert rows["LoRA r8"]["trainable_parameters"] == 8 * per_layer * layers
  for row in rows.values():
    assert row["program_bytes"] >= row["temp_bytes"] > 0 and row["median_ms"] > 0
  # Adam keeps two moments of what is trained (and a step count): the state shrinks with it
  assert rows["LoRA r8"]["optimizer_bytes"] < rows["last block"]["optimizer_bytes"]
  assert rows["last block"]["optimizer_bytes"] <= rows["all"]["optimizer_bytes"]
  table = out.with_suffix(".md").read_text()
  assert f"| npo | LoRA r8 | {8 * per_layer * layers:,} |" in table, table
