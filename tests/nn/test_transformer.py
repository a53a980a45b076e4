import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from jaxunlearn import objectives
from jaxunlearn.nn.transformer import SIZES, Decoder, functional_lm


def test_functional_view_carries_the_loss_and_trains():
  model = Decoder(vocab=9, length=6, size="tiny", rngs=nnx.Rngs(0))
  fm, params, state = functional_lm(model, objectives.answer_losses)
  assert fm.example_loss is objectives.answer_losses and state == {}
  assert hash(fm) == hash(functional_lm(model, objectives.answer_losses)[0])
  tokens = jnp.array([[1, 5, 2, 6, 3, 0], [1, 7, 2, 8, 3, 0]])
  loss = lambda p: jnp.mean(fm.example_loss(fm.apply(p, state, tokens, train=True)[0], tokens))
  tx = optax.adam(1e-2)

  @jax.jit  # one compile: 60 eager steps through the module took 40 s
  def step(params, opt):
    updates, opt = tx.update(jax.grad(loss)(params), opt, params)
    return optax.apply_updates(params, updates), opt

  opt = tx.init(params)
  first = float(loss(params))
  for _ in range(60):
    params, opt = step(params, opt)
  assert float(loss(params)) < 0.1 * first  # two rows are memorised


def test_sizes_grow():
  counts = []
  for size in SIZES:
    m = Decoder(vocab=50, length=16, size=size, rngs=nnx.Rngs(0))
    counts.append(sum(np.size(x) for x in jax.tree.leaves(nnx.state(m, nnx.Param))))
  assert counts == sorted(counts) and counts[0] < 20_000
