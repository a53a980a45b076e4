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

import jax.numpy as jnp

from experiments.cli import main_guard
from jaxunlearn import checkpoint as ckpt
from jaxunlearn import data as data_lib
from jaxunlearn import metrics as metrics_lib
from jaxunlearn.config import ConfigError, override
from jaxunlearn.methods import METHODS, make_config
from jaxunlearn.pretraining import load_trained
from jaxunlearn.unlearning import evaluate_unlearning, unlearn


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
  p.add_argument("--no-progress", action="store_true")
  return p.parse_args(argv)


def run(args) -> dict:
  workdir = pathlib.Path(args.workdir)
  if workdir.exists() and not workdir.is_dir():
    raise ConfigError(f"workdir {workdir} is a file, not a directory")
  if (workdir / "metrics.json").exists():
    raise ConfigError(f"{workdir} already holds an unlearning result; choose a new --workdir")
  cfg = override(make_config(args.method, seed=args.seed), args.set)
  original = load_trained(args.original)
  dataset = data_lib.load_dataset(original.metadata["dataset"], args.data_dir)
  forget_set = data_lib.make_forget_set(dataset, args.forget, seed=args.forget_seed)
  result = unlearn(cfg, original.fm, original.params, original.model_state, dataset, forget_set,
                   progress=not args.no_progress)
  out = evaluate_unlearning(original.fm, result.params, result.model_state, dataset, forget_set,
                            seed=args.seed)
  out.update(method=args.method, seconds=result.seconds, compile_seconds=result.compile_seconds,
             config=cfg.to_dict(), forget_spec=args.forget, forget_digest=forget_set.digest,
             skipped_steps=int(result.history["skipped"].sum()),
             history={k: v.tolist() for k, v in result.history.items()})
  if args.retrained:
    retrained = load_trained(args.retrained)
    if retrained.metadata.get("forget_digest") != forget_set.digest:
      raise ConfigError("the retrained model was trained without a different forget set")
    reference = evaluate_unlearning(retrained.fm, retrained.params, retrained.model_state,
                                    dataset, forget_set, seed=args.seed)
    out["retrain"] = reference
    out["AvgGap"] = metrics_lib.avg_gap(out, reference)
  workdir.mkdir(parents=True, exist_ok=True)
  manager = ckpt.Checkpointer(workdir / "checkpoints", keep_best=False)
  manager.save(cfg.steps, {"params": result.params, "model_state": result.model_state},
               metadata={"kind": "unlearned", "method": args.method, "config": cfg.to_dict(),
                         "original": str(pathlib.Path(args.original).resolve()),
                         "dataset": dataset.name, "forget_spec": args.forget,
                         "forget_digest": forget_set.digest,
                         "versions": ckpt.package_versions()})
  manager.close()
  (workdir / "metrics.json").write_text(json.dumps(out, indent=2))
  return out


@main_guard
def main(argv=None):
  out = run(parse_args(argv))
  summary = {k: out[k] for k in ("method", "UA", "RA", "TA", "MIA", "seconds") if k in out}
  if "AvgGap" in out:
    summary["AvgGap"] = out["AvgGap"]
  print(json.dumps(summary, indent=2))


if __name__ == "__main__":
  main()
