"""Unlearn with one method from an original checkpoint, evaluate, save.

    python -m experiments.unlearn --method igs --original runs/original \\
        --forget class:0 --workdir runs/igs [--seed S] [--set tolerance=0.01 ...]

Writes ``workdir/metrics.json`` (UA, RA, TA, MIA, run time, λ and retain-loss history)
and the unlearned checkpoint under ``workdir/checkpoints``. With ``--retrained DIR`` the
Avg. Gap to that retrained model is reported too.
"""

from __future__ import annotations

import argparse
import json
import pathlib

from experiments.cli import main_guard
from jaxunlearn import data as data_lib
from jaxunlearn import metrics as metrics_lib
from jaxunlearn.engine import checkpoint as ckpt
from jaxunlearn.engine.config import override
from jaxunlearn.engine.evaluation import evaluate
from jaxunlearn.engine.methods import METHODS, make_config
from jaxunlearn.engine.records import check_workdir, write_json_atomic
from jaxunlearn.engine.training import load_trained
from jaxunlearn.engine.unlearning import unlearn
from jaxunlearn.errors import ConfigError


def parse_args(argv=None):
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--method", required=True, help=", ".join(METHODS))
  p.add_argument("--original", required=True, help="workdir of experiments.pretrain")
  p.add_argument("--forget", required=True, help="class:K | random:F | ids:PATH")
  p.add_argument("--forget-seed", type=int, default=0)
  p.add_argument("--workdir", required=True)
  p.add_argument("--retrained", help="workdir of the retrained model, for the Avg. Gap")
  p.add_argument("--seed", type=int, default=0)
  p.add_argument("--data-dir")
  p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
  p.add_argument(
    "--checkpoint-every",
    type=int,
    default=100,
    help="save a resumable checkpoint every N steps (0: only at the end)",
  )
  p.add_argument("--resume", action="store_true", help="continue a killed run in --workdir")
  p.add_argument("--no-progress", action="store_true")
  return p.parse_args(argv)


def run(args) -> dict:
  workdir = check_workdir(args.workdir)
  if (workdir / "metrics.json").exists():
    raise ConfigError(f"{workdir} already holds an unlearning result; choose a new --workdir")
  cfg = override(make_config(args.method, seed=args.seed), args.set).validate()
  if args.checkpoint_every < 0:
    raise ConfigError(f"--checkpoint-every must be ≥ 0, got {args.checkpoint_every}")
  original = load_trained(args.original)
  dataset = data_lib.load_dataset(original.metadata["dataset"], args.data_dir)
  forget_set = data_lib.make_forget_set(dataset, args.forget, seed=args.forget_seed)
  retrained = None
  if args.retrained:  # checked before the work, so a mismatch costs nothing
    retrained = load_trained(args.retrained)
    if retrained.metadata.get("forget_digest") != forget_set.digest:
      raise ConfigError(
        f"{args.retrained} was retrained without a different forget set than {args.forget}"
      )
  checkpoints = workdir / "checkpoints"
  interrupted = checkpoints.exists() and any(checkpoints.iterdir())
  if interrupted and not args.resume:
    raise ConfigError(f"{workdir} holds an interrupted run; pass --resume to continue it")
  metadata = {
    "method": args.method,
    "original": str(pathlib.Path(args.original).resolve()),
    "dataset": dataset.name,
    "forget_spec": args.forget,
    "versions": ckpt.package_versions(),
  }
  manager = ckpt.Checkpointer(checkpoints, keep_best=False)
  if interrupted:
    saved = manager.metadata()
    if saved.get("config") != cfg.to_dict() or saved.get("forget_digest") != forget_set.digest:
      raise ConfigError("cannot resume: the saved run's config or forget set differs from this one")
  # Validate the output location before the work, so a bad workdir costs nothing.
  workdir.mkdir(parents=True, exist_ok=True)
  result = unlearn(
    cfg,
    original.fm,
    original.params,
    original.model_state,
    dataset,
    forget_set,
    progress=not args.no_progress,
    checkpointer=manager,
    checkpoint_every=args.checkpoint_every,
    resume=args.resume,
    metadata=metadata,
  )
  manager.close()
  out = evaluate(original.fm, result.params, result.model_state, dataset, forget_set)
  out.update(
    method=args.method,
    seconds=result.seconds,
    resumed=bool(args.resume),
    compile_seconds=result.compile_seconds,
    config=cfg.to_dict(),
    forget_spec=args.forget,
    forget_digest=forget_set.digest,
    skipped_steps=int(result.history["skipped"].sum()),
    history={k: v.tolist() for k, v in result.history.items()},
  )
  if retrained is not None:
    reference = evaluate(retrained.fm, retrained.params, retrained.model_state, dataset, forget_set)
    out["retrain"] = reference
    out["AvgGap"] = metrics_lib.avg_gap(out, reference)
  write_json_atomic(workdir / "metrics.json", out, indent=2)
  return out


@main_guard
def main(argv=None):
  out = run(parse_args(argv))
  keys = ("method", "UA", "RA", "TA", "MIA", "LossAUC", "seconds")
  summary = {k: out[k] for k in keys if k in out}
  if "AvgGap" in out:
    summary["AvgGap"] = out["AvgGap"]
  print(json.dumps(summary, indent=2))


if __name__ == "__main__":
  main()
