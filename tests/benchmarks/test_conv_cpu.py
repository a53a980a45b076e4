"""benchmarks.conv_cpu on the strided CNN at two variants, one step: each variant runs in
its own process with its flags, ends at XLA's parameters up to float rounding, and the
report is written. No timing is checked (a shared CPU's times are noise)."""

import json

from benchmarks import conv_cpu


def test_variants_run_apart_and_reach_xlas_parameters(tmp_path):
  out = tmp_path / "conv.json"
  conv_cpu.main(["--models", "cnn", "--variants", "onednn,xla", "--steps", "1", "--warmup", "0",
                 "--layer-batch", "2", "--out", str(out)])  # fmt: skip
  report = json.loads(out.read_text())
  rows = {r["variant"]: r for r in report["rows"]}
  assert list(rows) == ["xla", "onednn"]  # the reference first
  assert rows["onednn"]["flags"] == "--xla_cpu_use_onednn=true"
  for r in rows.values():
    assert "error" not in r and r["jax_ms"] > 0 and r["compile_s"] > 0, r
    assert r["max_abs_param_diff"] < 1e-4, r
  assert rows["xla"]["max_abs_param_diff"] == 0.0
  assert set(report["layer_ms"]) == {"NHWC", "NCHW"}
  assert "| cnn | onednn |" in out.with_suffix(".md").read_text()
