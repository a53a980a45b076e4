"""Misuse of the IGS transformation raises with a message that names the fix (issue 11)."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jaxunlearn

X = jnp.linspace(-1.0, 1.0, 8)[:, None]


def retain(p):
  return jnp.mean((X @ p["w"] - 2 * X) ** 2) + 0.01


def forget(p):
  return jnp.mean((X @ p["w"] + 2 * X) ** 2) + 0.01


PARAMS = {"w": jnp.ones((1, 1))}


def run(tx, steps=3, *, retain_fn=retain, forget_fn=forget, retain_value=None, jit=True):
  """The README's loop: S from the state, one backprop, IGS update."""

  def step(params, state):
    def objective(p):
      l_r = retain_fn(p)
      return jaxunlearn.scalarized_loss(state, l_r, forget_fn(p)), l_r

    (_, l_r), g = jax.value_and_grad(objective, has_aux=True)(params)
    value = l_r if retain_value is None else retain_value(params)
    updates, state = tx.update(g, state, params, retain_loss=value, retain_loss_fn=retain_fn)
    return optax.apply_updates(params, updates), state

  step = jax.jit(step) if jit else step
  params, state = PARAMS, tx.init(PARAMS)
  for _ in range(steps):
    params, state = step(params, state)
  jax.block_until_ready(params)
  return params, state


def igs(**kw):
  return jaxunlearn.implicit_gradient_surgery(optax.sgd(0.1), **kw)


def test_per_example_retain_loss_raises_at_trace_time():
  per_example = lambda p: (X @ p["w"] - 2 * X)[:, 0] ** 2
  with pytest.raises(ValueError, match=r"retain_loss must be a scalar.*got shape \(8,\).*mean"):
    run(igs(), retain_value=per_example)


def test_integer_retain_loss_raises():
  with pytest.raises(ValueError, match="retain_loss has dtype int32; pass the floating-point"):
    run(igs(), retain_value=lambda p: jnp.int32(1))


def test_retain_loss_fn_returning_a_tuple_raises():
  with_aux = lambda p: (retain(p), {"aux": 1.0})
  tx = igs()
  state = tx.init(PARAMS)
  g = jax.grad(retain)(PARAMS)
  with pytest.raises(ValueError, match=r"is a tuple, not a scalar.*lambda p: loss_fn\(p\)\[0\]"):
    tx.update(g, state, PARAMS, retain_loss=retain(PARAMS), retain_loss_fn=with_aux)


@pytest.mark.parametrize("key", ["tolerance", "init_multiplier"])
@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_non_finite_hyperparameters_raise(key, value):
  with pytest.raises(ValueError, match=f"{key} must be finite"):
    igs(**{key: value})


def test_non_positive_loss_floor_raises():
  with pytest.raises(ValueError, match="loss_floor must be a positive finite number"):
    igs(loss_floor=0.0)


def test_negative_forget_loss_under_log_losses_raises_when_the_step_runs():
  ascent = lambda p: -forget(p)  # gradient ascent: negative
  with pytest.raises(
    Exception, match=r"forget_loss = -.* < 0 with log_losses=True.*log_losses=False"
  ):
    run(igs(log_losses=True), forget_fn=ascent)
  # the fix the message names works
  params, state = run(igs(log_losses=False), forget_fn=ascent)
  assert np.isfinite(float(jaxunlearn.multiplier(state)))


def test_zero_loss_under_log_losses_is_not_an_error():
  # a memorised loss of exactly 0 is floored on purpose (only negative ones are misuse):
  # the floor has no gradient and λ starts at 0 with L_r at its anchor, so there is
  # nothing to do — the step is exactly zero, λ stays 0, nothing turns NaN
  params, state = run(igs(log_losses=True), forget_fn=lambda p: 0.0 * forget(p), steps=2)
  np.testing.assert_array_equal(np.asarray(params["w"]), np.asarray(PARAMS["w"]))
  assert float(jaxunlearn.multiplier(state)) == 0.0
  # with a retain loss above its budget the same floored run descends L_r (optimum w = 2)
  params, state = run(
    igs(log_losses=True, init_multiplier=1.0), forget_fn=lambda p: 0.0 * forget(p), steps=2
  )
  assert 1.0 < float(params["w"][0, 0]) < 2.5 and retain(params) < retain(PARAMS)
  assert np.isfinite(float(jaxunlearn.multiplier(state)))


@pytest.mark.parametrize(
  "later", [optax.clip_by_global_norm(1e-3), optax.scale(0.0)], ids=["clip", "scale0"]
)
def test_igs_followed_by_a_rescaling_transformation_raises(later):
  with pytest.raises(ValueError, match=r"must be the last of its optax.chain.*move them before"):
    run(optax.chain(igs(), later))


def test_the_chain_order_error_names_transformations_not_state_types():
  with pytest.raises(ValueError) as err:
    run(optax.chain(igs(), optax.scale(0.5), optax.adam(1e-3)))
  text = str(err.value)
  assert text.startswith("implicit_gradient_surgery must be the last")
  assert "scale, clip" in text and "scale_by_adam (adam" in text
  assert "EmptyState" not in text and "(tuple)" not in text
  famo = jaxunlearn.famo(optax.sgd(0.1))
  with pytest.raises(ValueError, match=r"^famo must be .* e\.g\. famo\(optax\.chain"):
    jaxunlearn.transforms.check_outermost(optax.chain(famo, optax.scale(0.5)).init({"w": 0.0}))


def test_igs_last_in_a_chain_and_rescaling_inside_it_run():
  # a clip that never bites (norm 1e6) changes nothing: both runs equal IGS alone
  alone = run(igs())
  before = run(optax.chain(optax.clip_by_global_norm(1e6), igs()))
  inside = run(
    jaxunlearn.implicit_gradient_surgery(
      optax.chain(optax.clip_by_global_norm(1e6), optax.sgd(0.1))
    )
  )
  for got in (before, inside):
    for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(alone)):
      np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-6)
  # and one that bites (norm 1e-3) shortens the step, so the run differs
  clipped = run(optax.chain(optax.clip_by_global_norm(1e-3), igs()))
  moved = lambda p: abs(float(p["w"][0, 0]) - 1.0)
  assert moved(clipped[0]) < moved(alone[0])


def test_multisteps_inside_igs_raises_and_outside_matches_unaccumulated():
  with pytest.raises(ValueError, match=r"put it outside: optax.MultiSteps\(implicit_gradient"):
    jaxunlearn.implicit_gradient_surgery(optax.MultiSteps(optax.sgd(0.1), 2)).init(PARAMS)
  # k = 1: MultiSteps(IGS) is the same update as IGS alone, λ included
  p1, s1 = run(igs(), steps=5)
  p2, s2 = run(optax.MultiSteps(igs(), every_k_schedule=1), steps=5)
  np.testing.assert_allclose(np.asarray(p1["w"]), np.asarray(p2["w"]), rtol=1e-6)
  assert float(jaxunlearn.multiplier(s1)) == pytest.approx(float(jaxunlearn.multiplier(s2)))
  # k = 2 (same batch every call): λ learns once per applied step, from the applied step
  p3, s3 = run(optax.MultiSteps(igs(), every_k_schedule=2), steps=10)
  np.testing.assert_allclose(np.asarray(p1["w"]), np.asarray(p3["w"]), rtol=1e-6)
  assert float(jaxunlearn.multiplier(s1)) == pytest.approx(float(jaxunlearn.multiplier(s3)))
