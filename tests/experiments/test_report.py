"""``report.md`` embeds the figures a comparison wrote, its table and its command."""

import json
import pathlib
import re
import shutil

from experiments import plots, report

ROOT = pathlib.Path(__file__).resolve().parents[2]
COMPARE = ROOT / "docs" / "results" / "compare"


def test_report_links_existing_figures_and_shows_table_and_command(tmp_path):
  folder = tmp_path / "digits-class"
  shutil.copytree(COMPARE / "digits-class", folder)
  results = json.loads((folder / "results.json").read_text())
  plots.gap_overview(results, folder / "gap_overview.png")
  command = "python -m experiments.compare --scenario digits-class --workdir runs/compare"
  path = report.write_report(results, folder, command=command, wall_seconds=12.5)
  assert path == folder / "report.md"
  text = path.read_text()
  links = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", text)
  assert "gap_overview.png" in links and "ua_ta.png" in links
  for link in links:
    assert (folder / link).is_file(), link
  assert "| Method | Forget target | UA |" in text
  assert command in text
  assert results["description"] in text
  assert "12.5 s" in text and "jax " in text


def test_report_from_python_and_the_overview(tmp_path):
  shutil.copytree(COMPARE, tmp_path, dirs_exist_ok=True)
  all_results = [
    json.loads((tmp_path / name / "results.json").read_text())
    for name in ("digits-class", "mnist-random10")
  ]
  for r in all_results:
    text = report.write_report(r, tmp_path / r["scenario"], command=None, wall_seconds=1.0)
    assert report.FROM_PYTHON in text.read_text()
  plots.rank_heatmap(json.loads((tmp_path / "ranks.json").read_text()), tmp_path / "ranks.png")
  text = report.write_overview(all_results, tmp_path, command="c", wall_seconds=2.0).read_text()
  for link in re.findall(r"\]\(([^)]+)\)", text):
    assert (tmp_path / link).is_file(), link
  assert "digits-class/report.md" in text and "![" in text and "| mean rank ↓ |" in text
