"""LoRA adapters: the same function at the start, only the adapters trained, merged back
into plain layers; through jaxunlearn.unlearn on the committed Llama checkpoint."""

import functools
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import import_or_skip
from flax import nnx

from jaxunlearn.errors import ConfigError
from jaxunlearn.nn import lora
from jaxunlearn.nn.llama import Llama, LlamaConfig

CFG = LlamaConfig(vocab_size=16, hidden_size=8, intermediate_size=12, num_hidden_layers=2,
                  num_attention_heads=2, num_key_value_heads=1)  # fmt: skip
TOKENS = jnp.array([[1, 5, 2, 7, 9, 3], [4, 4, 8, 0, 1, 2]])


def _count(tree):
  return sum(x.size for x in jax.tree.leaves(tree))


def test_adapters_start_as_the_model_and_are_the_only_params():
  model = Llama(CFG, rngs=nnx.Rngs(0))
  adapted = lora.with_lora(model, rank=2, rngs=nnx.Rngs(1))
  np.testing.assert_array_equal(adapted(TOKENS), model(TOKENS))  # B = 0
  params = nnx.state(adapted, nnx.Param)
  # 2 layers × 7 projections × (in·2 + 2·out)
  per_layer = 2 * (8 + 8) + 2 * (8 + 4) * 2 + 2 * (8 + 8) + 2 * (8 + 12) * 2 + 2 * (12 + 8)
  assert _count(params) == 2 * per_layer
  assert {str(k[-1]) for k, _ in nnx.to_flat_state(params)} == {"lora_a", "lora_b"}
  assert isinstance(model.layers[0].self_attn.q_proj, nnx.Linear)  # the input is unchanged


def test_merging_folds_scale_times_a_b_into_the_kernel():
  model = Llama(CFG, rngs=nnx.Rngs(0))
  adapted = lora.with_lora(model, rank=2, alpha=6.0, targets=("q_proj",), rngs=nnx.Rngs(1))
  q = adapted.layers[1].self_attn.q_proj
  q.lora_b[...] = jax.random.normal(jax.random.key(2), q.lora_b.shape)
  merged = lora.merge_lora(adapted)
  kernel = merged.layers[1].self_attn.q_proj.kernel[...]
  by_hand = model.layers[1].self_attn.q_proj.kernel[...] + 3.0 * q.lora_a[...] @ q.lora_b[...]
  np.testing.assert_allclose(kernel, by_hand, rtol=1e-6, atol=1e-6)
  np.testing.assert_allclose(merged(TOKENS), adapted(TOKENS), rtol=1e-5, atol=1e-5)
  assert not np.allclose(merged(TOKENS), model(TOKENS))
  plain = jax.tree.map(jnp.shape, nnx.state(model, nnx.Param))
  assert jax.tree.map(jnp.shape, nnx.state(merged, nnx.Param)) == plain  # a plain Llama again


def test_a_target_that_matches_nothing_is_named():
  with pytest.raises(ConfigError, match="no nnx.Linear named 'qkv'"):
    lora.with_lora(Llama(CFG, rngs=nnx.Rngs(0)), targets=("qkv",), rngs=nnx.Rngs(1))
  with pytest.raises(ConfigError, match="rank must be at least 1"):
    lora.with_lora(Llama(CFG, rngs=nnx.Rngs(0)), rank=0, rngs=nnx.Rngs(1))


def test_every_method_trains_only_the_adapters_through_unlearn():
  """An unlearning run on the adapted checkpoint moves the adapters and nothing else; its
  merged model is a plain Llama computing what the adapted one computes."""
  import_or_skip("safetensors", "the test extra")
  import jaxunlearn
  from jaxunlearn import objectives
  from jaxunlearn.nn.pretrained import from_pretrained

  model = from_pretrained(Path(__file__).parents[1] / "fixtures" / "llama" / "gqa-llama3")
  adapted = lora.with_lora(model, rank=4, rngs=nnx.Rngs(1))
  import_or_skip("tokenizers", "the test extra")
  from jaxunlearn.data import tofu_files

  folder = Path(__file__).parents[1] / "fixtures" / "tofu"
  tok = tofu_files.HFTokenizer(folder)
  ds = tofu_files.tofu_dataset(folder, tok, "forget10", questions_per_author=4)
  loss = functools.partial(objectives.answer_losses, answer_id=tok.answer_id, pad_id=tok.pad_id)
  report = jaxunlearn.unlearn(
    adapted, dataset=ds, forget="class:9", method="graddiff", loss=loss, steps=3,
    batch_size=8, learning_rate=1e-2, progress=False,
  )  # fmt: skip
  tokens = ds.train.images[:4]
  before, after = nnx.state(adapted), nnx.state(report.model)
  moved = jax.tree.map(lambda a, b: bool(jnp.any(a != b)), before, after)
  for path, changed in nnx.to_flat_state(moved):
    assert changed == (str(path[-1]) == "lora_b" or str(path[-1]) == "lora_a"), path
  merged = lora.merge_lora(report.model)
  np.testing.assert_allclose(merged(tokens), report.model(tokens), rtol=1e-4, atol=1e-4)
