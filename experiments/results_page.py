"""The documentation's results page, written from the committed results.

    python -m experiments.results_page --out docs/results.md

Every table is rebuilt from the JSON the experiments committed under ``docs/results``
(by the same functions that wrote their tables), and every run's full report is linked;
``tests/experiments/test_results_page.py`` checks that the committed page is what this
writes, so the page cannot drift from the files.
"""

from __future__ import annotations

import json
import pathlib

from experiments import audit_report, compare, ddpm, igs_variants, results_schema, tofu
from experiments.cli import main_guard, parser

ROOT = pathlib.Path(__file__).resolve().parents[1]
RESULTS = ROOT / "docs" / "results"
# The audits of the headline table, in its column order.
AUDITS = ("digits-class@random-0.1", "digits-class", "mnist-random10")
STUDIES = (
  "study-digits-random10",
  "study-mnist-random10",
  "study-digits-class",
  "study-frontier-digits-random10",
  "confirm-digits-random5",
  "confirm-digits-class",
  "digits-class@random-0.1-N512",
)


def _json(path: pathlib.Path) -> dict:
  return json.loads(path.read_text())


def _results(path: pathlib.Path) -> dict:
  return results_schema.read(path)


def _link(folder: pathlib.Path, name: str, docs: pathlib.Path) -> str:
  return f"[{name}]({(folder / 'report.md').relative_to(docs).as_posix()})"


def _rel(path: pathlib.Path, docs: pathlib.Path) -> str:
  return path.relative_to(docs).as_posix()


def _comparisons(group: pathlib.Path, docs: pathlib.Path) -> list[str]:
  lines = []
  for folder in sorted(p.parent for p in group.glob("*/results.json")):
    results = _results(folder / "results.json")
    lines += [
      compare.results_table(results),
      f"Full report: {_link(folder, results['scenario'], docs)}.",
      "",
    ]
  if (group / "ranks.json").exists():
    lines += [compare.rank_table(_json(group / "ranks.json")), ""]
  return lines


def page(results: pathlib.Path = RESULTS) -> str:
  """The results page (markdown) from the committed results under ``results``."""
  docs = results.parent
  audits = [_json(results / "audit" / a / "results.json") for a in AUDITS]
  lines = [
    "# Results",
    "",
    "Written by `python -m experiments.results_page --out docs/results.md` from the JSON "
    "under `docs/results/` (a test checks that this page is what it writes). Every number "
    "was measured on a 2-core CPU machine, offline; how to rerun each is in "
    "[Reproducing results](guides/reproduce.md).",
    "",
    "## Audit: per-example forget score over populations",
    "",
    "Each cell: the NeurIPS 2023 challenge's forget score (1 = every forget example's "
    "confidence is distributed as under retraining) and, in brackets, the accuracy (%) of "
    "a likelihood-ratio test telling unlearned from retrained models (50 = chance).",
    "",
    audit_report.summary_table(audits),
    "Reports: " + ", ".join(_link(results / "audit" / a, a, docs) for a in AUDITS + STUDIES) + ".",
    "",
    "### The cost–forgetting frontier",
    "",
    "Forget score against work (rows through a backward pass, as a share of retraining's): "
    "partial retraining from a fresh init as the reference curve, every method a point "
    "(IGS in red), the ceiling dashed.",
    "",
    *(
      f"![{a}: the cost–forgetting frontier]({_rel(results / 'audit' / a / 'frontier.png', docs)})"
      for a in AUDITS
    ),
    "",
    "## The default comparison (`python -m experiments.compare`)",
    "",
    *_comparisons(results / "compare", docs),
    "## Tuned, on a CNN (retrain-blind tuning)",
    "",
    *_comparisons(results / "tuned", docs),
    "### The same tuned comparison with its seeds batched in one program",
    "",
    *_comparisons(results / "tuned_batched", docs),
    "## IGS variants",
    "",
    igs_variants.variants_table(_json(results / "igs_variants" / "igs_variants.json")),
    "## Generative unlearning: a class-conditional DDPM",
    "",
  ]
  for folder in sorted(p.parent for p in (results / "ddpm").glob("*/results.json")):
    lines += [f"### {folder.name}", "", ddpm.table(_results(folder / "results.json")), ""]
  lines += [
    "## Language-model unlearning: TOFU-style fictitious authors",
    "",
    "Written by `python -m experiments.compare --scenario tofu-tiny` (see "
    "[Language models](guides/language-models.md)); forget quality is a KS p-value "
    "(higher: closer to the retain model), model utility a harmonic mean (higher: more "
    "kept), privleak ≈ 0 for the retain model and −100 for one that still remembers.",
    "",
  ]
  for scenario in sorted(p for p in (results / "tofu").glob("*") if p.is_dir()):
    for split in sorted(scenario.glob("forget*/results.json")):
      lines += [tofu.table(_results(split)), ""]
    plane = scenario / "plane.png"
    if plane.exists():
      rel = plane.relative_to(docs).as_posix()
      lines += [f"![{scenario.name}: forget quality against model utility]({rel})", ""]
  lines += ["## Benchmarks", ""]
  for md in sorted(results.glob("*.md")):
    lines.append(f"- [{md.stem}]({md.relative_to(docs).as_posix()})")
  return "\n".join(lines).rstrip() + "\n"


def build_parser():
  p = parser(__doc__)
  p.add_argument("--out", default=str(ROOT / "docs" / "results.md"), help="where to write it")
  return p


@main_guard
def main(argv=None):
  args = build_parser().parse_args(argv)
  pathlib.Path(args.out).write_text(page())
  print(args.out)


if __name__ == "__main__":
  main()
