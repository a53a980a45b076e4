"""Rank methods across finished comparisons: each method's rank by Avg. Gap per scenario.

    python -m experiments.ranks runs/tuned [runs/compare ...] --out runs/ranks.md

Reads every ``<dir>/<scenario>/results.json`` under the given directories (as written by
``experiments.compare``) and writes the table (and ``.json`` and a heat map, ``.png``,
beside it).
"""

from __future__ import annotations

import pathlib

from experiments import plots, results_schema
from experiments.cli import main_guard, parser
from experiments.compare import rank_summary, write_rank_summary
from jaxunlearn.engine.records import write_json_atomic
from jaxunlearn.errors import ConfigError


def build_parser():
  p = parser(__doc__)
  p.add_argument("dirs", nargs="+", help="workdirs of experiments.compare")
  p.add_argument("--out", required=True, help="markdown file to write (JSON and PNG beside it)")
  return p


def parse_args(argv=None):
  return build_parser().parse_args(argv)


@main_guard
def main(argv=None):
  args = parse_args(argv)
  paths = sorted(q for d in args.dirs for q in pathlib.Path(d).glob("*/results.json"))
  if not paths:
    raise ConfigError(f"no */results.json under {', '.join(args.dirs)}; run experiments.compare")
  summary = rank_summary([results_schema.read(q) for q in paths])
  out = pathlib.Path(args.out)
  out.parent.mkdir(parents=True, exist_ok=True)
  write_rank_summary(summary, out)
  write_json_atomic(out.with_suffix(".json"), summary)
  plots.rank_heatmap(summary, out.with_suffix(".png"))
  print(out.read_text())


if __name__ == "__main__":
  main()
