"""Unlearning with the model split across devices: fully sharded data parallel.

On a CPU-only machine this fakes 8 devices (the line below, before JAX starts); on a
machine with accelerators, JAX finds them and the line changes nothing.
"""

import os

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")

import jax  # noqa: E402
import numpy as np  # noqa: E402
from flax import nnx  # noqa: E402

import jaxunlearn  # noqa: E402
from jaxunlearn import objectives  # noqa: E402
from jaxunlearn.data import tofu  # noqa: E402
from jaxunlearn.engine import parallel  # noqa: E402
from jaxunlearn.nn.llama import Llama, LlamaConfig  # noqa: E402

dataset = tofu.make_dataset(authors=10, facts=10, world=4)  # or tofu_files.tofu_dataset
config = LlamaConfig(vocab_size=len(dataset.tokenizer), hidden_size=64, intermediate_size=128,
                     num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2)  # fmt: skip


def forget(**where):
  return jaxunlearn.unlearn(
    Llama(config, rngs=nnx.Rngs(0)),  # or from_pretrained(folder)
    dataset=dataset,
    forget="class:3",  # author 3
    method="igs",
    loss=objectives.answer_losses,
    steps=3,
    n_retain=16,  # the batch is split across the devices: multiples of their count
    n_forget=8,
    learning_rate=0.05,
    **where,
  )


mesh = parallel.make_mesh()  # every device, one axis
split = forget(mesh=mesh, fsdp=True)  # params, optimiser state and batch split over it
alone = forget()  # one device, for comparison


def on_device_0(tree) -> float:  # the share of a tree that the first device holds
  leaves = jax.tree.leaves(tree)
  held = sum(x.addressable_shards[0].data.nbytes for x in leaves)
  return held / sum(x.nbytes for x in leaves)


params = jax.tree.leaves(nnx.state(split.model))
difference = max(
  float(np.max(np.abs(np.asarray(a) - np.asarray(b))))
  for a, b in zip(params, jax.tree.leaves(nnx.state(alone.model)))
)
print(f"{parallel.num_devices(mesh)} devices; each holds {on_device_0(params):.3f} of the "
      f"params and {on_device_0(split.opt_state):.3f} of the optimiser state")  # fmt: skip
print(f"largest difference from one device: {difference:.1e}")
print(f"IGS multiplier: {jaxunlearn.multiplier(split.opt_state):.6f} split, "
      f"{jaxunlearn.multiplier(alone.opt_state):.6f} alone")  # fmt: skip
