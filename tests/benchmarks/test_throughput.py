"""benchmarks.throughput: every mode measured on a tiny comparison, figures in range."""

import json

import pytest

from benchmarks import throughput


def test_quick_throughput_report(tmp_path, capsys):
  out = tmp_path / "tp.json"
  argv = ["--scenarios", "digits-class", "--methods", "igs", "--seeds", "2", "--no-sweeps"]
  report = throughput.main([*argv, "--workdir", str(tmp_path / "w"), "--out", str(out)])
  stored = json.loads(out.read_text())
  assert stored["speedup"] == report["speedup"] > 0
  for mode in throughput.MODES:
    r = stored[mode]
    assert r["runs"] == 2 and r["runs_per_minute"] > 0
    assert 0 <= r["step_time_share"] <= 1 and 0 <= r["compile_share"] <= 1
    b = r["breakdown"]
    parts = b["steps"] + b["first_steps"] + b["evaluation"] + b["other"]
    assert parts == pytest.approx(r["wall_seconds"], rel=1e-6) and b["evaluation"] > 0
    assert set(b["compile"]) == {"trace", "lower", "xla"}
  assert stored["sequential"]["largest_batch"] == 1
  assert stored["batched"]["largest_batch"] == stored["batched_warm"]["largest_batch"] == 2
  # The warm child finds programs in the persistent cache its twin filled. (This test
  # process may have the cache on from another test, so its own modes are not checked cold.)
  cold, warm = stored["batched"]["breakdown"], stored["batched_warm"]["breakdown"]
  assert cold["programs"] > 0 and 0 < warm["programs_from_cache"] <= warm["programs"]
  text = out.with_suffix(".md").read_text()
  assert "Batched / sequential" in text and "Where the wall time went" in text
  capsys.readouterr()


def test_unknown_mode_is_refused(tmp_path):
  with pytest.raises(SystemExit, match="unknown mode 'fast'"):
    throughput.main(["--modes", "fast", "--out", str(tmp_path / "x.json")])
