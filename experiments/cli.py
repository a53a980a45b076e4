"""Shared command-line plumbing: one-line errors, no traceback dump, non-zero exit."""

from __future__ import annotations

import functools
import sys

from jaxunlearn.checkpoint import CheckpointError
from jaxunlearn.config import ConfigError
from jaxunlearn.data import DatasetNotPreparedError, ForgetSpecError

# OSError covers a workdir that cannot be created or written (a file on the path, no
# permission, disk full): the user's problem, reported in one line like the others.
USER_ERRORS = (ConfigError, ForgetSpecError, DatasetNotPreparedError, CheckpointError,
               ValueError, TypeError, OSError)


def main_guard(fn):
  """Runs ``fn``; a user error prints ``error: ...`` on stderr and exits with status 2."""
  @functools.wraps(fn)
  def wrapper(argv=None):
    try:
      return fn(argv)
    except USER_ERRORS as e:
      message = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
      print(f"error: {message}", file=sys.stderr)
      raise SystemExit(2)
  return wrapper
