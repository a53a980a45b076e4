"""What every benchmark here does the same way: time calls interleaved, write its report.

* :func:`interleaved` -- each callable once per round, the order rotating round after
  round (load drift hits all alike), median and minimum over rounds after warm-up; a
  JAX result is waited for (``jax.block_until_ready``), anything else passes through.
* :func:`write_report` -- the report as JSON (atomically) at ``out`` and its markdown
  table beside it (``.md``).
"""

from __future__ import annotations

import pathlib
import time

import jax
import numpy as np

from jaxunlearn.engine.records import write_json_atomic


def interleaved(fns: dict, args: tuple = (), rounds: int = 5, warmup: int = 1) -> dict:
  """``{name: {"median_ms", "mean_ms", "min_ms", "max_ms", "n"}}`` of each ``fn(*args)``
  in ``fns``."""
  for _ in range(warmup):
    for f in fns.values():
      jax.block_until_ready(f(*args))
  names = list(fns)
  times = {k: [] for k in names}
  for r in range(rounds):
    for k in names[r % len(names) :] + names[: r % len(names)]:
      t0 = time.perf_counter()
      jax.block_until_ready(fns[k](*args))
      times[k].append(1000 * (time.perf_counter() - t0))
  return {
    k: {
      "median_ms": float(np.median(v)),
      "mean_ms": float(np.mean(v)),
      "min_ms": float(np.min(v)),
      "max_ms": float(np.max(v)),
      "n": len(v),
    }
    for k, v in times.items()
  }


def write_report(out, report: dict, to_markdown) -> str:
  """Writes ``report`` to ``out`` (JSON) and ``to_markdown(report)`` beside it; returns
  the markdown."""
  out = pathlib.Path(out)
  out.parent.mkdir(parents=True, exist_ok=True)
  write_json_atomic(out, report, indent=2)
  text = to_markdown(report)
  out.with_suffix(".md").write_text(text)
  return text
