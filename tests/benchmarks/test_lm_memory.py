import json

from benchmarks import lm_memory


def test_quick_run_writes_the_table(tmp_path):
  out = tmp_path / "lm_memory.json"
  lm_memory.main(["--quick", "--out", str(out)])
  [result] = json.loads(out.read_text())["results"]
  rows = result["methods"]["npo"]
  assert rows["all"]["trainable_parameters"] == result["parameters"]
  assert 0 < rows["last block"]["trainable_parameters"] < result["parameters"]
  # LoRA trains r·(in + out) per adapted projection in every layer: q and o (width ↔
  # heads·head_dim), k and v (width → kv heads·head_dim), gate, up and down (width ↔ MLP)
  cfg = lm_memory.TINY_LLAMA
  width, q, kv, mlp = cfg.hidden_size, cfg.num_attention_heads * cfg.head_dim, (
    cfg.num_key_value_heads * cfg.head_dim), cfg.intermediate_size  # fmt: skip
  per_layer = 2 * (width + q) + 2 * (width + kv) + 3 * (width + mlp)
  lora = 8 * per_layer * cfg.num_hidden_layers
  assert rows["LoRA r8"]["trainable_parameters"] == lora
  for row in rows.values():
    assert row["program_bytes"] >= row["temp_bytes"] > 0 and row["median_ms"] > 0
  # Adam keeps two moments of what is trained (float32, as the weights) and a step count
  assert 2 * 4 * lora <= rows["LoRA r8"]["optimizer_bytes"] < rows["all"]["optimizer_bytes"]
  assert rows["last block"]["optimizer_bytes"] <= rows["all"]["optimizer_bytes"]
  table = out.with_suffix(".md").read_text()
  assert f"| npo | LoRA r8 | {lora:,} |" in table, table
