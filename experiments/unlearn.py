"""Unlearn with one method from an original (or earlier unlearned) checkpoint, evaluate, save.

    python -m experiments.unlearn --method igs --original runs/original \\
        --forget class:0 --workdir runs/igs [--seed S] [--set tolerance=0.01 ...]
    # a second deletion request, starting from the first one's model:
    python -m experiments.unlearn --method igs --original runs/igs \\
        --forget ids:more_ids.txt --workdir runs/igs-2

Writes ``workdir/metrics.json`` (UA, RA, TA, MIA, run time, λ and retain-loss history,
the deletion requests so far), ``workdir/history.png`` (losses and λ over steps) and the
unlearned checkpoint under ``workdir/checkpoints`` (``jaxunlearn.load(workdir)`` reads
it). With ``--retrained DIR`` the retrained model's metrics and the Avg. Gap are reported.

Forget sets: ``class:K``, ``random:F``, ``ids:PATH`` (the dataset's example ids: for
digits and mnist_subset the row of the package's array, for TFDS datasets the record
index in its train split) or ``rows:PATH`` (positions in the train split, 0-based).

Successive requests: when ``--original`` is an unlearned workdir, examples it forgot are
neither forgotten again nor retained, the metrics cover every forgotten example, and
``--retrained`` must leave out all of them. A request whose examples were all forgotten
already is refused; a killed request continues with ``--resume``.
"""

from __future__ import annotations

import datetime
import json
import pathlib

from experiments import plots
from experiments.cli import FORGET_HELP, main_guard, parser
from jaxunlearn import data as data_lib
from jaxunlearn import metrics as metrics_lib
from jaxunlearn.data.ledger import DeletionLedger, data_digest, request_only
from jaxunlearn.engine import checkpoint as ckpt
from jaxunlearn.engine.api import BUDGETS
from jaxunlearn.engine.config import override
from jaxunlearn.engine.evaluation import evaluate, evaluate_sets, retain_budget, run_notes
from jaxunlearn.engine.inputs import check_finite_params
from jaxunlearn.engine.loading import load
from jaxunlearn.engine.locking import WorkdirLock
from jaxunlearn.engine.methods import METHODS, make_config
from jaxunlearn.engine.records import check_workdir, write_json_atomic
from jaxunlearn.engine.training import model_description
from jaxunlearn.engine.unlearning import run_method
from jaxunlearn.errors import ConfigError
from jaxunlearn.metrics import METRIC_KEYS


def build_parser():
  p = parser(__doc__)
  p.add_argument("--method", required=True, help="unlearning method: " + ", ".join(METHODS))
  p.add_argument(
    "--original",
    required=True,
    help="workdir of experiments.pretrain, or of an earlier experiments.unlearn run "
    "(a successive deletion request)",
  )
  p.add_argument("--forget", required=True, help=FORGET_HELP)
  p.add_argument("--forget-seed", type=int, default=0, help="seed of a random: forget set")
  p.add_argument("--workdir", required=True, help="where the result and checkpoints go")
  p.add_argument(
    "--retrained",
    help="workdir of the model retrained without every forgotten example: its metrics "
    "and the Avg. Gap are reported",
  )
  p.add_argument("--seed", type=int, default=0, help="seed of the batches and random labels")
  p.add_argument(
    "--budget-from",
    choices=BUDGETS,
    default="original",
    help="IGS's retain budget (reference='start') holds against the original model across "
    "successive requests, or against this request's starting model",
  )
  p.add_argument(
    "--data-dir",
    help="dataset directory; unset: $JAXUNLEARN_DATA_DIR or ~/.cache/jaxunlearn/datasets",
  )
  p.add_argument(
    "--set",
    action="append",
    default=[],
    metavar="KEY=VALUE",
    help="override an unlearning config key (repeatable), e.g. --set tolerance=0.05",
  )
  p.add_argument(
    "--checkpoint-every",
    type=int,
    default=100,
    help="save a resumable checkpoint every N steps (0: only at the end)",
  )
  p.add_argument("--resume", action="store_true", help="continue a killed run in --workdir")
  p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
  return p


def parse_args(argv=None):
  return build_parser().parse_args(argv)


def _ledger(start, original, dataset) -> DeletionLedger:
  """The deletion requests already applied to the starting model (its workdir's ledger,
  written by this command or by jaxunlearn.unlearn), or a new ledger anchored to it."""
  if start.kind != "unlearned":
    return DeletionLedger(
      anchor=str(pathlib.Path(original).resolve()), data_digest=data_digest(dataset)
    )
  ledger = DeletionLedger.from_metadata(start.metadata)
  if not len(ledger):
    raise ConfigError(
      "that unlearned workdir was written before requests were recorded; start a new "
      "series from the pretrained model"
    )
  ledger.check_data(dataset)
  return ledger


def run(args) -> dict:
  workdir = check_workdir(args.workdir)
  lock = WorkdirLock(workdir)
  if workdir.exists():  # refuse at once if another process writes here
    lock.acquire()
  try:
    return _run(args, workdir, lock)
  finally:
    lock.release()


def _checked_config(args, workdir, request=None):
  """The run's config (with the method's defaults for the ``request`` kind, ``"rows"`` or
  ``"class"``), or a one-line error (a workdir already used, a bad argument)."""
  if (workdir / "metrics.json").exists():
    raise ConfigError(
      f"{workdir} already holds an unlearning result (this request was applied); "
      "choose a new --workdir for a new request"
    )
  cfg = make_config(args.method, seed=args.seed, request=request)
  cfg = override(cfg, args.set).validate()
  if args.checkpoint_every < 0:
    raise ConfigError(f"--checkpoint-every must be ≥ 0, got {args.checkpoint_every}")
  return cfg


def _run(args, workdir, lock) -> dict:
  cfg = _checked_config(args, workdir)
  start = load(args.original)
  if start.fm is None:
    raise ConfigError(f"{args.original} holds a user's own model; use jaxunlearn.unlearn")
  check_finite_params(start.params, f"{args.original}: params")  # before the workdir exists
  dataset = data_lib.load_dataset(start.metadata["dataset"], args.data_dir)
  request = data_lib.make_forget_set(dataset, args.forget, seed=args.forget_seed)
  ledger = _ledger(start, args.original, dataset)
  step_set, union = ledger.begin(dataset, request)
  # again with the request's kind, known only now (the first call failed fast on bad keys)
  cfg = _checked_config(args, workdir, data_lib.request_kind(dataset, step_set))
  retrained = _retrained(args.retrained, union)  # before the work: a mismatch costs nothing
  checkpoints = workdir / "checkpoints"
  interrupted = checkpoints.exists() and any(checkpoints.iterdir())
  if interrupted and not args.resume:
    raise ConfigError(f"{workdir} holds an interrupted run; pass --resume to continue it")
  metadata = {
    "method": args.method,
    "original": str(pathlib.Path(args.original).resolve()),
    "budget_from": args.budget_from,
    "model": model_description(start.metadata),
    "dataset": dataset.name,
    "forget_spec": args.forget,
    "union_digest": union.digest,
    "versions": ckpt.package_versions(),
  }
  manager = ckpt.Checkpointer(checkpoints, keep_best=False)
  started = _started(manager, interrupted, cfg, step_set, union)
  metadata["started"] = started
  # The ledger goes with the checkpoint, so the next request (by this command, or
  # jaxunlearn.unlearn(previous=workdir)) reads it; the metrics follow in metrics.json.
  ledger = ledger.add(
    dataset, request, step_set, method=args.method, workdir=workdir.resolve(), time=started
  )
  metadata["ledger"] = ledger.to_dict()
  reference = _reference(start, ledger, args.budget_from)
  anchor = reference[0] if len(ledger) > 1 else None
  lock.ensure()  # before the first write (creates the workdir)
  result = run_method(
    cfg, start.fm, start.params, start.model_state, dataset, step_set,
    progress=not args.no_progress, checkpointer=manager, checkpoint_every=args.checkpoint_every,
    resume=args.resume, metadata=metadata, anchor=anchor,
  )  # fmt: skip
  manager.close()
  out, this = _metrics(args, cfg, start, result, dataset, step_set, union, reference, retrained)
  keys = ("UA", "RA", "TA", "MIA", "LossAUC")
  ledger = ledger.with_metrics(
    {k: out[k] for k in keys if k in out}, {k: this[k] for k in keys if k in this}
  )
  out["request_metrics"] = ledger.requests[-1].request_metrics
  out["requests"] = [{k: v for k, v in r.to_dict().items() if k != "ids"} for r in ledger.requests]
  plots.run_history(
    result.history, workdir / "history.png", f"{args.method} on {dataset.name}, {args.forget}"
  )
  write_json_atomic(workdir / "metrics.json", out, indent=2)
  return out


def _retrained(workdir, union):
  """The retrained model of ``--retrained``, refused unless it left out exactly ``union``."""
  if not workdir:
    return None
  retrained = load(workdir)
  if retrained.metadata.get("forget_digest") != union.digest:
    raise ConfigError(
      f"{workdir} was retrained with another forget set than every example "
      f"forgotten so far ({len(union.forget_idx)} examples)"
    )
  return retrained


def _started(manager, interrupted: bool, cfg, step_set, union) -> str:
  """When this request started: now, or (resuming) when the saved run did, which must be
  this very run."""
  if not interrupted:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
  saved = manager.metadata()
  mine, theirs = cfg.to_dict(), saved.get("config") or {}
  if mine.get("heldout_loss", 0) < 0 and theirs.get("heldout_loss", -1) >= 0:
    # measured from the same original when the saved run started (the digests below say
    # it is the same request), so the level the resumed run goes on with
    mine["heldout_loss"] = theirs["heldout_loss"]
  if (
    theirs != mine
    or saved.get("forget_digest") != step_set.digest
    or saved.get("union_digest") != union.digest
  ):
    raise ConfigError("cannot resume: the saved run's config or forget set differs from this one")
  return saved.get("started")


def _reference(start, ledger, budget_from: str):
  """What the retain budget holds against: the model before the first request, or this
  request's starting model."""
  if len(ledger) > 1 and budget_from == "original":
    if not ledger.anchor:
      raise ConfigError(
        "the model before the first request is not a workdir here; pass --budget-from request"
      )
    anchor = load(ledger.anchor)
    return anchor.params, anchor.model_state
  return start.params, start.model_state


def _metrics(args, cfg, start, result, dataset, step_set, union, reference, retrained):
  """``(metrics.json, this request's own metrics)``: the metrics over every forgotten row,
  the run, its budget and, with ``--retrained``, the retrained model's metrics and the
  Avg. Gap; both from one prediction of the data."""
  out, this = evaluate_sets(
    start.fm, result.params, result.model_state, dataset, [union, request_only(step_set, union)]
  )
  out.update(
    method=args.method,
    seconds=result.seconds,
    resumed=bool(args.resume),
    compile_seconds=result.compile_seconds,
    config=cfg.to_dict(),
    forget_spec=args.forget,
    forget_digest=step_set.digest,
    forgotten_examples=len(union.forget_idx),
    skipped_steps=int(result.history["skipped"].sum()),
    history={k: v.tolist() for k, v in result.history.items()},
  )
  if "multiplier" in result.history:
    out["multiplier"] = float(result.history["multiplier"][-1])
  final = (result.params, result.model_state)
  out["budget"] = retain_budget(cfg, start.fm, reference, final, dataset, union.retain_idx)
  if retrained is not None:
    retrain = evaluate(retrained.fm, retrained.params, retrained.model_state, dataset, union)
    out["retrain"] = retrain
    out["AvgGap"] = float("nan") if out.get("diverged") else metrics_lib.avg_gap(out, retrain)
  out["notes"] = run_notes(result.history, {k: out[k] for k in METRIC_KEYS if k in out})
  return out, this


def summary(out: dict) -> dict:
  """What the command prints: the metrics, λ, the time apart from the compile, and the
  retrained model's metrics when given."""
  keys = ("method", "UA", "RA", "TA", "MIA", "LossAUC", "multiplier", "AvgGap")
  s = {k: out[k] for k in keys if k in out}
  s["seconds"] = out["seconds"]
  s["compile_seconds"] = out["compile_seconds"]
  s["requests"] = len(out["requests"])
  if "retrain" in out:
    s["retrain"] = {k: out["retrain"][k] for k in ("UA", "RA", "TA", "MIA", "LossAUC")}
  if out.get("notes"):  # skipped steps, a diverged model: said, not hidden
    s["notes"] = out["notes"]
  return s


@main_guard
def main(argv=None):
  print(json.dumps(summary(run(parse_args(argv))), indent=2))


if __name__ == "__main__":
  main()
