r"""What one unlearning step costs: time and memory of every method against plain fine-tuning.

The claim of implicit gradient surgery (IGS) is efficiency: one backprop per step where
explicit surgery and the multi-objective aggregators need two. This benchmark measures
it, in one process, for each method, model, batch size and batch layout:

* **time** — median wall time of one jitted step over ``--steps`` timed calls after
  ``--warmup`` untimed ones (each call ends in ``block_until_ready``), steps per second;
  lowering and compilation are timed apart. The timed calls of a setting's methods are
  interleaved (round after round, each method once per round, order rotating), so load
  that drifts on a shared machine hits every method alike;
* **memory** — XLA's own analysis of the compiled step
  (``jax.jit(step).lower(...).compile().memory_analysis()``: argument, output, alias and
  temporary bytes; deterministic, so it holds on a noisy machine) and, on accelerators,
  the device's ``memory_stats()`` after the method ran;
* **flops** — XLA's ``cost_analysis()`` of the compiled step (deterministic too);
* each as a **ratio to the plain fine-tune step** (one ``value_and_grad`` of the retain
  loss, then SGD) measured in the same run and setting.

Every step is the engine's own (:func:`jaxunlearn.engine.steps.unlearn_step` on the
engine's layouts, built from the method registry as
:func:`jaxunlearn.engine.unlearning.run_method` builds it: the non-finite guard, the
logs and the model state included), so the table times the code the experiments run.
All methods share the inner optimiser: SGD lr 1e-3, momentum 0.9, weight decay 5e-4.

======================  ==================================================================
``plain``               the registry's ``ft``: one value_and_grad of the retain loss
``igs-paper``           the paper's IGS update: one backprop of S + one forward of L_r
``igs-reevaluate``      IGS (ours, anchored): one backprop + one forward of L_r after the
                        step; θ_0's loss from its rows' losses, cached before the loop
``igs-anchor-forward``  the same with θ_0 re-evaluated on every batch: one more forward
                        (the engine's way where a row does not fix its loss: BN, DDPM)
``igs-consecutive``     IGS, one backprop, no extra work (signal from consecutive batches)
``igs-jvp``             IGS, one backprop + one forward-mode jvp of L_r along the step
``explicit``            explicit surgery: two gradients (objective_gradients), closed form
``pcgrad``              PCGrad on the two gradients
``mgda``                MGDA (min-norm) on the two gradients
``cagrad``              CAGrad on the two gradients
``famo``                FAMO: one backprop + one forward of both losses
``pdu``                 primal–dual with an absolute threshold: one backprop
======================  ==================================================================

Batch layouts (the engine's, :mod:`jaxunlearn.engine.layouts`), because they decide where
one backprop pays:

* ``split`` — B retain rows and ``--forget-fraction``·B forget rows in separate forward
  passes. Two backward passes then cost about one backward over the union, so one
  backprop saves little time.
* ``mixed`` (the paper's protocol) — one batch of B rows, a share f/(1+f) of them forget
  rows (f = ``--forget-fraction``, half by default); both losses come from the same
  logits. One-backprop methods do one forward and one backward; two-gradient methods a
  second full backward. A DDPM's mixed batches are the engine's ``denoise`` layout (it
  has no split one).

Data are synthetic (random normal inputs, random labels) in a dataset of exactly one
batch's rows: cost does not depend on the values. Default input CIFAR-shaped 32×32×3
with 10 classes (``--synthetic`` names that default explicitly;
``--input-shape``/``--num-classes`` change it). Parameters, model state and optimiser
state are donated to the step, as in a real training loop (``alias`` bytes in the memory
analysis).

    python -m benchmarks.step_cost                   # MLP + strided CNN on CPU, +ResNet-18 on GPU
    python -m benchmarks.step_cost --quick           # MLP, batch 256, both layouts (< 1 min, CPU)
    python -m benchmarks.step_cost --models resnet18 --batch-sizes 256 --synthetic   # on a GPU

Writes ``--out`` (JSON, default ``results/step_cost.json``, atomically) and a markdown
table beside it (``results/step_cost.md``), both with the machine they came from
(:func:`benchmarks.harness.write_report`).
"""

from __future__ import annotations

import argparse
import functools
import math
import pathlib
import sys
import time
import warnings
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks import harness, synthetic
from experiments.cli import HelpFormatter
from jaxunlearn import data as data_lib
from jaxunlearn.engine.layouts import LAYOUTS as LAYOUTS_OF_ENGINE
from jaxunlearn.engine.methods import (
  PrepareContext,
  build_transformation,
  get_method,
  make_config,
)
from jaxunlearn.engine.records import machine_info
from jaxunlearn.engine.steps import unlearn_step
from jaxunlearn.engine.unlearning import anchor_table
from jaxunlearn.nn import models as models_lib
from jaxunlearn.nn.denoiser import MLPDenoiser

METHODS = (
  "plain",
  "igs-paper",
  "igs-reevaluate",
  "igs-anchor-forward",
  "igs-consecutive",
  "igs-jvp",
  "explicit",
  "pcgrad",
  "mgda",
  "cagrad",
  "famo",
  "pdu",
)
LAYOUTS = ("split", "mixed")
MODELS = ("mlp", "cnn", "resnet18", "ddpm")
# Benchmark variant -> (registry method, config overrides).
VARIANTS = {
  "plain": ("ft", {}),  # fine-tuning on the retain loss: the baseline of every ratio
  "igs-paper": ("igs_paper", {}),  # the paper's update (re-evaluated, per step)
  "igs-reevaluate": ("igs", {"signal": "reevaluate"}),  # ours (anchored): one more forward
  "igs-anchor-forward": ("igs", {"signal": "reevaluate"}),  # θ_0 re-evaluated, not cached
  "igs-consecutive": ("igs", {"signal": "consecutive"}),
  "igs-jvp": ("igs", {"signal": "jvp"}),
  "explicit": ("explicit", {}),
  "pcgrad": ("pcgrad", {}),
  "mgda": ("mgda", {}),
  "cagrad": ("cagrad", {}),
  "famo": ("famo", {}),
  "pdu": ("pdu", {"pdu_threshold": 0.5, "pdu_dual_lr": 0.1}),
  # the standard baselines (one loss, one backprop; SCRUB and NPO read the original's
  # logits, SalUn's mask is prepared from it): not in the default tables, in EVERY_METHOD
  "ga": ("ga", {}),
  "graddiff": ("graddiff", {}),
  "rl": ("rl", {}),
  "linear": ("linear", {}),
  "l1sparse": ("l1sparse", {}),
  "salun": ("salun", {}),
  "scrub": ("scrub", {}),
  "npo": ("npo", {}),
}
EVERY_METHOD = tuple(VARIANTS)  # benchmarks.gpu times them all
BASELINE = "plain"
MEMORY_FIELDS = (
  "argument_bytes",
  "output_bytes",
  "alias_bytes",
  "temp_bytes",
  "generated_code_bytes",
  "peak_bytes",
  "total_bytes",
)
DEVICE_MEMORY_KEYS = ("bytes_in_use", "peak_bytes_in_use", "bytes_limit")

QUICK = dict(models=("mlp",), batch_sizes=(256,), layouts=LAYOUTS, steps=5, warmup=1)
DEFAULT_STEPS, DEFAULT_WARMUP = 20, 3
DEFAULT_BATCH_SIZES = (64, 256, 1024)


# ------------------------------------------------------------------ the engine's steps


def rows(layout: str, batch_size: int, forget_fraction: float) -> tuple[int, int]:
  """``(n_retain, n_forget)`` of a setting: split, B retain rows and ``forget_fraction``·B
  forget rows; mixed, B rows of which the forget share is ``f / (1 + f)``."""
  if layout == "split":
    return batch_size, max(1, int(round(forget_fraction * batch_size)))
  n_forget = max(1, int(round(batch_size * forget_fraction / (1 + forget_fraction))))
  return batch_size - n_forget, n_forget


def engine_layout(model: str, layout: str) -> str | None:
  """The engine's layout a setting runs: a DDPM's mixed batches are ``denoise``; a DDPM
  has no split layout (``None``)."""
  if model == "ddpm":
    return "denoise" if layout == "mixed" else None
  return layout


def synthetic_data(seed: int, n_retain: int, n_forget: int, input_shape, num_classes: int):
  """``(dataset, forget_set)``: synthetic rows, exactly ``n_retain`` retain and
  ``n_forget`` forget ones (the first)."""
  x, y, _ = synthetic.synthetic_examples(
    np.random.default_rng(seed), n_retain + n_forget, input_shape, num_classes
  )
  dataset = data_lib.from_arrays(x, y, num_classes=num_classes, name="synthetic")
  return dataset, data_lib.forget_set_from_rows(dataset, np.arange(n_forget))


def engine_config(method: str, layout: str, n_retain: int, n_forget: int, lr=1e-3, seed=0):
  """The unlearning config a benchmark variant runs (:data:`VARIANTS`) on ``layout``."""
  if method not in VARIANTS:
    raise ValueError(f"unknown method {method!r}; choose from {', '.join(VARIANTS)}")
  name, overrides = VARIANTS[method]
  return make_config(
    name, learning_rate=lr, momentum=0.9, layout=layout, n_retain=n_retain, n_forget=n_forget,
    seed=seed, **overrides,
  )  # fmt: skip


def engine_batch(cfg, fm, params, model_state, dataset, forget_set, cache=True) -> dict:
  """Step 0's batch of ``cfg``'s layout, as :func:`~jaxunlearn.engine.unlearning.run_method`
  builds it (with θ_0's cached per-row losses where the method takes them:
  :func:`~jaxunlearn.engine.unlearning.anchor_table`, unless ``cache`` is False), as device
  arrays."""
  table = None if cache is False else anchor_table(cfg, fm, params, model_state, dataset)
  layout = LAYOUTS_OF_ENGINE[cfg.layout]
  batch = layout.batch(dataset, forget_set, 0, cfg, cfg.n_retain, cfg.n_forget, anchor=table)
  return {k: jnp.asarray(v) for k, v in batch.items()}


def make_step(cfg, fm, context: PrepareContext | None = None):
  """``(tx, step)``: the engine's step of ``cfg`` before ``jax.jit``, exactly as
  :func:`jaxunlearn.engine.unlearning.run_method` builds it
  (:func:`jaxunlearn.engine.steps.unlearn_step`): ``step(params, ms, opt_state, batch) ->
  (params, ms, opt_state, logs)`` at step index 0. A method that prepares something
  (SalUn's mask) prepares it from ``context``; one that reads the original model's logits
  (SCRUB, NPO) takes ``batch = {"inputs": ..., "teacher": (params, model_state)}``, the
  original passed as an argument, as ``run_method`` passes it.
  """
  method = get_method(cfg.method)
  if method.prepare is not None and context is None:
    raise ValueError(f"{cfg.method} prepares from the original model: pass context=")
  prepared = method.prepare(context, cfg) if method.prepare is not None else None
  tx = build_transformation(cfg, prepared)
  step = unlearn_step(fm, method, cfg, tx)
  index = jnp.zeros((), jnp.int32)
  if method.needs_teacher:
    return tx, lambda p, ms, o, batch: step(p, ms, o, batch["inputs"], batch["teacher"], index)
  return tx, lambda p, ms, opt_state, batch: step(p, ms, opt_state, batch, None, index)


def setting_step(method, fm, params, model_state, data, layout, lr, seed):
  """``(tx, step, batch)`` of one method in one setting (``data``: the setting's
  ``(dataset, forget_set)`` of :func:`synthetic_data`)."""
  dataset, forget = data
  n_retain, n_forget = len(forget.retain_idx), len(forget.forget_idx)
  cfg = engine_config(method, layout, n_retain, n_forget, lr, seed)
  batch = engine_batch(
    cfg, fm, params, model_state, dataset, forget, cache=method != "igs-anchor-forward"
  )
  tx, step = make_step(cfg, fm, PrepareContext(fm, params, model_state, dataset, forget))
  if get_method(cfg.method).needs_teacher:
    batch = {"inputs": batch, "teacher": (params, model_state)}
  return tx, step, batch


# ------------------------------------------------------------------ measuring


def _int_or_none(x):
  if x is None:
    return None
  try:
    v = int(x)
  except (TypeError, ValueError):
    return None
  return v if v >= 0 else None


def memory_fields(compiled) -> dict:
  """Argument/output/alias/temp bytes of a compiled step; ``None`` where XLA gives none.

  ``total_bytes`` = argument + output − alias + temp: what the step needs resident while
  it runs (donated outputs reuse their argument buffers).
  """
  try:
    stats = compiled.memory_analysis()
  except Exception:  # pylint: disable=broad-except  # backends may not implement it
    stats = None
  get = lambda name: _int_or_none(getattr(stats, name, None)) if stats is not None else None
  out = {
    "argument_bytes": get("argument_size_in_bytes"),
    "output_bytes": get("output_size_in_bytes"),
    "alias_bytes": get("alias_size_in_bytes"),
    "temp_bytes": get("temp_size_in_bytes"),
    "generated_code_bytes": get("generated_code_size_in_bytes"),
    "peak_bytes": get("peak_memory_in_bytes"),
  }
  parts = [out["argument_bytes"], out["output_bytes"], out["temp_bytes"]]
  if any(p is None for p in parts):
    out["total_bytes"] = None
  else:
    out["total_bytes"] = max(0, parts[0] + parts[1] - (out["alias_bytes"] or 0) + parts[2])
  return out


def cost_fields(compiled) -> dict:
  """XLA's flop and bytes-accessed estimates of a compiled step (``None`` if unavailable)."""
  try:
    cost = compiled.cost_analysis()
  except Exception:  # pylint: disable=broad-except
    cost = None
  if isinstance(cost, (list, tuple)):
    cost = cost[0] if cost else None
  if not isinstance(cost, dict):
    return {"flops": None, "bytes_accessed": None}
  num = lambda k: float(cost[k]) if k in cost and math.isfinite(float(cost[k])) else None
  return {"flops": num("flops"), "bytes_accessed": num("bytes accessed")}


def device_memory() -> dict | None:
  """The device's allocator statistics (GPU/TPU); ``None`` on CPU, where JAX has none."""
  try:
    stats = jax.devices()[0].memory_stats()
  except Exception:  # pylint: disable=broad-except
    stats = None
  if not stats:
    return None
  return {k: _int_or_none(stats.get(k)) for k in DEVICE_MEMORY_KEYS}


def _copy(tree):
  return jax.tree.map(lambda x: jnp.array(x, copy=True), tree)


def _all_finite(tree) -> bool:
  return bool(
    all(
      bool(jnp.all(jnp.isfinite(x)))
      for x in jax.tree.leaves(tree)
      if jnp.issubdtype(x.dtype, jnp.inexact)
    )
  )


class Compiled:
  """One method's compiled step and its live carry (params, model state, optimiser state)."""

  def __init__(self, step: Callable, tx, params, model_state, batch):
    params, model_state = _copy(params), _copy(model_state)
    opt_state = tx.init(params)
    jitted = jax.jit(step, donate_argnums=(0, 1, 2))
    t0 = time.perf_counter()
    lowered = jitted.lower(params, model_state, opt_state, batch)
    t1 = time.perf_counter()
    self.executable = lowered.compile()
    t2 = time.perf_counter()
    self.batch = batch
    self.carry = (params, model_state, opt_state)
    self.result = {
      "lower_s": t1 - t0,
      "compile_s": t2 - t1,
      "memory": memory_fields(self.executable),
    }
    self.result.update(cost_fields(self.executable))

  def __call__(self) -> float:
    """Runs one step to completion; returns its wall time in seconds."""
    t = time.perf_counter()
    out = self.executable(*self.carry, self.batch)
    jax.block_until_ready(out)
    dt = time.perf_counter() - t
    self.carry = out[:3]
    return dt

  def finish(self, timing: dict) -> dict:
    """The result, with ``timing`` (:func:`benchmarks.harness.interleaved`'s figures of
    this step) and whether its params stayed finite."""
    med = timing["median_ms"]
    self.result.update(
      median_ms=med,
      mean_ms=timing["mean_ms"],
      min_ms=timing["min_ms"],
      max_ms=timing["max_ms"],
      steps_per_s=(1e3 / med) if med > 0 else None,
      timed_steps=timing["n"],
      finite=_all_finite(self.carry[0]),
    )
    self.carry = self.executable = None
    return self.result


def measure_setting(
  steps_of: dict,
  params,
  model_state,
  *,
  steps: int,
  warmup: int,
  tick: Callable[[str], None] = lambda _: None,
) -> dict:
  """Compiles and times every method of one setting; returns ``{method: result}``.

  Each method is compiled ahead of time (lowering and compiling timed apart), run
  ``warmup`` times, and the device memory is read. Then the timed steps are
  interleaved (:func:`benchmarks.harness.interleaved`: ``steps`` rounds, each method once
  a round in a rotating order), so drifting load on a shared machine hits every method
  alike (the ratios to the plain step are what matter). A method that fails to compile
  or warm up (e.g. out of memory) is recorded as ``error``.
  """
  results, live = {}, {}
  for method, make in steps_of.items():
    tick(f"compile {method}")
    try:
      tx, step, batch = make()
      c = Compiled(step, tx, params, model_state, batch)
      for _ in range(warmup):
        c()
      c.result["device_memory"] = device_memory()
      live[method] = c
    except Exception as e:  # pylint: disable=broad-except  # e.g. out of memory
      results[method] = {"error": f"{type(e).__name__}: {str(e).splitlines()[0][:300]}"}
  tick("time")
  timed = harness.interleaved(live, rounds=steps, warmup=0) if live else {}
  for method, c in live.items():
    results[method] = c.finish(timed[method])
  return {m: results[m] for m in steps_of}


def _ratio(a, b):
  if a is None or b is None or not (isinstance(a, (int, float)) and isinstance(b, (int, float))):
    return None
  if b <= 0 or not math.isfinite(a) or not math.isfinite(b):
    return None
  return a / b


def add_ratios(methods: dict) -> None:
  """Adds ``ratios`` (to the plain step of the same setting) to every method's result."""
  base = methods.get(BASELINE)
  for res in methods.values():
    if base is None or "error" in res or "error" in base:
      res["ratios"] = None
      continue
    res["ratios"] = {
      "time": _ratio(res["median_ms"], base["median_ms"]),
      "compile": _ratio(res["compile_s"], base["compile_s"]),
      "flops": _ratio(res["flops"], base["flops"]),
      "temp_bytes": _ratio(res["memory"]["temp_bytes"], base["memory"]["temp_bytes"]),
      "total_bytes": _ratio(res["memory"]["total_bytes"], base["memory"]["total_bytes"]),
    }


# ------------------------------------------------------------------ models


def build_model(name: str, input_shape, num_classes: int, seed: int, resnet_width: int):
  if name == "ddpm":  # the digits denoiser of experiments.ddpm (docs/design.md §9)
    from flax import nnx  # noqa: PLC0415

    fm, params, model_state = models_lib.functional(
      MLPDenoiser(tuple(input_shape), num_classes, rngs=nnx.Rngs(seed))
    )
    return fm, params, model_state, {}
  kwargs = {"width": resnet_width} if name == "resnet18" else {}
  model = models_lib.create_model(
    name, num_classes=num_classes, input_shape=input_shape, seed=seed, **kwargs
  )
  fm, params, model_state = models_lib.functional(model)
  return fm, params, model_state, kwargs


# ------------------------------------------------------------------ running


def measure_model_setting(config, model, batch_size: int, layout: str, tick) -> dict:
  """One setting's record: every method of ``config`` on ``model`` (``(name, kwargs,
  parameter count, fm, params, model state)``) at ``batch_size`` on ``layout``."""
  name, model_kwargs, n_params, fm, params, model_state = model
  engine = engine_layout(name, layout)
  n_retain, n_forget = rows(layout, batch_size, config["forget_fraction"])
  data = synthetic_data(
    config["seed"], n_retain, n_forget, config["input_shape"], config["num_classes"]
  )
  steps_of = {
    m: functools.partial(
      setting_step, m, fm, params, model_state, data, engine, config["lr"], config["seed"]
    )
    for m in config["methods"]
  }
  methods = measure_setting(
    steps_of, params, model_state, steps=config["steps"], warmup=config["warmup"], tick=tick
  )
  add_ratios(methods)
  return {
    "model": name,
    "model_kwargs": model_kwargs,
    "num_params": n_params,
    "batch_size": batch_size,
    "layout": layout,
    "engine_layout": engine,
    "n_retain": n_retain,
    "n_forget": n_forget,
    "methods": methods,
  }


def run(config: dict, progress: bool = True) -> dict:
  """Runs every (model, batch size, layout, method) of ``config``; returns the report."""
  try:
    from tqdm.auto import tqdm
  except ImportError:  # pragma: no cover
    tqdm = None
  start = time.perf_counter()
  jobs = [
    (m, b, l, meth)
    for m in config["models"]
    for b in config["batch_sizes"]
    for l in config["layouts"]
    if engine_layout(m, l) is not None
    for meth in config["methods"]
  ]
  bar = (
    tqdm(total=len(jobs), file=sys.stderr, disable=not progress, unit="step fn", dynamic_ncols=True)
    if tqdm is not None
    else None
  )
  settings = []
  for model_name in config["models"]:
    fm, params, model_state, model_kwargs = build_model(
      model_name,
      config["input_shape"],
      config["num_classes"],
      config["seed"],
      config["resnet_width"],
    )
    n_params = models_lib.count_params(params)
    for batch_size in config["batch_sizes"]:
      for layout in config["layouts"]:
        if engine_layout(model_name, layout) is None:
          continue
        tick = lambda what, desc=f"{model_name} b{batch_size} {layout}": (
          bar.set_description(f"{desc} {what}") if bar else None
        )
        model = (model_name, model_kwargs, n_params, fm, params, model_state)
        settings.append(measure_model_setting(config, model, batch_size, layout, tick))
        if bar is not None:
          bar.update(len(config["methods"]))
  if bar is not None:
    bar.close()
  return {
    "benchmark": "step_cost",
    "machine": machine_info(),
    "config": {k: (list(v) if isinstance(v, tuple) else v) for k, v in config.items()},
    "total_seconds": time.perf_counter() - start,
    "settings": settings,
  }


# ------------------------------------------------------------------ reporting


def _mib(b):
  return "–" if b is None else f"{b / 2**20:.2f}"


def _x(r, digits=2):
  return "–" if r is None else f"{r:.{digits}f}×"


def markdown(report: dict) -> str:
  m, c = report["machine"], report["config"]
  lines = [
    "# Step cost of unlearning methods",
    "",
    f"Machine: backend `{m['backend']}`, device `{m['device_kind']}` "
    f"(×{m['device_count']}), {m['cpu_count']} CPUs"
    + (f" ({m['affinity_cpus']} usable)" if m.get("affinity_cpus") else "")
    + f", {m['platform']}; jax {m['versions'].get('jax')}, jaxlib "
    f"{m['versions'].get('jaxlib')}, flax {m['versions'].get('flax')}, optax "
    f"{m['versions'].get('optax')}, Python {m['python']}; {m['date_utc']}.",
    "",
    f"Synthetic data {tuple(c['input_shape'])}, {c['num_classes']} classes; median of "
    f"{c['steps']} timed steps after {c['warmup']} warm-up steps; SGD lr {c['lr']} "
    f"momentum 0.9, weight decay 5e-4; forget rows: split {c['forget_fraction']:g} × B, "
    f"mixed a share {c['forget_fraction']:g}/(1 + {c['forget_fraction']:g}) of B; "
    f"total run {report['total_seconds']:.0f} s.",
    "Every step is the engine's own (jaxunlearn.engine.steps.unlearn_step). Ratios are to "
    "the plain fine-tune step (the registry's ft: one value_and_grad of the retain loss) of "
    "the same setting. Memory from XLA's compiled memory analysis; "
    "total = argument + output − alias (donated) + temp.",
    "",
  ]
  columns = [
    (model, b, layout) for model in c["models"] for b in c["batch_sizes"] for layout in c["layouts"]
  ]
  by_key = {(s["model"], s["batch_size"], s["layout"]): s for s in report["settings"]}
  columns = [k for k in columns if k in by_key]

  def pivot(title, getter):
    out = [
      f"## {title}",
      "",
      "| method | " + " | ".join(f"{mo} b{b} {la}" for mo, b, la in columns) + " |",
      "|---|" + "---:|" * len(columns),
    ]
    for method in c["methods"]:
      cells = []
      for key in columns:
        res = by_key[key]["methods"].get(method)
        cells.append("err" if res is None or "error" in res else getter(res))
      out.append(f"| {method} | " + " | ".join(cells) + " |")
    return out + [""]

  ratio = lambda k: lambda r: _x((r.get("ratios") or {}).get(k))
  lines += pivot("Time per step, ratio to plain", ratio("time"))
  lines += pivot("Compiled temporary memory, ratio to plain", ratio("temp_bytes"))
  lines += pivot(
    "Compiled total memory (arg + out − alias + temp), ratio to plain", ratio("total_bytes")
  )

  return "\n".join(lines + _detail(report)) + "\n"


def _detail(report: dict) -> list[str]:
  """The detail table of :func:`markdown`: every method of every setting, one row."""
  gpu = any(r.get("device_memory") for s in report["settings"] for r in s["methods"].values())
  lines = [
    "## Detail",
    "",
    "| model | params | B | layout | method | ms/step | × plain | steps/s | compile s "
    "| GFLOP | arg MiB | out MiB | temp MiB | × plain | total MiB | × plain |"
    + (" dev peak MiB |" if gpu else ""),
    "|---|---:|---:|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    + ("---:|" if gpu else ""),
  ]
  for s in report["settings"]:
    for method, r in s["methods"].items():
      head = (
        f"| {s['model']} | {s['num_params']:,} | {s['batch_size']} | {s['layout']} | {method} |"
      )
      if "error" in r:
        lines.append(head + f" error: {r['error'][:80]} |")
        continue
      mem, rat = r["memory"], r.get("ratios") or {}
      gflop = "–" if r["flops"] is None else f"{r['flops'] / 1e9:.2f}"
      row = (
        f"{head} {r['median_ms']:.2f} | {_x(rat.get('time'))} | "
        f"{(r['steps_per_s'] or 0):.1f} | {r['compile_s']:.2f} | {gflop} | "
        f"{_mib(mem['argument_bytes'])} | {_mib(mem['output_bytes'])} | "
        f"{_mib(mem['temp_bytes'])} | {_x(rat.get('temp_bytes'))} | "
        f"{_mib(mem['total_bytes'])} | {_x(rat.get('total_bytes'))} |"
      )
      if gpu:
        dm = r.get("device_memory") or {}
        row += f" {_mib(dm.get('peak_bytes_in_use'))} |"
      lines.append(row)
  if gpu:
    lines += [
      "",
      "Device peak is the allocator's process-wide peak after the method ran "
      "(methods run in the order listed, so it never decreases).",
    ]
  return lines


# ------------------------------------------------------------------ command line


def _csv(kind=str):
  return lambda s: tuple(kind(v) for v in s.split(",") if v.strip())


def build_parser() -> argparse.ArgumentParser:
  p = argparse.ArgumentParser(
    prog="python -m benchmarks.step_cost",
    description="Time and memory of one jitted unlearning step per method, against the "
    "plain fine-tune step.",
    formatter_class=HelpFormatter,
  )
  p.add_argument(
    "--quick",
    action="store_true",
    help="subset: mlp, batch 256, both layouts, all methods, 5 steps (< 1 min on CPU)",
  )
  p.add_argument(
    "--models",
    type=_csv(),
    default=None,
    help=f"comma list of {', '.join(MODELS)}; unset: mlp,cnn on CPU, "
    "all three on an accelerator, mlp with --quick",
  )
  p.add_argument(
    "--batch-sizes",
    type=_csv(int),
    default=None,
    help=f"comma list; unset: {','.join(map(str, DEFAULT_BATCH_SIZES))}, 256 with --quick",
  )
  p.add_argument(
    "--layouts", type=_csv(), default=None, help="comma list of split,mixed; unset: both"
  )
  p.add_argument(
    "--methods",
    type=_csv(),
    default=None,
    help=f"comma list; unset: {','.join(METHODS)}; also {','.join(EVERY_METHOD[len(METHODS) :])}",
  )
  p.add_argument(
    "--steps",
    type=int,
    default=None,
    help=f"timed steps per method; unset: {DEFAULT_STEPS}, {QUICK['steps']} with --quick",
  )
  p.add_argument(
    "--warmup",
    type=int,
    default=None,
    help=f"untimed steps after compiling; unset: {DEFAULT_WARMUP}, {QUICK['warmup']} with --quick",
  )
  p.add_argument(
    "--synthetic",
    action="store_true",
    help="CIFAR-shaped synthetic data (32x32x3, 10 classes; overrides "
    "--input-shape/--num-classes). Data are always synthetic; this is the "
    "default shape anyway",
  )
  p.add_argument("--input-shape", type=_csv(int), default=(32, 32, 3), help="H,W,C")
  p.add_argument("--num-classes", type=int, default=10, help="classes of the synthetic labels")
  p.add_argument(
    "--forget-fraction",
    type=float,
    default=1.0,
    help="split layout: forget batch size as a fraction of B",
  )
  p.add_argument(
    "--resnet-width",
    type=int,
    default=None,
    help="ResNet-18 base width; unset: 64 (the full model) on accelerators, 16 on CPU",
  )
  p.add_argument("--full", action="store_true", help="full-width ResNet-18 even on CPU")
  p.add_argument("--lr", type=float, default=1e-3, help="learning rate of every method's inner SGD")
  p.add_argument("--seed", type=int, default=0, help="seed of the models and the synthetic data")
  p.add_argument(
    "--out", default="results/step_cost.json", help="JSON file to write (markdown beside it)"
  )
  p.add_argument("--no-progress", action="store_true", help="no tqdm bar on stderr")
  return p


def parse_config(argv=None) -> tuple[dict, argparse.Namespace]:
  p = build_parser()
  args = p.parse_args(argv)

  on_cpu = jax.default_backend() == "cpu"
  pick = lambda given, quick, default: (
    given if given is not None else (quick if args.quick else default)
  )
  config = {
    "models": pick(args.models, QUICK["models"], ("mlp", "cnn") if on_cpu else MODELS),
    "batch_sizes": pick(args.batch_sizes, QUICK["batch_sizes"], DEFAULT_BATCH_SIZES),
    "layouts": pick(args.layouts, QUICK["layouts"], LAYOUTS),
    "methods": pick(args.methods, METHODS, METHODS),
    "steps": pick(args.steps, QUICK["steps"], DEFAULT_STEPS),
    "warmup": pick(args.warmup, QUICK["warmup"], DEFAULT_WARMUP),
    "input_shape": (32, 32, 3) if args.synthetic else tuple(args.input_shape),
    "num_classes": 10 if args.synthetic else args.num_classes,
    "forget_fraction": args.forget_fraction,
    "resnet_width": (
      64
      if args.full
      else args.resnet_width
      if args.resnet_width is not None
      else (16 if on_cpu else 64)
    ),
    "lr": args.lr,
    "seed": args.seed,
  }
  for key, valid in (("models", MODELS), ("layouts", LAYOUTS), ("methods", EVERY_METHOD)):
    bad = [v for v in config[key] if v not in valid]
    if bad:
      p.error(f"unknown {key}: {', '.join(bad)} (choose from {', '.join(valid)})")
  if config["methods"] and BASELINE not in config["methods"]:
    config["methods"] = (BASELINE, *config["methods"])  # ratios need the plain step
  if config["steps"] < 1 or config["warmup"] < 0:
    p.error("--steps must be ≥ 1 and --warmup ≥ 0")
  if len(config["input_shape"]) != 3:
    p.error("--input-shape must be H,W,C")
  return config, args


def main(argv=None) -> dict:
  config, args = parse_config(argv)
  with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message="Some donated buffers were not usable")
    report = run(config, progress=not args.no_progress)
  text = harness.write_report(args.out, report, markdown)
  print(text)
  md = pathlib.Path(args.out).with_suffix(".md")
  print(f"wrote {args.out} and {md} ({report['total_seconds']:.0f} s)", file=sys.stderr)
  return report


if __name__ == "__main__":
  main()
