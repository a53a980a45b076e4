"""One writer per workdir: an OS lock taken before anything is written.

``fcntl.flock`` on ``<workdir>/.lock``: the kernel drops it when the process dies (a
SIGKILL included), so a killed run never leaves a stale lock and ``--resume`` takes it
as usual. The file holds the holder's pid, host, command and start time, which a second
process names in its one-line error, at once and before any work.

Example:
  >>> import tempfile
  >>> d = tempfile.mkdtemp()
  >>> with WorkdirLock(d):
  ...     WorkdirLock(d).acquire()
  Traceback (most recent call last):
  ...
  jaxunlearn.errors.WorkdirBusyError: ... is in use by pid ...
"""

from __future__ import annotations

import datetime
import fcntl
import json
import os
import pathlib
import socket
import sys

from jaxunlearn.errors import WorkdirBusyError

LOCK_NAME = ".lock"


class WorkdirLock:
  """Exclusive, non-blocking lock of a workdir (created if missing)."""

  def __init__(self, workdir):
    self.workdir = pathlib.Path(workdir)
    self._fd: int | None = None

  def acquire(self) -> WorkdirLock:
    self.workdir.mkdir(parents=True, exist_ok=True)
    path = self.workdir / LOCK_NAME
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
      fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
      holder = _read_holder(fd)
      os.close(fd)
      raise WorkdirBusyError(
        f"{self.workdir} is in use by pid {holder.get('pid', '?')} on "
        f"{holder.get('host', '?')} (started {holder.get('started', '?')}: "
        f"{holder.get('command', '?')}); wait for it, or choose another --workdir"
      ) from None
    info = {
      "pid": os.getpid(),
      "host": socket.gethostname(),
      "command": " ".join(sys.argv)[:300],
      "started": datetime.datetime.now().isoformat(timespec="seconds"),
    }
    os.ftruncate(fd, 0)
    os.pwrite(fd, json.dumps(info).encode(), 0)
    self._fd = fd
    return self

  @property
  def held(self) -> bool:
    return self._fd is not None

  def ensure(self) -> WorkdirLock:
    """Acquires the lock unless this object holds it already."""
    return self if self.held else self.acquire()

  def release(self) -> None:
    if self._fd is not None:
      fcntl.flock(self._fd, fcntl.LOCK_UN)
      os.close(self._fd)
      self._fd = None

  def __enter__(self) -> WorkdirLock:
    return self.acquire()

  def __exit__(self, *exc) -> None:
    self.release()


def _read_holder(fd: int) -> dict:
  try:
    return json.loads(os.pread(fd, 4096, 0).decode() or "{}")
  except (OSError, ValueError):
    return {}
