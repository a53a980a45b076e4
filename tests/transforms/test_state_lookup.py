"""The weights are found wherever the state is nested."""

import jax.numpy as jnp
import optax
import pytest
from flax import nnx

import jaxunlearn


def igs(lam=0.25):
  return jaxunlearn.implicit_gradient_surgery(optax.sgd(0.1), variant="paper", init_multiplier=lam)


PARAMS = {"w": jnp.zeros(3)}


@pytest.mark.parametrize(
  "wrap",
  [
    lambda tx: tx,
    lambda tx: optax.chain(optax.clip_by_global_norm(1.0), tx),
    lambda tx: optax.MultiSteps(tx, every_k_schedule=2),
    lambda tx: optax.chain(optax.chain(optax.identity(), tx)),
  ],
)
def test_found_through_wrappers(wrap):
  state = wrap(igs()).init(PARAMS)
  assert float(jaxunlearn.multiplier(state)) == pytest.approx(0.25)
  assert tuple(map(float, jaxunlearn.loss_weights(state))) == pytest.approx((0.25, 1.0))


def test_found_through_inject_hyperparams():
  tx = optax.inject_hyperparams(jaxunlearn.implicit_gradient_surgery)(
    inner=optax.sgd(0.1), tolerance=0.01, init_multiplier=0.25
  )
  assert float(jaxunlearn.multiplier(tx.init(PARAMS))) == pytest.approx(0.25)


def test_found_through_nnx_optimizer():
  model = nnx.Linear(3, 2, rngs=nnx.Rngs(0))
  opt = nnx.Optimizer(model, igs(0.5), wrt=nnx.Param)
  assert float(jaxunlearn.multiplier(opt.opt_state)) == pytest.approx(0.5)
  s = jaxunlearn.scalarized_loss(opt.opt_state, jnp.array(jnp.e), jnp.array(1.0))
  assert float(s) == pytest.approx(0.5)


def test_ambiguous_and_missing():
  both = optax.chain(igs(), igs()).init(PARAMS)
  with pytest.raises(ValueError, match="more than one"):
    jaxunlearn.multiplier(both)
  fam = jaxunlearn.famo(optax.sgd(0.1)).init(PARAMS)
  with pytest.raises(ValueError, match="with a multiplier"):
    jaxunlearn.multiplier(fam)


def test_explicit_state_has_a_multiplier_but_no_weights():
  state = jaxunlearn.explicit_gradient_surgery().init(PARAMS)
  assert float(jaxunlearn.multiplier(state)) == 0.0
  with pytest.raises(ValueError, match="ExplicitSurgeryState, which has none"):
    jaxunlearn.loss_weights(state)


def test_an_unregistered_lookalike_is_not_found():
  from typing import NamedTuple

  class LookAlike(NamedTuple):  # has every method, but is not registered
    multiplier: jnp.ndarray

    def scalarize(self, *losses):
      return sum(losses)

    def loss_weights(self):
      return (1.0, 1.0)

  with pytest.raises(ValueError, match="no jaxunlearn state"):
    jaxunlearn.multiplier((LookAlike(jnp.ones(())),))
