import numpy as np
import optax
from flax import nnx

import jaxunlearn
from jaxunlearn import objectives
from jaxunlearn.data import tofu
from jaxunlearn.nn.transformer import Decoder

# A TOFU-style set of fictitious authors, generated offline from a seed; rows are tokens.
ds = tofu.make_dataset(authors=8, facts=4, world=4)
forget = "class:7"  # author 7
keep = ds.train.labels != 7


def fit(model, rows, steps=300):  # your own loop: Adam on the answer tokens, full batch
  optimizer = nnx.Optimizer(model, optax.adam(3e-3), wrt=nnx.Param)
  tokens = ds.train.images[rows]

  @nnx.jit
  def step(model, optimizer):
    loss = lambda m: objectives.answer_losses(m(tokens), tokens).mean()
    value, grads = nnx.value_and_grad(loss)(model)
    optimizer.update(model, grads)
    return value

  for _ in range(steps):
    loss = step(model, optimizer)
  return float(loss)


def decoder(seed):
  return Decoder(len(ds.tokenizer), ds.tokens_per_row, size="tiny", rngs=nnx.Rngs(seed))


model, retain_model = decoder(0), decoder(0)
print(f"fine-tuned: answer loss {fit(model, np.arange(len(ds.train))):.3f}")
print(f"retain model (without author 7): answer loss {fit(retain_model, np.flatnonzero(keep)):.3f}")

report = jaxunlearn.unlearn(
  model,  # the NNX module itself; it is not changed (report.model is the unlearned one)
  dataset=ds,
  forget=forget,
  method="igs",
  loss=objectives.answer_losses,
  steps=40,
  batch_size=16,
  retrained=(retain_model, None),  # adds forget quality and the gaps to it
)
shown = ("forget_prob", "forget_rouge", "model_utility")
for name, metrics in (
  ("original", report.original_metrics),
  ("retain model", report.retrained_metrics),
):
  print(f"{name}:", ", ".join(f"{k} {metrics[k]:.3g}" for k in shown))
print("igs:", report.summary())
