"""The comparison on a tiny budget writes every file; completed runs are reused."""

import json
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest

from experiments import compare
from jaxunlearn import data

ROOT = pathlib.Path(__file__).resolve().parents[2]
METHODS = ["igs", "explicit", "pdu", "ft", "linear", "rl"]


def test_tiny_comparison_writes_all_files(tmp_path):
  data_dir = tmp_path / "data"
  data.prepare("digits", data_dir)
  kwargs = dict(
    seeds=2,
    methods=METHODS,
    overrides=["steps=3"],
    pretrain_overrides=["epochs=2"],
    data_dir=data_dir,
    progress=False,
    sweeps=2,
  )
  results = compare.run_scenario("digits-class", tmp_path / "w", **kwargs)
  out = tmp_path / "w" / "digits-class"
  for name in (
    "results.md",
    "results.csv",
    "results.json",
    "ua_ta.png",
    "multiplier.png",
    "retain_loss.png",
  ):
    assert (out / name).stat().st_size > 1000 or name.endswith((".md", ".csv")), name
    assert (out / name).stat().st_size > 0
  table = (out / "results.md").read_text()
  for m in METHODS + ["Original", "Retrain"]:
    assert f"| {m}" in table or f"| **{m}**" in table
  assert set(results["summary"]) == set(METHODS)
  assert results["summary"]["igs"]["n"] == 2
  # linear at weight 1 is RL by construction: the same numbers, and the table says why
  assert "linear equals rl: at retain_loss_weight 1 with the random-label L_f" in table
  by_seed = {
    (r["method"], r["seed"]): r["metrics"]
    for r in results["runs"]
    if not r["sweep"] and r["method"] in ("linear", "rl")
  }
  for seed in (0, 1):
    for k in ("UA", "RA", "TA", "MIA"):
      assert by_seed["linear", seed][k] == pytest.approx(by_seed["rl", seed][k], abs=1e-4)
  assert "igs equals" not in table
  _summary_is_recomputed_from_its_runs(results)
  sweep_runs = [r for r in results["runs"] if r["sweep"]]
  assert {r["method"] for r in sweep_runs} == {"igs", "explicit", "pdu"}
  csv_rows = (out / "results.csv").read_text().strip().splitlines()
  assert len(csv_rows) == 1 + 2 + len(METHODS)
  # A second call reuses every completed run (same numbers, no recomputation).
  mtimes = {p.name: p.stat().st_mtime_ns for p in (out / "runs").iterdir()}
  again = compare.run_scenario("digits-class", tmp_path / "w", **kwargs)
  assert {p.name: p.stat().st_mtime_ns for p in (out / "runs").iterdir()} == mtimes
  assert again["summary"] == json.loads(json.dumps(results["summary"]))


def test_compare_cli_rejects_unknown_scenario(tmp_path):
  out = subprocess.run(
    [
      sys.executable,
      "-m",
      "experiments.compare",
      "--scenario",
      "cifar11",
      "--workdir",
      str(tmp_path / "w"),
    ],
    capture_output=True,
    text=True,
    cwd=ROOT,
    timeout=120,
  )
  assert out.returncode == 2
  assert "unknown scenario 'cifar11'" in out.stderr and "digits-class" in out.stderr
  assert not (tmp_path / "w").exists()


def test_pareto_sweep_writes_table_and_plot(tmp_path):
  from experiments import pareto

  data_dir = tmp_path / "data"
  data.prepare("digits", data_dir)
  result = pareto.sweep(
    "digits-class",
    tmp_path / "p",
    [-0.05, 0.05],
    seeds=1,
    overrides=["steps=3"],
    pretrain_overrides=["epochs=2"],
    data_dir=data_dir,
    progress=False,
  )
  out = tmp_path / "p" / "digits-class"
  assert [r["tolerance"] for r in result["rows"]] == [-0.05, 0.05]
  assert (out / "pareto.png").stat().st_size > 1000
  assert (out / "pareto.md").read_text().count("\n| ") == 3


def test_killed_comparison_resumes_without_recomputing(tmp_path):
  import signal
  import time

  data_dir = tmp_path / "data"
  data.prepare("digits", data_dir)
  env = {**os.environ, "JAXUNLEARN_DATA_DIR": str(data_dir), "JAX_PLATFORMS": "cpu"}
  cmd = [
    sys.executable,
    "-m",
    "experiments.compare",
    "--scenario",
    "digits-class",
    "--workdir",
    str(tmp_path / "w"),
    "--seeds",
    "2",
    "--methods",
    "ft,rl",
    "--set",
    "steps=3",
    "--pretrain-set",
    "epochs=2",
    "--no-sweeps",
    "--no-progress",
  ]
  proc = subprocess.Popen(
    cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
  )
  runs = tmp_path / "w" / "digits-class" / "runs"
  deadline = time.time() + 240
  while time.time() < deadline and proc.poll() is None:
    if runs.exists() and len(list(runs.glob("*.json"))) >= 1:
      break
    time.sleep(0.01)
  proc.send_signal(signal.SIGKILL)
  proc.wait()
  done = {p.name: p.stat().st_mtime_ns for p in runs.glob("*.json")}
  # every record is whole (a SIGKILL mid-write can leave only the writer's temporary file,
  # as it did in one clean-clone run: .ft-s1.json.<pid>.<hex>.tmp)
  assert 1 <= len(done) < 4 and all(json.loads(p.read_text()) for p in runs.glob("*.json"))
  out = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
  assert out.returncode == 0, out.stderr
  after = {p.name: p.stat().st_mtime_ns for p in runs.glob("*.json")}
  assert len(after) == 4
  assert all(after[name] == mtime for name, mtime in done.items())  # not recomputed
  assert not list(runs.glob("*.tmp"))  # a dead writer's temporary file is gone


def test_rank_summary_orders_by_avg_gap_and_puts_diverged_last(tmp_path):
  def res(name, gaps):
    return {"scenario": name, "summary": {m: {"AvgGap": [g, 0.0]} for m, g in gaps.items()}}

  nan = float("nan")
  summary = compare.rank_summary(
    [res("a", {"igs": 1.0, "ft": 3.0, "ga": nan}), res("b", {"igs": 2.0, "ft": 0.5, "ga": 9.0})]
  )
  assert summary["ranks"]["igs"] == {"a": 1, "b": 2}
  assert summary["ranks"]["ga"] == {"a": 3, "b": 3}
  assert summary["mean_rank"] == {"igs": 1.5, "ft": 1.5, "ga": 3.0}
  compare.write_rank_summary(summary, tmp_path / "ranks.md")
  assert "| ga | 3 | 3 | 3.0 |" in (tmp_path / "ranks.md").read_text()


def test_igs_variants_study_end_to_end(tmp_path):
  from experiments import igs_variants

  data_dir = tmp_path / "data"
  data.prepare("digits", data_dir)
  result = igs_variants.run(
    tmp_path / "v",
    classes=(1,),
    seeds=2,
    variants=["paper", "anchored"],
    steps=3,
    data_dir=data_dir,
    pretrain_overrides=["epochs=2"],
    progress=False,
  )
  assert set(result["summary"]) == {"paper", "anchored"}
  assert all(s["runs"] == 2 for s in result["summary"].values())
  table = (tmp_path / "v" / "igs_variants.md").read_text()
  assert "| anchored |" in table and "| paper |" in table
  runs = sorted(p.name for p in (tmp_path / "v" / "digits-class1" / "runs").glob("*.json"))
  assert runs == [
    "igs-s0-anchored.json",
    "igs-s0-paper.json",
    "igs-s1-anchored.json",
    "igs-s1-paper.json",
  ]


def test_tuned_comparison_selects_blind_to_retrain_and_reports_the_choice(tmp_path):
  data_dir = tmp_path / "data"
  data.prepare("digits", data_dir)
  results = compare.run_scenario(
    "digits-class",
    tmp_path / "w",
    seeds=2,
    methods=["igs", "ft"],
    overrides=["steps=3"],
    pretrain_overrides=["epochs=2"],
    data_dir=data_dir,
    progress=False,
    tuned=True,
  )
  from jaxunlearn.engine.methods import TUNING_BUDGET, get_method

  for m in ("igs", "ft"):
    cands = results["tuning"][m]
    assert len(cands) == TUNING_BUDGET and sum(c["chosen"] for c in cands) == 1
    chosen = next(c for c in cands if c["chosen"])
    assert results["tuned"][m] == chosen["config"]
    assert chosen["config"] in get_method(m).tuning_grid()
    # The choice is the best by the rule, from what the candidates recorded (no retrain).
    keys = [(c["forget_accuracy"], -c["val_retain_accuracy"]) for c in cands]
    assert (chosen["forget_accuracy"], -chosen["val_retain_accuracy"]) == min(keys)
    # Every seed then ran the chosen configuration.
    runs = [r for r in results["runs"] if r["method"] == m]
    assert len(runs) == 2 and all(r["label"] == "tuned" for r in runs)
    assert all(r["config"][k] == v for r in runs for k, v in chosen["config"].items())
  assert results["summary"]["igs"]["n"] == 2


def test_ranks_command_reads_finished_comparisons(tmp_path):
  from experiments import ranks

  for name, gaps in (("s1", {"igs": 1.0, "ft": 2.0}), ("s2", {"igs": 3.0, "ft": 2.0})):
    (tmp_path / "w" / name).mkdir(parents=True)
    summary = {m: {"AvgGap": [g, 0.0]} for m, g in gaps.items()}
    (tmp_path / "w" / name / "results.json").write_text(
      json.dumps({"scenario": name, "summary": summary})
    )
  ranks.main([str(tmp_path / "w"), "--out", str(tmp_path / "r.md")])
  text = (tmp_path / "r.md").read_text()
  assert "| igs | 1 | 2 | 1.5 |" in text and "| ft | 2 | 1 | 1.5 |" in text
  assert json.loads((tmp_path / "r.json").read_text())["scenarios"] == ["s1", "s2"]


def test_a_stored_run_stays_valid_when_a_config_key_is_added_at_its_default():
  from experiments.jobs import same_config
  from jaxunlearn.engine.methods import make_config

  cfg = make_config("igs", seed=1)
  stored = cfg.to_dict()
  del stored["augment"]  # a run stored before the key existed
  assert same_config(stored, cfg)
  assert not same_config(stored, make_config("igs", seed=1, augment=True))
  assert not same_config(cfg.to_dict(), make_config("igs", seed=2))


def test_forget_override_runs_any_scenario_on_another_forget_set(tmp_path, capsys):
  data_dir = tmp_path / "data"
  data.prepare("digits", data_dir)
  compare.main(
    [
      "--scenario", "digits-class", "--forget", "class:3", "--workdir", str(tmp_path / "w"),
      "--seeds", "1", "--methods", "igs,ft", "--set", "steps=3", "--pretrain-set", "epochs=1",
      "--data-dir", str(data_dir), "--no-progress", "--no-sweeps",
    ]
  )  # fmt: skip
  out = tmp_path / "w" / "digits-class@class-3"
  results = json.loads((out / "results.json").read_text())
  assert results["scenario"] == "digits-class@class-3"
  retrain = json.loads((out / "retrain" / "metrics.json").read_text())
  assert retrain["forget_spec"] == "class:3"
  assert retrain["forget_accuracy"] == 0.0  # the retrained model never saw a 3
  assert not (tmp_path / "w" / "digits-class").exists()
  capsys.readouterr()


def _summary_is_recomputed_from_its_runs(results):
  """Every summary number again, by numpy and scipy from the stored run records and the
  retrained model's metrics: mean and sample std over seeds, each run's Avg. Gap as the
  mean |Δ| to retrain over UA, RA, TA, MIA, and Student's t interval."""
  from scipy import stats

  retrain = results["reference"]["retrain"]
  for method, entry in results["summary"].items():
    runs = [r for r in results["runs"] if r["method"] == method and not r["sweep"]]
    assert entry["n"] == len(runs) == results["seeds"]
    for key in ("UA", "RA", "TA", "MIA"):
      values = np.array([r["metrics"][key] for r in runs])
      assert entry[key] == pytest.approx([values.mean(), values.std(ddof=1)], abs=1e-9)
    gaps = np.array(
      [
        np.mean([abs(r["metrics"][k] - retrain[k]) for k in ("UA", "RA", "TA", "MIA")])
        for r in runs
      ]
    )
    assert [r["AvgGap"] for r in runs] == pytest.approx(gaps.tolist(), abs=1e-9)
    assert entry["AvgGap"] == pytest.approx([gaps.mean(), gaps.std(ddof=1)], abs=1e-9)
    half = stats.t.ppf(0.975, len(gaps) - 1) * gaps.std(ddof=1) / np.sqrt(len(gaps))
    assert entry["AvgGap_ci95"] == pytest.approx([gaps.mean() - half, gaps.mean() + half])


def test_the_summary_check_fails_on_a_mean_without_the_seed_axis(monkeypatch):
  """The deliberate bug: a summary that takes its numbers from the first seed only passes
  nothing; the real one passes."""
  retrain = dict(UA=100.0, RA=90.0, TA=80.0, MIA=100.0)
  runs = []
  for seed, ua in enumerate((98.0, 94.0, 91.0)):
    metrics = dict(UA=ua, RA=89.0 - seed, TA=80.0, MIA=ua - 1, LossAUC=50.0)
    gap = float(np.mean([abs(metrics[k] - retrain[k]) for k in ("UA", "RA", "TA", "MIA")]))
    runs.append({"method": "rl", "seed": seed, "sweep": {}, "metrics": metrics, "AvgGap": gap,
                 "forget_target": "x", "config": {"method": "rl"}, "seconds": 1.0,
                 "compile_seconds": 0.5})  # fmt: skip
  results = {"reference": {"retrain": retrain}, "runs": runs, "seeds": 3}
  _summary_is_recomputed_from_its_runs({**results, "summary": compare.summarize(runs)})
  monkeypatch.setattr(compare, "_mean_std", lambda values: (values[0], 0.0))
  with pytest.raises(AssertionError):
    _summary_is_recomputed_from_its_runs({**results, "summary": compare.summarize(runs)})
