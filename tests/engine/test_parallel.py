"""Data-parallel steps: N forced CPU devices give one device's params and λ.

The multi-device checks run in a subprocess, because
``XLA_FLAGS=--xla_force_host_platform_device_count=8`` only takes effect before JAX
initialises its backend (this pytest process has already done so with one device).
"""

import doctest
import json
import os
import pathlib
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from jaxunlearn.engine import parallel

ROOT = pathlib.Path(__file__).resolve().parents[2]

CHILD = textwrap.dedent(r"""
    import json, pathlib, sys, time
    import jax, jax.numpy as jnp, numpy as np
    from jaxunlearn import data
    from jaxunlearn.engine import parallel, training as pretraining
    from jaxunlearn.engine.config import TrainConfig
    from jaxunlearn.engine.methods import make_config
    from jaxunlearn.engine.unlearning import _step, run_method

    RTOL, ATOL = 1e-5, 1e-6
    base = pathlib.Path(sys.argv[1])
    assert jax.device_count() == 8, jax.devices()
    data_dir = base / "data"
    data.prepare("digits", data_dir)
    ds = data.load_dataset("digits", data_dir)
    fs = data.make_forget_set(ds, "class:1")
    summary = {"devices": jax.device_count()}

    def max_err(a, b):
        return max(float(np.max(np.abs(np.asarray(x) - np.asarray(y))))
                   for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))

    def assert_close(a, b, what):
        assert jax.tree.structure(a) == jax.tree.structure(b), what
        for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
            np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=RTOL, atol=ATOL,
                                       err_msg=what)

    def assert_replicated(tree, n, what):
        for x in jax.tree.leaves(tree):
            assert x.sharding.is_fully_replicated, (what, x.sharding)
            assert len(x.sharding.device_set) == n, (what, x.sharding)

    # Pretraining: one device (no mesh) vs 4; the single-device run is the original model.
    cfg_t = TrainConfig(epochs=2, batch_size=64, model_kwargs={"hidden": (32,)})
    m1 = pretraining.train(cfg_t, base / "orig", data_dir=data_dir, progress=False)
    m4 = pretraining.train(cfg_t, base / "orig4", data_dir=data_dir, progress=False,
                           mesh=parallel.make_mesh(4))
    orig = pretraining.load_trained(base / "orig")
    orig4 = pretraining.load_trained(base / "orig4")
    assert_close(orig4.params, orig.params, "pretraining params, 4 devices vs 1")
    summary["pretrain_max_abs_err"] = max_err(orig4.params, orig.params)
    summary["pretrain_test_accuracy"] = [m1["test_accuracy"], m4["test_accuracy"]]
    try:
        pretraining.train(TrainConfig(epochs=1, batch_size=60), base / "bad", data_dir=data_dir,
                          progress=False, mesh=parallel.make_mesh(8))
        raise AssertionError("batch_size 60 on 8 devices should fail")
    except ValueError as e:
        assert "batch_size 60 is not divisible by the 8 devices" in str(e), e

    # Unlearning: IGS (λ learned in the optimiser state) and explicit surgery.
    fm = orig.fm
    summary["unlearn"] = {}
    for method in ("igs", "explicit"):
        # A negative tolerance keeps the anchored IGS constraint active, so λ moves at once.
        extra = {"tolerance": -0.5} if method == "igs" else {}
        cfg = make_config(method, steps=5, n_retain=64, n_forget=16, learning_rate=0.1, **extra)
        ref = run_method(cfg, fm, orig.params, orig.model_state, ds, fs, progress=False)
        lam_ref = ref.history["multiplier"]
        assert lam_ref.max() > 0.1, (method, lam_ref)   # λ really moved, so the check bites
        errs = {}
        for n in (1, 2, 8):  # (4 devices: the pretraining above)
            mesh = parallel.make_mesh(n)
            res = run_method(cfg, fm, orig.params, orig.model_state, ds, fs, progress=False,
                          mesh=mesh)
            assert_close(res.params, ref.params, f"{method} params, {n} devices")
            assert_close(res.model_state, ref.model_state, f"{method} model state, {n} devices")
            assert_close(res.history["multiplier"], lam_ref, f"{method} λ, {n} devices")
            assert_close(res.history["retain_loss"], ref.history["retain_loss"],
                         f"{method} retain loss, {n} devices")
            assert_replicated(res.params, n, f"{method} params")
            errs[n] = {"params": max_err(res.params, ref.params),
                       "multiplier": max_err(res.history["multiplier"], lam_ref)}
        summary["unlearn"][method] = {"multiplier": lam_ref.tolist(), "errors": errs}
        try:
            cfg_bad = make_config(method, steps=1, n_retain=60, n_forget=16, layout="split")
            run_method(cfg_bad, fm, orig.params, orig.model_state, ds, fs, progress=False,
                    mesh=parallel.make_mesh(8))
            raise AssertionError("n_retain 60 on 8 devices should fail")
        except ValueError as e:
            assert "n_retain 60 is not divisible by the 8 devices" in str(e), e

    # Where things live inside one step: batch split 4 ways, state (λ included) replicated,
    # and the compiler put in the cross-device reduction itself.
    # (The same config as above: the step, its data-parallel wrapper and compile are cached.)
    mesh = parallel.make_mesh(4)
    cfg = make_config("igs", steps=5, n_retain=64, n_forget=16, learning_rate=0.1, layout="split")
    tx, step = _step(cfg, fm, orig.params, orig.model_state, ds, fs, None)
    step = parallel.data_parallel(step, mesh)
    params, state, opt_state = parallel.replicate(
        (orig.params, orig.model_state, tx.init(orig.params)), mesh)
    b = data.unlearning_batch(ds, fs, 0, seed=0, n_retain=64, n_forget=16)
    batch = parallel.shard_batch({k: b[k] for k in ("retain_image", "retain_label",
                                                     "forget_image", "forget_label",
                                                     "forget_true_label")}, mesh)
    for k, x in batch.items():
        assert x.sharding.spec == jax.sharding.PartitionSpec("data"), (k, x.sharding)
        assert len(x.addressable_shards) == 4, k
        assert {s.data.shape[0] for s in x.addressable_shards} == {x.shape[0] // 4}, k
    assert_replicated((params, state, opt_state), 4, "inputs")
    args = (params, state, opt_state, batch, (params, state),
            parallel.replicate(jnp.asarray(0, jnp.int32), mesh))
    t0 = time.perf_counter()
    new_params, new_state, new_opt, logs = step(*args)
    summary["cached_step_call_s"] = time.perf_counter() - t0
    compiled = step.lower(*args).compile()
    summary["lower_compile_s"] = time.perf_counter() - t0
    assert "all-reduce" in compiled.as_text(), "no cross-device reduction in the compiled step"
    assert_replicated((new_params, new_state, new_opt, logs), 4, "outputs")
    import jaxunlearn
    assert jaxunlearn.multiplier(new_opt).sharding.is_fully_replicated
    print("SUMMARY " + json.dumps(summary))
""")


def test_fully_sharded_matches_single_device():
  """Fully sharded data parallel on 8 forced CPU devices (``examples/sharded_unlearning.py``,
  shown in the language-model guide): a Llama-family decoder's params and optimiser state
  split 8 ways (each leaf along the largest axis 8 divides) and the batch too, through
  ``jaxunlearn.unlearn(mesh=, fsdp=True)``; the same params as one device to float
  rounding (not bitwise: the gradient's sums are reduce-scattered in another order;
  measured 1.8e-7 under SGD), and the evaluation runs on the split model."""
  import re

  env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=8",
         "JAX_PLATFORMS": "cpu"}  # fmt: skip
  example = ROOT / "examples" / "sharded_unlearning.py"
  guide = (ROOT / "docs" / "guides" / "language-models.md").read_text()
  assert '--8<-- "examples/sharded_unlearning.py"' in guide
  proc = subprocess.run([sys.executable, str(example)], cwd=ROOT, env=env,
                        capture_output=True, text=True, timeout=600)  # fmt: skip
  assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-6000:]
  number = r"([-\d.e+]+)"
  devices, params, opt = re.search(
    rf"(\d+) devices; each holds {number} of the params and {number} of the optimiser", proc.stdout
  ).groups()
  assert int(devices) == 8
  # every weight of this model has an axis 8 divides (widths 64, 128, 32; the vocabulary
  # is not, so the embedding splits its width): 1/8 of each on a device; λ and Adam's
  # counters replicated
  assert float(params) <= 1 / 8 * 1.05 and float(opt) <= 1 / 8 * 1.05, proc.stdout
  [difference] = re.search(rf"largest difference from one device: {number}", proc.stdout).groups()
  assert float(difference) < 1e-6, proc.stdout
  split, alone = map(float, re.search(rf"multiplier: {number} split, {number} alone",
                                      proc.stdout).groups())  # fmt: skip
  assert abs(split - alone) <= 1e-5, proc.stdout


def test_helpers_and_their_examples():
  # The docstring examples run on the one device this process has.
  result = doctest.testmod(parallel, verbose=False)
  assert result.attempted >= 5 and result.failed == 0
  mesh = parallel.make_mesh()
  assert mesh.axis_names == ("data",) and parallel.num_devices(mesh) >= 1
  with pytest.raises(ValueError, match="num_devices must be between 1 and"):
    parallel.make_mesh(10_000)
  with pytest.raises(ValueError, match="a scalar"):
    parallel.shard_batch({"x": np.float32(1.0)}, mesh)


def test_data_parallel_matches_single_device(tmp_path):
  env = {
    **os.environ,
    "XLA_FLAGS": "--xla_force_host_platform_device_count=8",
    "JAX_PLATFORMS": "cpu",
  }
  proc = subprocess.run(
    [sys.executable, "-c", CHILD, str(tmp_path)],
    cwd=ROOT,
    env=env,
    capture_output=True,
    text=True,
    timeout=600,
  )
  assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-6000:]
  line = next(l for l in proc.stdout.splitlines() if l.startswith("SUMMARY "))
  summary = json.loads(line[len("SUMMARY ") :])
  assert summary["devices"] == 8
  assert set(summary["unlearn"]) == {"igs", "explicit"}
  for method, s in summary["unlearn"].items():
    assert set(s["errors"]) == {"1", "2", "8"}
    assert max(s["multiplier"]) > 0.1
    for n, e in s["errors"].items():
      assert e["params"] < 1e-4 and e["multiplier"] < 1e-4, (method, n, e)


def test_scaling_benchmark_report(tmp_path):
  """benchmarks.scaling on this process's one device: the JSON's structure, no timings."""
  from benchmarks import scaling

  out = tmp_path / "scaling.json"
  scaling.main(
    [
      "--quick",
      "--devices",
      "1",
      "--steps",
      "2",
      "--warmup",
      "1",
      "--out",
      str(out),
      "--no-progress",
    ]
  )
  report = json.loads(out.read_text())
  assert report["note"] and report["machine"]["backend"] == "cpu"
  (res,) = report["results"]
  assert res["method"] == "igs" and [r["devices"] for r in res["rows"]] == [None, 1]
  for r in res["rows"]:
    assert r["examples_per_s"] > 0 and np.isfinite(r["examples_per_s"])
    assert r["max_abs_param_diff_vs_no_mesh"] < 1e-5
  assert "| devices |" in (tmp_path / "scaling.md").read_text()
