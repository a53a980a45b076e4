"""Shared command-line plumbing: one-line errors for what the user can fix, tracebacks for bugs."""

from __future__ import annotations

import argparse
import functools
import logging
import sys

from jaxunlearn.errors import JaxUnlearnError

# The project's own errors name the fix; OSError covers a workdir that cannot be created
# or written (a file on the path, no permission, disk full). Anything else is a bug in
# our code and keeps its traceback.
USER_ERRORS = (JaxUnlearnError, OSError)


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
  """Defaults after every help text; the module docstring's examples kept as written."""


def parser(doc: str) -> argparse.ArgumentParser:
  """The parser of a command: its docstring's first line as the description, the rest
  (usage examples) as the epilog, and every flag's default shown in ``--help``.

  Every flag needs a ``help=`` text (``tests/experiments/test_cli_help.py`` checks).
  """
  first, _, rest = doc.strip().partition("\n")
  return argparse.ArgumentParser(
    description=first, epilog=rest.strip(), formatter_class=_HelpFormatter
  )


def quiet_libraries() -> None:
  """Only errors from absl (Orbax's logger): its INFO/WARNING lines are noise to a user."""
  logging.getLogger("absl").setLevel(logging.ERROR)


def main_guard(fn):
  """Runs ``fn``; a user error prints ``error: ...`` on stderr and exits with status 2."""

  @functools.wraps(fn)
  def wrapper(argv=None):
    quiet_libraries()
    try:
      return fn(argv)
    except USER_ERRORS as e:
      message = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
      print(f"error: {message}", file=sys.stderr)
      raise SystemExit(2) from e

  return wrapper
