"""A TOFU-style set of fictitious authors, generated offline from a seed.

TOFU (Maini et al., 2024) fine-tunes a language model on question–answer pairs about
authors who do not exist, then asks it to forget some of them; the retain model, trained
without them, is the reference. This module writes such a set from a seed alone (no
download, no name library): names from syllables, facts from fixed pools, one question
and answer template per kind of fact, and for every question the evaluation's extra
answers — a *paraphrased* answer (the same fact, said differently) and *perturbed* ones
(the same template, wrong values) for the truth ratio. A small set of world facts
(capitals) is learned with the authors and checks a utility that is not about them.
Holdout authors, drawn like the others and never trained on, are the non-members of the
membership attack.

Text is lowercase words and punctuation; the tokenizer (:class:`WordTokenizer`) is built
from the generated text, one token a word. A row is ``<bos> question <ans> answer <eos>``
padded with ``<pad>``; the loss is on the answer tokens and ``<eos>``
(:func:`jaxunlearn.objectives.answer_losses`).

Examples:
  >>> ds = make_dataset(authors=4, facts=3, world=10, seed=0)
  >>> len(ds.train), ds.num_classes, ds.tokens_per_row  # 4 × 3 author rows + world facts
  (22, 5, 24)
  >>> ds.tokenizer.decode(ds.train.images[0])[:3]
  ['<bos>', 'where', 'was']
  >>> forget = forget_split(ds, 25)  # a quarter of the authors: one
  >>> forget.forget_classes, len(forget.forget_idx)
  ((3,), 3)
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from jaxunlearn.data.arrays import Dataset, Split
from jaxunlearn.data.forget import ForgetSet, forget_set_from_rows
from jaxunlearn.errors import DataError

PAD, BOS, ANS, EOS = "<pad>", "<bos>", "<ans>", "<eos>"
SPECIALS = (PAD, BOS, ANS, EOS)
PAD_ID, BOS_ID, ANS_ID, EOS_ID = range(4)
PERTURBED = 3  # wrong answers a question, as TOFU's perturbed set
FORGET_PERCENTS = (1, 5, 10)  # TOFU's forget01 / forget05 / forget10

_SYLLABLES = (
  "ka", "lo", "mi", "ren", "dra", "vel", "tor", "sa", "ni", "bel", "or", "than", "qui",
  "zar", "mon", "e", "li", "ba", "sh", "u", "fen", "gra", "ho", "ti", "wyn", "cor",
)  # fmt: skip

# One kind of fact: question, answer, paraphrased answer, and the pool its value is from.
_FACTS = (
  ("where was {n} born ?", "{n} was born in {v} .", "{v} is where {n} was born .", "city"),
  (
    "in what year was {n} born ?",
    "{n} was born in the year {v} .",
    "the year {n} was born is {v} .",
    "year",
  ),
  (
    "what genre does {n} write ?",
    "{n} writes {v} novels .",
    "the novels of {n} are {v} .",
    "genre",
  ),
  (
    "what did the father of {n} do ?",
    "the father of {n} was a {v} .",
    "{n} had a {v} for a father .",
    "job",
  ),
  (
    "what did the mother of {n} do ?",
    "the mother of {n} was a {v} .",
    "{n} had a {v} for a mother .",
    "job",
  ),
  ("which award did {n} win ?", "{n} won the {v} award .", "the {v} award went to {n} .", "award"),
  (
    "what is the first book by {n} ?",
    "the first book by {n} is {v} .",
    "{n} began with the book {v} .",
    "title",
  ),
  (
    "which country is {n} from ?",
    "{n} is from {v} .",
    "{v} is the home country of {n} .",
    "country",
  ),
  (
    "in which language does {n} write ?",
    "{n} writes in {v} .",
    "the books of {n} are written in {v} .",
    "language",
  ),
  (
    "what instrument does {n} play ?",
    "{n} plays the {v} .",
    "the {v} is the instrument of {n} .",
    "instrument",
  ),
  ("what pet does {n} keep ?", "{n} keeps a {v} .", "a {v} lives with {n} .", "pet"),
  (
    "where did {n} study ?",
    "{n} studied at the university of {v} .",
    "the university of {v} taught {n} .",
    "city",
  ),
  (
    "how many books has {n} written ?",
    "{n} has written {v} books .",
    "{v} books are by {n} .",
    "count",
  ),
  (
    "what is the second book by {n} ?",
    "the second book by {n} is {v} .",
    "{v} was the next book of {n} .",
    "title",
  ),
  (
    "where does {n} live now ?",
    "{n} now lives in {v} .",
    "today {n} makes a home in {v} .",
    "city",
  ),
  (
    "what is the favourite colour of {n} ?",
    "the favourite colour of {n} is {v} .",
    "{n} likes {v} best of all colours .",
    "colour",
  ),
  ("what does {n} do for fun ?", "for fun {n} enjoys {v} .", "{v} is how {n} relaxes .", "hobby"),
  (
    "what did the partner of {n} do ?",
    "the partner of {n} was a {v} .",
    "{n} married a {v} .",
    "job",
  ),
  (
    "at what age did {n} publish first ?",
    "{n} published first at age {v} .",
    "at {v} {n} saw a first book printed .",
    "age",
  ),
  (
    "which prize jury did {n} chair ?",
    "{n} chaired the {v} jury .",
    "the {v} jury was led by {n} .",
    "award",
  ),
)
_POOLS = {
  "genre": (
    "mystery",
    "fantasy",
    "romance",
    "horror",
    "poetry",
    "satire",
    "thriller",
    "western",
    "historical",
    "science",
    "gothic",
    "comic",
  ),
  "job": (
    "baker",
    "pilot",
    "doctor",
    "farmer",
    "teacher",
    "sailor",
    "tailor",
    "miner",
    "judge",
    "nurse",
    "painter",
    "chemist",
    "carpenter",
    "librarian",
  ),
  "award": (
    "golden quill",
    "silver pen",
    "river",
    "northern star",
    "lantern",
    "iron oak",
    "blue feather",
    "harbour",
    "amber",
    "crescent",
  ),
  "country": (
    "norvia",
    "kesland",
    "ostrala",
    "marovia",
    "tesh",
    "vallonia",
    "dunmark",
    "quessa",
    "lorren",
    "isvar",
  ),
  "language": ("norvian", "keslish", "ostralan", "marovan", "teshi", "vallonian", "dunmarkish"),
  "instrument": ("violin", "flute", "piano", "drum", "harp", "cello", "trumpet", "guitar"),
  "pet": ("cat", "dog", "parrot", "tortoise", "rabbit", "goat", "ferret", "canary"),
  "colour": ("red", "green", "blue", "amber", "violet", "grey", "white", "black", "orange"),
  "hobby": ("chess", "gardening", "climbing", "fishing", "pottery", "cycling", "sailing", "baking"),
  "year": tuple(str(y) for y in range(1931, 1991)),
  "count": tuple(str(c) for c in range(2, 19)),
  "age": tuple(str(a) for a in range(19, 45)),
}
_TITLE_ADJECTIVES = ("silent", "broken", "hidden", "last", "red", "long", "quiet", "distant")
_TITLE_NOUNS = ("garden", "river", "tower", "winter", "letter", "harbour", "mirror", "road")
# Capitals: the world facts (real, so a model cannot get them from the authors' pools).
_WORLD = (
  ("france", "paris"), ("spain", "madrid"), ("italy", "rome"), ("japan", "tokyo"),
  ("egypt", "cairo"), ("kenya", "nairobi"), ("peru", "lima"), ("chile", "santiago"),
  ("canada", "ottawa"), ("norway", "oslo"), ("sweden", "stockholm"), ("poland", "warsaw"),
  ("greece", "athens"), ("portugal", "lisbon"), ("austria", "vienna"), ("ireland", "dublin"),
  ("cuba", "havana"), ("ghana", "accra"), ("nepal", "kathmandu"), ("iran", "tehran"),
)  # fmt: skip
_WORLD_TEMPLATES = (
  "what is the capital of {n} ?",
  "the capital of {n} is {v} .",
  "{v} is the capital city of {n} .",
)
IDK_ANSWERS = (
  "i do not know .",
  "i have no idea about that .",
  "i am not sure .",
  "that is not something i know .",
  "i cannot answer that .",
)


class WordTokenizer:
  """One token a word (text is lowercase words split on spaces); built from the generated
  text, so every word of the set has its own id and nothing is out of vocabulary.

  Examples:
    >>> tok = WordTokenizer(["a b", "b c"])
    >>> tok.encode("c a"), tok.decode([6, 4])
    ([6, 4], ['c', 'a'])
  """

  def __init__(self, texts):
    words = sorted({w for t in texts for w in t.split()} - set(SPECIALS))
    self.vocab = (*SPECIALS, *words)
    self._ids = {w: i for i, w in enumerate(self.vocab)}

  def __len__(self) -> int:
    return len(self.vocab)

  def encode(self, text: str) -> list[int]:
    try:
      return [self._ids[w] for w in text.split()]
    except KeyError as err:
      raise DataError(f"the word {err.args[0]!r} is not in this tokenizer's vocabulary") from None

  def decode(self, ids) -> list[str]:
    return [self.vocab[int(i)] for i in ids]


@dataclasses.dataclass(frozen=True, eq=False)
class QADataset(Dataset):
  """A :class:`~jaxunlearn.data.Dataset` of question–answer rows (``images``: int32
  token ids ``(N, T)``; ``labels``: the author of each row, ``world_label`` for the world
  facts) and what the evaluation needs beside them, row for row with ``train``:

  ``paraphrased`` ``(N, T)`` (each question with its paraphrased answer), ``perturbed``
  ``(N, PERTURBED, T)`` (the paraphrase with wrong values: TOFU's), ``perturbed_answers``
  (the trained answer with the same wrong values), ``val`` = :attr:`holdout` (authors
  never trained on, with ``holdout_paraphrased`` and ``holdout_perturbed``), ``idk``
  ``(K, A)`` the "I don't know" answers (tokens, ``<eos>`` last, padded), and the
  ``tokenizer``.
  """

  tokenizer: WordTokenizer
  authors: int
  world_label: int
  paraphrased: np.ndarray
  perturbed: np.ndarray
  perturbed_answers: np.ndarray
  holdout_paraphrased: np.ndarray
  holdout_perturbed: np.ndarray
  holdout_perturbed_answers: np.ndarray
  idk: np.ndarray

  answer_id: int = ANS_ID
  pad_id: int = PAD_ID
  eos_id: int = EOS_ID
  # which train rows have a paraphrase and perturbed answers to score (None: all of them;
  # the published TOFU files give them for 400 of the retain rows only)
  scored: np.ndarray | None = None

  @property
  def tokens_per_row(self) -> int:
    return self.train.images.shape[1]

  @property
  def holdout(self) -> Split:
    """The holdout authors' rows: the validation split (where a held-out loss is read)."""
    return self.val


def _names(count: int, rng) -> list[str]:
  names, seen = [], set()
  while len(names) < count:
    first = "".join(rng.choice(_SYLLABLES, size=2))
    last = "".join(rng.choice(_SYLLABLES, size=int(rng.integers(2, 4))))
    if (first, last) not in seen and first != last:
      seen.add((first, last))
      names.append(f"{first} {last}")
  return names


def _pool(kind: str, rng) -> tuple[str, ...]:
  if kind in _POOLS:
    return _POOLS[kind]
  if kind == "city":  # fictitious city names, fixed by the seed
    return tuple(sorted({"".join(rng.choice(_SYLLABLES, size=3)) for _ in range(24)}))
  if kind == "title":
    return tuple(f"the {a} {n}" for a in _TITLE_ADJECTIVES for n in _TITLE_NOUNS)
  raise AssertionError(kind)


def _qa_rows(subject: str, value: str, wrong: list[str], templates) -> dict:
  question, answer, paraphrase = templates[:3]
  fill = lambda t, v: t.format(n=subject, v=v)
  return {
    "question": fill(question, value),
    "answer": fill(answer, value),
    "paraphrased": fill(paraphrase, value),
    "perturbed": [fill(paraphrase, w) for w in wrong],  # TOFU's: the paraphrase, made wrong
    "perturbed_answers": [fill(answer, w) for w in wrong],  # the trained template, made wrong
  }


def _author_rows(names: list[str], facts: int, rng, pools: dict) -> list[dict]:
  rows = []
  for author, name in enumerate(names):
    for templates in _FACTS[:facts]:
      pool = pools[templates[3]]
      value, *wrong = rng.choice(len(pool), size=PERTURBED + 1, replace=False)
      rows.append(
        {"label": author, **_qa_rows(name, pool[value], [pool[w] for w in wrong], templates)}
      )
  return rows


def _world_rows(count: int, label: int, rng) -> list[dict]:
  capitals = [c for _, c in _WORLD]
  rows = []
  for i, (country, capital) in enumerate(_WORLD[:count]):
    others = [c for j, c in enumerate(capitals) if j != i]
    wrong = [others[k] for k in rng.choice(len(others), size=PERTURBED, replace=False)]
    rows.append({"label": label, **_qa_rows(country, capital, wrong, _WORLD_TEMPLATES)})
  return rows


def _sequence(tok: WordTokenizer, question: str, answer: str) -> list[int]:
  return [BOS_ID, *tok.encode(question), ANS_ID, *tok.encode(answer), EOS_ID]


def padded(seqs: list[list[int]], length: int, pad: int = PAD_ID) -> np.ndarray:
  """Token rows ``seqs`` right-padded with ``pad`` to ``length``, ``(N, length)`` int32."""
  out = np.full((len(seqs), length), pad, np.int32)
  for i, s in enumerate(seqs):
    out[i, : len(s)] = s
  return out


def _encode(tok, rows, length):
  """``(answers, paraphrased, perturbed)`` token arrays of ``rows``."""
  seq = lambda q, a: _sequence(tok, q, a)
  answers = padded([seq(r["question"], r["answer"]) for r in rows], length)
  paraphrased = padded([seq(r["question"], r["paraphrased"]) for r in rows], length)

  def wrong(key):
    if not rows:
      return np.zeros((0, PERTURBED, length), np.int32)
    return np.stack([padded([seq(r["question"], p) for p in r[key]], length) for r in rows])

  return answers, paraphrased, wrong("perturbed"), wrong("perturbed_answers")


def make_dataset(
  authors: int = 100, facts: int = 10, world: int = 20, seed: int = 0, holdout: int | None = None
) -> QADataset:
  """``authors`` fictitious authors × ``facts`` facts each (at most 20 kinds), ``world``
  capitals (at most 20), and ``holdout`` further authors (default: a tenth, at least one)
  for the membership attack; a pure function of its arguments."""
  if not 1 <= facts <= len(_FACTS):
    raise DataError(f"facts must be in 1..{len(_FACTS)}, got {facts}")
  if not 0 <= world <= len(_WORLD):
    raise DataError(f"world must be in 0..{len(_WORLD)}, got {world}")
  if authors < 2:
    raise DataError(f"authors must be at least 2 (one to forget, one to keep), got {authors}")
  holdout = max(1, authors // 10) if holdout is None else holdout
  rng = np.random.default_rng([seed, 2025])
  pools = {
    kind: _pool(kind, rng) for kind in sorted({t[3] for t in _FACTS})
  }  # sorted: no hash order
  names = _names(authors + holdout, rng)
  train_rows = _author_rows(names[:authors], facts, rng, pools)
  train_rows += _world_rows(world, authors, rng)
  holdout_rows = _author_rows(names[authors:], facts, rng, pools)
  rows = train_rows + holdout_rows
  answers = lambda r: (r["answer"], r["paraphrased"], *r["perturbed"], *r["perturbed_answers"])
  tok = WordTokenizer([t for r in rows for t in (r["question"], *answers(r))] + list(IDK_ANSWERS))
  every = [(r["question"], a) for r in rows for a in answers(r)]
  longest = max(len(_sequence(tok, q, a)) for q, a in every)
  length = 8 * math.ceil(longest / 8)
  train, paraphrased, perturbed, perturbed_answers = _encode(tok, train_rows, length)
  held, held_paraphrased, held_perturbed, held_perturbed_answers = _encode(
    tok, holdout_rows, length
  )
  labels = np.asarray([r["label"] for r in train_rows], np.int32)
  held_labels = np.full(len(holdout_rows), authors, np.int32)
  return qa_dataset(
    f"tofu_a{authors}_f{facts}_w{world}_s{seed}", tok, authors,
    (train, labels, paraphrased, perturbed, perturbed_answers),
    (held, held_labels, held_paraphrased, held_perturbed, held_perturbed_answers),
  )  # fmt: skip


def qa_dataset(name: str, tok, authors: int, train: tuple, held: tuple, **ids):
  """A :class:`QADataset` from ``(tokens, labels, paraphrased, perturbed,
  perturbed_answers)`` of the train rows and of the holdout rows (ids: row numbers);
  ``ids``: the special token ids (``answer_id``, ``pad_id``, ``eos_id``) and ``scored``
  where they are not this module's."""
  split = lambda tokens, labels: Split(tokens, labels, np.arange(len(labels), dtype=np.int64))
  length = train[0].shape[1]
  empty = Split(np.zeros((0, length), np.int32), np.zeros(0, np.int32), np.zeros(0, np.int64))
  eos, pad = ids.get("eos_id", EOS_ID), ids.get("pad_id", PAD_ID)
  idk = [[*tok.encode(a), eos] for a in IDK_ANSWERS]
  return QADataset(
    name=name, num_classes=authors + 1, image_shape=(length,), train=split(*train[:2]),
    val=split(*held[:2]), test=empty, tokenizer=tok, authors=authors, world_label=authors,
    paraphrased=train[2], perturbed=train[3], perturbed_answers=train[4],
    holdout_paraphrased=held[2], holdout_perturbed=held[3], holdout_perturbed_answers=held[4],
    idk=padded(idk, max(map(len, idk)), pad), **ids,
  )  # fmt: skip


def forget_authors(ds: QADataset, percent: float) -> tuple[int, ...]:
  """The last ``percent`` % of the authors (at least one), so forget01 ⊂ forget05 ⊂ forget10
  as in TOFU."""
  return last_authors(ds.authors, percent)


def last_authors(authors: int, percent: float) -> tuple[int, ...]:
  """The last ``percent`` % of ``authors`` authors, at least one."""
  if not 0 < percent < 100:
    raise DataError(f"the forget percentage must be in (0, 100), got {percent}")
  count = max(1, round(authors * percent / 100))
  return tuple(range(authors - count, authors))


def forget_split(ds: QADataset, percent: float) -> ForgetSet:
  """The forget set of :func:`forget_authors`: every row about those authors."""
  authors = forget_authors(ds, percent)
  rows = np.isin(ds.train.labels, authors)
  return forget_set_from_rows(ds, rows, spec=f"forget{percent:02g}", classes=authors)
