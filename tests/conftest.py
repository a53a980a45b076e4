import os
import shutil
import tempfile

# Tests run on CPU with deterministic settings; no network, no GPU needed.
os.environ.setdefault("JAX_PLATFORMS", "cpu")

# One persistent compilation cache for the whole run, made fresh for it and removed after:
# both pytest-xdist workers and every command a test starts in a subprocess (the commands
# turn the cache on, as they do for users: experiments.cli.enable_compile_cache) read a
# program another process compiled instead of compiling it again, and no run reads what an
# earlier one, or the user's ~/.cache, left. Set JAXUNLEARN_COMPILE_CACHE=off to compile
# everything in every process.
_CACHE_ENV = "JAXUNLEARN_COMPILE_CACHE"
_OWNS_CACHE = "PYTEST_XDIST_WORKER" not in os.environ and _CACHE_ENV not in os.environ
if _OWNS_CACHE:  # the controller (or a run without xdist); workers inherit the variable
  os.environ[_CACHE_ENV] = tempfile.mkdtemp(prefix="jaxunlearn-test-compile-cache-")


def pytest_configure(config):
  from experiments import cli

  cli.enable_compile_cache()


def pytest_unconfigure(config):
  if _OWNS_CACHE:
    shutil.rmtree(os.environ[_CACHE_ENV], ignore_errors=True)


_NUMBER = r"-?\d+(?:\.\d+)?(?:e-?\d+)?"


def assert_printed_as_shown(shown: str, printed: str, *, rel: float = 0.05, abs_: float = 0.02):
  """The lines a page shows equal what its example printed: the words exactly, each
  number to ``rel`` (relative) or ``abs_`` (absolute), the tolerance the pages state for
  another machine (another CPU, BLAS or JAX version sums in another order). A check on
  the words alone let a page's numbers drift."""
  import math
  import re

  shown_lines, printed_lines = shown.strip().splitlines(), printed.strip().splitlines()
  assert len(shown_lines) == len(printed_lines), (shown_lines, printed_lines)
  for a, b in zip(shown_lines, printed_lines):
    assert re.sub(_NUMBER, "#", a) == re.sub(_NUMBER, "#", b), (a, b)
    for x, y in zip(re.findall(_NUMBER, a), re.findall(_NUMBER, b)):
      assert math.isclose(float(x), float(y), rel_tol=rel, abs_tol=abs_), (x, y, a, b)


def import_or_skip(name: str, install: str):
  """``pytest.importorskip`` outside CI; under ``CI=true`` (where ``.ci/run`` installs
  ``install``) a missing package fails, so nothing CI could run is skipped silently."""
  import pytest

  if os.environ.get("CI") == "true":
    try:
      return __import__(name, fromlist=["_"])
    except ImportError as e:
      pytest.fail(f"CI=true but {name} is missing ({install}): {e}", pytrace=False)
  return pytest.importorskip(name, reason=f"{name} is not installed ({install})")


# The scripts that wrote the committed fixtures import torch and transformers (the
# llm-reference extra): they are rerun by hand, never collected.
collect_ignore_glob = ["fixtures/*"]
