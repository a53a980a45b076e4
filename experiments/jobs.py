"""A scenario's reference models and the resumable job loop shared by compare and pareto.

A job is one unlearning run (method, seed, swept overrides). Its record is written
atomically to ``<workdir>/<scenario>/runs/<job>.json`` when it finishes, so a killed
command started again reuses every finished job and recomputes nothing; a record made
with a different config is refused rather than silently reused.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import json
import os
import pathlib
import time
from typing import Any

from tqdm.auto import tqdm

from experiments import configs
from experiments.scenarios import Scenario, get_scenario
from jaxunlearn import data as data_lib
from jaxunlearn import metrics as metrics_lib
from jaxunlearn.data.tofu import QADataset
from jaxunlearn.engine import stopping
from jaxunlearn.engine.config import TrainConfig, override
from jaxunlearn.engine.evaluation import evaluate
from jaxunlearn.engine.locking import WorkdirLock
from jaxunlearn.engine.methods import every_key, get_method, make_config
from jaxunlearn.engine.progress import hidden
from jaxunlearn.engine.records import remove_stale_temporaries, write_json_atomic
from jaxunlearn.engine.training import TrainedModel, load_trained, train
from jaxunlearn.engine.unlearning import program_config, run_batch, run_method
from jaxunlearn.errors import ConfigError, WorkdirBusyError

# Histories kept in a run's record (the full history stays in memory only).
RECORDED_HISTORY = ("retain_loss", "forget_loss", "multiplier", "retain_decrease")


@dataclasses.dataclass
class ScenarioContext:
  """Everything the runs of one scenario share."""

  scenario: Scenario
  out_dir: pathlib.Path
  pretrain: TrainConfig
  dataset: Any
  forget_set: Any
  original: TrainedModel
  retrained: TrainedModel
  reference: dict  # "original" and "retrain" -> metrics
  retrain_seconds: float


@dataclasses.dataclass(frozen=True)
class Job:
  method: str
  seed: int
  sweep: tuple = ()  # ((key, value), ...) config overrides of a sweep point or a variant
  label: str = ""  # names the overrides in the file name instead of listing them

  @property
  def filename(self) -> str:
    tag = self.label or "-".join(f"{k}={v}" for k, v in self.sweep)
    return f"{self.method}-s{self.seed}" + (f"-{tag}" if tag else "") + ".json"


def trained(
  workdir: pathlib.Path,
  config: TrainConfig,
  *,
  forget=None,
  retrain=False,
  data_dir=None,
  progress=True,
) -> TrainedModel:
  """Trains once; afterwards (or after a kill) reuses or resumes the run in ``workdir``.

  Another process training it right now (a parallel worker) is waited for, not fought:
  the look at ``workdir`` and the training that follows hold one lock beside it, so no
  process decides "fresh run" from a look taken before another one's checkpoints
  appeared (a CI run of ``compare --workers 2`` lost a worker to exactly that:
  "already holds a run; pass --resume").
  """
  while not (workdir / "metrics.json").exists():
    with exclusive(workdir.parent / f".{workdir.name}"):
      if (workdir / "metrics.json").exists():  # finished while we waited
        break
      try:
        train(
          config,
          workdir,
          forget_spec=forget,
          retrain=retrain,
          resume=(workdir / "checkpoints").exists(),
          data_dir=data_dir,
          progress=progress,
        )
      except WorkdirBusyError:  # a process outside this lock (a pretrain started by hand)
        time.sleep(0.5)
  return load_trained(workdir)


@contextlib.contextmanager
def exclusive(folder: pathlib.Path):
  """Holds the :class:`~jaxunlearn.engine.locking.WorkdirLock` of ``folder`` for the
  block, waiting while another process holds it (the kernel drops a dead holder's lock,
  so a killed worker blocks nobody)."""
  lock = WorkdirLock(folder)
  while True:
    try:
      lock.acquire()
      break
    except WorkdirBusyError:
      if stopping.requested():
        raise stopping.Stopped(f"stopped waiting for {folder.name[1:]} to be trained") from None
      time.sleep(0.5)
  try:
    yield
  finally:
    lock.release()


def prepare_scenario(
  name, workdir, *, pretrain_overrides=(), data_dir=None, progress: bool = True
) -> ScenarioContext:
  """Trains (or reuses) the scenario's original and retrained models and evaluates both.

  ``name``: a scenario name, or a :class:`~experiments.scenarios.Scenario` itself.
  """
  scenario = name if isinstance(name, Scenario) else get_scenario(name)
  out_dir = pathlib.Path(workdir) / scenario.name
  pre = override(configs.get_pretrain_config(scenario.pretrain_config), list(pretrain_overrides))
  dataset = data_lib.load_dataset(pre.dataset, data_dir)
  forget_set = data_lib.make_forget_set(dataset, scenario.forget, seed=0)
  (out_dir / "runs").mkdir(parents=True, exist_ok=True)  # once the forget spec is known good
  original = trained(out_dir / "original", pre, data_dir=data_dir, progress=progress)
  retrained = trained(
    out_dir / "retrain",
    pre,
    forget=scenario.forget,
    retrain=True,
    data_dir=data_dir,
    progress=progress,
  )
  reference = {
    label: evaluate(m.fm, m.params, m.model_state, dataset, forget_set)
    for label, m in (("original", original), ("retrain", retrained))
  }
  retrain_seconds = json.loads((out_dir / "retrain" / "metrics.json").read_text())["seconds"]
  return ScenarioContext(
    scenario, out_dir, pre, dataset, forget_set, original, retrained, reference, retrain_seconds
  )


def request_of(ctx) -> str | None:
  """The kind of request ``ctx``'s forget set is (:func:`jaxunlearn.data.request_kind`);
  ``None`` for question-answer rows, which no method keys its defaults on."""
  if isinstance(ctx.dataset, QADataset):
    return None
  return data_lib.request_kind(ctx.dataset, ctx.forget_set)


def job_config(ctx: ScenarioContext, job: Job, overrides=()):
  """The job's config: scenario < method defaults (for the kind of request) < the user's
  ``--set`` < the sweep point."""
  cfg = make_config(job.method, ctx.scenario.unlearn, seed=job.seed, request=request_of(ctx))
  cfg = override(cfg, list(overrides), elsewhere=every_key())  # --set: each method its keys
  return override(cfg, dict(job.sweep)) if job.sweep else cfg


def run_job(ctx: ScenarioContext, job: Job, cfg) -> dict:
  """Runs one job and returns its record (metrics, Avg. Gap, time, histories)."""
  m = ctx.original
  res = run_method(cfg, m.fm, m.params, m.model_state, ctx.dataset, ctx.forget_set, progress=False)
  return job_record(ctx, job, cfg, res)


def job_record(ctx: ScenarioContext, job: Job, cfg, res) -> dict:
  """The stored record of a finished run ``res`` (an ``UnlearnResult``)."""
  m = ctx.original
  start = time.perf_counter()
  ev = evaluate(m.fm, res.params, res.model_state, ctx.dataset, ctx.forget_set)
  eval_seconds = time.perf_counter() - start
  return {
    "method": job.method,
    "seed": job.seed,
    "sweep": dict(job.sweep),
    "label": job.label,
    "metrics": ev,
    "AvgGap": (
      metrics_lib.avg_gap(ev, ctx.reference["retrain"]) if not ev.get("diverged") else float("nan")
    ),
    "seconds": res.seconds,
    "compile_seconds": res.compile_seconds,
    "eval_seconds": eval_seconds,  # the metrics and the MIA, their compiles included
    "forget_target": get_method(job.method).forget_target(cfg),
    "config": cfg.to_dict(),
    "skipped_steps": int(res.history["skipped"].sum()),
    "history": {k: v.tolist() for k, v in res.history.items() if k in RECORDED_HISTORY},
    # >1: run with that many runs in one vmapped program; seconds is its share of the wall time
    "batched_with": res.batched_with,
    "batch_mode": res.batch_mode,  # "vmap" or "map" over the runs, "single" alone
  }


def same_config(stored: dict, cfg) -> bool:
  """Whether a stored run's config is ``cfg``; a key added to the method's config since
  the run was stored counts as equal when ``cfg`` has its default (the old behaviour)."""
  defaults = make_config(cfg.method).to_dict()
  return all(stored.get(k, defaults[k]) == v for k, v in cfg.to_dict().items())


def run_jobs(
  ctx: ScenarioContext,
  jobs,
  *,
  overrides=(),
  progress: bool = True,
  desc: str = "",
  batched: bool = True,
) -> list[dict]:
  """Runs ``jobs``, reusing every finished record; returns all records in job order.

  Every config is built (and so checked) before the first run starts. With ``batched``
  the unfinished runs of one method that share a compiled program — its seeds, and the
  points of a tuning grid or sweep that differ only in numeric hyperparameters — run
  together as one vmapped program (:func:`~jaxunlearn.engine.unlearning.run_batch`,
  chunked to the memory budget); their results equal one-at-a-time runs to float
  tolerance.
  """
  configs_ = [job_config(ctx, job, overrides) for job in jobs]
  records: list = [None] * len(jobs)
  bar = tqdm(total=len(jobs), desc=desc or ctx.scenario.name, unit="run", disable=hidden(progress))
  claims = Claims(ctx.out_dir / "runs")
  remove_stale_temporaries(ctx.out_dir / "runs")  # left by a run killed mid-write
  try:
    while True:
      pending = _load_finished(ctx, jobs, configs_, records, bar)
      if not pending:
        break
      groups: dict = {}
      for i in pending:  # claimed jobs only: another process may be running the rest
        if claims.take(jobs[i].filename):
          groups.setdefault(program_config(configs_[i]) if batched else i, []).append(i)
      if not groups:  # every pending job is another live process's: wait for its record
        time.sleep(0.5)
        continue
      for idxs in groups.values():
        _run_group(ctx, jobs, configs_, idxs, records, say=bar.write)
        for i in idxs:
          claims.release(jobs[i].filename)
        bar.update(len(idxs))
        if stopping.requested():
          done = sum(r is not None for r in records)
          raise stopping.Stopped(
            f"stopped with {done} of {len(jobs)} runs stored; rerun the same command to finish"
          )
  finally:
    claims.release_all()
    bar.close()
  return records


def _load_finished(ctx, jobs, configs_, records, bar) -> list[int]:
  """Reads the records that exist (checking their configs); returns the pending jobs."""
  pending = []
  for i, (job, cfg) in enumerate(zip(jobs, configs_)):
    if records[i] is not None:
      continue
    path = ctx.out_dir / "runs" / job.filename
    if not path.exists():
      pending.append(i)
      continue
    record = json.loads(path.read_text())
    if not same_config(record["config"], cfg):
      raise ConfigError(
        f"{path} was run with a different config than this command's; "
        "use the same --set values or a new --workdir"
      )
    records[i] = record
  bar.n = sum(r is not None for r in records)
  bar.refresh()
  return pending


def _run_group(ctx, jobs, configs_, group, records, say=None) -> None:
  m = ctx.original
  if len(group) == 1:
    new = [run_job(ctx, jobs[group[0]], configs_[group[0]])]
  else:
    results = run_batch(
      [configs_[i] for i in group],
      m.fm,
      m.params,
      m.model_state,
      ctx.dataset,
      ctx.forget_set,
      say=say,
    )
    new = [job_record(ctx, jobs[i], configs_[i], res) for i, res in zip(group, results)]
  for i, record in zip(group, new):
    write_json_atomic(ctx.out_dir / "runs" / jobs[i].filename, record)
    records[i] = record


class Claims:
  """Which jobs this process runs: an ``flock`` per job on ``<runs>/.claims/<job>``.

  Several processes on one comparison (``compare --workers N``, or commands started by
  hand) each take the jobs nobody holds; the kernel drops a dead process's claims, so a
  killed worker's jobs are taken by whoever looks next. A job whose record exists is
  never claimed, so each runs once.
  """

  def __init__(self, runs_dir: pathlib.Path):
    self.dir = pathlib.Path(runs_dir) / ".claims"
    self.held: dict[str, int] = {}

  def take(self, name: str) -> bool:
    self.dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(self.dir / name, os.O_RDWR | os.O_CREAT, 0o644)
    try:
      fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
      os.close(fd)
      return False
    if (self.dir.parent / name).exists():  # finished while we looked
      os.close(fd)
      return False
    self.held[name] = fd
    return True

  def release(self, name: str) -> None:
    fd = self.held.pop(name, None)
    if fd is not None:
      fcntl.flock(fd, fcntl.LOCK_UN)
      os.close(fd)

  def release_all(self) -> None:
    for name in list(self.held):
      self.release(name)


def is_main_run(record: dict) -> bool:
  """A run that the tables summarise: a method at its own (or its tuned) configuration,
  not a point of a sweep or a tuning candidate."""
  return not record["sweep"] or record.get("label") == "tuned"
