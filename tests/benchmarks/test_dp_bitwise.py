import json

import numpy as np

from benchmarks import dp_bitwise


def test_both_schemes_compute_the_gradient_and_the_fixed_order_pieces_are_bitwise(tmp_path):
  out = tmp_path / "dp_bitwise.json"
  dp_bitwise.main(["--rows", "8", "--out", str(out)])
  r = json.loads(out.read_text())["result"]
  # the fixed-order gradient is the gradient: the engine's on one device, to float rounding
  assert r["schemes_max_abs_diff"] < 1e-6
  for scheme in ("engine", "fixed_order"):
    assert r[scheme]["leaves"] == 20 and r[scheme]["max_abs_diff"] < 1e-6
  # what the fixed order does make equal across device counts (the benchmark's claim)
  pieces = r["fixed_order_parts"]
  assert pieces["group_logits_bitwise"] and pieces["cotangent_bitwise"]
  assert r["fixed_order"]["loss_bitwise"]
  assert "| fixed order |" in out.with_suffix(".md").read_text()


def test_pairwise_sum_is_a_balanced_tree():
  x = np.array([1e8, 1.0, -1e8, 1.0], np.float32)
  # float32: (1e8 + 1) + (-1e8 + 1) is 0 (each 1 is lost), a left-to-right fold gives 1
  assert dp_bitwise._pairwise_sum(x) == 0.0 != ((x[0] + x[1]) + x[2]) + x[3]
  assert dp_bitwise._pairwise_sum(np.arange(8.0)) == 28.0
