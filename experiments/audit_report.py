"""What ``experiments.audit`` writes beside ``results.json``: the table (``results.md``),
the per-example ε histograms, the two confidence distributions of a few forget examples,
and ``report.md`` that shows them with how to read them, the command and the machine."""

from __future__ import annotations

import math
import pathlib

import matplotlib

matplotlib.use("Agg")  # files only, no display needed
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from experiments.plots import HIGHLIGHT, HIGHLIGHT_COLOUR, OTHER_COLOUR  # noqa: E402
from experiments.report import command_block, machine_lines  # noqa: E402

RETRAIN_COLOUR = "tab:gray"


def ranked(results: dict) -> list[str]:
  """Methods by forget score, best first (ties: the higher final score)."""
  rows = results["methods"]
  return sorted(rows, key=lambda m: (-rows[m]["forget_score"], -rows[m]["final_score"]))


def table(results: dict) -> str:
  n, half = results["models"], results["ceiling"]["models"]
  r = results["retrained"]
  lines = [
    f"# {results['scenario']}: forget score over {n} unlearned runs against {n} retrained models",
    "",
    f"Forget set: {results['forget']} ({results['forget_rows']} rows). Forget score: the "
    f"NeurIPS 2023 challenge's (1 = indistinguishable from retraining on every example; "
    f"examples score 0 from ε = {_max_eps(results)} on). "
    f"Halves: the method's score on each of two disjoint halves of both populations ({half} "
    f"unlearned against {half} retrained, the N of the ceiling row); two close numbers say the "
    "score is stable. The score depends on N (the largest ε it can show is ⌈ln(N − 1)⌉), so "
    "hold the halves, not the full score, against the ceiling. "
    "Final = forget score × RA/RA_retrain × TA/TA_retrain. LR test: balanced accuracy and "
    "AUC (%) of a per-example Gaussian likelihood-ratio test telling an unlearned model from "
    "a retrained one (50 = indistinguishable). Shift: median over examples of |median "
    "confidence unlearned − retrained|; spread: median over examples of the ratio of their "
    "standard deviations (1 = as wide as retraining). UA, RA, TA: mean ± std over the population. "
    "Work: rows through a backward pass, as a share of retraining's (its epochs × the "
    "retained rows). Cost: seconds to run the whole population (compile included).",
    "",
    "| method | forget score | halves | final | LR test acc. | LR AUC | shift | spread | UA | RA "
    "| TA | work | cost s |",
    "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
  ]

  def acc(row, k):
    return f"{row[k]:.2f} ± {row[k + '_std']:.2f}"

  def line(name, row, cost):
    halves = row.get("forget_score_halves")
    h = f"{halves[0]:.3f} / {halves[1]:.3f}" if halves else "—"
    work = f"{100 * row['work']:.1f} %" if "work" in row else "—"
    return (
      f"| {name} | {row['forget_score']:.3f} | {h} | {row['final_score']:.3f} | "
      f"{row['lira_accuracy']:.1f} | {row['lira_auc']:.1f} | {row['shift']:.2f} | "
      f"{row['spread_ratio']:.2f} | {acc(row, 'UA')} | "
      f"{acc(row, 'RA')} | {acc(row, 'TA')} | {work} | {cost} |"
    )

  for m in ranked(results):
    row = results["methods"][m]
    name = f"**{m}**" if m == HIGHLIGHT else m
    lines.append(line(name, row, f"{row['seconds']:.1f}"))
  for row in results.get("frontier", {}).values():
    label = f"*retraining, {row['epochs']} of its epochs (fresh init)*"
    lines.append(line(label, row, f"{row['seconds']:.1f}"))
  lines.append(line("original (no unlearning)", results["original"], "0"))
  c = results["ceiling"]
  lines += [
    f"| *retrain vs retrain ({half} vs {half}: the ceiling at the halves' N)* | "
    f"{c['forget_score']:.3f} | | | {c['lira_accuracy']:.1f} | {c['lira_auc']:.1f} | "
    f"{c['shift']:.2f} | {c['spread_ratio']:.2f} | "
    f"{acc(r, 'UA')} | {acc(r, 'RA')} | {acc(r, 'TA')} | 100 % | {r['seconds']:.1f} |",
    "",
  ]
  return "\n".join(lines)


def _max_eps(results) -> str:
  rows = list(results["methods"].values()) or [results["original"]]
  return f"{rows[0]['max_epsilon']:g}"


def epsilon_figure(results: dict) -> plt.Figure:
  """Per method, the histogram of per-example ε in the score's buckets of 0.5."""
  methods = ranked(results)
  cols = min(5, max(1, len(methods)))
  rows_ = math.ceil(len(methods) / cols)
  fig, axes = plt.subplots(
    rows_, cols, figsize=(2.6 * cols, 1.9 * rows_ + 0.6), sharex=True, sharey=True, squeeze=False
  )
  first = results["methods"][methods[0]] if methods else results["original"]
  top = first["max_epsilon"]
  edges = np.arange(0, top + 1.0, 0.5)  # the last bin: ε ≥ max (scored 0)
  for ax, m in zip(axes.ravel(), methods):
    row = results["methods"][m]
    eps = np.minimum(np.asarray(row["epsilons"]), top + 0.25)
    colour = HIGHLIGHT_COLOUR if m == HIGHLIGHT else OTHER_COLOUR
    ax.hist(eps, bins=edges, color=colour, alpha=0.85)
    ax.axvline(top, color="k", lw=0.8, ls="--")
    ax.set_title(f"{m}: {row['forget_score']:.3f}", fontsize=9, color=colour)
  for ax in axes.ravel()[len(methods) :]:
    ax.axis("off")
  for ax in axes[-1]:
    ax.set_xlabel("ε per example")
  for ax in axes[:, 0]:
    ax.set_ylabel("examples")
  fig.suptitle(
    f"{results['scenario']}: per-example ε (N = {results['models']}); right of the dashed "
    "line an example scores 0",
    fontsize=10,
  )
  fig.tight_layout()
  return fig


def frontier_figure(results: dict) -> plt.Figure:
  """Forget score against work (rows through a backward pass, as a share of retraining's):
  partial retraining from a fresh init as the reference curve, every method a point (IGS
  in red), the ceiling at the halves' N as a line."""
  fig, ax = plt.subplots(figsize=(6.4, 4.2))
  frontier = sorted(results.get("frontier", {}).values(), key=lambda r: r["work"])
  if frontier:
    ax.plot(
      [100 * r["work"] for r in frontier], [r["forget_score"] for r in frontier], "-o",
      color=RETRAIN_COLOUR, label="retraining with fewer epochs (fresh init)", zorder=1,
    )  # fmt: skip
  c = results["ceiling"]
  ax.axhline(c["forget_score"], color="k", lw=0.8, ls="--",
             label=f"retrain vs retrain ({c['models']} vs {c['models']})")  # fmt: skip
  shown = [m for m in ranked(results) if "work" in results["methods"][m]]
  for i, m in enumerate(shown):  # best first; labels staggered so close points stay legible
    row = results["methods"][m]
    colour = HIGHLIGHT_COLOUR if m.startswith(HIGHLIGHT) else OTHER_COLOUR
    x, y = 100 * row["work"], row["forget_score"]
    ax.scatter([x], [y], color=colour, s=28, zorder=3)
    line = {"arrowstyle": "-", "lw": 0.3, "color": colour}
    offset = (5 + 48 * (i % 3), 3 - 9 * (i % 3))
    ax.annotate(m, (x, y), textcoords="offset points", xytext=offset, fontsize=7, color=colour,
                arrowprops=line)  # fmt: skip
  ax.set_xscale("log")
  ax.set_xlabel("work: rows through a backward pass, % of retraining's (log scale)")
  ax.set_ylabel("forget score (higher: more like retraining)")
  ax.set_title(f"{results['scenario']}: the cost–forgetting frontier (N = {results['models']})",
               fontsize=10)  # fmt: skip
  ax.legend(fontsize=7, frameon=False, loc="upper left")
  fig.tight_layout()
  return fig


def chosen_examples(retrained_confs: np.ndarray, k: int = 4) -> np.ndarray:
  """Forget rows at spread quantiles of the retrained models' median confidence: from
  rows retrained models find hard to rows they find easy."""
  median = np.median(retrained_confs, axis=0)
  order = np.argsort(median, kind="stable")
  picks = [order[int(q * (len(order) - 1))] for q in np.linspace(0.1, 0.95, k)]
  return np.array(sorted(set(picks)))


def confidence_figure(results: dict, confidences: dict) -> plt.Figure:
  """For a few forget examples (columns) and a few methods (rows: the best, IGS, the
  worst), the unlearned population's confidences against the retrained one's."""
  order = ranked(results)
  shown = list(dict.fromkeys([order[0], *([HIGHLIGHT] if HIGHLIGHT in order else []), order[-1]]))
  examples = chosen_examples(confidences["retrained"])
  fig, axes = plt.subplots(
    len(shown), len(examples), figsize=(3.0 * len(examples), 2.2 * len(shown) + 0.5),
    squeeze=False,
  )  # fmt: skip
  for i, m in enumerate(shown):
    eps = results["methods"][m]["epsilons"]
    for j, e in enumerate(examples):
      ax = axes[i, j]
      u, r = confidences[m][:, e], confidences["retrained"][:, e]
      lo, hi = min(u.min(), r.min()), max(u.max(), r.max())
      bins = np.linspace(lo, hi + 1e-9 + (hi - lo) * 1e-3, 30)
      colour = HIGHLIGHT_COLOUR if m == HIGHLIGHT else OTHER_COLOUR
      ax.hist(r, bins=bins, color=RETRAIN_COLOUR, alpha=0.6, label="retrained")
      ax.hist(u, bins=bins, color=colour, alpha=0.6, label=m)
      ax.set_title(f"{m}, forget row {e}: ε = {eps[e]:.2f}", fontsize=8)
      if i == len(shown) - 1:
        ax.set_xlabel("logit-scaled confidence")
      if j == 0:
        ax.legend(fontsize=7, frameon=False)
  fig.suptitle(
    f"{results['scenario']}: a forget example's confidence under {results['models']} "
    "unlearned runs and as many retrained models",
    fontsize=10,
  )
  fig.tight_layout()
  return fig


FIGURES = (
  (
    "frontier.png",
    "The cost–forgetting frontier",
    "Forget score against work (rows through a backward pass, as a share of retraining's; "
    "log scale). Grey: retraining from a fresh init with fewer epochs, the honest "
    "reference: a method below it at equal work buys less forgetting than partial "
    "retraining would. Points: every method (IGS and its variants in red). Dashed: two "
    "retrained populations against each other, the most the score gives at the halves' N.",
  ),
  (
    "epsilons.png",
    "Per-example ε",
    "One panel per method (best forget score first; IGS in red): how many forget examples "
    "fall in each ε bucket of 0.5. An example in bucket k scores 2^−k; beyond the dashed "
    "line (ceil(ln(N − 1)), the largest ε that N models can show) it scores 0. A method "
    "that looks retrained piles its examples on the left.",
  ),
  (
    "confidences.png",
    "What the score sees",
    "For four forget examples (columns: from one retrained models find hard to one they "
    "find easy) the logit-scaled confidence of the true label under every retrained model "
    "(grey) and every unlearned run (colour), for the best method, IGS and the worst. "
    "Where the two histograms overlap, no rule tells them apart and ε is small.",
  ),
)


def write_all(results: dict, out_dir) -> list[pathlib.Path]:
  """``results.md``, the figures and ``report.md`` in ``out_dir`` (which holds
  ``confidences.npz``)."""
  out_dir = pathlib.Path(out_dir)
  md = table(results)
  (out_dir / "results.md").write_text(md)
  paths = [out_dir / "results.md"]
  if results["methods"] and (out_dir / "confidences.npz").exists():  # else: figures kept
    with np.load(out_dir / "confidences.npz") as z:
      confidences = {k: z[k] for k in z.files}
    for name, fig in (
      ("epsilons.png", epsilon_figure(results)),
      ("confidences.png", confidence_figure(results, confidences)),
      ("frontier.png", frontier_figure(results)),
    ):
      fig.savefig(out_dir / name, dpi=110)
      plt.close(fig)
      paths.append(out_dir / name)
  lines = [md.splitlines()[0], "", results.get("description", ""), ""]
  for name, title, caption in FIGURES:
    if (out_dir / name).exists():
      lines += [f"## {title}", "", f"![{title}]({name})", "", caption, ""]
  lines += [
    "## Results",
    "",
    "\n".join(md.splitlines()[2:]),
    "",
    "Every number, and each method's per-example ε, is in [results.json](results.json).",
    "",
    "## How this was made",
    "",
    *command_block(results.get("command")),
    "",
    *machine_lines(results.get("machine") or {}),
    f"- wall time of the command that wrote this: {results.get('wall_seconds', 0):.1f} s "
    "(populations already in the workdir are reused, not rerun: each population's own cost is "
    f"the table's last column); the retrained population took "
    f"{results['retrained']['seconds']:.1f} s to train; scoring every row took "
    f"{results['score_seconds']:.1f} s",
    "",
  ]
  (out_dir / "report.md").write_text("\n".join(lines))
  paths.append(out_dir / "report.md")
  return paths


def summary_table(all_results: list[dict], methods=None, reference: float = 0.2) -> str:
  """One table over several audits (the README's): per method and scenario, the forget
  score with the LR test's accuracy in brackets; then partial retraining at the
  ``reference`` share of the recipe (the frontier at the work a cheap method may spend),
  the original, and the ceiling. ``methods``: those rows only, in the order of the first
  audit's ranking (``None``: every method)."""
  ranked_all = list(dict.fromkeys(m for r in all_results for m in ranked(r)))
  if methods is not None:
    unknown = sorted(set(methods) - set(ranked_all))
    if unknown:
      raise ValueError(f"no audit here has {unknown[0]!r}; they have {', '.join(ranked_all)}")
  methods = [m for m in ranked_all if methods is None or m in methods]
  head = " | ".join(f"{r['scenario']} (N = {r['models']})" for r in all_results)
  lines = [f"| method | {head} |", "|---|" + "---:|" * len(all_results)]

  def cell(r, m):
    row = r["methods"].get(m)
    if row is None:
      return "—"
    return f"{row['forget_score']:.3f} ({row['lira_accuracy']:.0f})"

  for m in methods:
    name = f"**{m}**" if m == HIGHLIGHT else m
    lines.append(f"| {name} | " + " | ".join(cell(r, m) for r in all_results) + " |")

  def partial(r):
    row = (r.get("frontier") or {}).get(str(reference))
    return "—" if row is None else f"{row['forget_score']:.3f} ({row['lira_accuracy']:.0f})"

  lines.append(
    f"| *retraining with {100 * reference:.0f} % of its epochs (fresh init)* | "
    + " | ".join(partial(r) for r in all_results)
    + " |"
  )
  lines.append(
    "| original (no unlearning) | "
    + " | ".join(
      f"{r['original']['forget_score']:.3f} ({r['original']['lira_accuracy']:.0f})"
      for r in all_results
    )
    + " |"
  )
  lines.append(
    "| *retrain vs retrain, N/2 each (ceiling)* | "
    + " | ".join(
      f"{r['ceiling']['forget_score']:.3f} ({r['ceiling']['lira_accuracy']:.0f})"
      for r in all_results
    )
    + " |"
  )
  return "\n".join(lines) + "\n"


def main(argv=None):
  """``python -m experiments.audit_report FOLDER...``: the summary table of the audits in
  those folders (each holding a ``results.json``), printed and written to ``--out``."""
  import argparse  # noqa: PLC0415
  import json  # noqa: PLC0415

  p = argparse.ArgumentParser(description="the summary table of several audits")
  p.add_argument("folders", nargs="+", help="audit folders, each with a results.json")
  p.add_argument("--out", help="also write the table here")
  p.add_argument("--methods", help="comma-separated rows to show (default: every method)")
  args = p.parse_args(argv)
  results = [json.loads((pathlib.Path(f) / "results.json").read_text()) for f in args.folders]
  text = summary_table(results, args.methods.split(",") if args.methods else None)
  if args.out:
    pathlib.Path(args.out).write_text(text)
  print(text)


if __name__ == "__main__":
  main()
