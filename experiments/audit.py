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
from experiments.jobs import Claims, _exclusive, trained
from experiments.scenarios import SCENARIOS, get_scenario
from jaxunlearn import data as data_lib
from jaxunlearn import metrics as metrics_lib
from jaxunlearn.engine import checkpoint as ckpt
from jaxunlearn.engine import population, stopping
from jaxunlearn.engine.config import override
from jaxunlearn.engine.methods import METHODS, get_method, make_config
from jaxunlearn.engine.records import check_workdir, machine_info, write_json_atomic
from jaxunlearn.errors import ConfigError

# Retrained models are trained and cached in chunks of this many seeds: a killed audit
# loses at most one chunk, and a larger N reuses a smaller one's chunks.
RETRAIN_CHUNK = 128
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
  out_dir = pathlib.Path(workdir) / scenario.name
  pre = override(configs.get_pretrain_config(scenario.pretrain_config), list(pretrain_overrides))
  dataset = data_lib.load_dataset(pre.dataset, data_dir)
  forget_set = data_lib.make_forget_set(dataset, scenario.forget, seed=0)
  original = trained(out_dir / "original", pre, data_dir=data_dir, progress=progress)
  audit_dir = out_dir / f"audit-N{models}"
  audit_dir.mkdir(parents=True, exist_ok=True)
  return AuditContext(scenario, out_dir, audit_dir, pre, dataset, forget_set, original, models)


def _save_scores(path: pathlib.Path, scores: population.PopulationScores, meta: dict) -> None:
  """Scores (npz) then their record (json): the json's presence says the job is done."""
  tmp = path.with_suffix(".tmp.npz")
  np.savez(tmp, **scores.as_arrays())
  tmp.replace(path.with_suffix(".npz"))
  write_json_atomic(path.with_suffix(".json"), meta)


def _load_scores(path: pathlib.Path) -> tuple[population.PopulationScores, dict]:
  with np.load(path.with_suffix(".npz")) as z:
    scores = population.PopulationScores(*(z[k] for k in population.PopulationScores._fields))
  return scores, json.loads(path.with_suffix(".json").read_text())


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
    if not record.with_suffix(".json").exists():
      with _exclusive(folder):
        if not record.with_suffix(".json").exists():
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


def method_config(ctx: AuditContext, method: str, overrides=()):
  return override(make_config(method, ctx.scenario.unlearn), list(overrides))


def unlearned_population(ctx: AuditContext, method: str, overrides=(), say=None) -> None:
  """Runs ``method`` once per seed from the original and stores the population's scores
  (``<audit>/<method>.npz`` and ``.json``)."""
  cfg = method_config(ctx, method, overrides)
  m = ctx.original
  pop = population.unlearn_population(
    cfg, m.fm, m.params, m.model_state, ctx.dataset, ctx.forget_set, range(ctx.models), say=say
  )
  t = time.perf_counter()
  scores = population.score_population(
    pop.fm, pop.params, pop.model_state, ctx.dataset, ctx.forget_set
  )
  meta = {
    "method": method,
    "config": cfg.to_dict(),
    "models": ctx.models,
    "seconds": pop.seconds,
    "compile_seconds": pop.compile_seconds,
    "eval_seconds": time.perf_counter() - t,
    "batch_mode": pop.batch_mode,
    "forget_target": get_method(method).forget_target(cfg),
  }
  _save_scores(ctx.audit_dir / method, scores, meta)


def run_methods(ctx: AuditContext, methods, overrides=(), *, progress=True) -> None:
  """Every method's unlearned population, reusing those stored; several processes on one
  audit each take the methods nobody holds (:class:`experiments.jobs.Claims`)."""
  claims = Claims(ctx.audit_dir)
  for m in methods:  # a stored population made with another config is refused, not reused
    path = ctx.audit_dir / f"{m}.json"
    if path.exists():
      stored = json.loads(path.read_text())["config"]
      if stored != method_config(ctx, m, overrides).to_dict():
        raise ConfigError(f"{path} was run with another config; use a new --workdir")
  bar = tqdm(total=len(methods), desc=f"audit ×{ctx.models}", unit="method", disable=not progress)
  try:
    while True:
      pending = [m for m in methods if not (ctx.audit_dir / f"{m}.json").exists()]
      bar.n = len(methods) - len(pending)
      bar.refresh()
      if not pending:
        break
      mine = next((m for m in pending if claims.take(f"{m}.json")), None)
      if mine is None:  # every pending method is another live process's
        time.sleep(0.5)
        continue
      bar.set_postfix_str(mine)
      unlearned_population(ctx, mine, overrides, say=bar.write)
      claims.release(f"{mine}.json")
      if stopping.requested():
        done = sum((ctx.audit_dir / f"{m}.json").exists() for m in methods)
        raise stopping.Stopped(
          f"stopped with {done} of {len(methods)} methods stored; rerun the same command to finish"
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
  halves = [metrics_lib.forget_score(u[k::2], r[k::2]).score for k in (0, 1)]
  lira = metrics_lib.lira_separability(u, r)
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
    "epsilons": full.epsilons.tolist(),
    "max_epsilon": full.max_epsilon,
    **acc,
  }


def score_audit(ctx: AuditContext, methods, retrained, retrain_seconds) -> dict:
  """The audit's results: a row per method, the original (doing nothing: N copies of
  one model) and the ceiling (the retrained population's halves against each other)."""
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
  r = retrained.confidences
  ceiling = metrics_lib.forget_score(r[0::2], r[1::2])
  ceiling_lira = metrics_lib.lira_separability(r[0::2], r[1::2])
  rows = {}
  t = time.perf_counter()
  for method in methods:
    scores, meta = _load_scores(ctx.audit_dir / method)
    start = time.perf_counter()
    rows[method] = {
      **audit_row(scores, retrained),
      "seconds": meta["seconds"],
      "compile_seconds": meta["compile_seconds"],
      "eval_seconds": meta["eval_seconds"],
      "score_seconds": time.perf_counter() - start,
      "config": meta["config"],
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
      "forget_score": ceiling.score,
      "lira_accuracy": ceiling_lira.accuracy,
      "lira_auc": ceiling_lira.auc,
      "models": len(r[0::2]),
      "max_epsilon": ceiling.max_epsilon,
    },
    "retrained": {**_accuracies(retrained), "seconds": retrain_seconds},
    "score_seconds": time.perf_counter() - t,
  }


def run_audit(
  name: str,
  workdir,
  *,
  models: int | None = None,
  methods=None,
  forget: str | None = None,
  overrides=(),
  pretrain_overrides=(),
  data_dir=None,
  progress: bool = True,
  command: str | None = None,
) -> dict:
  """Runs (or finishes) one scenario's audit and writes its results, tables, figures and
  report; returns the results."""
  start = time.perf_counter()
  scenario = get_scenario(name)
  if forget:
    scenario = with_forget(scenario, forget)
  methods = list(methods or METHODS)
  for m in methods:
    get_method(m)  # an unknown method fails before any work
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
  run_methods(ctx, methods, overrides, progress=progress)
  results = score_audit(ctx, methods, retrained, retrain_seconds)
  results["machine"] = machine_info()
  results["command"] = command
  results["wall_seconds"] = time.perf_counter() - start
  np.savez(
    ctx.audit_dir / "confidences.npz",
    retrained=retrained.confidences,
    **{m: _load_scores(ctx.audit_dir / m)[0].confidences for m in methods},
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
  p.add_argument("--no-progress", action="store_true", help="hide the progress bars")
  return p


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
    forget=args.forget,
    overrides=args.set,
    pretrain_overrides=args.pretrain_set,
    data_dir=args.data_dir,
    progress=not args.no_progress,
    command="python -m experiments.audit " + shlex.join(argv),
  )
  folder = workdir / results["scenario"] / f"audit-N{results['models']}"
  print((folder / "results.md").read_text())
  print(f"[{results['scenario']}: {results['wall_seconds']:.0f} s; files in {folder}]")


if __name__ == "__main__":
  main()
