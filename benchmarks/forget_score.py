"""How long the forget score takes: populations × forget examples, per example and in all.

    python -m benchmarks.forget_score --out docs/results/forget_score_cpu.json

Synthetic confidences (two Gaussian populations per example; the cost does not depend on
the values, only on the ranges, and the interval rule's 160,000 thresholds dominate), the
challenge's own size (512 × 1,000) among them. Besides the forget score, the threshold-free
likelihood-ratio test.
"""

from __future__ import annotations

import time

import numpy as np

from benchmarks import harness
from experiments.cli import parser
from jaxunlearn import metrics

SIZES = ((64, 126), (256, 126), (512, 1000))


def measure(sizes=SIZES, seed: int = 0) -> dict:
  rng = np.random.default_rng(seed)
  rows = []
  for models, examples in sizes:
    u = rng.normal(0.3, 1.0, (models, examples))
    r = rng.normal(0.0, 1.2, (models, examples))
    t = time.perf_counter()
    score = metrics.forget_score(u, r)
    score_s = time.perf_counter() - t
    t = time.perf_counter()
    metrics.lira_separability(u, r)
    lira_s = time.perf_counter() - t
    rows.append(
      {
        "models": models,
        "examples": examples,
        "forget_score_seconds": score_s,
        "ms_per_example": 1000 * score_s / examples,
        "lira_seconds": lira_s,
        "score": score.score,
      }
    )
  return {"rows": rows}


def to_markdown(report: dict) -> str:
  lines = [
    "| models × examples | forget score (s) | per example (ms) | LR test (s) |",
    "|---|---:|---:|---:|",
  ]
  for r in report["rows"]:
    lines.append(
      f"| {r['models']} × {r['examples']} | {r['forget_score_seconds']:.2f} | "
      f"{r['ms_per_example']:.1f} | {r['lira_seconds']:.2f} |"
    )
  return "\n".join(lines) + "\n"


def build_parser():
  p = parser(__doc__)
  p.add_argument("--out", help="write the report (JSON, and markdown beside it) here")
  p.add_argument("--quick", action="store_true", help="small sizes only (a smoke run)")
  return p


def main(argv=None):
  args = build_parser().parse_args(argv)
  report = measure(((16, 8), (32, 8)) if args.quick else SIZES)
  text = to_markdown(report)
  if args.out:
    harness.write_report(args.out, report, to_markdown)
  print(text)


if __name__ == "__main__":
  main()
