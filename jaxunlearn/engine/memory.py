"""How many runs fit in memory at once: the budget a batch of runs is chunked to.

A batch of runs (:func:`jaxunlearn.engine.unlearning.run_batch`) holds every run's
params, optimiser state and activations at once, so its memory grows with the number of
runs. The budget is ``JAXUNLEARN_MEMORY_BUDGET`` (bytes, or with a unit: ``512MiB``,
``4GiB``) when set; otherwise half of an accelerator's memory, or a quarter of the
host's RAM on CPU.
"""

from __future__ import annotations

import math
import os
import re

import jax

from jaxunlearn.errors import ConfigError

ENV = "JAXUNLEARN_MEMORY_BUDGET"
_UNITS = {"": 1, "b": 1, "kib": 2**10, "mib": 2**20, "gib": 2**30, "kb": 1e3, "mb": 1e6, "gb": 1e9}


def parse_bytes(text: str) -> int:
  """``"4GiB"`` → 4294967296; plain numbers are bytes.

  Examples:
    >>> parse_bytes("512MiB"), parse_bytes("1e9")
    (536870912, 1000000000)
  """
  m = re.fullmatch(r"\s*([0-9.eE+]+)\s*([a-zA-Z]*)\s*", str(text))
  unit = m.group(2).lower() if m else None
  try:
    if m is None or unit not in _UNITS:
      raise ValueError
    value = float(m.group(1)) * _UNITS[unit]
  except ValueError:
    raise ConfigError(f"{ENV}={text!r} is not a size; write bytes or e.g. 512MiB, 4GiB") from None
  if not (value > 0 and math.isfinite(value)):
    raise ConfigError(f"{ENV}={text!r} must be a positive size")
  return int(value)


def budget_bytes(device=None) -> int:
  """The memory a batch of runs may use on ``device`` (default: the first device)."""
  if os.environ.get(ENV):
    return parse_bytes(os.environ[ENV])
  device = device or jax.devices()[0]
  stats = device.memory_stats() if device.platform != "cpu" else None
  if stats and stats.get("bytes_limit"):
    return int(stats["bytes_limit"]) // 2
  return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 4


def program_bytes(compiled) -> int:
  """What a compiled program holds while it runs: arguments, outputs and temporaries
  (outputs that alias a donated argument counted once)."""
  stats = compiled.memory_analysis()
  if stats is None:  # a backend that does not say: count nothing, never chunk
    return 0
  return int(
    stats.argument_size_in_bytes
    + stats.output_size_in_bytes
    - stats.alias_size_in_bytes
    + stats.temp_size_in_bytes
  )


def runs_that_fit(total_bytes: int, runs: int, budget: int) -> int:
  """How many of ``runs`` fit in ``budget`` when all of them take ``total_bytes``
  (memory taken as linear in the number of runs; at least one).

  Examples:
    >>> runs_that_fit(800, 8, 1000), runs_that_fit(800, 8, 250), runs_that_fit(800, 8, 10)
    (8, 2, 1)
  """
  if total_bytes <= budget:
    return runs
  return max(1, min(runs, int(budget // max(1, math.ceil(total_bytes / runs)))))
