"""benchmarks.harness: interleaved timing and report files."""

import json

import jax.numpy as jnp

from benchmarks import harness


def test_interleaved_calls_each_fn_per_round_in_rotating_order():
  calls = []
  fns = {k: (lambda k=k: calls.append(k) or jnp.ones(2)) for k in "abc"}
  timing = harness.interleaved(fns, (), rounds=3, warmup=1)
  assert calls == list("abc") + list("abc") + list("bca") + list("cab")
  assert set(timing) == set("abc")
  assert all(t["n"] == 3 and 0 <= t["min_ms"] <= t["median_ms"] for t in timing.values())


def test_write_report_writes_json_and_markdown_beside_it(tmp_path):
  text = harness.write_report(tmp_path / "sub" / "r.json", {"x": 1}, lambda r: f"x = {r['x']}\n")
  assert json.loads((tmp_path / "sub" / "r.json").read_text()) == {"x": 1}
  assert (tmp_path / "sub" / "r.md").read_text() == text == "x = 1\n"
