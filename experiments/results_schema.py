"""One results schema for every scenario: classifier comparisons, DDPM unlearning, and
the ones to come. Every ``results.json`` the experiments write has:

* ``schema`` — :data:`SCHEMA`; ``scenario``, ``forget``, ``seeds``;
* ``metrics`` — the scenario's reported metrics, in table order (``UA RA TA MIA LossAUC``
  for a classifier, ``UA RA FID`` for a DDPM);
* ``reference`` — ``{"original": {metric: value}, "retrain": {metric: value}}``;
* ``summary`` — per method: ``[mean, std]`` over seeds of every metric, of ``AvgGap``
  and of ``seconds`` (a typical run time: the classifier comparison gives the median over
  seeds without the compile), with ``n`` (runs) and ``diverged``;
* ``runs`` — one record per run: ``method``, ``seed``, ``metrics`` (its metrics),
  ``AvgGap``, ``seconds``, ``compile_seconds``;

and whatever the scenario adds (``machine``, ``budget``, ``tuning``, histories). The
report, ranks, plots and the results page read only these keys; :func:`read` upgrades a
file written before the schema (a DDPM file kept ``original``, ``retrain`` and flat runs),
so the committed results read as they are.
"""

from __future__ import annotations

import json
import math
import pathlib

from jaxunlearn import metrics as metrics_lib

SCHEMA = 1
CLASSIFIER_METRICS = tuple(metrics_lib.REPORTED_KEYS)


def summarize(runs: list[dict], keys) -> dict:
  """Per method (in order of appearance): ``[mean, std]`` of each metric in ``keys``, of
  ``AvgGap`` and ``seconds``, over its runs whose metrics are finite; ``n``, ``diverged``.

  Examples:
    >>> runs = [{"method": "igs", "metrics": {"UA": u}, "AvgGap": g, "seconds": 1.0}
    ...         for u, g in ((10.0, 1.0), (20.0, 3.0))]
    >>> s = summarize(runs, ["UA"])["igs"]
    >>> s["UA"][0], round(s["UA"][1], 2), s["AvgGap"][0], s["n"]  # std over seeds (ddof 1)
    (15.0, 7.07, 2.0, 2)
  """
  out: dict = {}
  for method in dict.fromkeys(r["method"] for r in runs):
    rs = [r for r in runs if r["method"] == method]
    ok = [r for r in rs if all(math.isfinite(r["metrics"][k]) for k in keys)]
    entry = {"n": len(rs), "diverged": len(rs) - len(ok)}
    for k in keys:
      entry[k] = list(metrics_lib.mean_std([r["metrics"][k] for r in ok])) if ok else [math.nan] * 2
    for k in ("AvgGap", "seconds"):
      entry[k] = list(metrics_lib.mean_std([r[k] for r in ok])) if ok else [math.nan] * 2
    out[method] = entry
  return out


def upgrade(results: dict) -> dict:
  """``results`` in the current schema (a copy when it had to change)."""
  if results.get("schema") == SCHEMA:
    return results
  if "summary" in results:  # a classifier comparison (its summary is the schema's)
    return {"schema": SCHEMA, "metrics": list(CLASSIFIER_METRICS), **results}
  if "original" in results and "runs" in results:  # a DDPM run before the schema
    keys = ("UA", "RA", "FID")
    flat = ("method", "seed", "AvgGap", "seconds", "compile_seconds")
    runs = [
      {**{k: r[k] for k in flat if k in r},
       "metrics": {k: v for k, v in r.items() if k not in flat}}
      for r in results["runs"]
    ]  # fmt: skip
    rest = {k: v for k, v in results.items() if k not in ("original", "retrain", "runs")}
    return {
      "schema": SCHEMA,
      "scenario": "digits-ddpm-class",
      "metrics": list(keys),
      **rest,
      "reference": {"original": results["original"], "retrain": results["retrain"]},
      "summary": summarize(runs, keys),
      "runs": runs,
    }
  raise ValueError("not a results file of the experiments (no reference, summary or runs)")


def read(path) -> dict:
  """A ``results.json`` in the current schema."""
  return upgrade(json.loads(pathlib.Path(path).read_text()))
