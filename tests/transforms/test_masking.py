import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxunlearn import transforms


def test_masked_updates_multiply_leaf_by_leaf():
  tx = transforms.masked_updates({"w": jnp.array([1.0, 0.0, 0.5])})
  updates, _ = tx.update({"w": jnp.array([2.0, 2.0, 2.0])}, tx.init(None))
  assert updates["w"].tolist() == [2.0, 0.0, 1.0]


def test_frozen_parameters_never_move_under_igs():
  params = {"body": {"w": jnp.ones((3, 2))}, "head": {"w": jnp.ones((2,)), "b": jnp.zeros(())}}
  tx = optax.chain(
    transforms.frozen_except(["head"]),
    transforms.implicit_gradient_surgery(optax.adam(0.1), tolerance=0.01),
  )
  state = tx.init(params)
  loss = lambda p: jnp.sum(p["body"]["w"] ** 2) + jnp.sum(p["head"]["w"] ** 2) + p["head"]["b"]
  p = params
  for _ in range(3):
    g = jax.grad(loss)(p)
    updates, state = tx.update(
      g, state, p, retain_loss=loss(p) + 1.0, retain_loss_fn=lambda q: loss(q) + 1.0,
      losses=jnp.stack([loss(p) + 1.0, 1.0]), losses_fn=None, anchor_loss=None,
    )  # fmt: skip
    p = optax.apply_updates(p, updates)
  assert np.array_equal(p["body"]["w"], params["body"]["w"])
  assert not np.array_equal(p["head"]["w"], params["head"]["w"])
  assert float(transforms.multiplier(state)) >= 0.0  # the state readers see through the chain


def test_paths_are_dotted_and_prefixes_match_whole_names():
  params = {"blocks": [{"w": jnp.ones(1)}, {"w": jnp.ones(1)}], "blocks10": {"w": jnp.ones(1)}}
  names = [transforms.parameter_path(p) for p, _ in jax.tree_util.tree_flatten_with_path(params)[0]]
  assert names == ["blocks.0.w", "blocks.1.w", "blocks10.w"]
  tx = transforms.frozen_except(["blocks.1"])
  updates, _ = tx.update(jax.tree.map(jnp.ones_like, params), tx.init(params))
  assert [float(x[0]) for x in jax.tree.leaves(updates)] == [0.0, 1.0, 0.0]


def test_a_prefix_that_names_nothing_is_an_error():
  with pytest.raises(ValueError, match="'head' names no parameter; parameters: body.w"):
    transforms.frozen_except(["head"]).init({"body": {"w": jnp.ones(1)}})
