"""The accelerator script (benchmarks.gpu) at a tiny size on the CPU: every part runs or
says why not, the report is written as JSON and markdown, and the time budget stops it
between parts with what it measured kept. (``python -m benchmarks.gpu --tiny`` runs the
ResNet-18 sizes; these tests use an MLP to stay short.)"""

import json

from benchmarks import gpu

SMALL = {
  **gpu.SIZES["tiny"],
  "model": "mlp",
  "population_model": "mlp",
  "rows": 128,
  "methods": ("plain", "npo", "salun"),
}


def test_the_command_writes_json_and_markdown_and_a_missing_torch_says_why(tmp_path):
  out = tmp_path / "gpu.json"
  report = gpu.main(["--tiny", "--parts", "vs_pytorch", "--out", str(out), "--no-progress"])
  stored = json.loads(out.read_text())
  assert stored["parts"].keys() == {"vs_pytorch"} == report["parts"].keys()
  assert stored["size"] == "tiny" and stored["backend"] == "cpu"
  device, why = gpu.torch_device()
  vs = stored["parts"]["vs_pytorch"]
  assert (vs["skipped"] == why) if device is None else vs["report"]["torch_device"] == "cpu"
  assert "## vs_pytorch" in out.with_suffix(".md").read_text()


def test_populations_train_and_unlearn_and_the_budget_stops_between_parts():
  parts = ("populations", "step_cost", "vs_pytorch")
  report = gpu.run(SMALL, parts, budget_seconds=0.0, progress=False)
  pops = report["parts"]["populations"]
  for kind, n in (("train", SMALL["models"]), ("unlearn", SMALL["unlearn_runs"])):
    assert pops[kind]["n"] == n
    assert 0 < pops[kind]["compile_seconds"] <= pops[kind]["seconds"]
    assert pops[kind]["per_second"] == n / pops[kind]["seconds"]
  for name in parts[1:]:
    assert "budget" in report["parts"][name]["skipped"]
  text = gpu.markdown(report)
  assert f"| train | {SMALL['models']} |" in text and "Skipped: the budget" in text


def test_the_step_cost_part_times_the_engines_steps_of_its_methods():
  part = gpu.step_cost_part(SMALL, progress=False)
  (setting,) = part["report"]["settings"]
  assert setting["model"] == "mlp" and set(setting["methods"]) == set(SMALL["methods"])
  for name, res in setting["methods"].items():
    assert "error" not in res and res["finite"], name
  assert "npo" in part["markdown"]


def test_the_llama_part_measures_full_last_block_and_lora():
  """The Llama-3.2-1B part at the tiny size: the same code, lm_memory's one-layer decoder
  (float32 here; bfloat16 at the full size)."""
  part = gpu.llama_part(gpu.SIZES["tiny"], progress=False)
  [result] = part["report"]["results"]
  rows = result["methods"]["npo"]
  assert set(rows) == {"all", "last block", "LoRA r8"}
  assert rows["all"]["trainable_parameters"] == result["parameters"]
  assert rows["LoRA r8"]["optimizer_bytes"] < rows["all"]["optimizer_bytes"]
  assert all(r["median_ms"] > 0 and r["program_bytes"] > 0 for r in rows.values())
  assert "| llama-tiny float32 (" in part["markdown"]


def test_the_llama_1b_shape_is_llama_3_2_1b():
  """Its config.json's sizes give its 1.24 B parameters (tied head)."""
  from flax import nnx

  from benchmarks import lm_memory
  from jaxunlearn.nn.llama import Llama

  abstract = nnx.eval_shape(lambda: Llama(lm_memory.LLAMA_1B, rngs=nnx.Rngs(0)))
  n = sum(x.size for x in __import__("jax").tree.leaves(nnx.state(abstract, nnx.Param)))
  assert n == 1_235_814_400
