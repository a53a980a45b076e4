"""Generative unlearning: make a class-conditional DDPM on digits forget a class.

    python -m experiments.ddpm --workdir runs/ddpm [--forget class:7] [--seeds 3]
    python -m experiments.ddpm --workdir runs/ddpm-tiny --quick     # a minute, for CI

The paper's generative setting on scikit-learn's 8×8 digits (offline, 2 CPU cores): an
ε-prediction DDPM (an MLP denoiser, docs/design.md §9) is pretrained on every class, and
retrained without the forgotten class as the reference; then every method that reads
only the losses unlearns the class from the original's EMA weights with the same budget
(Adam, the paper's DDPM runner's inner optimiser): retain = the denoising loss on the
other classes, forget = the paper's "rl" loss (draw another class when asked for c).

Metrics on generated samples (DDIM, 50 steps, guidance 2), labelled by a classifier
trained on real digits (the digits recipe, trained once and cached in the workdir):
UA = % of samples conditioned on the forgotten class *not* labelled as it; RA = % of
samples conditioned on each remaining class labelled as that class (fidelity); FID of
remaining-class samples against real test images of those classes, in the classifier's
penultimate (last hidden layer) feature space — not Inception's, so its values are not
comparable with image-generation papers, only between rows of one table.
Writes ``results.json``, ``table.md`` and ``samples.png`` (rows = classes; columns:
original, each method, retrained) to the workdir.
"""

from __future__ import annotations

import pathlib
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from experiments import results_schema
from experiments.cli import main_guard, parser
from jaxunlearn import data as data_lib
from jaxunlearn import diffusion
from jaxunlearn import metrics as metrics_lib
from jaxunlearn.engine import checkpoint as ckpt
from jaxunlearn.engine.config import TrainConfig
from jaxunlearn.engine.layouts import DIFFUSION_STEPS
from jaxunlearn.engine.locking import WorkdirLock
from jaxunlearn.engine.methods import make_config
from jaxunlearn.engine.records import check_workdir, machine_info, write_json_atomic
from jaxunlearn.engine.training import load_trained, train
from jaxunlearn.engine.unlearning import run_method
from jaxunlearn.errors import ConfigError
from jaxunlearn.nn import models
from jaxunlearn.nn.denoiser import MLPDenoiser

# Methods whose objectives are the losses alone (scrub and npo read classifier logits;
# salun's saliency is the gradient of the forget rows' denoising loss here).
METHODS = ("igs", "igs_paper", "explicit", "famo", "pdu", "mgda", "pcgrad", "cagrad",
           "linear", "ft", "ga", "rl", "salun", "l1sparse")  # fmt: skip
DEFAULT_METHODS = ("igs", "igs_paper", "explicit", "pcgrad", "famo", "ft", "ga", "rl", "salun")
FULL = {"pretrain_steps": 8000, "unlearn_steps": 1000, "samples": 100}
QUICK = {"pretrain_steps": 300, "unlearn_steps": 20, "samples": 10}
NULL = 10  # the null label of classifier-free guidance (digits has 10 classes)
REPORTED = ("UA", "RA", "FID")


def _denoiser(seed: int):
  return models.functional(MLPDenoiser((8, 8, 1), 10, rngs=nnx.Rngs(seed)))


def pretrain_ddpm(dataset, workdir, *, exclude=(), steps=8000, seed=0, batch=128, ema=0.999):
  """Trains (or loads, when ``workdir`` holds it) a DDPM on the train rows not of the
  ``exclude`` classes; returns ``(fm, ema_params, seconds)``. Orbax checkpoint: params,
  EMA params, AdamW state, step."""
  fm, params, _ = _denoiser(seed)
  tx = optax.adamw(1e-3)
  opt_state = tx.init(params)
  template = {"params": params, "ema": params, "opt_state": opt_state}
  directory = pathlib.Path(workdir) / "checkpoints"
  meta = {"kind": "ddpm", "exclude": list(exclude), "steps": steps, "seed": seed}
  if directory.exists() and any(directory.iterdir()):
    with ckpt.Checkpointer(directory, keep_best=False) as m:
      if m.metadata() != {**meta, "versions": m.metadata()["versions"]}:
        raise ConfigError(f"{workdir} holds another DDPM; choose a new --workdir")
      return fm, m.restore(template)["ema"], 0.0
  rows = np.flatnonzero(~np.isin(dataset.train.labels, exclude))
  x_all = 2.0 * dataset.train.images[rows] - 1.0
  y_all = dataset.train.labels[rows]
  schedule = diffusion.linear_schedule(DIFFUSION_STEPS)

  @jax.jit
  def step(state, x0, y, key):
    params, ema_p, opt_state = state["params"], state["ema"], state["opt_state"]
    k1, k2, k3 = jax.random.split(key, 3)
    t = jax.random.randint(k1, (x0.shape[0],), 0, DIFFUSION_STEPS)
    noise = jax.random.normal(k2, x0.shape)
    y = jnp.where(jax.random.uniform(k3, y.shape) < 0.1, NULL, y)  # label dropout: CFG

    def loss_fn(p):
      eps = fm.apply(p, {}, (diffusion.add_noise(schedule, x0, t, noise), t, y), train=True)[0]
      return diffusion.per_example_mse(eps, noise).mean()

    loss, g = jax.value_and_grad(loss_fn)(params)
    updates, opt_state = tx.update(g, opt_state, params)
    params = optax.apply_updates(params, updates)
    ema_p = optax.tree.add(optax.tree.scale(ema, ema_p), optax.tree.scale(1 - ema, params))
    return {"params": params, "ema": ema_p, "opt_state": opt_state}, loss

  start = time.perf_counter()
  state = template
  rng = np.random.default_rng([seed, 17])
  keys = jax.random.split(jax.random.key(seed), steps)
  for i in range(steps):
    idx = rng.integers(0, len(rows), batch)
    state, _ = step(state, jnp.asarray(x_all[idx]), jnp.asarray(y_all[idx]), keys[i])
  jax.block_until_ready(state)
  seconds = time.perf_counter() - start
  with ckpt.Checkpointer(directory, keep_best=False) as m:
    m.save(steps, state, metadata={**meta, "versions": ckpt.package_versions()})
  return fm, state["ema"], seconds


def judge_features(judge, images):
  """The judge MLP's last hidden layer (the FID feature space) and its logits."""
  params = judge.params
  names = sorted(k for k in params if k.startswith("hidden"))
  h = jnp.asarray(images).reshape(len(images), -1)
  for name in names:
    h = jax.nn.relu(h @ params[name]["kernel"] + params[name]["bias"])
  return np.asarray(h), np.asarray(h @ params["head"]["kernel"] + params["head"]["bias"])


def generate(fm, params, classes, per_class: int, seed: int):
  """``per_class`` DDIM samples of each class in ``classes``, images in [0, 1]."""
  labels = jnp.repeat(jnp.asarray(classes, jnp.int32), per_class)
  eps_fn = lambda x, t, y: fm.apply(params, {}, (x, t, y), train=False)[0]
  sample = jax.jit(
    lambda key: diffusion.ddim_sample(
      eps_fn,
      diffusion.linear_schedule(DIFFUSION_STEPS),
      labels,
      key,
      shape=(8, 8, 1),
      null_label=NULL,
    )
  )
  x = sample(jax.random.key(seed))
  return (np.asarray(x) + 1.0) / 2.0, np.asarray(labels)


def generation_metrics(judge, dataset, images, labels, forget_classes) -> dict:
  """UA, RA, FID of generated ``images`` conditioned on ``labels`` (see the module doc),
  and the per-class share of samples labelled as their class."""
  feats, logits = judge_features(judge, images)
  pred = logits.argmax(-1)
  per_class = {int(c): 100 * float(np.mean(pred[labels == c] == c)) for c in np.unique(labels)}
  forget = np.isin(labels, forget_classes)
  test_keep = ~np.isin(dataset.test.labels, forget_classes)
  real_feats, _ = judge_features(judge, dataset.test.images[test_keep])
  return {
    "UA": 100 * float(np.mean(pred[forget] != labels[forget])),
    "RA": float(np.mean([v for c, v in per_class.items() if c not in forget_classes])),
    "FID": diffusion.fid(feats[~forget], real_feats),
    "per_class": per_class,
  }


# Recipes of experiments.pretrain: --config digits-ddpm [--retrain --forget class:K].
PRETRAIN_RECIPES = ("digits-ddpm",)


def pretrain_command(args) -> dict:
  """``experiments.pretrain --config digits-ddpm``: the same DDPM, checkpoint (params, EMA,
  optimiser state) and workdir lock as the comparison uses; ``--set steps=N`` for the
  budget, ``--retrain --forget class:K`` to leave classes out."""
  overrides = dict(item.split("=", 1) for item in args.set)
  unknown = set(overrides) - {"steps"}
  if unknown:
    raise ConfigError(f"the DDPM recipe takes --set steps=N only, not {', '.join(unknown)}")
  exclude = ()
  dataset = data_lib.load_dataset("digits", args.data_dir)
  if args.retrain:
    if not args.forget:
      raise ConfigError("--retrain needs --forget class:K (the classes to leave out)")
    exclude = data_lib.make_forget_set(dataset, args.forget).forget_classes
    if not exclude:
      raise ConfigError("a DDPM retrain leaves classes out: pass --forget class:K")
  steps = int(overrides.get("steps", FULL["pretrain_steps"]))
  with WorkdirLock(args.workdir):
    _, _, seconds = pretrain_ddpm(
      dataset, args.workdir, exclude=exclude, steps=steps, seed=args.seed or 0
    )
  return {"kind": "ddpm", "exclude": list(exclude), "steps": steps, "seconds": seconds}


# Generative scenarios of experiments.compare: name -> the default forget set.
SCENARIOS = {"digits-ddpm-class": "class:7"}


def run(args) -> dict:
  methods = tuple(args.methods.split(",")) if args.methods else None
  return run_experiment(args.workdir, args.forget, args.seeds, methods, args.quick, args.data_dir)


def run_experiment(workdir, forget, seeds=3, methods=None, quick=False, data_dir=None) -> dict:
  """Pretrains (or reuses) the DDPMs and the judge, unlearns with every method and seed,
  writes ``results.json``, ``table.md`` (also as ``results.md``) and ``samples.png``."""
  workdir = check_workdir(workdir)
  with WorkdirLock(workdir):
    return _run_experiment(workdir, forget, seeds, methods, quick, data_dir)


def _checked(forget, seeds, methods, data_dir):
  """``(methods, dataset, forget_set)``, or a one-line error naming the fix."""
  methods = tuple(methods or DEFAULT_METHODS)
  if seeds <= 0:
    raise ConfigError(f"--seeds must be ≥ 1, got {seeds}")
  for m in methods:
    if m not in METHODS:
      raise ConfigError(f"method {m!r} does not apply to DDPMs; choose from {', '.join(METHODS)}")
  dataset = data_lib.load_dataset("digits", data_dir)
  forget_set = data_lib.make_forget_set(dataset, forget)
  if not forget_set.forget_classes:
    raise ConfigError("generative unlearning forgets classes: pass --forget class:K")
  return methods, dataset, forget_set


def _unlearn_run(method, seed, budget, fm, original, dataset, forget_set, evaluate, retrain):
  """``(record, images)`` of one unlearning run from the original DDPM."""
  cfg = make_config(
    method, layout="denoise", steps=budget["unlearn_steps"], n_retain=96, n_forget=32,
    seed=seed, weight_decay=0.0,
  )  # fmt: skip
  result = run_method(
    cfg, fm, original, {}, dataset, forget_set, progress=False, optimizer=optax.adam(1e-4)
  )
  m, images = evaluate(result.params, seed)
  run = {
    "method": method,
    "seed": seed,
    "metrics": m,
    "AvgGap": metrics_lib.avg_gap(m, retrain, REPORTED),
    "seconds": result.seconds,
    "compile_seconds": result.compile_seconds,
    "skipped_steps": int(result.history["skipped"].sum()),
  }
  if "multiplier" in result.history:
    run["multiplier"] = float(result.history["multiplier"][-1])
  return run, images


def _run_experiment(workdir, forget, seeds, methods, quick, data_dir) -> dict:
  budget = QUICK if quick else FULL
  methods, dataset, forget_set = _checked(forget, seeds, methods, data_dir)
  classes = forget_set.forget_classes
  workdir.mkdir(parents=True, exist_ok=True)
  judge_dir = workdir / "judge"
  if not (judge_dir / "metrics.json").exists():
    train(TrainConfig(), judge_dir, data_dir=data_dir, progress=False)
  judge = load_trained(judge_dir)
  steps = budget["pretrain_steps"]
  fm, original, t_orig = pretrain_ddpm(dataset, workdir / "original", steps=steps)
  _, retrained, t_re = pretrain_ddpm(
    dataset, workdir / f"retrain-{'-'.join(map(str, classes))}", exclude=classes, steps=steps
  )
  n = budget["samples"]

  def evaluate(params, seed=0):
    images, labels = generate(fm, params, range(10), n, seed)
    return generation_metrics(judge, dataset, images, labels, classes), images

  rows, grids = {}, {}
  rows["original"], grids["original"] = evaluate(original)
  rows["retrain"], grids["retrain"] = evaluate(retrained)
  runs = []
  for method in methods:
    for seed in range(seeds):
      run, images = _unlearn_run(
        method, seed, budget, fm, original, dataset, forget_set, evaluate, rows["retrain"]
      )
      runs.append(run)
      if seed == 0:
        grids[method] = images
  out = {
    "schema": results_schema.SCHEMA,
    "scenario": "digits-ddpm-class",
    "metrics": list(REPORTED),
    "forget": forget,
    "budget": budget,
    "seeds": seeds,
    "pretrain_seconds": {"original": t_orig, "retrain": t_re},
    "reference": rows,
    "summary": results_schema.summarize(runs, REPORTED),
    "runs": runs,
    "machine": machine_info(),
  }
  write_json_atomic(workdir / "results.json", out, indent=2)
  (workdir / "table.md").write_text(table(out))
  (workdir / "results.md").write_text(table(out))
  sample_grid(grids, workdir / "samples.png", per_class=min(4, n))
  return out


def table(results: dict) -> str:
  """Markdown: mean ± std over seeds of UA, RA, FID, run time and the Avg. Gap, from a
  results file (:mod:`experiments.results_schema`)."""
  results = results_schema.upgrade(results)
  head = "| Method | UA | RA | FID | Avg. Gap | Time (s) |\n|---|---|---|---|---|---|\n"
  lines = []
  for name in ("original", "retrain"):
    r = results["reference"][name]
    lines.append(
      f"| {name.capitalize()} | {r['UA']:.2f} | {r['RA']:.2f} | {r['FID']:.3f} | — | — |"
    )
  for method, s in results["summary"].items():
    cells = [
      metrics_lib.format_mean_std(*s[key], digits)
      for key, digits in (("UA", 2), ("RA", 2), ("FID", 3), ("AvgGap", 2), ("seconds", 1))
    ]
    lines.append(f"| {method} | " + " | ".join(cells) + " |")
  return head + "\n".join(lines) + "\n"


def sample_grid(grids: dict, path, per_class: int = 4) -> None:
  """Rows = classes; one block of ``per_class`` samples per model (original … retrained)."""
  import matplotlib  # noqa: PLC0415

  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # noqa: PLC0415

  order = ["original"] + [k for k in grids if k not in ("original", "retrain")] + ["retrain"]
  n_per = len(grids["original"]) // 10
  fig, axes = plt.subplots(1, len(order), figsize=(1.1 * per_class * len(order), 11))
  for ax, name in zip(np.atleast_1d(axes), order):
    imgs = grids[name].reshape(10, n_per, 8, 8)[:, :per_class]
    ax.imshow(imgs.transpose(0, 2, 1, 3).reshape(80, 8 * per_class), cmap="gray", vmin=0, vmax=1)
    ax.set_title(name, fontsize=9)
    ax.set_xticks([])
    ax.set_yticks(np.arange(10) * 8 + 3.5, [str(c) for c in range(10)] if ax is axes[0] else [])
  fig.suptitle("DDIM samples conditioned on each class (rows 0–9)")
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)


def build_parser():
  p = parser(__doc__)
  p.add_argument("--workdir", required=True, help="where models, results and plots go")
  p.add_argument("--forget", default="class:7", help="the class(es) to forget: class:K[,K2]")
  p.add_argument("--seeds", type=int, default=3, help="unlearning seeds per method")
  p.add_argument("--methods", help=f"comma-separated; unset: {','.join(DEFAULT_METHODS)}")
  p.add_argument("--quick", action="store_true", help="tiny budget (CI): minutes → seconds")
  p.add_argument(
    "--data-dir", help="dataset directory; unset: $JAXUNLEARN_DATA_DIR or the user cache"
  )
  return p


@main_guard
def main(argv=None):
  out = run(build_parser().parse_args(argv))
  print(table(out))


if __name__ == "__main__":
  main()
