"""A readable report beside a comparison's tables: ``report.md`` with the figures, what
each shows, the results table, the exact command, the machine and the wall time.

Written by ``experiments.compare`` into every scenario's folder (and, for two or more
scenarios, one at the workdir root that links them and shows the ranks). Every link is
relative, so the report renders on GitHub wherever the folder is committed.
"""

from __future__ import annotations

import pathlib

from jaxunlearn.engine.records import machine_info

FROM_PYTHON = "(called from Python)"

# A scenario's figures, in the order the report shows them: (file, title, how to read it).
FIGURES = (
  (
    "gap_overview.png",
    "Distance to the retrained model",
    "Left: each method's Avg. Gap (mean |method − retrain| over UA, RA, TA and MIA) with "
    "its 95 % interval over seeds, best at the top; the dashed line at 0 is the retrained "
    "model, so a lower gap is better. Right: the signed gap of each metric (method − "
    "retrain, mean ± std) in the same order: a point left of the line falls short of the "
    "retrained model, one right of it overshoots. IGS is the red diamond.",
  ),
  (
    "ua_ta.png",
    "Forgetting vs utility",
    "Unlearning accuracy (x) against test accuracy (y), mean ± std over seeds, with the "
    "original (square) and the retrained (star) model. The dashed curves follow a "
    "method's tolerance sweep; the right panel zooms on the retrained model, where a good "
    "method lands, and writes the sweep values beside their points.",
  ),
  (
    "multiplier.png",
    "Multiplier trajectories",
    "The multiplier λ over the unlearning steps of seed 0 for the methods that keep one "
    "(symlog scale): how strongly each method weights the retain loss — IGS's λ grows "
    "while the retain loss stands above its bound and decays when it is back under it.",
  ),
  (
    "retain_loss.png",
    "Retain loss during unlearning",
    "The retain loss on each step's batch (seed 0, log scale): a curve that climbs means "
    "the method is paying for forgetting with the retain set's fit.",
  ),
)


def _table(markdown: str) -> str:
  """``results.md`` without its heading (the report has its own)."""
  lines = markdown.strip().splitlines()
  if lines and lines[0].startswith("#"):
    lines = lines[1:]
  return "\n".join(lines).strip()


def command_block(command: str | None) -> list[str]:
  return ["```", command, "```"] if command else [FROM_PYTHON]


def machine_lines(machine: dict) -> list[str]:
  versions = machine.get("versions") or {}
  return [
    f"- device: {machine.get('device_kind')} × {machine.get('device_count')} "
    f"({machine.get('backend')})",
    f"- CPUs: {machine.get('cpu_count')} ({machine.get('affinity_cpus')} usable); "
    f"{machine.get('processor')}; {machine.get('platform')}",
    "- packages: " + ", ".join(f"{k} {v}" for k, v in versions.items()),
    f"- XLA_FLAGS: {machine.get('xla_flags') or '(unset)'}",
    f"- date (UTC): {machine.get('date_utc')}",
  ]


def write_report(
  results: dict, out_dir, *, command: str | None, wall_seconds: float
) -> pathlib.Path:
  """Writes ``out_dir/report.md`` for one scenario's comparison and returns its path.

  Needs ``results.md`` (``experiments.compare.write_tables``) in ``out_dir``; embeds the
  figures found there. ``command``: the command line that ran the comparison, or None
  when it was called from Python.
  """
  out_dir = pathlib.Path(out_dir)
  machine = results.get("machine") or machine_info()
  lines = [
    f"# {results['scenario']}: IGS and the baselines against the retrained model",
    "",
    results.get("description", ""),
    "",
  ]
  for name, title, caption in FIGURES:
    if (out_dir / name).exists():
      lines += [f"## {title}", "", f"![{title}]({name})", "", caption, ""]
  lines += ["## Results", ""]
  results_md = out_dir / "results.md"
  if results_md.exists():
    lines += [_table(results_md.read_text()), ""]
  lines += [
    "The same numbers as [results.csv](results.csv) and, with every run, "
    "[results.json](results.json).",
    "",
    "## How this was made",
    "",
    *command_block(command),
    "",
    *machine_lines(machine),
    f"- wall time: {wall_seconds:.1f} s for the comparison"
    + (
      f" (the retrained model's training: {results['retrain_seconds']:.1f} s)"
      if results.get("retrain_seconds") is not None
      else ""
    ),
    "",
  ]
  path = out_dir / "report.md"
  path.write_text("\n".join(lines))
  return path


def write_overview(
  all_results: list[dict], workdir, *, command: str | None, wall_seconds: float
) -> pathlib.Path:
  """Writes ``workdir/report.md`` over several scenarios: a link to each one's report,
  the rank heat map (``ranks.png``) and the rank table (``ranks.md``) when present."""
  workdir = pathlib.Path(workdir)
  lines = ["# IGS and the baselines across scenarios", "", "## Scenarios", ""]
  for r in all_results:
    name = r["scenario"]
    lines.append(f"- [{name}]({name}/report.md): {r.get('description', '')}")
  lines += ["", "## Ranks", ""]
  if (workdir / "ranks.png").exists():
    lines += [
      "![Rank by Avg. Gap in each scenario](ranks.png)",
      "",
      "Each cell is a method's rank by mean Avg. Gap in that scenario (1 = closest to "
      "the retrained model; diverged = last); the last column is the mean rank, by which "
      "the rows are sorted. Greener is better.",
      "",
    ]
  if (workdir / "ranks.md").exists():
    lines += [_table((workdir / "ranks.md").read_text()), ""]
  lines += [
    "## How this was made",
    "",
    *command_block(command),
    "",
    *machine_lines(machine_info()),
    f"- wall time: {wall_seconds:.1f} s in all",
    "",
  ]
  path = workdir / "report.md"
  path.write_text("\n".join(lines))
  return path
