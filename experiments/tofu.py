"""TOFU-style language-model unlearning: memorise fictitious authors, forget some, measure.

``python -m experiments.compare --scenario tofu-tiny`` (or ``python -m experiments.tofu``)
generates the authors (:mod:`jaxunlearn.data.tofu`), fine-tunes a small Flax NNX decoder
(:mod:`jaxunlearn.nn.transformer`) on every row (the *original*) and on every row but the
forget authors' (the *retain* model, the reference), then runs each method of the
registry through the engine's ``answers`` layout (loss on answer tokens) and reports the
open-unlearning metrics (:mod:`jaxunlearn.engine.answers`): forget quality, model utility,
forget-set probability / ROUGE / truth ratio and privleak.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import pathlib
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from experiments import results_schema
from experiments.cli import main_guard, parser
from experiments.variants import as_entry, entries
from jaxunlearn import data as data_lib
from jaxunlearn import objectives
from jaxunlearn.data import tofu
from jaxunlearn.engine import answers
from jaxunlearn.engine import checkpoint as ckpt
from jaxunlearn.engine.config import override
from jaxunlearn.engine.methods import get_method, make_config
from jaxunlearn.engine.records import check_workdir, machine_info, write_json_atomic
from jaxunlearn.engine.unlearning import run_method
from jaxunlearn.errors import ConfigError
from jaxunlearn.metrics import language as lm_metrics
from jaxunlearn.nn.transformer import Decoder, functional_lm


@dataclasses.dataclass(frozen=True)
class LMTrainConfig:
  """How a model memorises the rows: AdamW with a warm-up and cosine decay (a constant
  rate left the curve noisy), batches a pure function of (seed, step)."""

  size: str = "small"
  epochs: int = 60
  batch_size: int = 64
  learning_rate: float = 3e-3
  weight_decay: float = 0.01
  warmup: float = 0.05  # share of the steps
  seed: int = 0


def build_lm(ds, size: str, seed: int):
  model = Decoder(len(ds.tokenizer), ds.tokens_per_row, size=size, rngs=nnx.Rngs(seed))
  return functional_lm(model, objectives.answer_losses)


def _train_step(fm, tx):
  def step(params, opt_state, tokens):
    loss_fn = lambda p: jnp.mean(fm.example_loss(fm.apply(p, {}, tokens, train=True)[0], tokens))
    loss, grads = jax.value_and_grad(loss_fn)(params)
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, loss

  return jax.jit(step)


def memorised(ds, rows: np.ndarray, config: LMTrainConfig, directory=None, *, say=None):
  """``(fm, params, state, seconds)``: :func:`train_lm` on ``rows``, or the model an
  earlier run saved to ``directory`` (an Orbax checkpoint of the params, with the data,
  rows and recipe as metadata; another model there is an error, not overwritten)."""
  meta = {
    "kind": "tofu-lm", "data": ds.name, "rows": data_lib.ids_digest(np.asarray(rows, np.int64)),
    "train": dataclasses.asdict(config),
  }  # fmt: skip
  if directory is not None and pathlib.Path(directory).exists():
    fm, params, state = build_lm(ds, config.size, config.seed)
    with ckpt.Checkpointer(directory, keep_best=False, create=False) as m:
      saved = {k: v for k, v in (m.metadata() or {}).items() if k != "versions"}
      if saved != json_ready(meta):
        raise ConfigError(f"{directory} holds another model; choose a new --workdir")
      return fm, m.restore({"params": params})["params"], state, 0.0
  start = time.perf_counter()
  fm, params, state, _ = train_lm(ds, rows, config, log=say)
  seconds = time.perf_counter() - start
  if directory is not None:
    with ckpt.Checkpointer(directory, keep_best=False) as m:
      m.save(0, {"params": params}, metadata={**meta, "versions": ckpt.package_versions()})
  return fm, params, state, seconds


def json_ready(obj):
  return json.loads(json.dumps(obj))


def train_lm(ds, rows: np.ndarray, config: LMTrainConfig, *, log=None):
  """``(fm, params, state, losses)``: a model fine-tuned from scratch on ``rows``."""
  fm, params, state = build_lm(ds, config.size, config.seed)
  batch = min(config.batch_size, len(rows))
  steps = config.epochs * math.ceil(len(rows) / batch)
  schedule = optax.warmup_cosine_decay_schedule(
    0.0, config.learning_rate, max(1, int(config.warmup * steps)), steps
  )
  tx = optax.adamw(schedule, weight_decay=config.weight_decay)
  opt_state = tx.init(params)
  step_fn = _train_step(fm, tx)
  tokens = ds.train.images[rows]
  losses = []
  for step in range(steps):
    idx = data_lib.batch_indices(len(rows), batch, config.seed, step)
    params, opt_state, loss = step_fn(params, opt_state, jnp.asarray(tokens[idx]))
    losses.append(float(loss) if log else loss)
    if log and step % 200 == 0:
      log(f"step {step}/{steps} loss {float(loss):.4f}")
  return fm, params, state, np.asarray(losses, np.float32)


# The registry's methods that apply to a language model's answers (SCRUB's KL reads
# class logits; SalUn, ℓ1-sparse and FT are left out of the default table for time).
METHODS = (
  "ga", "graddiff", "npo", "simnpo", "rl", "igs", "igs_paper", "explicit", "pcgrad",
  "cagrad", "mgda", "famo", "pdu",
)  # fmt: skip
LABELS = {"rl": "IDK (rl)", "igs": "IGS (anchored)", "igs_paper": "IGS (paper)"}


@dataclasses.dataclass(frozen=True)
class TofuScenario:
  """One scenario: the data, how the models memorise, how every method unlearns (the
  same budget for each: ``steps`` steps of ``n_retain`` retain and ``n_forget`` forget
  rows, Adam at ``learning_rate``: TOFU's protocol of one optimiser for all)."""

  authors: int = 100
  facts: int = 10
  world: int = 20
  forget_percents: tuple = tofu.FORGET_PERCENTS
  train: LMTrainConfig = LMTrainConfig()
  # The same steps for every forget split (10 epochs of the largest's rows), so a method
  # compiles one program for all three (per-split epochs cost a compile each: the tiny
  # scenario took 278 s, compiles most of it).
  steps: int = 125
  n_retain: int = 32
  n_forget: int = 8
  learning_rate: float = 1e-3
  forget_objective: str = "rl"  # the weighted and surgery methods' L_f: the IDK loss
  seeds: tuple = (0, 1, 2)
  data_seed: int = 0


SCENARIOS = {
  "tofu": TofuScenario(),
  # For an accelerator (not run on this machine): TOFU's 200 authors × 20 facts, the
  # 19 M-parameter decoder.
  "tofu-large": TofuScenario(
    authors=200,
    facts=20,
    train=LMTrainConfig(size="base", epochs=40, batch_size=128, learning_rate=1e-3),
    steps=500,
  ),
  "tofu-tiny": TofuScenario(
    authors=20,
    facts=10,
    world=10,
    train=LMTrainConfig(size="tiny", epochs=300, learning_rate=1e-2),
    steps=25,
    seeds=(0,),
  ),
}


def unlearn_config(scenario: TofuScenario, method: str, forget_rows: int, seed: int):
  """The engine config of one run: the ``answers`` layout, the scenario's budget."""
  return make_config(
    method,
    {"forget_objective": scenario.forget_objective},
    layout="answers",
    steps=scenario.steps,
    n_retain=scenario.n_retain,
    n_forget=min(scenario.n_forget, forget_rows),
    seed=seed,
  ).validate()


@functools.lru_cache(maxsize=8)
def _adam(learning_rate: float):
  # One object per rate: the engine caches a compiled step per (model, config, optimiser),
  # so every seed of a method (and every split, at equal shapes) reuses one compile.
  return optax.adam(learning_rate)


def unlearn_once(scenario, method, fm, params, state, ds, forget_set, seed):
  """One method's run from the original: ``(params, seconds)``. ``method``: a name or an
  :class:`~experiments.variants.Entry` (a variant: the method with config overrides)."""
  entry = as_entry(method)
  cfg = unlearn_config(scenario, entry.method, len(forget_set.forget_idx), seed)
  cfg = override(cfg, list(entry.overrides)).validate()
  result = run_method(
    cfg, fm, params, state, ds, forget_set, progress=False,
    optimizer=_adam(scenario.learning_rate),
  )  # fmt: skip
  return result.params, result.seconds


# Reported per run, in table order (open-unlearning's names; forget quality and model
# utility first, the two axes of the plane).
METRICS = (
  "forget_quality", "model_utility", "forget_prob", "forget_rouge", "forget_truth_ratio",
  "privleak", "retain_rouge", "world_rouge",
)  # fmt: skip
# The gap to the retain model is taken over these (each in [0, 1]).
GAP_KEYS = ("forget_prob", "forget_rouge", "forget_truth_ratio", "model_utility")


def _scores(metrics: dict, retain: dict) -> dict:
  """The reported metrics of a model given the retain model's (privleak against its AUC,
  when the data has held-out authors to attack with)."""
  out = {k: float(metrics[k]) for k in METRICS if k in metrics}
  if "mia_auc" in metrics and "mia_auc" in retain:
    out["privleak"] = lm_metrics.privleak(metrics["mia_auc"], retain["mia_auc"])
  return out


def _gap(scores: dict, retain_scores: dict) -> float:
  return float(np.mean([abs(scores[k] - retain_scores[k]) for k in GAP_KEYS]))


def run_forget_split(scenario, ds, original, percent, methods, folder=None, *, say=print) -> dict:
  """Every method × seed on the forget split of ``percent`` % of the authors: results in
  the common schema (:mod:`experiments.results_schema`). The retain model is saved to
  (or read from) ``folder/retainNN``."""
  forget_set = tofu.forget_split(ds, percent)
  directory = None if folder is None else folder / f"retain{percent:02d}"
  r_fm, r_params, r_state, retrain_seconds = memorised(
    ds, forget_set.retain_idx, scenario.train, directory
  )
  name = f"{scenario_name(scenario)}/forget{percent:02d}"
  description = (
    f"forget {len(forget_set.forget_classes)} of {ds.authors} authors "
    f"({percent} %: {len(forget_set.forget_idx)} rows)"
  )
  return compare_methods(
    scenario, ds, forget_set, original, (r_fm, r_params, r_state), methods, name,
    description, say=say,
  ) | {"retrain_seconds": retrain_seconds}  # fmt: skip


def compare_methods(
  scenario, ds, forget_set, original, retain_model, methods, name, description, *, say=print
) -> dict:
  """Every method × seed of ``scenario`` from ``original`` ``(fm, params, state)`` on
  ``forget_set``, scored against ``retain_model`` ``(fm, params, state)``: results in the
  common schema (:mod:`experiments.results_schema`)."""
  fm, params, state = original
  retain = answers.evaluate_qa(*retain_model, ds, forget_set)
  reference_ratios = retain["forget_ratios"]
  # against its own truth ratios (1 by construction), without a second evaluation
  retain["forget_quality"] = lm_metrics.forget_quality(reference_ratios, reference_ratios)
  retain_scores = _scores(retain, retain)
  orig = answers.evaluate_qa(fm, params, state, ds, forget_set, reference_ratios)
  runs = []
  for entry in map(as_entry, methods):
    method = entry.label
    for seed in scenario.seeds:
      u_params, seconds = unlearn_once(scenario, entry, fm, params, state, ds, forget_set, seed)
      scores = _scores(
        answers.evaluate_qa(fm, u_params, state, ds, forget_set, reference_ratios), retain
      )
      runs.append(
        {"method": method, "seed": seed, "metrics": scores, "AvgGap": _gap(scores, retain_scores),
         "seconds": seconds, "compile_seconds": 0.0}
      )  # fmt: skip
      say(f"  {method} seed {seed}: FQ {scores['forget_quality']:.3g} "
          f"MU {scores['model_utility']:.3f} ({seconds:.1f} s)")  # fmt: skip
  metrics = [k for k in METRICS if k in retain_scores]
  return {
    "schema": results_schema.SCHEMA,
    "scenario": name,
    "description": description,
    "forget": forget_set.spec,
    "seeds": len(scenario.seeds),
    "metrics": metrics,
    "reference": {"original": _scores(orig, retain), "retrain": retain_scores},
    "original_exact": {k: orig[k] for k in orig if k.endswith("_exact")},
    "retain_exact": {k: retain[k] for k in retain if k.endswith("_exact")},
    "summary": results_schema.summarize(runs, metrics),
    "runs": runs,
  }


def scenario_name(scenario: TofuScenario) -> str:
  return next((k for k, v in SCENARIOS.items() if v == scenario), "tofu-custom")


def get_scenario(name: str) -> TofuScenario:
  if name not in SCENARIOS:
    raise ConfigError(f"unknown scenario {name!r}; valid: {', '.join(SCENARIOS)}")
  return SCENARIOS[name]


def table(results: dict) -> str:
  """The markdown table of one forget split: the original, the retain model, each method."""
  keys = results["metrics"]
  head = "| model | " + " | ".join(keys) + " | gap to retain |"
  rows = [head, "|" + "---|" * (len(keys) + 2)]
  fmt = lambda k, v: f"{v:.2e}" if k == "forget_quality" else (
    f"{v:.1f}" if k == "privleak" else f"{v:.3f}")  # fmt: skip
  for name, ref in results["reference"].items():
    rows.append(f"| {name} | " + " | ".join(fmt(k, ref[k]) for k in keys) + " | |")
  for method, s in results["summary"].items():
    cells = [fmt(k, s[k][0]) + (f" ± {fmt(k, s[k][1])}" if s["n"] > 1 else "") for k in keys]
    rows.append(f"| {LABELS.get(method, method)} | " + " | ".join(cells)
                + f" | {s['AvgGap'][0]:.3f} |")  # fmt: skip
  return "\n".join([f"### {results['scenario']}: {results['description']}", "", *rows, ""])


def plane(all_results: list[dict], path) -> None:
  """Forget quality (log) against model utility, one panel a forget split: the plane on
  which TOFU's methods are compared (up and right is better)."""
  import matplotlib

  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  fig, axes = plt.subplots(1, len(all_results), figsize=(4.2 * len(all_results) + 1.6, 3.8),
                           squeeze=False)  # fmt: skip
  methods = list(dict.fromkeys(m for r in all_results for m in r["summary"]))
  colours = {m: plt.cm.tab20(i % 20) for i, m in enumerate(methods)}  # one per method
  for ax, results in zip(axes[0], all_results):
    for method, s in results["summary"].items():
      ax.scatter(s["model_utility"][0], max(s["forget_quality"][0], 1e-12), s=30,
                 color=colours[method], label=LABELS.get(method, method))  # fmt: skip
    for name, marker in (("original", "X"), ("retrain", "*")):
      ref = results["reference"][name]
      ax.scatter(ref["model_utility"], max(ref["forget_quality"], 1e-12), marker=marker, s=110,
                 c="k", label=name)  # fmt: skip
    ax.set_yscale("log")
    ax.set_xlabel("model utility")
    ax.set_ylabel("forget quality (KS p-value)")
    ax.set_title(results["scenario"], fontsize=9)
  handles, labels = axes[0][-1].get_legend_handles_labels()
  fig.legend(handles, labels, loc="center right", fontsize=7, frameon=False)
  fig.subplots_adjust(right=0.86, wspace=0.32)
  fig.savefig(path, dpi=120, bbox_inches="tight")
  plt.close(fig)


def run(scenario, workdir, methods=None, *, say=print) -> list[dict]:
  """The whole ``scenario`` (a name of :data:`SCENARIOS` or a :class:`TofuScenario`):
  the original model, then every forget split; writes ``results.json`` and ``results.md``
  a split, ``results.md`` and ``plane.png`` under ``workdir/<name>``, and the models
  (Orbax) beside them, which a rerun reads back instead of training again."""
  scenario = get_scenario(scenario) if isinstance(scenario, str) else scenario
  name = scenario_name(scenario)
  methods = tuple(methods or METHODS)
  for e in map(as_entry, methods):
    get_method(e.method)  # an unknown name fails here, before any training
  folder = pathlib.Path(workdir) / name
  folder.mkdir(parents=True, exist_ok=True)
  ds = tofu.make_dataset(scenario.authors, scenario.facts, scenario.world, scenario.data_seed)
  rows = np.arange(len(ds.train))
  fm, params, state, seconds = memorised(ds, rows, scenario.train, folder / "original")
  say(f"[{name}: the original memorised {len(ds.train)} rows in {seconds:.0f} s]")
  all_results = []
  for percent in scenario.forget_percents:
    say(f"[{name}: forget {percent} %]")
    results = run_forget_split(scenario, ds, (fm, params, state), percent, methods, folder, say=say)
    results["machine"] = machine_info()
    results["scenario_config"] = json_ready(dataclasses.asdict(scenario))
    split = folder / f"forget{percent:02d}"
    split.mkdir(exist_ok=True)
    write_json_atomic(split / "results.json", results)
    (split / "results.md").write_text(table(results))
    all_results.append(results)
  plane(all_results, folder / "plane.png")
  (folder / "results.md").write_text("\n".join(table(r) for r in all_results))
  return all_results


# A checkpoint's scenario: open-unlearning's Adam at 1e-5 for a pretrained Llama; steps
# (and seeds) from the command line. Data fields unused (the files give the data).
PRETRAINED = TofuScenario(learning_rate=1e-5, seeds=(0,))


def run_pretrained(
  pretrained, tofu_folder, retain_model, workdir, methods=None, *, split: str = "forget10",
  tokenizer=None, answer_token: str = "<ans>", questions_per_author: int = 20,
  scenario: TofuScenario = PRETRAINED, say=print,
) -> dict:  # fmt: skip
  """Every method on a Hugging Face checkpoint and the published TOFU files: the
  checkpoint folder ``pretrained`` (:func:`~jaxunlearn.nn.pretrained.from_pretrained`)
  forgets ``split`` of the files in ``tofu_folder``
  (:func:`~jaxunlearn.data.tofu_files.tofu_dataset`), scored against ``retain_model``
  (a checkpoint fine-tuned without the forget authors: forget quality is a test against
  its truth ratios). The tokenizer is ``tokenizer`` or the
  ``tokenizer.json`` of the checkpoint, else of the TOFU folder. Writes ``results.json``,
  ``results.md`` and ``plane.png`` under ``workdir/tofu-files/<split>``."""
  from jaxunlearn.data import tofu_files
  from jaxunlearn.nn.pretrained import from_pretrained

  methods = tuple(methods or METHODS)
  for e in map(as_entry, methods):
    get_method(e.method)  # an unknown name fails here, before any reading
  if tokenizer is None:
    found = [p for p in (pretrained, tofu_folder) if (pathlib.Path(p) / "tokenizer.json").exists()]
    if not found:
      raise ConfigError(
        f"no tokenizer.json in {pretrained} or {tofu_folder}; pass --tokenizer PATH"
      )
    tokenizer = found[0]
  tok = tofu_files.HFTokenizer(tokenizer, answer=answer_token)
  ds = tofu_files.tofu_dataset(tofu_folder, tok, split, questions_per_author=questions_per_author)
  forget_set = tofu_files.forget_rows(ds, split)
  loss = functools.partial(objectives.answer_losses, answer_id=tok.answer_id, pad_id=tok.pad_id)
  original = functional_lm(from_pretrained(pretrained), loss)
  retain = functional_lm(from_pretrained(retain_model), loss)
  name = f"tofu-files/{split}"
  description = (
    f"{pathlib.Path(pretrained).name} forgets {split}: {len(forget_set.forget_classes)} of "
    f"{ds.authors} authors, {len(forget_set.forget_idx)} rows"
  )
  say(f"[{name}: {description}]")
  results = compare_methods(
    scenario, ds, forget_set, original, retain, methods, name, description, say=say
  )
  results["machine"] = machine_info()
  results["checkpoints"] = {"pretrained": str(pretrained), "retain": str(retain_model)}
  folder = pathlib.Path(workdir) / "tofu-files" / split
  folder.mkdir(parents=True, exist_ok=True)
  write_json_atomic(folder / "results.json", results)
  (folder / "results.md").write_text(table(results))
  plane([results], folder / "plane.png")
  return results


def add_files_arguments(p) -> None:
  """The flags of a Hugging Face checkpoint and the published TOFU files, for this
  command and ``experiments.compare``."""
  files = p.add_argument_group(
    "a Hugging Face checkpoint and the published TOFU files (instead of --scenario)"
  )
  files.add_argument("--pretrained", help="checkpoint folder (config.json + safetensors)")
  files.add_argument("--tofu", help="folder of the locuslab/TOFU files")
  files.add_argument("--retain-model", help="checkpoint fine-tuned without the forget authors")
  files.add_argument(
    "--split", default="forget10", choices=("forget01", "forget05", "forget10"),
    help="the forget split of the TOFU files",
  )  # fmt: skip
  files.add_argument("--tokenizer", help="tokenizer.json (default: the checkpoint's)")
  files.add_argument("--answer-token", default="<ans>", help="the question/answer separator")
  files.add_argument(
    "--questions-per-author", type=int, default=20, help="rows a TOFU author has, in file order"
  )
  files.add_argument(
    "--steps", type=int, default=PRETRAINED.steps, help="unlearning steps of every method"
  )
  files.add_argument(
    "--learning-rate", type=float, default=PRETRAINED.learning_rate, help="Adam's, for every method"
  )


def run_files(p, args, methods) -> bool:
  """Runs :func:`run_pretrained` and prints its table when ``args`` name a checkpoint
  (``False`` otherwise); ``--pretrained``, ``--tofu`` and ``--retain-model`` go together."""
  given = [f for f in ("pretrained", "tofu", "retain_model") if getattr(args, f)]
  if not given:
    return False
  if len(given) < 3:
    p.error("--pretrained, --tofu and --retain-model go together (forget quality needs the "
            "retain model)")  # fmt: skip
  start = time.perf_counter()
  scenario = dataclasses.replace(PRETRAINED, steps=args.steps, learning_rate=args.learning_rate)
  results = run_pretrained(
    args.pretrained, args.tofu, args.retain_model, check_workdir(args.workdir), methods,
    split=args.split, tokenizer=args.tokenizer, answer_token=args.answer_token,
    questions_per_author=args.questions_per_author, scenario=scenario,
  )  # fmt: skip
  print(table(results))
  print(f"[tofu-files/{args.split}: {time.perf_counter() - start:.0f} s]")
  return True


def build_parser():
  p = parser(__doc__)
  p.add_argument(
    "--scenario", default="tofu-tiny", choices=sorted(SCENARIOS), help="a generated scenario"
  )
  p.add_argument("--workdir", required=True, help="where results and the figure go")
  p.add_argument("--methods", help="comma-separated subset of " + ", ".join(METHODS))
  p.add_argument(
    "--variant", action="append", default=[], metavar="LABEL=METHOD[:KEY=VALUE...]",
    help="a row of its own: METHOD with config overrides, named LABEL (repeatable), e.g. "
    "igs-heldout=igs:forget_objective=heldout; with --variant and no --methods only the "
    "variants run",
  )  # fmt: skip
  add_files_arguments(p)
  return p


@main_guard
def main(argv=None):
  p = build_parser()
  args = p.parse_args(argv)
  methods = args.methods.split(",") if args.methods else None
  if args.variant:
    methods = entries(methods or [], args.variant)
  if run_files(p, args, methods):
    return
  start = time.perf_counter()
  run(args.scenario, check_workdir(args.workdir), methods)
  print((pathlib.Path(args.workdir) / args.scenario / "results.md").read_text())
  print(f"[{args.scenario}: {time.perf_counter() - start:.0f} s]")


if __name__ == "__main__":
  main()
