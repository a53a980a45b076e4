"""Audit forgetting example by example over populations: the NeurIPS 2023 challenge's forget score.

    python -m experiments.audit --scenario digits-class --workdir runs/audit
    python -m experiments.audit --scenario digits-class --forget random:0.1 --models 256
    python -m experiments.audit --scenario mnist-random10 --methods igs,ft,rl --models 128

For a scenario and a forget set: N models retrained without the forget set (seeds
0..N−1 of the scenario's recipe, trained together in one vmapped program, cached in the
workdir) and, for each method, N unlearning runs from the one original model (seeds
0..N−1: batch order and random labels). Each forget example's logit-scaled confidence
under every model gives the challenge's forget score (ε per example from the best
decision rule, scored 2^−k by bucket), its final score (× the retain and test accuracy
ratios) and a threshold-free per-example likelihood-ratio test (U-LiRA's idea), with
the spread over two disjoint halves and the ceiling that N allows (the retrained
population's two halves against each other).

Writes ``<workdir>/<scenario>/audit-N<N>/``: ``results.json``, ``results.md``,
``report.md`` and figures; a killed audit started again reuses the retrained chunks and
the methods already done. ``--workers N`` runs methods in N cooperating processes.
"""

from __future__ import annotations

import dataclasses
import json
import pathlib
import shlex
import sys
import time

import jax
import numpy as np
from tqdm.auto import tqdm

from experiments import audit_report, configs
from experiments.cli import main_guard, parser
from experiments.compare import pin_worker, run_workers, with_forget
from experiments.jobs import Claims, exclusive, request_of, same_config, trained
from experiments.scenarios import SCENARIOS, get_scenario
from experiments.variants import Entry, parse_variant
from jaxunlearn import data as data_lib
from jaxunlearn import metrics as metrics_lib
from jaxunlearn.engine import checkpoint as ckpt
from jaxunlearn.engine import population, stopping
from jaxunlearn.engine.config import override
from jaxunlearn.engine.methods import METHODS, config_from_dict, every_key, get_method, make_config
from jaxunlearn.engine.progress import hidden
from jaxunlearn.engine.records import check_workdir, machine_info, write_json_atomic
from jaxunlearn.engine.unlearning import backward_rows
from jaxunlearn.errors import ConfigError

# Retrained models are trained and cached in chunks of this many seeds: a killed audit
# loses at most one chunk, and a larger N reuses a smaller one's chunks.
RETRAIN_CHUNK = 128
# The frontier's reference curve: retraining from a fresh init with these shares of the
# recipe's epochs (the challenge cut entries off at about 20 % of retraining's time).
DEFAULT_FRACTIONS = (0.1, 0.2, 0.5, 0.8, 1.0)
# Partial retraining's seeds start here, apart from the reference population's 0..N−1:
# at 100 % of the recipe it is an independent retrained population (the full-N ceiling).
PARTIAL_SEEDS = 100_000
DEFAULT_MODELS_CPU = 64
DEFAULT_MODELS_ACCELERATOR = 512


def default_models() -> int:
  """The challenge's 512 on an accelerator; on a CPU a population that fits minutes."""
  cpu = jax.devices()[0].platform == "cpu"
  return DEFAULT_MODELS_CPU if cpu else DEFAULT_MODELS_ACCELERATOR


@dataclasses.dataclass
class AuditContext:
  scenario: object
  out_dir: pathlib.Path  # <workdir>/<scenario>: the original model, shared with compare
  audit_dir: pathlib.Path  # <out_dir>/audit-N<models>
  pretrain: object
  dataset: object
  forget_set: object
  original: object
  models: int


def prepare(
  scenario, workdir, models: int, *, pretrain_overrides=(), data_dir=None, progress=True
) -> AuditContext:
  if models < 8:
    # the ceiling's likelihood-ratio test fits and scores halves of each half
    raise ConfigError(f"--models must be at least 8 (halves of halves of two), got {models}")
  if models % 4:  # halves scored against each other, and halves of those, of equal size
    raise ConfigError(f"--models must be a multiple of 4 (equal halves of halves), got {models}")
  out_dir = pathlib.Path(workdir) / scenario.name
  pre = override(configs.get_pretrain_config(scenario.pretrain_config), list(pretrain_overrides))
  dataset = data_lib.load_dataset(pre.dataset, data_dir)
  forget_set = data_lib.make_forget_set(dataset, scenario.forget, seed=0)
  original = trained(out_dir / "original", pre, data_dir=data_dir, progress=progress)
  audit_dir = out_dir / f"audit-N{models}"
  audit_dir.mkdir(parents=True, exist_ok=True)
  return AuditContext(scenario, out_dir, audit_dir, pre, dataset, forget_set, original, models)


def _beside(path: pathlib.Path, suffix: str) -> pathlib.Path:
  # not with_suffix: a label such as "igs-lr0.001" has a dot of its own
  return path.parent / (path.name + suffix)


def _save_scores(path: pathlib.Path, scores: population.PopulationScores, meta: dict) -> None:
  """Scores (npz) then their record (json): the json's presence says the job is done."""
  tmp = _beside(path, ".tmp.npz")
  np.savez(tmp, **scores.as_arrays())
  tmp.replace(_beside(path, ".npz"))
  write_json_atomic(_beside(path, ".json"), meta)


def _load_scores(path: pathlib.Path) -> tuple[population.PopulationScores, dict]:
  with np.load(_beside(path, ".npz")) as z:
    scores = population.PopulationScores(*(z[k] for k in population.PopulationScores._fields))
  return scores, json.loads(_beside(path, ".json").read_text())


def retrained_population(ctx: AuditContext, *, progress=True) -> tuple:
  """The retrained population's scores, trained chunk by chunk and cached under
  ``<scenario>/retrained/seeds-A-B`` (params as an Orbax checkpoint, scores as npz);
  another process training a chunk is waited for."""
  root = ctx.out_dir / "retrained"
  parts, seconds = [], 0.0
  for start in range(0, ctx.models, RETRAIN_CHUNK):
    seeds = tuple(range(start, min(start + RETRAIN_CHUNK, ctx.models)))
    folder = root / f"seeds-{seeds[0]}-{seeds[-1]}"
    record = folder / "scores"
    if not _beside(record, ".json").exists():
      with exclusive(folder):
        if not _beside(record, ".json").exists():
          pop = population.train_population(
            ctx.pretrain,
            ctx.dataset,
            seeds,
            train_idx=ctx.forget_set.retain_idx,
            progress=progress,
            desc=f"retrain ×{len(seeds)}",
          )
          manager = ckpt.Checkpointer(folder / "checkpoints", keep_best=False)
          meta = {
            "kind": "retrained-population",
            "config": ctx.pretrain.to_dict(),
            "seeds": list(seeds),
            "forget_digest": ctx.forget_set.digest,
            "seconds": pop.seconds,
            "compile_seconds": pop.compile_seconds,
            "batch_mode": pop.batch_mode,
          }
          manager.save(
            0, {"params": pop.params, "model_state": pop.model_state}, metadata=meta, metrics={}
          )
          manager.close()
          scores = population.score_population(
            pop.fm, pop.params, pop.model_state, ctx.dataset, ctx.forget_set
          )
          _save_scores(record, scores, meta)
    scores, meta = _load_scores(record)
    if meta["forget_digest"] != ctx.forget_set.digest or meta["config"] != ctx.pretrain.to_dict():
      raise ConfigError(
        f"{folder} was trained for another forget set or recipe; use a new --workdir"
      )
    parts.append(scores)
    seconds += meta["seconds"]
  joined = population.PopulationScores(*(np.concatenate(xs) for xs in zip(*parts)))
  return joined, seconds


def partial_epochs(ctx: AuditContext, fraction: float) -> int:
  """The epochs of partial retraining at ``fraction`` of the recipe's (at least one)."""
  return max(1, round(fraction * ctx.pretrain.epochs))


def partial_population(ctx: AuditContext, fraction: float, *, progress=True) -> tuple:
  """``(scores, record)`` of N models retrained from a fresh init on the retained rows
  with ``fraction`` of the recipe's epochs (seeds from :data:`PARTIAL_SEEDS`), cached
  under ``<scenario>/partial/epochs-E-N<N>``: the frontier's reference curve."""
  epochs = partial_epochs(ctx, fraction)
  folder = ctx.out_dir / "partial" / f"epochs-{epochs}-N{ctx.models}"
  record = folder / "scores"
  recipe = ctx.pretrain.replace(epochs=epochs)
  if not _beside(record, ".json").exists():
    with exclusive(folder):
      if not _beside(record, ".json").exists():
        seeds = tuple(range(PARTIAL_SEEDS, PARTIAL_SEEDS + ctx.models))
        pop = population.train_population(
          recipe, ctx.dataset, seeds, train_idx=ctx.forget_set.retain_idx, progress=progress,
          desc=f"retrain {epochs}/{ctx.pretrain.epochs} epochs ×{ctx.models}",
        )  # fmt: skip
        scores = population.score_population(
          pop.fm, pop.params, pop.model_state, ctx.dataset, ctx.forget_set
        )
        meta = {
          "kind": "partial-retraining",
          "config": recipe.to_dict(),
          "epochs": epochs,
          "forget_digest": ctx.forget_set.digest,
          "seconds": pop.seconds,
        }
        _save_scores(record, scores, meta)
  scores, meta = _load_scores(record)
  if meta["forget_digest"] != ctx.forget_set.digest or meta["config"] != recipe.to_dict():
    raise ConfigError(f"{folder} was trained for another forget set or recipe; use a new --workdir")
  return scores, meta


def retrain_rows(ctx: AuditContext) -> int:
  """Retraining's work in the frontier's unit: every retained row through a backward pass
  once an epoch."""
  return ctx.pretrain.epochs * len(ctx.forget_set.retain_idx)


def method_config(scenario, entry: Entry, overrides=(), request=None):
  """Scenario < method defaults (for the ``request`` kind) < the user's ``--set`` < the
  variant's own overrides."""
  cfg = make_config(entry.method, scenario.unlearn, request=request)
  cfg = override(cfg, list(overrides), elsewhere=every_key())
  return override(cfg, list(entry.overrides))


def unlearned_population(ctx: AuditContext, entry: Entry, overrides=(), say=None) -> None:
  """Runs ``entry`` once per seed from the original and stores the population's scores
  (``<audit>/<label>.npz`` and ``.json``)."""
  cfg = method_config(ctx.scenario, entry, overrides, request_of(ctx))
  m = ctx.original
  pop = population.unlearn_population(
    cfg, m.fm, m.params, m.model_state, ctx.dataset, ctx.forget_set, range(ctx.models), say=say
  )
  t = time.perf_counter()
  scores = population.score_population(
    pop.fm, pop.params, pop.model_state, ctx.dataset, ctx.forget_set
  )
  meta = {
    "method": entry.method,
    "label": entry.label,
    "config": cfg.to_dict(),
    "models": ctx.models,
    "seconds": pop.seconds,
    "compile_seconds": pop.compile_seconds,
    "eval_seconds": time.perf_counter() - t,
    "batch_mode": pop.batch_mode,
    "forget_target": get_method(entry.method).forget_target(cfg),
  }
  _save_scores(ctx.audit_dir / entry.label, scores, meta)


def run_methods(ctx: AuditContext, entries, overrides=(), *, progress=True) -> None:
  """Every entry's unlearned population, reusing those stored; several processes on one
  audit each take the entries nobody holds (:class:`experiments.jobs.Claims`)."""
  claims = Claims(ctx.audit_dir)
  done = lambda e: (ctx.audit_dir / f"{e.label}.json").exists()
  for e in entries:  # a stored population made with another config is refused, not reused
    if done(e):
      stored = json.loads((ctx.audit_dir / f"{e.label}.json").read_text())["config"]
      if not same_config(stored, method_config(ctx.scenario, e, overrides, request_of(ctx))):
        raise ConfigError(
          f"{ctx.audit_dir / e.label}.json was run with another config; use a new --workdir"
        )
  bar = tqdm(
    total=len(entries), desc=f"audit ×{ctx.models}", unit="method", disable=hidden(progress)
  )
  try:
    while True:
      pending = [e for e in entries if not done(e)]
      bar.n = len(entries) - len(pending)
      bar.refresh()
      if not pending:
        break
      mine = next((e for e in pending if claims.take(f"{e.label}.json")), None)
      if mine is None:  # every pending entry is another live process's
        time.sleep(0.5)
        continue
      bar.set_postfix_str(mine.label)
      unlearned_population(ctx, mine, overrides, say=bar.write)
      claims.release(f"{mine.label}.json")
      if stopping.requested():
        n = sum(map(done, entries))
        raise stopping.Stopped(
          f"stopped with {n} of {len(entries)} methods stored; rerun the same command to finish"
        )
  finally:
    claims.release_all()
    bar.close()


def _accuracies(scores) -> dict:
  return {k: float(np.mean(getattr(scores, k))) for k in ("UA", "RA", "TA")} | {
    f"{k}_std": float(np.std(getattr(scores, k))) for k in ("UA", "RA", "TA")
  }


def audit_row(unlearned, retrained) -> dict:
  """Every number of one method's row: the forget score over all N models, over two
  disjoint halves (N/2 against N/2), the final score, the likelihood-ratio test and the
  accuracies of the unlearned population."""
  u, r = unlearned.confidences, retrained.confidences
  full = metrics_lib.forget_score(u, r)
  # Halves of fewer than 3 models cannot score (at N = 2 no ε bucket counts: 0 whatever
  # the models), so a tiny population shows none rather than a meaningless 0.
  halves = None
  if len(u) // 2 >= 3:
    halves = [metrics_lib.forget_score(u[k::2], r[k::2]).score for k in (0, 1)]
  lira = metrics_lib.lira_separability(u, r)
  where = metrics_lib.location_and_spread(u, r)
  acc = _accuracies(unlearned)
  final = metrics_lib.final_score(
    full.score,
    retain_unlearned=acc["RA"],
    retain_retrained=float(np.mean(retrained.RA)),
    test_unlearned=acc["TA"],
    test_retrained=float(np.mean(retrained.TA)),
  )
  return {
    "forget_score": full.score,
    "forget_score_halves": halves,
    "final_score": final,
    "lira_accuracy": lira.accuracy,
    "lira_auc": lira.auc,
    "shift": where.shift,
    "spread_ratio": where.spread_ratio,
    "epsilons": full.epsilons.tolist(),
    "max_epsilon": full.max_epsilon,
    **acc,
  }


def _half(scores: population.PopulationScores, k: int) -> population.PopulationScores:
  return population.PopulationScores(*(x[k::2] for x in scores))


def score_audit(
  ctx: AuditContext, stored: dict, retrained, retrain_seconds, partial: dict | None = None
) -> dict:
  """The audit's results from ``stored`` (label → (scores, record) of each unlearned
  population): a row per method with its work (rows through a backward pass, as a share
  of retraining's), the original (doing nothing: N copies of one model), the ceiling (the
  retrained population's halves against each other) and, from ``partial`` (fraction →
  (scores, record)), the frontier: partial retraining's score at each share of the work."""
  n = ctx.models
  m = ctx.original
  one = population.score_population(
    m.fm,
    jax.tree.map(lambda x: np.asarray(x)[None], m.params),
    jax.tree.map(lambda x: np.asarray(x)[None], m.model_state),
    ctx.dataset,
    ctx.forget_set,
  )
  copies = population.PopulationScores(*(np.repeat(x, n, axis=0) for x in one))
  rows = {}
  t = time.perf_counter()
  for label, (scores, meta) in stored.items():
    start = time.perf_counter()
    rows[label] = {
      **audit_row(scores, retrained),
      "seconds": meta["seconds"],
      "compile_seconds": meta["compile_seconds"],
      "eval_seconds": meta["eval_seconds"],
      "score_seconds": time.perf_counter() - start,
      "method": meta["method"],
      "config": meta["config"],
      "work": backward_rows(config_from_dict(meta["config"]), ctx.forget_set) / retrain_rows(ctx),
    }
  frontier = {
    f"{fraction:g}": {
      **audit_row(scores, retrained),
      "work": meta["epochs"] / ctx.pretrain.epochs,
      "epochs": meta["epochs"],
      "seconds": meta["seconds"],
    }
    for fraction, (scores, meta) in sorted((partial or {}).items())
  }
  return {
    "scenario": ctx.scenario.name,
    "description": ctx.scenario.description,
    "forget": ctx.scenario.forget,
    "forget_rows": len(ctx.forget_set.forget_idx),
    "models": n,
    "methods": rows,
    "original": {**audit_row(copies, retrained), "seconds": 0.0},
    "ceiling": {
      **audit_row(_half(retrained, 0), _half(retrained, 1)),
      "models": len(retrained.confidences[0::2]),
    },
    "retrained": {**_accuracies(retrained), "seconds": retrain_seconds},
    "frontier": frontier,
    "score_seconds": time.perf_counter() - t,
  }


def run_audit(
  name: str,
  workdir,
  *,
  models: int | None = None,
  methods=None,
  variants=(),
  forget: str | None = None,
  overrides=(),
  pretrain_overrides=(),
  data_dir=None,
  progress: bool = True,
  command: str | None = None,
  fractions=DEFAULT_FRACTIONS,
) -> dict:
  """Runs (or finishes) one scenario's audit and writes its results, tables, figures and
  report; returns the results. ``variants``: ``LABEL=METHOD[:KEY=VALUE...]`` rows beside
  ``methods`` (:func:`parse_variant`); ``fractions``: the shares of the retraining recipe
  partial retraining runs at, the frontier's reference curve (``()``: none)."""
  start = time.perf_counter()
  scenario = get_scenario(name)
  if forget:
    scenario = with_forget(scenario, forget)
  entries = [Entry(m, m) for m in (methods or ([] if variants else METHODS))]
  entries += [parse_variant(v) for v in variants]
  labels = [e.label for e in entries]
  if len(set(labels)) != len(labels):
    raise ConfigError(f"two audit rows share a name: {labels}")
  for e in entries:  # an unknown method or config key fails before any work
    get_method(e.method)
    method_config(scenario, e, overrides)
  fractions = tuple(float(f) for f in fractions)
  if any(not 0 < f <= 1 for f in fractions):
    raise ConfigError(f"--retrain-fractions must each lie in (0, 1], got {list(fractions)}")
  models = models or default_models()
  ctx = prepare(
    scenario,
    workdir,
    models,
    pretrain_overrides=pretrain_overrides,
    data_dir=data_dir,
    progress=progress,
  )
  retrained, retrain_seconds = retrained_population(ctx, progress=progress)
  partial = {f: partial_population(ctx, f, progress=progress) for f in fractions}
  run_methods(ctx, entries, overrides, progress=progress)
  stored = {e.label: _load_scores(ctx.audit_dir / e.label) for e in entries}
  results = score_audit(ctx, stored, retrained, retrain_seconds, partial)
  results["machine"] = machine_info()
  results["command"] = command
  results["wall_seconds"] = time.perf_counter() - start
  np.savez(
    ctx.audit_dir / "confidences.npz",
    retrained=retrained.confidences,
    **{label: scores.confidences for label, (scores, _) in stored.items()},
  )
  write_json_atomic(ctx.audit_dir / "results.json", results, indent=1)
  audit_report.write_all(results, ctx.audit_dir)
  return results


def build_parser():
  p = parser(__doc__)
  p.add_argument("--scenario", default="digits-class", help="one of " + ", ".join(SCENARIOS))
  p.add_argument("--workdir", required=True, help="where models and results go")
  p.add_argument(
    "--forget", help="a forget-set spec (class:K, random:F, ids:PATH, rows:PATH) replacing the "
    "scenario's; results go to <workdir>/<scenario>@<spec>/",
  )  # fmt: skip
  p.add_argument(
    "--methods", help="comma-separated subset of " + ", ".join(METHODS) + "; unset: all"
  )
  p.add_argument(
    "--variant",
    action="append",
    default=[],
    metavar="LABEL=METHOD[:KEY=VALUE...]",
    help="a row of its own: METHOD with config overrides, named LABEL (repeatable), e.g. "
    "igs-tol0=igs:tolerance=0.0; with --variant and no --methods only the variants run",
  )
  p.add_argument(
    "--models",
    type=int,
    help=f"models in each population; unset: {DEFAULT_MODELS_CPU} on a CPU, "
    f"{DEFAULT_MODELS_ACCELERATOR} (the challenge's) on an accelerator",
  )
  p.add_argument(
    "--set",
    action="append",
    default=[],
    metavar="KEY=VALUE",
    help="override any unlearning config key for every method (repeatable)",
  )
  p.add_argument(
    "--pretrain-set",
    action="append",
    default=[],
    metavar="KEY=VALUE",
    help="override any key of the original/retrain recipe (repeatable), e.g. epochs=5",
  )
  p.add_argument(
    "--workers",
    type=int,
    default=1,
    help="run the methods in N processes, each pinned to its share of the CPUs",
  )
  p.add_argument(
    "--data-dir",
    help="dataset directory; unset: $JAXUNLEARN_DATA_DIR or ~/.cache/jaxunlearn/datasets",
  )
  p.add_argument(
    "--retrain-fractions",
    default=",".join(f"{f:g}" for f in DEFAULT_FRACTIONS),
    help="shares of the retraining recipe's epochs that partial retraining runs at, the "
    "frontier's reference curve (comma-separated; '' for none)",
  )
  p.add_argument("--no-progress", action="store_true", help="hide the progress bars")
  return p


def _fractions(text: str) -> tuple:
  try:
    return tuple(float(f) for f in text.split(",") if f.strip())
  except ValueError:
    raise ConfigError(
      f"--retrain-fractions takes numbers such as 0.1,0.2,0.5, got {text!r}"
    ) from None


@main_guard
def main(argv=None):
  pin_worker()
  args = build_parser().parse_args(argv)
  argv = list(sys.argv[1:] if argv is None else argv)
  workdir = check_workdir(args.workdir)
  if args.workers > 1:
    seconds = run_workers(args.workers, argv, workdir, module="experiments.audit")
    print(f"[{args.workers} workers: {seconds:.0f} s; scoring]", file=sys.stderr)
  results = run_audit(
    args.scenario,
    workdir,
    models=args.models,
    methods=args.methods.split(",") if args.methods else None,
    variants=args.variant,
    forget=args.forget,
    overrides=args.set,
    pretrain_overrides=args.pretrain_set,
    data_dir=args.data_dir,
    progress=not args.no_progress,
    command="python -m experiments.audit " + shlex.join(argv),
    fractions=_fractions(args.retrain_fractions),
  )
  folder = workdir / results["scenario"] / f"audit-N{results['models']}"
  print((folder / "results.md").read_text())
  print(f"[{results['scenario']}: {results['wall_seconds']:.0f} s; files in {folder}]")


if __name__ == "__main__":
  main()
