"""benchmarks.step_cost: structure of its JSON and markdown on a tiny configuration.

No time thresholds: timings on a shared CPU are noise. Only the compiled memory
analysis is deterministic, so the one inequality checked is on it.
"""

import dataclasses
import json
import math

import pytest

from benchmarks import step_cost
from jaxunlearn.engine.methods import get_method

TIME_FIELDS = ("lower_s", "compile_s", "median_ms", "mean_ms", "min_ms", "max_ms")
RATIO_FIELDS = ("time", "compile", "flops", "temp_bytes", "total_bytes")


@pytest.fixture(scope="module")
def report(tmp_path_factory):
  out = tmp_path_factory.mktemp("step_cost") / "step_cost.json"
  returned = step_cost.main(
    [
      "--quick",
      "--batch-sizes",
      "32",
      "--layouts",
      "mixed",  # the split layout's steps: test_a_timed_step_is_the_engines_step
      "--input-shape",
      "8,8,1",
      "--steps",
      "2",
      "--warmup",
      "1",
      "--out",
      str(out),
      "--no-progress",
    ]
  )
  data = json.loads(out.read_text())
  assert data["settings"] == json.loads(json.dumps(returned["settings"]))
  return data, out


def test_machine_and_config_recorded(report):
  data, _ = report
  machine = data["machine"]
  for key in ("backend", "device_kind", "cpu_count", "versions", "platform"):
    assert key in machine
  assert machine["versions"]["jax"]
  assert data["config"]["models"] == ["mlp"]
  assert data["total_seconds"] > 0


def test_every_method_in_every_setting(report):
  data, _ = report
  settings = data["settings"]
  assert {(s["model"], s["batch_size"], s["layout"]) for s in settings} == {("mlp", 32, "mixed")}
  for s in settings:
    assert s["num_params"] > 0
    assert list(s["methods"]) == list(step_cost.METHODS)
    for method, r in s["methods"].items():
      assert "error" not in r, (s["layout"], method, r.get("error"))
      assert r["timed_steps"] == 2
      assert r["finite"] is True
      for f in TIME_FIELDS:
        assert math.isfinite(r[f]) and r[f] > 0, (method, f)
      assert r["steps_per_s"] > 0


def test_ratios_finite_and_positive(report):
  data, _ = report
  for s in data["settings"]:
    for method, r in s["methods"].items():
      ratios = r["ratios"]
      assert set(ratios) == set(RATIO_FIELDS)
      assert math.isfinite(ratios["time"]) and ratios["time"] > 0, method
      assert math.isfinite(ratios["compile"]) and ratios["compile"] > 0, method
      for f in RATIO_FIELDS[2:]:
        assert ratios[f] is None or (math.isfinite(ratios[f]) and ratios[f] > 0), (method, f)
    assert s["methods"]["plain"]["ratios"]["time"] == 1.0


def test_memory_fields_are_non_negative_ints_or_null(report):
  data, _ = report
  for s in data["settings"]:
    for r in s["methods"].values():
      assert set(r["memory"]) == set(step_cost.MEMORY_FIELDS)
      for v in r["memory"].values():
        assert v is None or (isinstance(v, int) and v >= 0)
      dm = r["device_memory"]
      assert dm is None or all(v is None or (isinstance(v, int) and v >= 0) for v in dm.values())


def test_two_gradient_methods_report_temp_memory_in_mixed_layout(report):
  data, _ = report
  shared = next(s for s in data["settings"] if s["layout"] == "mixed")
  plain_temp = shared["methods"]["plain"]["memory"]["temp_bytes"]
  for method in [
    v for v, (m, _) in step_cost.VARIANTS.items() if get_method(m).shape == "aggregated"
  ]:
    temp = shared["methods"][method]["memory"]["temp_bytes"]
    assert isinstance(temp, int)
    if plain_temp is not None:
      # Deterministic (compiled analysis): two stacked gradients never need less
      # temporary memory than the one gradient of the plain step.
      assert temp >= plain_temp, method


def test_markdown_written(report):
  data, out = report
  text = out.with_suffix(".md").read_text()
  assert data["machine"]["device_kind"] in text
  assert "Time per step, ratio to plain" in text
  for method in step_cost.METHODS:
    assert f"| {method} |" in text


def test_quick_defaults_and_plain_always_measured():
  config, _ = step_cost.parse_config(["--quick", "--methods", "explicit"])
  assert config["models"] == ("mlp",) and config["batch_sizes"] == (256,)
  assert config["layouts"] == step_cost.LAYOUTS
  assert config["methods"] == ("plain", "explicit")  # the baseline of every ratio
  config, _ = step_cost.parse_config(["--synthetic"])
  assert config["input_shape"] == (32, 32, 3) and config["num_classes"] == 10
  with pytest.raises(SystemExit):
    step_cost.parse_config(["--methods", "nope"])


@pytest.mark.parametrize(
  "method, layout",
  [("plain", "mixed"), ("igs-reevaluate", "mixed"), ("igs-reevaluate", "split"),
   ("explicit", "split"), ("famo", "mixed")],
)  # fmt: skip
def test_a_timed_step_is_the_engines_step(method, layout):
  """What the benchmark times is one step of run_method with the same config and data."""
  import jax
  import numpy as np

  from jaxunlearn.engine.unlearning import run_method

  fm, params, ms, _ = step_cost.build_model("mlp", (4, 4, 1), 3, 0, 8)
  n_retain, n_forget = step_cost.rows(layout, 12, 0.5)
  dataset, forget = step_cost.synthetic_data(0, n_retain, n_forget, (4, 4, 1), 3)
  tx, step, batch = step_cost.setting_step(method, fm, params, ms, (dataset, forget), layout,
                                           0.1, 0)  # fmt: skip
  assert ("anchor_losses" in batch) == (method == "igs-reevaluate")  # θ_0's rows cached
  timed = step(params, ms, tx.init(params), batch)[0]
  cfg = dataclasses.replace(
    step_cost.engine_config(method, layout, n_retain, n_forget, 0.1), steps=1
  )
  ran = run_method(cfg, fm, params, ms, dataset, forget, progress=False).params
  moved = max(jax.tree.leaves(jax.tree.map(lambda a, b: float(np.abs(a - b).max()), ran, params)))
  assert moved > 1e-4
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7), timed, ran)


def test_ddpm_runs_the_engines_denoise_layout_and_its_methods_step(tmp_path):
  out = tmp_path / "sc.json"
  step_cost.main(
    ["--models", "ddpm", "--input-shape", "8,8,1", "--batch-sizes", "16", "--steps", "1",
     "--warmup", "0", "--methods", "igs-reevaluate,explicit", "--out", str(out), "--no-progress"]
  )  # fmt: skip
  data = json.loads(out.read_text())
  assert [(s["layout"], s["engine_layout"]) for s in data["settings"]] == [("mixed", "denoise")]
  for setting in data["settings"]:
    assert list(setting["methods"]) == ["plain", "igs-reevaluate", "explicit"]
    for m in setting["methods"].values():
      assert m["finite"] and math.isfinite(m["median_ms"]) and m["flops"] > 0
