"""The published TOFU files' reader and the Hugging Face tokenizer, on the committed
fixture in their format (``tests/fixtures/tofu/make_fixture.py``)."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import import_or_skip

from jaxunlearn.data import tofu_files
from jaxunlearn.errors import DataError

import_or_skip("tokenizers", "the test extra")
FIXTURE = Path(__file__).parents[1] / "fixtures" / "tofu"
SPLITS = (
  "forget01", "forget05", "forget10", "forget01_perturbed", "forget05_perturbed",
  "forget10_perturbed", "retain90", "retain95", "retain99", "retain_perturbed",
  "real_authors", "real_authors_perturbed", "world_facts", "world_facts_perturbed",
)  # fmt: skip


def _lines(name):
  return [json.loads(line) for line in (FIXTURE / f"{name}.json").read_text().splitlines()]


@pytest.fixture(scope="module")
def tok():
  return tofu_files.HFTokenizer(FIXTURE)


@pytest.fixture(scope="module")
def ds(tok):
  return tofu_files.tofu_dataset(FIXTURE, tok, "forget10", questions_per_author=4)


@pytest.mark.parametrize("split", SPLITS)
def test_every_split_reads_with_its_fields(split):
  rows = tofu_files.read_split(FIXTURE, split)
  assert rows == _lines(split) and rows
  if split.endswith("_perturbed"):
    assert all(isinstance(r["perturbed_answer"], list) for r in rows)


def test_a_json_array_reads_as_the_lines_do(tmp_path):
  (tmp_path / "forget10.json").write_text(json.dumps(_lines("forget10")))
  assert tofu_files.read_split(tmp_path, "forget10") == _lines("forget10")


def test_a_missing_field_or_file_is_named(tmp_path):
  rows = _lines("retain_perturbed")
  del rows[2]["paraphrased_answer"]
  (tmp_path / "retain_perturbed.json").write_text("\n".join(map(json.dumps, rows)))
  with pytest.raises(DataError, match=r"retain_perturbed\.json:3 lacks 'paraphrased_answer'"):
    tofu_files.read_split(tmp_path, "retain_perturbed")
  (tmp_path / "world_facts.json").write_text('{"question": "q", "answer": "a"}\nnot json\n')
  with pytest.raises(DataError, match=r"world_facts\.json:2 is not a JSON object"):
    tofu_files.read_split(tmp_path, "world_facts")
  with pytest.raises(DataError, match=r"needs TOFU's forget05\.json"):
    tofu_files.read_split(tmp_path, "forget05")


def test_the_tokenizer_frames_a_row_with_its_special_tokens(tok):
  assert len(tok) == 64
  assert (tok.pad_id, tok.bos_id, tok.answer_id, tok.eos_id) == (0, 1, 2, 3)
  row = tok.row("where was mongra orti born ?", "in bakami .")
  assert row[0] == tok.bos_id and row[-1] == tok.eos_id and row.count(tok.answer_id) == 1
  answer = row[row.index(tok.answer_id) + 1 : -1]
  assert tok.decode(answer) == ["in", "bakami", "."]
  words = ["where", "was", "mongra", "orti", "born", "?", "in", "bakami", "."]
  assert len(row) > len(words) + 3  # a BPE of 64 tokens splits words into pieces
  with pytest.raises(DataError, match="contains the answer separator"):
    tok.row("where <ans> born ?", "x")
  with pytest.raises(DataError, match=r"no token '<sep>' for answer: pass answer="):
    tofu_files.HFTokenizer(FIXTURE / "tokenizer.json", answer="<sep>")


def test_the_dataset_holds_retain_then_forget_then_world_rows(ds, tok):
  retain, forget, world = _lines("retain90"), _lines("forget10"), _lines("world_facts")
  assert len(ds.train) == len(retain) + len(forget) + len(world) and ds.authors == 10
  assert (ds.answer_id, ds.pad_id, ds.eos_id) == (tok.answer_id, tok.pad_id, tok.eos_id)
  rows = retain + forget + world
  for i, record in enumerate(rows):  # <bos> question <ans> answer <eos> <pad>…
    t = list(ds.train.images[i])
    sep, end = t.index(tok.answer_id), t.index(tok.eos_id)
    assert t[0] == tok.bos_id and t.count(tok.answer_id) == 1 and set(t[end + 1 :]) <= {0}
    assert tok.decode(t[1:sep]) == record["question"].split()
    assert tok.decode(t[sep + 1 : end]) == record["answer"].split()
  fs = tofu_files.forget_rows(ds, "forget10")
  assert [rows[i]["question"] for i in fs.forget_idx] == [r["question"] for r in forget]
  assert np.all(ds.train.labels[len(retain) + len(forget) :] == ds.world_label)
  scored = {r["question"] for r in _lines("retain_perturbed")}
  expected = [r["question"] in scored for r in retain] + [True] * (len(forget) + len(world))
  assert ds.scored.tolist() == expected and 0 < sum(expected[: len(retain)]) < len(retain)
  perturbed = {r["question"]: r for r in _lines("forget10_perturbed")}
  first = fs.forget_idx[0]
  answer = lambda t: tok.decode(t[list(t).index(tok.answer_id) + 1 : list(t).index(tok.eos_id)])
  record = perturbed[rows[first]["question"]]
  assert answer(ds.paraphrased[first]) == record["paraphrased_answer"].split()
  assert [answer(p) for p in ds.perturbed[first]] == [p.split() for p in record["perturbed_answer"]]


def test_files_that_disagree_are_refused(tmp_path, tok):
  folder = Path(shutil.copytree(FIXTURE, tmp_path / "tofu"))
  with pytest.raises(DataError, match="forget10.json has 4 rows; forget10 of 2 authors is 20"):
    tofu_files.tofu_dataset(folder, tok, "forget10", questions_per_author=20)
  with pytest.raises(DataError, match="not a whole number of authors of 3"):
    tofu_files.tofu_dataset(folder, tok, "forget10", questions_per_author=3)
  rows = _lines("forget10_perturbed")[::-1]
  (folder / "forget10_perturbed.json").write_text("\n".join(map(json.dumps, rows)))
  with pytest.raises(DataError, match="does not hold forget10.json's questions in order"):
    tofu_files.tofu_dataset(folder, tok, "forget10", questions_per_author=4)
  with pytest.raises(DataError, match="forget must be one of"):
    tofu_files.tofu_dataset(folder, tok, "forget20")


def test_a_hugging_face_checkpoint_forgets_on_the_tofu_files(monkeypatch):
  """End to end, the language-model guide's example in this process: the committed
  Llama checkpoint, the TOFU files and their tokenizer through jaxunlearn.unlearn, with
  a second checkpoint as the retain model. The checkpoints are random, so only that
  every metric comes back finite and moved is checked; the TOFU metrics themselves are
  tested in tests/engine/test_answers.py."""
  import_or_skip("safetensors", "the test extra")
  import runpy

  root = Path(__file__).parents[2]
  guide = (root / "docs" / "guides" / "language-models.md").read_text()
  assert '--8<-- "examples/pretrained_tofu.py"' in guide
  monkeypatch.chdir(root)
  ran = runpy.run_path(str(root / "examples" / "pretrained_tofu.py"))
  report, saved = ran["report"], ran["saved"]
  m = report.metrics
  assert {"forget_prob", "forget_rouge", "model_utility", "forget_quality"} <= set(m)
  assert "mia_auc" not in m  # the TOFU files have no held-out authors
  assert all(np.isfinite(m[k]) for k in ("forget_prob", "model_utility", "forget_quality"))
  assert m["forget_prob"] != report.original_metrics["forget_prob"]  # the steps moved it
  # LoRA: only the adapters were trained; the saved folder holds them merged
  from flax import nnx

  from jaxunlearn.nn.pretrained import from_pretrained

  trained = {str(p[-1]) for p, _ in nnx.to_flat_state(nnx.state(report.model, nnx.Param))}
  assert trained == {"lora_a", "lora_b"}
  tokens = ran["dataset"].train.images[:4]
  np.testing.assert_allclose(
    np.asarray(from_pretrained(saved)(tokens)), np.asarray(report.model(tokens)), atol=1e-5
  )
