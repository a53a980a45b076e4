"""Shared command-line plumbing: one-line errors for what the user can fix, tracebacks for bugs."""

from __future__ import annotations

import functools
import sys

from jaxunlearn.errors import JaxUnlearnError

# The project's own errors name the fix; OSError covers a workdir that cannot be created
# or written (a file on the path, no permission, disk full). Anything else is a bug in
# our code and keeps its traceback.
USER_ERRORS = (JaxUnlearnError, OSError)


def main_guard(fn):
  """Runs ``fn``; a user error prints ``error: ...`` on stderr and exits with status 2."""

  @functools.wraps(fn)
  def wrapper(argv=None):
    try:
      return fn(argv)
    except USER_ERRORS as e:
      message = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
      print(f"error: {message}", file=sys.stderr)
      raise SystemExit(2) from e

  return wrapper
