"""The Llama decoder against transformers' own forward pass, on committed checkpoints
(``tests/fixtures/llama/make_fixture.py`` wrote them and their logits with PyTorch)."""

import json
import shutil
from pathlib import Path

import jax.numpy as jnp
import numpy as np
import pytest
from conftest import import_or_skip

from jaxunlearn.errors import ConfigError
from jaxunlearn.nn.llama import LlamaConfig, inverse_frequencies

safetensors = import_or_skip("safetensors", "the test extra")
from jaxunlearn.nn.pretrained import from_pretrained  # noqa: E402

FIXTURES = Path(__file__).parents[1] / "fixtures" / "llama"
NAMES = ("gqa-llama3", "tied-default")


@pytest.mark.parametrize("name", NAMES)
def test_logits_equal_transformers_in_float32(name):
  ref = np.load(FIXTURES / name / "logits.npz")
  logits = np.asarray(from_pretrained(FIXTURES / name)(ref["tokens"]))
  assert logits.shape == ref["float32"].shape == (2, 10, 64)
  np.testing.assert_allclose(logits, ref["float32"], atol=1e-4, rtol=0)


@pytest.mark.parametrize("name", NAMES)
def test_bfloat16_is_within_its_rounding(name):
  """bfloat16 keeps 8 bits of mantissa: ours may differ from float32 by what
  transformers' own bfloat16 forward differs by (measured 0.030 and 0.021 of logits up to
  2.2), with room for another order of roundings, and no more."""
  ref = np.load(FIXTURES / name / "logits.npz")
  model = from_pretrained(FIXTURES / name, dtype=jnp.bfloat16)
  assert model.embed_tokens.embedding.dtype == jnp.bfloat16
  logits = model(ref["tokens"])
  assert logits.dtype == jnp.bfloat16
  ours = np.abs(np.asarray(logits, np.float32) - ref["float32"]).max()
  theirs = np.abs(ref["bfloat16"] - ref["float32"]).max()
  assert 0 < ours <= 1.5 * theirs, (ours, theirs)


def test_the_head_is_tied_or_untied_as_the_config_says():
  assert from_pretrained(FIXTURES / "tied-default").lm_head is None
  assert from_pretrained(FIXTURES / "gqa-llama3").lm_head.kernel.shape == (32, 64)


def test_rope_theta_is_read_as_transformers_4_and_5_write_it():
  v5 = json.loads((FIXTURES / "gqa-llama3" / "config.json").read_text())
  rope = v5.pop("rope_parameters")
  v4 = {**v5, "rope_theta": rope.pop("rope_theta"), "rope_scaling": rope}
  a, b = (
    LlamaConfig.from_hf(v5 | {"rope_parameters": {**rope, "rope_theta": 10000.0}}),
    LlamaConfig.from_hf(v4),
  )
  assert a == b and a.rope_type == "llama3" and a.rope_scaling == (8.0, 1.0, 4.0, 16.0)
  no_rope = LlamaConfig.from_hf({k: v for k, v in v4.items() if not k.startswith("rope")})
  assert (no_rope.rope_type, no_rope.rope_theta) == ("default", 10000.0)


def test_llama3_frequencies_follow_the_three_bands():
  """Against the definition: wavelengths under context/high kept, over context/low
  divided by the factor, the middle interpolated by (context/λ − low)/(high − low)."""
  cfg = LlamaConfig(64, 32, 48, 1, 4, rope_type="llama3", rope_scaling=(8.0, 1.0, 4.0, 16.0))
  base = 1 / 10000.0 ** (np.arange(0, 8, 2) / 8)
  expected = []
  for f in base:
    wavelength = 2 * np.pi / f
    if wavelength < 16 / 4:
      expected.append(f)
    elif wavelength > 16 / 1:
      expected.append(f / 8)
    else:
      s = (16 / wavelength - 1) / 3
      expected.append((1 - s) * f / 8 + s * f)
  np.testing.assert_allclose(inverse_frequencies(cfg), expected, rtol=1e-6)


def _copy(tmp_path, name="gqa-llama3"):
  return Path(shutil.copytree(FIXTURES / name, tmp_path / name))


def test_a_missing_tensor_is_named(tmp_path):
  folder = _copy(tmp_path, "tied-default")
  from safetensors.numpy import load_file, save_file

  tensors = load_file(folder / "model.safetensors")
  del tensors["model.layers.1.mlp.up_proj.weight"]
  save_file(tensors, folder / "model.safetensors", metadata={"format": "pt"})
  with pytest.raises(ConfigError, match=r"lacks tensor model\.layers\.1\.mlp\.up_proj\.weight$"):
    from_pretrained(folder)


def test_another_architecture_or_a_mismatched_config_is_refused(tmp_path):
  folder = _copy(tmp_path)
  config = json.loads((folder / "config.json").read_text())
  (folder / "config.json").write_text(
    json.dumps({**config, "architectures": ["GPT2LMHeadModel"], "model_type": "gpt2"})
  )
  with pytest.raises(ConfigError, match="architecture GPT2LMHeadModel is not supported"):
    from_pretrained(folder)
  (folder / "config.json").write_text(json.dumps({**config, "num_hidden_layers": 1}))
  with pytest.raises(ConfigError, match=r"tensor model\.layers\.1\..* has no place in a 1-layer"):
    from_pretrained(folder)
  (folder / "config.json").write_text(json.dumps({**config, "intermediate_size": 40}))
  with pytest.raises(ConfigError, match=r"mlp\.\w+_proj\.weight has shape"):
    from_pretrained(folder)
  rope = {**config["rope_parameters"], "rope_type": "yarn"}
  (folder / "config.json").write_text(json.dumps({**config, "rope_parameters": rope}))
  with pytest.raises(ConfigError, match="rope type 'yarn' is not supported"):
    from_pretrained(folder)
  with pytest.raises(ConfigError, match="has no config.json"):
    from_pretrained(tmp_path)
