"""Checkpoints of training/unlearning state with Orbax: latest and best.

:class:`Checkpointer` wraps one ``orbax.checkpoint.CheckpointManager`` (as in
flax ``examples/gemma`` and the NNX checkpointing guide). Each step directory
holds three Orbax items::

    <directory>/<step>/state/     StandardSave of the state pytree (OCDBT/zarr)
    <directory>/<step>/metadata/  JSON: config, dataset, forget-set digest, versions
    <directory>/<step>/metrics/   JSON: the metrics given to save() (Orbax's own item)

What is kept: the ``keep_latest`` newest steps *and* the best step by
``metrics[best_metric]`` -- at most ``keep_latest + 1`` directories. (Orbax's
``max_to_keep`` together with ``best_fn`` keeps only the *best* N and deletes
the latest one when it is not among them, so we pass an explicit
``AnyPreservationPolicy([LatestN, BestN])`` instead.)

Crash safety: saves are synchronous. Orbax writes each step into
``<step>.orbax-checkpoint-tmp-*`` and renames it to ``<step>`` only when
complete, and ignores ``*.orbax-checkpoint-tmp-*`` when listing steps, so a
process killed mid-save (SIGKILL included) leaves the previous checkpoints
intact and no half-written step. Old steps are moved out of the way by an
atomic rename into ``<directory>/_trash`` before being deleted, so an
interrupted deletion cannot leave a partial step directory either. Leftovers
of killed saves are removed at the next save. One writer per directory.

State conventions:

* any pytree of ``jax.Array`` / numpy arrays / Python or numpy scalars, nested
  in dicts, lists, tuples, NamedTuples (optax states), with ``None`` /
  ``optax.EmptyState`` allowed; restored into the *template's* structure;
* PRNG keys are stored as raw ``uint32`` key data (``jax.random.key_data``):
  typed keys (``jax.random.key``) in ``state`` are converted on save and
  re-wrapped with the template key's implementation on restore; legacy raw
  ``uint32`` keys are ordinary arrays;
* no pickle anywhere: arrays go through TensorStore, the rest through JSON.

Example:
  >>> import tempfile, jax.numpy as jnp, optax
  >>> params = {"w": jnp.ones((2, 3))}
  >>> state = {"params": params, "opt": optax.adam(1e-3).init(params),
  ...          "lam": jnp.float32(0.5)}
  >>> with tempfile.TemporaryDirectory() as d, Checkpointer(d) as ckpt:
  ...     ckpt.save(1, state, metadata={"versions": package_versions()},
  ...               metrics={"val_accuracy": 0.9})
  ...     restored = ckpt.restore(state)          # latest
  ...     best = ckpt.restore(state, which="best")
  ...     ckpt.latest_step(), float(restored["lam"])
  (1, 0.5)
"""

from __future__ import annotations

import importlib.metadata
import math
import numbers
import os
import platform
import shutil
from collections.abc import Mapping
from typing import Any, Literal

import jax
import numpy as np
import orbax.checkpoint as ocp
from orbax.checkpoint import checkpoint_managers as ocp_managers

from jaxunlearn.errors import CheckpointError

__all__ = ["CheckpointError", "Checkpointer", "package_versions"]

_TRASH = "_trash"
_TMP_MARK = ".orbax-checkpoint-tmp"
_MAX_LISTED = 4  # mismatches named in one error message


def package_versions() -> dict[str, str | None]:
  """Versions of the packages that decide how a checkpoint reads back.

  Examples:
    >>> sorted(package_versions())
    ['flax', 'jax', 'jaxlib', 'numpy', 'optax', 'orbax-checkpoint', 'python']
  """
  out: dict[str, str | None] = {}
  for name in ("jax", "jaxlib", "flax", "optax", "orbax-checkpoint", "numpy"):
    try:
      out[name] = importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
      out[name] = None
  out["python"] = platform.python_version()
  return out


# ------------------------------------------------------------------ helpers


def _first_line(err: BaseException, limit: int = 300) -> str:
  text = str(err).strip().splitlines()
  msg = text[0] if text else ""
  if len(msg) > limit:
    msg = msg[:limit] + "..."
  return f"{type(err).__name__}: {msg}" if msg else type(err).__name__


def _to_json(obj: Any, where: str) -> Any:
  """JSON-ready copy of ``obj``; numpy/JAX scalars become Python numbers."""
  if obj is None or isinstance(obj, (bool, str)):
    return obj
  if isinstance(obj, numbers.Integral):
    return int(obj)
  if isinstance(obj, numbers.Real):
    return float(obj)
  if isinstance(obj, (np.ndarray, np.generic, jax.Array)) and np.ndim(obj) == 0:
    return _to_json(np.asarray(obj).item(), where)
  if isinstance(obj, Mapping):
    out = {}
    for k, v in obj.items():
      if not isinstance(k, str):
        raise CheckpointError(f"{where}: key {k!r} is not a string (JSON needs str keys)")
      out[k] = _to_json(v, f"{where}[{k!r}]")
    return out
  if isinstance(obj, (list, tuple)):
    return [_to_json(v, f"{where}[{i}]") for i, v in enumerate(obj)]
  raise CheckpointError(f"{where} has type {type(obj).__name__}, which is not JSON data")


def _is_key(x: Any) -> bool:
  dtype = getattr(x, "dtype", None)
  return dtype is not None and jax.dtypes.issubdtype(dtype, jax.dtypes.prng_key)


def _key_impl(x: Any) -> Any:
  if isinstance(x, jax.ShapeDtypeStruct):
    # No public accessor for an abstract key's impl; the key dtype holds it.
    return x.dtype._impl  # noqa: SLF001
  return jax.random.key_impl(x)


def _param_name(path: tuple) -> str:
  # Orbax names array i/o "a.b.0.c"; same naming lets us compare with its metadata.
  return ".".join(ocp.tree.str_keypath(path))


def _abstract_leaf(x: Any) -> Any:
  """What to ask Orbax to restore for one template leaf."""
  if _is_key(x):
    x = jax.eval_shape(jax.random.key_data, x)
  if isinstance(x, (np.ndarray, np.generic, numbers.Number)):
    return x  # numpy / Python values restore as such
  if isinstance(x, (jax.Array, jax.ShapeDtypeStruct)):
    sharding = getattr(x, "sharding", None)
    if sharding is None:
      sharding = jax.sharding.SingleDeviceSharding(jax.devices()[0])
    return jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sharding)
  raise CheckpointError(f"template leaf of type {type(x).__name__} is not an array or scalar")


def _shape_dtype(x: Any) -> tuple[tuple[int, ...], np.dtype]:
  if isinstance(x, numbers.Number):
    x = np.asarray(x)
  return tuple(x.shape), np.dtype(x.dtype)


def _fmt(sd: tuple[tuple[int, ...], np.dtype]) -> str:
  return f"{sd[0]} {sd[1]}"


# --------------------------------------------------------------- Checkpointer


class Checkpointer:
  """Keeps the latest and the best checkpoint of a run in ``directory``.

  Args:
    directory: root directory of this run's checkpoints.
    keep_best: also keep the best step by ``metrics[best_metric]``.
    best_metric: key of ``metrics`` that ranks checkpoints.
    best_mode: ``"max"`` (accuracy) or ``"min"`` (loss). NaN ranks worst.
    keep_latest: how many of the newest steps to keep (>= 1).
    create: create ``directory`` on the first save if it does not exist.

  See the module docstring for layout, crash safety and an example.
  """

  def __init__(
    self,
    directory: str | os.PathLike,
    *,
    keep_best: bool = True,
    best_metric: str = "val_accuracy",
    best_mode: Literal["max", "min"] = "max",
    keep_latest: int = 1,
    create: bool = True,
  ):
    if best_mode not in ("max", "min"):
      raise ValueError(f"best_mode must be 'max' or 'min', got {best_mode!r}")
    if int(keep_latest) < 1:
      raise ValueError(f"keep_latest must be >= 1, got {keep_latest!r}")
    self.directory = os.path.abspath(os.fspath(directory))
    self.keep_best = bool(keep_best)
    self.best_metric = best_metric
    self.best_mode = best_mode
    self.keep_latest = int(keep_latest)
    self.create = bool(create)
    self._mgr: ocp.CheckpointManager | None = None

  # -- Orbax manager -----------------------------------------------------

  def _score(self, metrics: Any) -> float:
    """Higher is better; missing or NaN metric ranks worst."""
    try:
      value = float(metrics[self.best_metric])
    except (KeyError, TypeError, ValueError):
      return -math.inf
    if math.isnan(value):
      return -math.inf
    return value if self.best_mode == "max" else -value

  def _manager(self, *, for_write: bool) -> ocp.CheckpointManager | None:
    if self._mgr is not None:
      return self._mgr
    if not os.path.isdir(self.directory):
      if not for_write:
        return None
      if not self.create:
        raise CheckpointError(
          f"checkpoint directory {self.directory} does not exist (create=False)"
        )
      os.makedirs(self.directory, exist_ok=True)
    policies = [ocp_managers.LatestN(n=self.keep_latest)]
    if self.keep_best:
      policies.append(
        ocp_managers.BestN(
          get_metric_fn=self._score, reverse=False, n=1, keep_checkpoints_without_metrics=False
        )
      )
    options = ocp.CheckpointManagerOptions(
      enable_async_checkpointing=False,  # save() returns once committed
      preservation_policy=ocp_managers.AnyPreservationPolicy(policies),
      # best_fn makes Orbax store the metrics item (also with keep_best=False,
      # so metrics() always works); what is kept is decided by the policy.
      best_fn=self._score,
      best_mode="max",
      todelete_subdir=_TRASH,  # atomic rename out, then we delete
      create=False,
    )
    try:
      self._mgr = ocp.CheckpointManager(
        self.directory,
        options=options,
        # Registered up front so a fresh process can read item metadata
        # (e.g. to check a template) before any save/restore call.
        item_handlers={
          "state": ocp.StandardCheckpointHandler(),
          "metadata": ocp.JsonCheckpointHandler(),
        },
      )
    except Exception as e:  # noqa: BLE001 - one clear line for any Orbax failure
      raise CheckpointError(f"cannot open checkpoints at {self.directory}: {_first_line(e)}") from e
    return self._mgr

  def _reader(self) -> ocp.CheckpointManager:
    mgr = self._manager(for_write=False)
    if mgr is None:
      raise CheckpointError(f"no checkpoint at {self.directory}")
    mgr.reload()  # another process may have written since
    if not mgr.all_steps():
      raise CheckpointError(f"no checkpoint at {self.directory}")
    return mgr

  def _clean_leftovers(self) -> None:
    # Only the (single) writer calls this, between its synchronous saves,
    # so no tmp dir here belongs to a save in progress.
    for name in os.listdir(self.directory):
      if _TMP_MARK in name or name == _TRASH:
        shutil.rmtree(os.path.join(self.directory, name), ignore_errors=True)

  # -- queries -------------------------------------------------------------

  def all_steps(self) -> list[int]:
    """Steps present on disk (complete checkpoints only), ascending."""
    mgr = self._manager(for_write=False)
    if mgr is None:
      return []
    mgr.reload()
    return sorted(mgr.all_steps())

  def latest_step(self) -> int | None:
    """Newest complete step, or ``None`` when there is none."""
    steps = self.all_steps()
    return steps[-1] if steps else None

  def best_step(self) -> int | None:
    """Step with the best ``metrics[best_metric]`` (latest wins ties), or ``None``."""
    if not self.keep_best:
      return None
    scored = []
    for step in self.all_steps():
      metrics = self._read_metrics(step)
      if metrics is not None and self.best_metric in metrics:
        scored.append((self._score(metrics), step))
    return max(scored)[1] if scored else None

  def _read_metrics(self, step: int) -> dict | None:
    try:
      return self._mgr.metrics(step) if self._mgr is not None else None
    except Exception:  # noqa: BLE001 - unreadable metrics rank as absent
      return None

  def _resolve(self, which: str, step: int | None) -> tuple[ocp.CheckpointManager, int]:
    if which not in ("latest", "best"):
      raise ValueError(f"which must be 'latest' or 'best', got {which!r}")
    mgr = self._reader()
    steps = sorted(mgr.all_steps())
    if step is not None:
      if step not in steps:
        raise CheckpointError(
          f"no checkpoint for step {step} at {self.directory}; available: {steps}"
        )
      return mgr, step
    if which == "latest":
      return mgr, steps[-1]
    if not self.keep_best:
      raise CheckpointError("best checkpoint is not tracked (keep_best=False)")
    best = self.best_step()
    if best is None:
      raise CheckpointError(f"no checkpoint with metric {self.best_metric!r} at {self.directory}")
    return mgr, best

  # -- save ------------------------------------------------------------------

  def save(
    self,
    step: int,
    state: Any,
    *,
    metadata: Mapping[str, Any],
    metrics: Mapping[str, Any] | None = None,
    force: bool = False,
  ) -> None:
    """Writes ``state`` as step ``step``; returns once it is on disk.

    Args:
      step: non-negative int, larger than every saved step.
      state: pytree of arrays/scalars (see module docstring).
      metadata: JSON data stored beside the arrays (config, dataset name,
        forget-set digest, :func:`package_versions`, ...).
      metrics: JSON numbers; with ``keep_best`` they must contain
        ``best_metric`` to compete for "best". Without metrics the step only
        counts as a latest checkpoint.
      force: allow ``step`` <= the latest saved step: that step and every
        later one are deleted first (rewinding the run).

    Raises:
      CheckpointError: bad step, non-JSON metadata/metrics, unsupported
        leaves, or an Orbax write failure.
    """
    if isinstance(step, bool) or not isinstance(step, numbers.Integral) or step < 0:
      raise CheckpointError(f"step must be a non-negative int, got {step!r}")
    step = int(step)
    meta = _to_json(dict(metadata), "metadata")
    mets = None
    if metrics is not None:
      mets = _to_json(dict(metrics), "metrics")
      if self.keep_best:
        value = mets.get(self.best_metric)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
          raise CheckpointError(
            f"metrics[{self.best_metric!r}] must be a number to rank checkpoints; "
            f"got {value!r} (metrics keys: {sorted(mets)})"
          )
    state = self._prepare_state(state)

    mgr = self._manager(for_write=True)
    mgr.reload()
    later = [s for s in mgr.all_steps() if s >= step]
    if later and not force:
      raise CheckpointError(
        f"step {step} is not after the latest saved step {max(later)} in "
        f"{self.directory}; pass force=True to delete steps >= {step} and save"
      )
    try:
      self._clean_leftovers()  # first: a stale _trash/<step> would block a rename
      for s in sorted(later, reverse=True):
        mgr.delete(s)
      mgr.save(
        step,
        args=ocp.args.Composite(
          state=ocp.args.StandardSave(state),
          metadata=ocp.args.JsonSave(meta),
        ),
        # {} rather than None: Orbax logs "Requested tracked_metric; did not provide
        # metrics" for every save without metrics; an empty dict ranks worst, silently.
        metrics={} if mets is None else mets,
        force=True,  # our own checks above replace Orbax's save policy
      )
      mgr.wait_until_finished()
    except CheckpointError:
      raise
    except Exception as e:  # noqa: BLE001
      # Its own temporary directory goes; the previous steps were never touched.
      self._clean_leftovers()
      free = shutil.disk_usage(self.directory).free / 2**20
      raise CheckpointError(
        f"saving step {step} to {self.directory} failed ({free:.0f} MiB free there): "
        f"{_first_line(e)}; the previous checkpoint is intact"
      ) from e
    shutil.rmtree(os.path.join(self.directory, _TRASH), ignore_errors=True)

  @staticmethod
  def _prepare_state(state: Any) -> Any:
    def leaf(path, x):
      if _is_key(x):
        return jax.random.key_data(x)
      if isinstance(x, (jax.Array, np.ndarray, np.generic, numbers.Number)):
        return x
      raise CheckpointError(
        f"state leaf {_param_name(path) or '<root>'!r} has type {type(x).__name__}; "
        "only arrays and numeric scalars can be checkpointed"
      )

    return jax.tree_util.tree_map_with_path(leaf, state)

  # -- restore ---------------------------------------------------------------

  def restore(
    self,
    template: Any,
    *,
    step: int | None = None,
    which: Literal["latest", "best"] = "latest",
  ) -> Any:
    """Reads a checkpoint into the structure, shapes and dtypes of ``template``.

    Args:
      template: pytree like the saved state; leaves may be arrays (their
        sharding is used), ``jax.ShapeDtypeStruct`` or numpy arrays/scalars
        (restored as numpy). Typed PRNG keys come back typed.
      step: a specific step (overrides ``which``).
      which: ``"latest"`` or ``"best"``.

    Raises:
      CheckpointError: no checkpoint, a template that does not match
        (names the key path, shapes and dtypes), or unreadable data.
    """
    mgr, step = self._resolve(which, step)
    where = f"step {step} at {self.directory}"
    flat, treedef = jax.tree_util.tree_flatten_with_path(template)
    expected = {}
    for path, x in flat:
      abstract = _abstract_leaf(x)
      expected[_param_name(path)] = _shape_dtype(abstract)
    try:
      stored_tree = mgr.item_metadata(step)["state"].tree
    except Exception as e:  # noqa: BLE001
      raise CheckpointError(f"checkpoint {where} is unreadable: {_first_line(e)}") from e
    stored = {
      m.name: (tuple(m.shape), np.dtype(m.dtype))
      for m in jax.tree.leaves(stored_tree, is_leaf=lambda m: hasattr(m, "name"))
      if hasattr(m, "name")
    }
    problems = []
    for name, sd in expected.items():
      if name not in stored:
        problems.append(f"{name!r} is in the template but not in the checkpoint")
      elif stored[name] != sd:
        problems.append(f"{name!r}: checkpoint {_fmt(stored[name])}, template {_fmt(sd)}")
    problems += [
      f"{name!r} is in the checkpoint but not in the template"
      for name in stored
      if name not in expected
    ]
    if problems:
      more = f" (and {len(problems) - _MAX_LISTED} more)" if len(problems) > _MAX_LISTED else ""
      raise CheckpointError(
        f"checkpoint {where} does not match the template: "
        + "; ".join(problems[:_MAX_LISTED])
        + more
      )

    abstract_tree = jax.tree_util.tree_unflatten(treedef, [_abstract_leaf(x) for _, x in flat])
    try:
      restored = mgr.restore(
        step, args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract_tree))
      )["state"]
    except Exception as e:  # noqa: BLE001
      raise CheckpointError(f"checkpoint {where} is corrupt or unreadable: {_first_line(e)}") from e
    leaves = jax.tree_util.tree_leaves(restored)
    leaves = [
      jax.random.wrap_key_data(v, impl=_key_impl(t)) if _is_key(t) else v
      for (_, t), v in zip(flat, leaves)
    ]
    return jax.tree_util.tree_unflatten(treedef, leaves)

  def restore_raw(
    self, *, step: int | None = None, which: Literal["latest", "best"] = "latest"
  ) -> Any:
    """The stored state without a template: nested dicts and lists of arrays (NamedTuple
    states come back as dicts of their fields, typed PRNG keys as raw ``uint32`` data).

    For a model the reader cannot rebuild (a user's own, saved by
    :func:`jaxunlearn.unlearn`); with a template, :meth:`restore` is exact.
    """
    return self._restore_item("state", ocp.args.StandardRestore(), which, step)

  def metadata(
    self, which: Literal["latest", "best"] = "latest", *, step: int | None = None
  ) -> dict:
    """The ``metadata`` dict saved with a checkpoint."""
    return self._restore_item("metadata", ocp.args.JsonRestore(), which, step)

  def _restore_item(self, item: str, args, which, step):
    """One Orbax item of a step (``state`` or ``metadata``), or a CheckpointError."""
    mgr, step = self._resolve(which, step)
    try:
      return mgr.restore(step, args=ocp.args.Composite(**{item: args}))[item]
    except Exception as e:  # noqa: BLE001
      what = f"checkpoint step {step}" if item == "state" else f"metadata of step {step}"
      fault = "is corrupt or unreadable" if item == "state" else "is unreadable"
      raise CheckpointError(f"{what} at {self.directory} {fault}: {_first_line(e)}") from e

  def metrics(
    self, which: Literal["latest", "best"] = "latest", *, step: int | None = None
  ) -> dict | None:
    """The ``metrics`` saved with a checkpoint (``None`` if none were given)."""
    _, step = self._resolve(which, step)
    return self._read_metrics(step)

  # -- lifecycle -------------------------------------------------------------

  def wait_until_finished(self) -> None:
    """Blocks until pending writes are done (saves are synchronous already)."""
    if self._mgr is not None:
      self._mgr.wait_until_finished()

  def close(self) -> None:
    if self._mgr is not None:
      self._mgr.close()
      self._mgr = None

  def __enter__(self) -> Checkpointer:
    return self

  def __exit__(self, *exc) -> None:
    self.close()

  def __repr__(self) -> str:
    best = f", best by {self.best_mode} {self.best_metric!r}" if self.keep_best else ""
    return f"Checkpointer({self.directory!r}, keep_latest={self.keep_latest}{best})"
