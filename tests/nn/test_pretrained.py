"""save_pretrained: what it writes reads back (with from_pretrained, and with transformers
where the llm-reference extra is installed), LoRA merged, nothing overwritten."""

from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import import_or_skip
from flax import nnx

from jaxunlearn.errors import ConfigError
from jaxunlearn.nn.lora import with_lora

safetensors = import_or_skip("safetensors", "the test extra")
from jaxunlearn.nn.pretrained import from_pretrained, read_config, save_pretrained  # noqa: E402

FIXTURES = Path(__file__).parents[1] / "fixtures" / "llama"
NAMES = ("gqa-llama3", "tied-default")
TOKENS = jnp.array([[1, 5, 9, 3, 7, 2, 11, 4]])


def _tensors(folder: Path) -> dict:
  out = {}
  for file in sorted(folder.glob("*.safetensors")):
    with safetensors.safe_open(str(file), framework="numpy") as f:
      out.update({name: f.get_tensor(name) for name in f.keys()})  # noqa: SIM118
  return out


def _adapted(model):
  """LoRA r4 with B random (not zero), so the merge changes the weights."""
  adapted = with_lora(model, rank=4, rngs=nnx.Rngs(0))
  for i, (path, v) in enumerate(nnx.to_flat_state(nnx.state(adapted, nnx.Param))):
    if str(path[-1]) == "lora_b":
      v.set_value(0.1 * jax.random.normal(jax.random.key(i), v.shape, v.dtype))
  return adapted


@pytest.mark.parametrize("name", NAMES)
def test_a_saved_checkpoint_holds_the_same_tensors_under_the_same_names(name, tmp_path):
  # transformers wrote the fixture (two shards for gqa-llama3); ours is one file
  save_pretrained(from_pretrained(FIXTURES / name), tmp_path / "out", like=FIXTURES / name)
  theirs, ours = _tensors(FIXTURES / name), _tensors(tmp_path / "out")
  assert sorted(ours) == sorted(theirs)
  for key, value in theirs.items():
    np.testing.assert_array_equal(ours[key], value, err_msg=key)
  assert (tmp_path / "out" / "config.json").read_text() == (
    FIXTURES / name / "config.json"
  ).read_text()


@pytest.mark.parametrize("name", NAMES)
def test_config_json_written_from_the_model_reads_back(name, tmp_path):
  model = from_pretrained(FIXTURES / name)
  save_pretrained(model, tmp_path / "out")  # no like=: config.json from model.config
  assert read_config(tmp_path / "out") == model.config == read_config(FIXTURES / name)
  again = from_pretrained(tmp_path / "out")
  np.testing.assert_array_equal(np.asarray(again(TOKENS)), np.asarray(model(TOKENS)))


def test_lora_is_merged_into_the_weights_on_save(tmp_path):
  model = from_pretrained(FIXTURES / "gqa-llama3")
  adapted = _adapted(model)
  save_pretrained(adapted, tmp_path / "out", like=FIXTURES / "gqa-llama3")
  saved = from_pretrained(tmp_path / "out")
  moved = float(jnp.max(jnp.abs(adapted(TOKENS) - model(TOKENS))))
  assert moved > 0.1  # the adapters change the function, so a lost merge would show
  assert float(jnp.max(jnp.abs(saved(TOKENS) - adapted(TOKENS)))) < 1e-5


def test_bfloat16_is_saved_as_bfloat16(tmp_path):
  model = from_pretrained(FIXTURES / "tied-default", dtype=jnp.bfloat16)
  save_pretrained(model, tmp_path / "out")
  with safetensors.safe_open(str(tmp_path / "out" / "model.safetensors"), "flax") as f:
    assert {f.get_tensor(k).dtype for k in f.keys()} == {jnp.dtype(jnp.bfloat16)}  # noqa: SIM118
  again = from_pretrained(tmp_path / "out", dtype=jnp.bfloat16)
  for a, b in zip(jax.tree.leaves(nnx.state(again)), jax.tree.leaves(nnx.state(model))):
    np.testing.assert_array_equal(np.asarray(a, np.float32), np.asarray(b, np.float32))


def test_nothing_is_overwritten_and_another_models_config_is_refused(tmp_path):
  model = from_pretrained(FIXTURES / "gqa-llama3")
  save_pretrained(model, tmp_path / "out")
  with pytest.raises(ConfigError, match="already holds a checkpoint"):
    save_pretrained(model, tmp_path / "out")
  with pytest.raises(ConfigError, match="describes another model"):
    save_pretrained(model, tmp_path / "other", like=FIXTURES / "tied-default")


def test_transformers_reads_what_save_pretrained_wrote(tmp_path):
  """The independent reader: transformers' LlamaForCausalLM on our folder (LoRA merged,
  config.json ours) computes our logits."""
  torch = pytest.importorskip("torch", reason="pip install 'jaxunlearn[llm-reference]'")
  transformers = pytest.importorskip(
    "transformers", reason="pip install 'jaxunlearn[llm-reference]'"
  )
  adapted = _adapted(from_pretrained(FIXTURES / "gqa-llama3"))
  save_pretrained(adapted, tmp_path / "out")
  hf = transformers.LlamaForCausalLM.from_pretrained(tmp_path / "out", dtype=torch.float32)
  with torch.no_grad():
    theirs = hf.eval()(torch.tensor(np.asarray(TOKENS))).logits.numpy()
  assert float(np.max(np.abs(theirs - np.asarray(adapted(TOKENS))))) < 1e-4
