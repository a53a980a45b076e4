"""experiments.ddpm end to end on a tiny budget: files, table, metrics in range."""

import json

from experiments import ddpm


def test_quick_run_writes_table_json_and_grid(tmp_path, capsys):
  ddpm.main(["--workdir", str(tmp_path / "w"), "--quick", "--seeds", "1", "--methods", "igs,ft"])
  out = json.loads((tmp_path / "w" / "results.json").read_text())
  assert out["schema"] == 1 and out["metrics"] == ["UA", "RA", "FID"]  # experiments.results_schema
  assert [r["method"] for r in out["runs"]] == ["igs", "ft"]
  ref = out["reference"]
  for row in [ref["original"], ref["retrain"], *(r["metrics"] for r in out["runs"])]:
    assert 0 <= row["UA"] <= 100 and 0 <= row["RA"] <= 100 and row["FID"] >= 0
    assert set(map(int, row["per_class"])) == set(range(10))
  assert list(out["summary"]) == ["igs", "ft"] and out["summary"]["ft"]["n"] == 1
  table = (tmp_path / "w" / "table.md").read_text()
  assert table.count("\n") == 2 + 2 + 2  # header, original, retrain, two methods
  assert (tmp_path / "w" / "samples.png").stat().st_size > 0
  # a resumed call reuses the pretrained DDPMs (the checkpoints are read, not retrained)
  again = ddpm.pretrain_ddpm(
    ddpm.data_lib.load_dataset("digits"),
    tmp_path / "w" / "original",
    steps=ddpm.QUICK["pretrain_steps"],
  )
  assert again[2] == 0.0
  capsys.readouterr()


def test_compare_runs_the_generative_scenario_with_its_forget_override(
  tmp_path, monkeypatch, capsys
):
  from experiments import compare

  monkeypatch.setattr(ddpm, "FULL", ddpm.QUICK)  # the scenario's budget, shrunk for CI
  compare.main(
    ["--scenario", "digits-ddpm-class", "--forget", "class:2", "--workdir", str(tmp_path),
     "--seeds", "1", "--methods", "igs", "--no-progress"]
  )  # fmt: skip
  out = json.loads((tmp_path / "digits-ddpm-class" / "results.json").read_text())
  assert out["forget"] == "class:2" and [r["method"] for r in out["runs"]] == ["igs"]
  assert (tmp_path / "digits-ddpm-class" / "retrain-2").is_dir()
  assert "| igs |" in capsys.readouterr().out


def test_pretrain_command_trains_and_retrains_the_ddpm(tmp_path, capsys):
  from experiments import pretrain

  pretrain.main(["--config", "digits-ddpm", "--workdir", str(tmp_path / "o"), "--set", "steps=5"])
  pretrain.main(
    ["--config", "digits-ddpm", "--workdir", str(tmp_path / "r"), "--set", "steps=5",
     "--retrain", "--forget", "class:4"]
  )  # fmt: skip
  assert '"kind": "ddpm"' in capsys.readouterr().out
  with ddpm.ckpt.Checkpointer(tmp_path / "r" / "checkpoints", keep_best=False) as m:
    assert m.metadata()["exclude"] == [4] and m.latest_step() == 5
  with ddpm.ckpt.Checkpointer(tmp_path / "o" / "checkpoints", keep_best=False) as m:
    assert m.metadata()["exclude"] == []
