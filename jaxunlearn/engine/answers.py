"""What a language model answers, and the TOFU metrics of it (:mod:`jaxunlearn.metrics.language`).

A model here is a functional view whose per-example loss is an answer loss
(:func:`jaxunlearn.nn.transformer.functional_lm` with
:func:`jaxunlearn.objectives.answer_losses`) over a
:class:`~jaxunlearn.data.tofu.QADataset`. :func:`evaluate_qa` gives the forget set's
probability, ROUGE-L recall and truth ratio, the retained authors' and the world facts'
(and their harmonic mean, the model utility), the Min-K % attack's AUC against the
holdout authors, the exact-answer rates of greedy decoding and, given the retain model's
forget-set truth ratios, the forget quality.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from jaxunlearn.data import tofu
from jaxunlearn.engine.layouts import example_loss
from jaxunlearn.metrics import language as lm

EVAL_ROWS = 300  # retained-author rows scored (deterministic subset), as TOFU's 400


def _bucket(rows: int, batch: int) -> int:
  """The padded size of a chunk of ``rows``: the next power of two from 8, at most
  ``batch``. An evaluation scores sets of many sizes (forget, retained, world, their
  paraphrased and perturbed rows, the holdout); one compiled program per bucket, shared
  by every set and model, replaces one per size (with each kind of score in one pass,
  :func:`qa_scores`, the API's language-model test compiles 6 evaluation programs, not 18)."""
  return min(batch, max(8, 1 << (rows - 1).bit_length()))


def _batched(fn, tokens: np.ndarray, batch: int = 256) -> np.ndarray:
  """``fn`` over chunks of ``batch`` rows, each padded (repeating its last row) to its
  bucket; the padding's outputs are dropped. Rows are scored independently (eval mode,
  no batch statistics), so a row's score does not depend on its neighbours."""
  outs = []
  for i in range(0, len(tokens), batch):
    chunk = tokens[i : i + batch]
    size = _bucket(len(chunk), batch)
    padded = np.concatenate([chunk, np.repeat(chunk[-1:], size - len(chunk), axis=0)])
    outs.append(np.asarray(fn(jnp.asarray(padded)))[: len(chunk)])
  return np.concatenate(outs)


@functools.lru_cache(maxsize=16)
def _loss_fn(fm):
  return jax.jit(lambda p, s, t: example_loss(fm)(fm.apply(p, s, t, train=False)[0], t))


@functools.lru_cache(maxsize=16)
def _logprob_fn(fm):
  def fn(p, s, t):
    logits = fm.apply(p, s, t, train=False)[0][:, :-1]
    return jnp.take_along_axis(jax.nn.log_softmax(logits), t[:, 1:, None], axis=-1)[..., 0]

  return jax.jit(fn)


@functools.lru_cache(maxsize=16)
def _greedy_fn(fm, answer_id: int, eos_id: int):
  def fn(p, s, tokens):
    length = tokens.shape[1]
    start = jnp.argmax(tokens == answer_id, axis=1)  # the <ans> position of each row
    position = jnp.arange(length)[None]
    buffer = jnp.where(position <= start[:, None], tokens, 0)

    def body(t, carry):
      buffer, done = carry
      nxt = jnp.argmax(fm.apply(p, s, buffer, train=False)[0][:, t], axis=-1)
      write = (t >= start) & ~done
      buffer = buffer.at[:, t + 1].set(jnp.where(write, nxt, buffer[:, t + 1]))
      return buffer, done | (write & (nxt == eos_id))

    buffer, _ = jax.lax.fori_loop(0, length - 1, body, (buffer, jnp.zeros(len(tokens), bool)))
    return buffer

  return jax.jit(fn)


def average_losses(fm, params, state, tokens: np.ndarray) -> np.ndarray:
  """Per-row answer loss of ``tokens`` ``(..., T)`` (any leading shape), eval mode."""
  flat = tokens.reshape(-1, tokens.shape[-1])
  return _batched(functools.partial(_loss_fn(fm), params, state), flat).reshape(tokens.shape[:-1])


def answer_logprobs(fm, params, state, tokens: np.ndarray, answer_id: int, pad_id: int):
  """``(log-probabilities (N, T−1), mask)``: of each next token, and which are answer
  tokens (after ``<ans>``, not padding) — what the Min-K % attack reads."""
  logprobs = _batched(functools.partial(_logprob_fn(fm), params, state), tokens)
  seen = np.cumsum(tokens[:, :-1] == answer_id, axis=1) > 0
  return logprobs, seen & (tokens[:, 1:] != pad_id)


def greedy_answers(fm, params, state, tokens: np.ndarray, answer_id: int, eos_id: int):
  """Each row's question (up to ``<ans>``) completed greedily until ``<eos>``, ``(N, T)``."""
  return _batched(functools.partial(_greedy_fn(fm, answer_id, eos_id), params, state), tokens)


def answer_part(row, answer_id: int = tofu.ANS_ID, eos_id: int = tofu.EOS_ID) -> list[int]:
  """The token ids between ``<ans>`` and the first ``<eos>`` (or the row's end)."""
  row = list(np.asarray(row))
  answer = row[row.index(answer_id) + 1 :]
  return answer[: answer.index(eos_id)] if eos_id in answer else answer


def qa_scores(fm, params, state, ds, rows: np.ndarray, tokens, paraphrased, perturbed) -> dict:
  """Per-row scores of ``rows``: ``avg_loss``, ``rouge`` (ROUGE-L recall of the greedy
  answer), ``exact`` (it equals the answer), ``truth_ratio``, ``perturbed_loss``. The
  answers, paraphrases and perturbed answers are scored in one pass (one compiled
  program per bucket, :func:`_batched`)."""
  tokens, paraphrased, perturbed = tokens[rows], paraphrased[rows], perturbed[rows]
  generated = greedy_answers(fm, params, state, tokens, ds.answer_id, ds.eos_id)
  decode = ds.tokenizer.decode
  rouge, exact = [], []
  for gen, ref in zip(generated, tokens):
    g, r = answer_part(gen, ds.answer_id, ds.eos_id), answer_part(ref, ds.answer_id, ds.eos_id)
    exact.append(g == r)
    rouge.append(lm.rouge_l_recall(decode(r), decode(g)))
  n = len(tokens)
  flat = np.concatenate([tokens, paraphrased, perturbed.reshape(-1, perturbed.shape[-1])])
  losses = average_losses(fm, params, state, flat)
  perturbed_loss = losses[2 * n :].reshape(perturbed.shape[:-1])
  return {
    "avg_loss": losses[:n],
    "rouge": np.asarray(rouge),
    "exact": np.asarray(exact),
    "truth_ratio": lm.truth_ratios(losses[n : 2 * n], perturbed_loss),
    "perturbed_loss": perturbed_loss,
  }


def eval_rows(ds, forget_set, limit: int = EVAL_ROWS) -> dict:
  """Rows scored by :func:`evaluate_qa`: every forget row, up to ``limit`` rows of the
  retained authors (evenly spaced, so the subset is fixed), every world fact."""
  labels = ds.train.labels
  forget = np.asarray(forget_set.forget_idx)
  retained = np.setdiff1d(np.flatnonzero(labels != ds.world_label), forget)
  if ds.scored is not None:  # only rows with a paraphrase and perturbed answers
    retained = retained[ds.scored[retained]]
  if len(retained) > limit:
    retained = retained[np.linspace(0, len(retained) - 1, limit).round().astype(int)]
  return {"forget": forget, "retain": retained, "world": np.flatnonzero(labels == ds.world_label)}


def evaluate_qa(fm, params, state, ds, forget_set, retain_ratios=None) -> dict:
  """The TOFU metrics of a model (floats; ``forget_ratios`` the per-row forget truth
  ratios, for another model's forget quality). ``retain_ratios``: the retain model's
  forget-set truth ratios, for ``forget_quality``."""
  rows = eval_rows(ds, forget_set)
  train = ds.train.images
  parts = _split(
    qa_scores(fm, params, state, ds, np.concatenate(list(rows.values())), train,
              ds.paraphrased, ds.perturbed),
    {k: len(r) for k, r in rows.items() if len(r)},
  )  # fmt: skip
  f, r = parts["forget"], parts["retain"]
  out = {
    "forget_prob": float(np.mean(lm.probability(f["avg_loss"]))),
    "forget_rouge": float(np.mean(f["rouge"])),
    "forget_truth_ratio": lm.forget_truth_ratio(f["truth_ratio"]),
    "forget_exact": float(np.mean(f["exact"])),
    "retain_prob": float(np.mean(lm.probability(r["avg_loss"]))),
    "retain_rouge": float(np.mean(r["rouge"])),
    "retain_truth_ratio": lm.retain_truth_ratio(r["truth_ratio"]),
    "retain_exact": float(np.mean(r["exact"])),
  }
  utility = [out["retain_prob"], out["retain_rouge"], out["retain_truth_ratio"]]
  if "world" in parts:
    w = parts["world"]
    out["world_prob"] = float(
      np.mean(lm.probability_with_options(w["avg_loss"], w["perturbed_loss"]))
    )
    out["world_rouge"] = float(np.mean(w["rouge"]))
    out["world_truth_ratio"] = lm.retain_truth_ratio(w["truth_ratio"])
    out["world_exact"] = float(np.mean(w["exact"]))
    utility += [out["world_prob"], out["world_rouge"], out["world_truth_ratio"]]
  out["model_utility"] = lm.model_utility(utility)
  if len(ds.holdout.images):  # the published TOFU files have no held-out authors
    out["mia_auc"] = _min_k_auc(fm, params, state, ds, train[rows["forget"]])
  if retain_ratios is not None:
    out["forget_quality"] = lm.forget_quality(f["truth_ratio"], retain_ratios)
  out["forget_ratios"] = f["truth_ratio"].tolist()
  return out


def _split(scores: dict, sizes: dict) -> dict:
  """Per-row ``scores`` of consecutive parts of ``sizes`` rows, as ``{part: scores}``."""
  ends = np.cumsum(list(sizes.values()))
  return {
    k: {name: v[end - n : end] for name, v in scores.items()}
    for (k, n), end in zip(sizes.items(), ends)
  }


def _min_k_auc(fm, params, state, ds, forget_tokens) -> float:
  tokens = np.concatenate([forget_tokens, ds.holdout.images])  # one pass for both
  scores = lm.min_k_scores(*answer_logprobs(fm, params, state, tokens, ds.answer_id, ds.pad_id))
  return lm.mia_auc(scores[: len(forget_tokens)], scores[len(forget_tokens) :])
