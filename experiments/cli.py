"""Shared command-line plumbing: one-line errors for what the user can fix, tracebacks for bugs."""

from __future__ import annotations

import argparse
import functools
import logging
import sys

from jaxunlearn.engine import stopping
from jaxunlearn.errors import JaxUnlearnError

# The project's own errors name the fix; OSError covers a workdir that cannot be created
# or written (a file on the path, no permission, disk full). Anything else is a bug in
# our code and keeps its traceback.
USER_ERRORS = (JaxUnlearnError, OSError)


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
  """Defaults after every help text that has one (not "(default: None)" on a required or
  unset flag, nor "(default: [])" on a repeatable one); the module docstring's examples
  kept as written."""

  def _get_help_string(self, action):
    # An empty list is a repeatable flag's "none given", not a default worth printing.
    if action.required or action.default is None or action.default == []:
      return action.help
    return super()._get_help_string(action)


# One text for every command that takes a forget set.
FORGET_HELP = "forget set: class:K[,K2] | random:FRACTION|COUNT | ids:PATH | rows:PATH"


def _prog(depth: int = 2) -> str | None:
  """``python -m experiments.unlearn`` for the calling command's module (its
  ``__spec__`` names it even when it runs as ``__main__``)."""
  spec = sys._getframe(depth).f_globals.get("__spec__")  # noqa: SLF001
  return f"python -m {spec.name}" if spec is not None else None


def parser(doc: str) -> argparse.ArgumentParser:
  """The parser of a command: its docstring's first line as the description, the rest
  (usage examples) as the epilog, every flag's default shown in ``--help``, and the
  usage line the way the command is run (``python -m experiments.unlearn``).

  Every flag needs a ``help=`` text (``tests/experiments/test_cli_help.py`` checks).
  """
  first, _, rest = doc.strip().partition("\n")
  return argparse.ArgumentParser(
    prog=_prog(), description=first, epilog=rest.strip(), formatter_class=HelpFormatter
  )


def quiet_libraries() -> None:
  """Only errors from absl (Orbax's logger): its INFO/WARNING lines are noise to a user."""
  logging.getLogger("absl").setLevel(logging.ERROR)


COMPILE_CACHE_ENV = "JAXUNLEARN_COMPILE_CACHE"


def enable_compile_cache() -> str | None:
  """JAX's persistent compilation cache for the commands, on by default.

  ``$JAXUNLEARN_COMPILE_CACHE`` names the folder (default
  ``~/.cache/jaxunlearn/jax-compile``); ``off`` (or ``0``) disables it. Executables
  that took at least 0.1 s to compile are kept (JAX's default, 1 s, would skip every
  unlearning step on CPU: they compile in 0.3–0.7 s), so a rerun, a resumed run or
  another seed of the same shapes loads the step instead of compiling it again. The
  cache is keyed by JAX's own hash of the program, backend and versions; a stale entry
  is never used. Returns the folder, or ``None`` when off.
  """
  import os  # noqa: PLC0415
  import pathlib  # noqa: PLC0415

  import jax  # noqa: PLC0415

  value = os.environ.get(COMPILE_CACHE_ENV, "")
  if value.lower() in ("off", "0", "false", "no"):
    return None
  folder = pathlib.Path(value or "~/.cache/jaxunlearn/jax-compile").expanduser()
  try:
    folder.mkdir(parents=True, exist_ok=True)
  except OSError:
    return None  # a read-only home: run without the cache rather than fail
  jax.config.update("jax_compilation_cache_dir", str(folder))
  jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.1)
  jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
  return str(folder)


def main_guard(fn):
  """Runs ``fn``; a user error prints ``error: ...`` on stderr and exits with status 2."""

  @functools.wraps(fn)
  def wrapper(argv=None):
    quiet_libraries()
    enable_compile_cache()
    try:
      with stopping.handle_signals():
        return fn(argv)
    except stopping.Stopped as e:
      print(f"stopped: {e}", file=sys.stderr)
      raise SystemExit(130) from e
    except USER_ERRORS as e:
      message = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
      print(f"error: {message}", file=sys.stderr)
      raise SystemExit(2) from e

  return wrapper
