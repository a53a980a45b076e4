"""What runs write beside their checkpoints: atomic JSON, checked workdirs, machine info."""

from __future__ import annotations

import datetime
import json
import os
import pathlib
import platform
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
