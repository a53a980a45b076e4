"""benchmarks.throughput: both modes measured on a tiny comparison, figures in range."""

import json

from benchmarks import throughput


def test_quick_throughput_report(tmp_path, capsys):
  out = tmp_path / "tp.json"
  report = throughput.main(
    ["--methods", "igs,ft", "--seeds", "2", "--workdir", str(tmp_path / "w"), "--out", str(out)]
  )
  stored = json.loads(out.read_text())
  assert stored["speedup"] == report["speedup"] > 0
  for mode in ("sequential", "batched"):
    r = stored[mode]
    assert r["runs"] == 4 and r["runs_per_minute"] > 0
    assert 0 <= r["step_time_share"] <= 1 and 0 <= r["compile_share"] <= 1
  assert "Batched / sequential" in out.with_suffix(".md").read_text()
  capsys.readouterr()
