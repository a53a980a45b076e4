"""The figures draw what they claim: read back from the artists of the committed results."""

import itertools
import json
import math
import pathlib

import matplotlib.pyplot as plt
import numpy as np
import pytest
from matplotlib.collections import PathCollection

from experiments import plots

ROOT = pathlib.Path(__file__).resolve().parents[2]
COMPARE = ROOT / "docs" / "results" / "compare"


@pytest.fixture(scope="module")
def results():
  return json.loads((COMPARE / "digits-class" / "results.json").read_text())


@pytest.fixture(scope="module")
def ranks():
  return json.loads((COMPARE / "ranks.json").read_text())


def _gap_order(results):
  summary = results["summary"]
  finite = [m for m, s in summary.items() if math.isfinite(s["AvgGap"][0])]
  return sorted(finite, key=lambda m: summary[m]["AvgGap"][0])


def test_gap_overview_draws_one_point_per_method_in_gap_order(results):
  fig = plots.gap_overview_figure(results)
  try:
    main, *small = fig.axes
    order = _gap_order(results)
    points = sum(len(c.get_offsets()) for c in main.collections if isinstance(c, PathCollection))
    assert points == len(order)
    labels = main.get_yticklabels()
    assert [t.get_text() for t in labels] == order
    bottom, top = main.get_ylim()
    assert top < bottom  # the first method (the best) is drawn at the top
    (igs,) = [t for t in labels if t.get_text() == "igs"]
    assert igs.get_fontweight() == "bold"
    assert all(t.get_fontweight() != "bold" for t in labels if t.get_text() != "igs")
    assert len(small) == 4
    assert [ax.get_title().split()[0] for ax in small] == ["UA", "RA", "TA", "MIA"]
    assert all(ax.get_shared_y_axes().joined(ax, main) for ax in small)
  finally:
    plt.close(fig)


def test_gap_overview_leaves_out_a_diverged_method_with_a_note(results):
  broken = json.loads(json.dumps(results))
  broken["summary"]["ga"]["AvgGap"] = [float("nan"), float("nan")]
  broken["summary"]["ga"]["AvgGap_ci95"] = [float("nan"), float("nan")]
  fig = plots.gap_overview_figure(broken)
  try:
    labels = [t.get_text() for t in fig.axes[0].get_yticklabels()]
    assert "ga" not in labels and len(labels) == len(results["summary"]) - 1
    assert any("ga" in t.get_text() and "diverged" in t.get_text() for t in fig.texts)
  finally:
    plt.close(fig)


def test_gap_overview_computes_the_interval_from_the_runs_when_absent(results):
  bare = json.loads(json.dumps(results))
  for s in bare["summary"].values():
    del s["AvgGap_ci95"]
  lo, hi = plots._gap_interval(bare, "igs")
  # Student's t interval of the runs' Avg. Gap, by scipy (not the library's ci95)
  from scipy import stats

  gaps = np.array([r["AvgGap"] for r in results["runs"] if r["method"] == "igs" and not r["sweep"]])
  half = stats.t.ppf(0.975, len(gaps) - 1) * gaps.std(ddof=1) / np.sqrt(len(gaps))
  assert (lo, hi) == pytest.approx((gaps.mean() - half, gaps.mean() + half))


def test_ua_ta_zoom_labels_do_not_overlap(results):
  fig = plots.ua_ta_figure(results)
  try:
    fig.canvas.draw()
    zoom = fig.axes[1]
    assert zoom.texts  # some sweep values are written
    boxes = [t.get_window_extent() for t in zoom.texts]
    for a, b in itertools.combinations(boxes, 2):
      assert not a.overlaps(b)
    legend = zoom.get_legend()
    assert legend.get_window_extent().x0 >= zoom.get_window_extent().x1  # outside the axes
  finally:
    plt.close(fig)


def test_rank_heatmap_writes_every_rank(ranks):
  fig = plots.rank_heatmap_figure(ranks)
  try:
    ax = fig.axes[0]
    rows = [t.get_text() for t in ax.get_yticklabels()]
    cols = [t.get_text() for t in ax.get_xticklabels()]
    assert rows == sorted(ranks["mean_rank"], key=ranks["mean_rank"].get)
    assert cols == [*ranks["scenarios"], "mean"]
    assert len(ax.texts) == len(rows) * (len(ranks["scenarios"]) + 1)
    for t in ax.texts:
      x, y = t.get_position()
      method, col = rows[round(y)], cols[round(x)]
      if col == "mean":
        assert float(t.get_text()) == pytest.approx(ranks["mean_rank"][method], abs=0.05)
      else:
        assert int(t.get_text()) == ranks["ranks"][method][col]
    (igs,) = [t for t in ax.get_yticklabels() if t.get_text() == "igs"]
    assert igs.get_fontweight() == "bold"
  finally:
    plt.close(fig)


def test_write_all_puts_the_main_figure_first(results, tmp_path):
  paths = plots.write_all(results, tmp_path)
  assert paths[0].name == "gap_overview.png"
  assert all(p.stat().st_size > 1000 for p in paths)
