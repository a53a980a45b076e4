"""Language-model unlearning metrics, with the definitions of open-unlearning (TOFU's).

Like the rest of :mod:`jaxunlearn.metrics` these never see a model: they take per-row
average answer losses (the mean token cross-entropy of an answer given its question,
:func:`jaxunlearn.objectives.answer_losses`), answer token log-probabilities, or word
sequences, and return numbers.

* **probability**: exp(−average loss) of the answer, its length-normalised probability;
  on the world facts, normalised against the wrong answers (``probability_with_options``).
* **ROUGE-L recall** of the greedy answer against the reference (words lowercase,
  punctuation dropped, as ``rouge-score`` tokenises).
* **truth ratio** of a question: the geometric mean of its perturbed answers'
  normalised probabilities over its paraphrased answer's. Aggregated on a forget set as
  mean min(r, 1/r) (1: true and false equally likely) and elsewhere as mean max(0, 1 − r).
* **forget quality**: the p-value of the two-sample Kolmogorov–Smirnov test between the
  forget set's truth ratios under the unlearned and under the retain model (high: the two
  are indistinguishable).
* **model utility**: the harmonic mean of the retain and world-fact probability, ROUGE and
  truth ratio (a single collapsed one drags it down).
* **privleak**: the Min-K % attack (the mean of the lowest K % token log-probabilities of
  an answer) telling forget rows from holdout rows, AUC against the retain model's,
  ((1 − AUC) − (1 − AUC_retain)) / (1 − AUC_retain) × 100: about 0 for the retain model,
  towards −100 for a model that still remembers.

Examples:
  >>> import numpy as np
  >>> tr = truth_ratios(np.log([2.0]), np.log([[4.0, 4.0, 4.0]]))  # p = 1/2 vs 1/4 each
  >>> round(float(tr[0]), 6)
  0.5
  >>> rouge_l_recall("the cat sat on the mat .".split(), "the cat is on a mat".split())
  0.6666666666666666
"""

from __future__ import annotations

import numpy as np

_EPS = 1e-10  # open-unlearning's guard against division by zero


def probability(avg_losses) -> np.ndarray:
  """Per-row length-normalised answer probability, exp(−average loss)."""
  return np.exp(-np.asarray(avg_losses, np.float64))


def probability_with_options(correct_avg_losses, wrong_avg_losses) -> np.ndarray:
  """Per row: p(correct) / (p(correct) + Σ p(wrong)), each p length-normalised.

  Examples:
    >>> round(float(probability_with_options([0.0], [[0.0, 0.0, 0.0]])[0]), 6)  # all equal
    0.25
  """
  correct = probability(correct_avg_losses)
  wrong = probability(wrong_avg_losses).sum(axis=1)
  return correct / (correct + wrong + _EPS)


def truth_ratios(paraphrased_avg_losses, perturbed_avg_losses) -> np.ndarray:
  """Per row: exp(−mean over perturbed of their average losses) / exp(−paraphrased's)."""
  correct = probability(paraphrased_avg_losses)
  wrong = np.exp(-np.mean(np.asarray(perturbed_avg_losses, np.float64), axis=1))
  return wrong / (correct + _EPS)


def forget_truth_ratio(ratios) -> float:
  """Mean min(r, 1/r) over a forget set: 1 when its answers are no likelier than wrong ones."""
  r = np.asarray(ratios, np.float64)
  return float(np.mean(np.minimum(r, 1.0 / (r + _EPS))))


def retain_truth_ratio(ratios) -> float:
  """Mean max(0, 1 − r) over retained rows: 1 when true answers dominate the wrong ones."""
  return float(np.mean(np.maximum(0.0, 1.0 - np.asarray(ratios, np.float64))))


def _words(tokens) -> list[str]:
  """Lowercase alphanumeric words, as ``rouge-score``'s default tokeniser keeps them."""
  out = []
  for t in tokens:
    kept = "".join(c if c.isalnum() else " " for c in str(t).lower()).split()
    out.extend(kept)
  return out


def _lcs(a: list, b: list) -> int:
  row = [0] * (len(b) + 1)
  for x in a:
    prev = 0
    for j, y in enumerate(b, 1):
      prev, row[j] = row[j], prev + 1 if x == y else max(row[j], row[j - 1])
  return row[-1]


def rouge_l_recall(reference, prediction) -> float:
  """ROUGE-L recall: the longest common subsequence of words over the reference's words
  (``rouge_score.rouge_scorer.RougeScorer(["rougeL"]).score(reference, prediction)``'s
  recall for word sequences); 0 for an empty reference."""
  ref, pred = _words(reference), _words(prediction)
  return _lcs(ref, pred) / len(ref) if ref else 0.0


def forget_quality(unlearned_forget_ratios, retain_forget_ratios) -> float:
  """The two-sample KS test's p-value between the forget set's truth ratios under the
  unlearned and the retain model."""
  import scipy.stats  # noqa: PLC0415 (scipy and sklearn load in ~2 s: only where used)

  return float(scipy.stats.ks_2samp(unlearned_forget_ratios, retain_forget_ratios).pvalue)


def model_utility(values) -> float:
  """Harmonic mean of the utility values (each in [0, 1]); 0 if any is 0."""
  import scipy.stats  # noqa: PLC0415

  v = np.asarray(list(values), np.float64)
  return 0.0 if np.any(v <= 0) else float(scipy.stats.hmean(v))


def min_k_scores(token_logprobs, mask, k: float = 0.4) -> np.ndarray:
  """Per row: −(mean of the lowest ``k`` share, at least one, of its answer tokens'
  log-probabilities) — the Min-K % attack's score (open-unlearning's K 40 %): low for a
  member the model remembers.

  Examples:
    >>> float(min_k_scores([[-1.0, -3.0, -2.0, 0.0]], [[1, 1, 1, 0]], k=0.4)[0])  # ⌊0.4·3⌋=1
    3.0
  """
  logprobs, mask = np.asarray(token_logprobs, np.float64), np.asarray(mask, bool)
  out = np.empty(len(logprobs))
  for i, (lp, m) in enumerate(zip(logprobs, mask)):
    values = np.sort(lp[m])
    out[i] = -np.mean(values[: max(1, int(k * len(values)))])
  return out


def mia_auc(forget_scores, holdout_scores) -> float:
  """ROC AUC of telling holdout rows (positives) from forget rows by the attack score:
  1 for a model whose forget rows all score lower (are remembered), 0.5 for chance."""
  scores = np.concatenate([forget_scores, holdout_scores])
  labels = np.concatenate([np.zeros(len(forget_scores)), np.ones(len(holdout_scores))])
  from sklearn.metrics import roc_auc_score  # noqa: PLC0415

  return float(roc_auc_score(labels, scores))


def privleak(auc: float, retain_auc: float) -> float:
  """open-unlearning's privleak: ((1 − AUC) − (1 − AUC_retain)) / (1 − AUC_retain) × 100."""
  return ((1.0 - auc) - (1.0 - retain_auc)) / (1.0 - retain_auc + _EPS) * 100.0
