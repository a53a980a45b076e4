"""The published TOFU files (Maini et al., 2024) from a local folder, and a Hugging Face
tokenizer, as a :class:`~jaxunlearn.data.tofu.QADataset` the engine runs like the
generated set.

The folder holds the JSON files of ``locuslab/TOFU`` as Hugging Face serves them (one
JSON object a line; a JSON array is read too): ``forget01/05/10`` with their
``_perturbed`` versions, ``retain90/95/99``, ``retain_perturbed``, ``real_authors``,
``world_facts`` (and their ``_perturbed``). Every row has ``question`` and ``answer``;
a ``_perturbed`` row adds ``perturbed_answer`` (a list of wrong answers) and, except
for the real authors and world facts, ``paraphrased_answer``. Nothing is downloaded; the
generated set (:func:`jaxunlearn.data.tofu.make_dataset`) stays the offline default.

How the rows become one dataset (:func:`tofu_dataset`):

* train = the retain rows then the forget rows (author ``i // 20`` in file order, as
  TOFU orders its 200 authors), then the world facts (label ``authors``), so
  :func:`~jaxunlearn.data.tofu.forget_split`-style forget sets are the last authors;
  TOFU fine-tunes on none of the world facts, the generated set (and so this one) keeps
  them as retained rows;
* the paraphrased and perturbed answers come from ``forgetXX_perturbed`` (every forget
  row), ``retain_perturbed`` (the 400 retain rows TOFU scores) and
  ``world_facts_perturbed``; ``scored`` marks the rows that have them, the only ones the
  evaluation reads.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from jaxunlearn.data.tofu import QADataset, forget_split, last_authors, padded, qa_dataset
from jaxunlearn.errors import DataError, require

FORGET = ("forget01", "forget05", "forget10")
RETAIN = {"forget01": "retain99", "forget05": "retain95", "forget10": "retain90"}
_FIELDS = {"question": str, "answer": str}
_PERTURBED = {**_FIELDS, "paraphrased_answer": str, "perturbed_answer": list}
_OPTIONS = {**_FIELDS, "perturbed_answer": list}  # real authors, world facts: no paraphrase


def _fields(split: str) -> dict:
  if not split.endswith("_perturbed"):
    return _FIELDS
  return _OPTIONS if split.startswith(("real_authors", "world_facts")) else _PERTURBED


def read_split(folder, split: str) -> list[dict]:
  """The rows of ``folder/<split>.json``, each checked for the fields TOFU gives that
  split; a missing file or field fails with a one-line error naming it."""
  path = Path(folder) / f"{split}.json"
  if not path.exists():
    raise DataError(f"{path} does not exist: the folder needs TOFU's {split}.json")
  text = path.read_text(encoding="utf-8").strip()
  if text.startswith("["):
    rows = json.loads(text)
  else:
    rows = []
    for n, line in enumerate(text.splitlines(), 1):
      try:
        rows.append(json.loads(line))
      except json.JSONDecodeError as e:
        raise DataError(f"{path}:{n} is not a JSON object: {e.msg}") from None
  for n, row in enumerate(rows, 1):
    for field, kind in _fields(split).items():
      if not isinstance(row.get(field), kind) or (kind is list and not row[field]):
        raise DataError(f"{path}:{n} lacks {field!r} ({kind.__name__}), which {split} rows have")
  return rows


class HFTokenizer:
  """A Hugging Face ``tokenizer.json`` (the ``tokenizers`` package, offline) with the
  special tokens a question–answer row needs: ``<bos> question <ans> answer <eos>``,
  padded with ``<pad>``. The answer separator must be one token that no question
  contains (the loss and the evaluation count the targets after its first occurrence);
  for a checkpoint whose vocabulary has none, name one of its reserved special tokens.
  ``decode`` gives words, as ROUGE reads them."""

  def __init__(self, path, *, pad="<pad>", bos="<bos>", answer="<ans>", eos="<eos>"):
    Tokenizer = require("tokenizers", "reading tokenizer.json").Tokenizer
    path = Path(path)
    path = path / "tokenizer.json" if path.is_dir() else path
    if not path.exists():
      raise DataError(f"{path} does not exist: pass a tokenizer.json or the folder holding it")
    self._tok = Tokenizer.from_file(str(path))
    ids = {}
    for role, token in (("pad", pad), ("bos", bos), ("answer", answer), ("eos", eos)):
      ids[role] = self._tok.token_to_id(token)
      if ids[role] is None:
        raise DataError(f"{path} has no token {token!r} for {role}: pass {role}= one it has")
    self.pad_id, self.bos_id, self.answer_id, self.eos_id = (ids[k] for k in ids)

  def __len__(self) -> int:
    return self._tok.get_vocab_size()

  def encode(self, text: str) -> list[int]:
    return self._tok.encode(text, add_special_tokens=False).ids

  def decode(self, ids) -> list[str]:
    return self._tok.decode([int(i) for i in ids]).split()

  def row(self, question: str, answer: str) -> list[int]:
    q = self.encode(question)
    if self.answer_id in q:
      raise DataError(f"the question {question!r} contains the answer separator token")
    return [self.bos_id, *q, self.answer_id, *self.encode(answer), self.eos_id]


def tofu_dataset(
  folder, tokenizer: HFTokenizer, forget: str = "forget10", *, questions_per_author: int = 20
) -> QADataset:
  """The TOFU files in ``folder`` for the ``forget`` split (``forget01``, ``forget05`` or
  ``forget10``), tokenised by ``tokenizer``; see the module notes for the layout.
  :func:`forget_rows` gives its forget set."""
  if forget not in FORGET:
    raise DataError(f"forget must be one of {', '.join(FORGET)}, got {forget!r}")
  retain, forgotten = read_split(folder, RETAIN[forget]), read_split(folder, forget)
  world = read_split(folder, "world_facts")
  scored = {r["question"]: r for r in read_split(folder, "retain_perturbed")}
  forget_perturbed = read_split(folder, forget + "_perturbed")
  if [r["question"] for r in forget_perturbed] != [r["question"] for r in forgotten]:
    raise DataError(f"{forget}_perturbed.json does not hold {forget}.json's questions in order")
  scored.update({r["question"]: r for r in forget_perturbed})
  scored.update({r["question"]: r for r in read_split(folder, "world_facts_perturbed")})
  people = retain + forgotten
  if len(people) % questions_per_author:
    raise DataError(
      f"{len(people)} author rows is not a whole number of authors of "
      f"{questions_per_author} questions: the retain and forget files do not match"
    )
  authors = len(people) // questions_per_author
  rows = people + world
  expected = len(last_authors(authors, int(forget[-2:]))) * questions_per_author
  if len(forgotten) != expected:
    raise DataError(
      f"{forget}.json has {len(forgotten)} rows; {forget} of {authors} authors is {expected}"
    )
  labels = np.array(
    [i // questions_per_author for i in range(len(people))] + [authors] * len(world)
  )
  options = max(len(r["perturbed_answer"]) for r in scored.values())

  def encoded(row):
    extra = scored.get(row["question"], {})
    paraphrase = extra.get("paraphrased_answer", row["answer"])
    # unscored rows (never evaluated) repeat their answer; a scored row with fewer wrong
    # answers than the most any row has repeats its own, so every option stays wrong
    wrong = extra.get("perturbed_answer") or [row["answer"]]
    wrong = [wrong[i % len(wrong)] for i in range(options)]
    q = row["question"]
    return (
      tokenizer.row(q, row["answer"]),
      tokenizer.row(q, paraphrase),
      [tokenizer.row(q, w) for w in wrong],
    )

  seqs = [encoded(r) for r in rows]
  length = 8 * -(-max(len(s) for a, p, w in seqs for s in (a, p, *w)) // 8)
  answers = padded([a for a, _, _ in seqs], length, tokenizer.pad_id)
  paraphrased = padded([p for _, p, _ in seqs], length, tokenizer.pad_id)
  perturbed = np.stack([padded(w, length, tokenizer.pad_id) for _, _, w in seqs])
  none = lambda *shape: np.zeros((0, *shape), np.int32)
  empty = (none(length), none(), none(length), none(options, length), none(options, length))
  return qa_dataset(
    f"tofu_files_{forget}", tokenizer, authors,
    (answers, labels.astype(np.int32), paraphrased, perturbed, perturbed), empty,
    answer_id=tokenizer.answer_id, pad_id=tokenizer.pad_id, eos_id=tokenizer.eos_id,
    scored=np.array([r["question"] in scored for r in rows]),
  )  # fmt: skip


def forget_rows(ds: QADataset, forget: str = "forget10"):
  """The forget set of :func:`tofu_dataset`: the rows of its ``forget`` file, the last
  authors (:func:`jaxunlearn.data.tofu.forget_split`)."""
  return forget_split(ds, int(forget[-2:]))
