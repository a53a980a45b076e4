"""benchmarks.vs_pytorch_kernels: both frameworks' kernels compute the same numbers.

torch is the optional extra vs-pytorch; without it these tests skip, except under CI=true
(.ci/run installs '.[test,vs-pytorch]'), where they fail."""

import numpy as np
import pytest
from conftest import import_or_skip

torch = import_or_skip("torch", "pip install -e '.[vs-pytorch]'")

from benchmarks import vs_pytorch_kernels as k  # noqa: E402


def test_every_kernel_agrees_across_frameworks_and_counts_its_flops():
  cases = k.cases(batch=4)
  assert {c["op"] for c in cases} == {"dense fwd", "dense dW", "conv fwd", "conv dx", "conv dW"}
  for case in cases:
    k.check(case, atol=1e-4)
  conv1 = next(c for c in cases if c["name"] == "cnn conv1" and c["op"] == "conv fwd")
  assert conv1["flops"] == 2 * 4 * 8 * 8 * 64 * 32 * 9  # stride 2: 16x16 -> 8x8


def test_check_catches_a_wrong_kernel():
  case = next(c for c in k.cases(batch=4) if c["op"] == "conv dW")
  wrong = dict(case, torch=lambda f=case["torch"]: f() * 1.1)
  with pytest.raises(AssertionError, match="relative error"):
    k.check(wrong)


def test_quick_run_writes_json_and_table(tmp_path):
  report = k.main(["--quick", "--out", str(tmp_path / "k.json")])
  assert len(report["rows"]) == len(k.cases(batch=2))
  row = report["rows"][0]
  assert row["ratio_xla"] == pytest.approx(row["jax_xla_ms"] / row["torch_ms"])
  table = (tmp_path / "k.md").read_text()
  assert table.count("\n| ") == len(report["rows"]) + 1 and np.isfinite(row["torch_ms"])
