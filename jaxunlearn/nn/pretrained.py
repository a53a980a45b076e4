"""Read a Hugging Face Llama checkpoint folder into :class:`~jaxunlearn.nn.llama.Llama`,
and write one back (:func:`save_pretrained`).

A folder as ``save_pretrained`` writes it: ``config.json`` and ``model.safetensors``, or
shards listed in ``model.safetensors.index.json``. Tensors are read with the
``safetensors`` package (``pip install 'jaxunlearn[llm]'``), offline; nothing is
downloaded. Names map one to one (``model.layers.0.self_attn.q_proj.weight`` →
``layers[0].self_attn.q_proj.kernel``, transposed); a missing tensor, one nobody reads or
a shape that differs fails with a one-line error naming it, before the model is built.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import jax.numpy as jnp
from flax import nnx, traverse_util

from jaxunlearn.errors import ConfigError, require
from jaxunlearn.nn.llama import Llama, LlamaConfig, to_hf
from jaxunlearn.nn.lora import merge_lora

ARCHITECTURES = ("LlamaForCausalLM",)
_IGNORED = ("rotary_emb.inv_freq",)  # old checkpoints save the frequencies; we compute them


def _hf_name(path: tuple) -> tuple[str, bool]:
  """Our parameter path → (the checkpoint's tensor name, whether it is transposed)."""
  *module, leaf = (str(p) for p in path)
  prefix = "" if module[0] == "lm_head" else "model."
  suffix = {"kernel": "weight", "embedding": "weight"}.get(leaf, leaf)
  return prefix + ".".join(module) + "." + suffix, leaf == "kernel"


def _safetensors_files(folder: Path) -> list[Path]:
  index = folder / "model.safetensors.index.json"
  if index.exists():
    shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
    return [folder / s for s in shards]
  single = folder / "model.safetensors"
  if single.exists():
    return [single]
  raise ConfigError(
    f"{folder} has neither model.safetensors nor model.safetensors.index.json: save the "
    "model with save_pretrained(..., safe_serialization=True)"
  )


def read_config(folder) -> LlamaConfig:
  """The :class:`~jaxunlearn.nn.llama.LlamaConfig` of ``folder/config.json``; another
  architecture fails with a one-line error naming it."""
  folder = Path(folder)
  path = folder / "config.json"
  if not path.exists():
    raise ConfigError(f"{folder} has no config.json: pass a folder written by save_pretrained")
  config = json.loads(path.read_text())
  arch = config.get("architectures") or [config.get("model_type", "?")]
  if not set(arch) & set(ARCHITECTURES) and config.get("model_type") != "llama":
    raise ConfigError(
      f"{path}: architecture {', '.join(arch)} is not supported; from_pretrained reads "
      f"{', '.join(ARCHITECTURES)} (model_type llama)"
    )
  return LlamaConfig.from_hf(config)


def from_pretrained(folder, *, dtype=jnp.float32) -> Llama:
  """The checkpoint in ``folder`` as an NNX :class:`~jaxunlearn.nn.llama.Llama` whose
  parameters (and computation) are in ``dtype`` (``jnp.float32`` or ``jnp.bfloat16``).
  The module is built abstractly (``nnx.eval_shape``), so no random weights are made."""
  safe_open = require("safetensors", "reading a Hugging Face checkpoint").safe_open
  folder = Path(folder)
  cfg = read_config(folder)
  abstract = nnx.eval_shape(lambda: Llama(cfg, dtype=dtype, rngs=nnx.Rngs(0)))
  graphdef, state = nnx.split(abstract)
  pure = traverse_util.flatten_dict(nnx.to_pure_dict(state))  # {(path…): leaf}
  wanted = {}
  for keys, leaf in pure.items():
    name, transposed = _hf_name(keys)
    wanted[name] = (keys, leaf.shape, transposed)
  tensors = {}
  for file in _safetensors_files(folder):
    with safe_open(str(file), framework="flax") as f:
      for name in f.keys():  # noqa: SIM118 - safe_open is not a mapping
        if name in wanted:
          tensors[name] = f.get_tensor(name)
        elif not name.endswith(_IGNORED) and not (
          cfg.tie_word_embeddings and name == "lm_head.weight"
        ):
          raise ConfigError(
            f"{file.name}: tensor {name} has no place in a {cfg.num_hidden_layers}-layer "
            "Llama: the checkpoint is another architecture or config.json does not match it"
          )
  missing = sorted(set(wanted) - set(tensors))
  if missing:
    more = f" and {len(missing) - 1} more" if len(missing) > 1 else ""
    raise ConfigError(f"{folder}: the checkpoint lacks tensor {missing[0]}{more}")
  for name, (keys, shape, transposed) in wanted.items():
    value = tensors[name].T if transposed else tensors[name]
    if value.shape != shape:
      raise ConfigError(
        f"{folder}: tensor {name} has shape {tuple(tensors[name].shape)}, config.json "
        f"implies {shape[::-1] if transposed else shape}"
      )
    pure[keys] = jnp.asarray(value, dtype)
  nnx.replace_by_pure_dict(state, traverse_util.unflatten_dict(pure))
  return nnx.merge(graphdef, state)


# What a checkpoint folder holds beside its weights, copied by save_pretrained(like=).
_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")
_TOKENIZER_FILES += ("generation_config.json",)


def save_pretrained(model: nnx.Module, folder, *, like=None) -> Path:
  """Writes ``model`` (a :class:`~jaxunlearn.nn.llama.Llama`, LoRA adapters or not) as a
  Hugging Face checkpoint folder that :func:`from_pretrained` and transformers'
  ``LlamaForCausalLM.from_pretrained`` read: ``model.safetensors`` (one file, the names
  and layouts the reader maps, in the model's dtype) and ``config.json``. Adapters of
  :func:`~jaxunlearn.nn.lora.with_lora` are merged into the weights first
  (:func:`~jaxunlearn.nn.lora.merge_lora`). ``like``: the folder the model came from,
  whose ``config.json`` (every field transformers wrote, not only those the forward pass
  reads) and tokenizer files are copied; without it ``config.json`` is written from the
  model's :class:`~jaxunlearn.nn.llama.LlamaConfig`. A folder that already holds weights is
  refused, so nothing is overwritten."""
  require("safetensors", "writing a Hugging Face checkpoint")
  from safetensors.flax import save_file

  folder = Path(folder)
  if any((folder / f).exists() for f in ("model.safetensors", "model.safetensors.index.json")):
    raise ConfigError(f"{folder} already holds a checkpoint; choose a new folder")
  model = merge_lora(model)
  if not isinstance(model, Llama):
    raise ConfigError(f"save_pretrained writes a Llama, got {type(model).__name__}")
  pure = traverse_util.flatten_dict(nnx.to_pure_dict(nnx.state(model, nnx.Param)))
  tensors = {}
  for keys, leaf in pure.items():
    name, transposed = _hf_name(keys)
    tensors[name] = jnp.asarray(leaf.T if transposed else leaf)
  folder.mkdir(parents=True, exist_ok=True)
  if like is not None:
    like = Path(like)
    if read_config(like) != model.config:
      raise ConfigError(f"{like}/config.json describes another model than the one saved")
    for name in ("config.json", *_TOKENIZER_FILES):
      if (like / name).exists():
        shutil.copy(like / name, folder / name)
  else:
    config = to_hf(model.config, model.dtype)
    (folder / "config.json").write_text(json.dumps(config, indent=2) + "\n")
  save_file(tensors, str(folder / "model.safetensors"), metadata={"format": "pt"})
  return folder
