"""What runs write beside their checkpoints: atomic JSON, checked workdirs, machine info."""

from __future__ import annotations

import datetime
import json
import os
import pathlib
import platform
import time
import uuid

import jax

from jaxunlearn.engine.checkpoint import package_versions
from jaxunlearn.errors import ConfigError


def write_json_atomic(path, obj, *, indent: int = 1) -> None:
  """Writes ``obj`` as JSON to ``path`` through a temporary file and a rename, so a
  killed run never leaves a half-written file. The temporary file is the writer's own
  (pid and a random suffix): two processes writing the same file at once (the workers
  of one comparison finishing together) each rename a whole file, the last one wins,
  and neither finds its temporary file taken (a shared ``.tmp`` name made one fail).

  Examples:
    >>> import tempfile, pathlib
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "r.json"
    >>> write_json_atomic(p, {"a": 1}); json.loads(p.read_text())
    {'a': 1}
  """
  path = pathlib.Path(path)
  tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:12]}.tmp")
  try:
    tmp.write_text(json.dumps(obj, indent=indent))
    os.replace(tmp, path)
  finally:
    tmp.unlink(missing_ok=True)


def remove_stale_temporaries(folder) -> list[pathlib.Path]:
  """Removes the temporary files of :func:`write_json_atomic` in ``folder`` whose writer
  is gone: a SIGKILL between the write and the rename leaves one behind (the ``.json``
  itself stays whole or absent). A live writer's file (its pid still runs: another
  worker of the same comparison) is left alone. Returns the files removed.

  Examples:
    >>> import tempfile, pathlib
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> tmp = d / ".r.json.999999999.0123456789ab.tmp"  # no such pid
    >>> _ = tmp.write_text("{"); os.utime(tmp, (0, 0))  # written long ago
    >>> [p.name for p in remove_stale_temporaries(d)]
    ['.r.json.999999999.0123456789ab.tmp']
  """
  removed = []
  for tmp in pathlib.Path(folder).glob(".*.json.*.tmp"):
    pid = tmp.name.rsplit(".", 3)[-3]
    if pid.isdigit() and not _alive(int(pid)) and _older_than(tmp, STALE_SECONDS):
      tmp.unlink(missing_ok=True)
      removed.append(tmp)
  return removed


# A writer renames its temporary file milliseconds after writing it: one older than this
# whose pid is not running here is dead even if it came from another machine sharing the
# folder (where its pid means nothing).
STALE_SECONDS = 2.0


def _older_than(path: pathlib.Path, seconds: float) -> bool:
  try:
    return time.time() - path.stat().st_mtime > seconds
  except FileNotFoundError:  # renamed meanwhile
    return False


def _alive(pid: int) -> bool:
  try:
    os.kill(pid, 0)  # PermissionError would mean another user's process: running
  except (ProcessLookupError, OverflowError):  # no such process (or no such pid at all)
    return False
  except PermissionError:
    pass
  return True


def check_workdir(workdir) -> pathlib.Path:
  """``workdir`` as a path; refuses one that exists as a file (before any work)."""
  workdir = pathlib.Path(workdir)
  if workdir.exists() and not workdir.is_dir():
    raise ConfigError(f"workdir {workdir} is a file, not a directory")
  return workdir


def machine_info() -> dict:
  """The machine and package versions a measurement came from."""
  dev = jax.devices()[0]
  return {
    "backend": jax.default_backend(),
    "device_kind": getattr(dev, "device_kind", str(dev)),
    "device_count": jax.device_count(),
    "cpu_count": os.cpu_count(),
    "affinity_cpus": (len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None),
    "platform": platform.platform(),
    "processor": platform.processor() or platform.machine(),
    "python": platform.python_version(),
    "versions": package_versions(),
    "xla_flags": os.environ.get("XLA_FLAGS"),
    "date_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
  }
