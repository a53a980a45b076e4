"""benchmarks.conv_grad: every implementation computes XLA's gradients; the table is written."""

import json

from benchmarks import conv_grad


def test_quick_run_agrees_with_xla_and_writes_both_files(tmp_path):
  report = conv_grad.main(["--quick", "--out", str(tmp_path / "c.json")])
  layers = [r for r in report["rows"] if r["kind"] == "layer"]
  models = [r for r in report["rows"] if r["kind"] == "model"]
  assert len(layers) == len(conv_grad.QUICK_LAYERS) and len(models) == 2
  for r in report["rows"]:
    assert max(r["grad_rel_err"].values()) < 1e-5, r["name"]
    assert r["ratio"]["xla"] == 1.0
  assert json.loads((tmp_path / "c.json").read_text())["rows"][0]["name"] == layers[0]["name"]
  assert (tmp_path / "c.md").read_text().count("\n| ") == len(report["rows"]) + 2


def test_sweep_grid_is_stride_1_and_bounded():
  names = {s[0] for s in conv_grad.SWEEP_LAYERS}
  assert "32x32x64->128" in names and "32x32x128->128" not in names  # above the size bound
  assert all(s[5] == 3 and s[6] == 1 for s in conv_grad.SWEEP_LAYERS)
