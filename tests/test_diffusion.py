"""DDPM pieces against closed forms: the noising, the DDIM sampler, the Fréchet distance."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxunlearn import diffusion


def test_linear_schedule_and_noising_closed_form():
  s = diffusion.linear_schedule(1000)
  betas = np.linspace(1e-4, 0.02, 1000)
  np.testing.assert_allclose(np.asarray(s.alphas_cumprod), np.cumprod(1 - betas), rtol=1e-4)
  x0 = jnp.arange(6.0).reshape(2, 3) / 6
  noise = jnp.ones((2, 3))
  t = jnp.array([0, 999])
  a = np.cumprod(1 - betas)[[0, 999]][:, None]
  expected = np.sqrt(a) * np.asarray(x0) + np.sqrt(1 - a) * 1.0
  np.testing.assert_allclose(np.asarray(diffusion.add_noise(s, x0, t, noise)), expected, rtol=1e-4)


def _oracle(schedule, x0):
  """The ε that maps x_t back to x0 exactly (it ignores the label)."""

  def eps(x, t, y):
    del y
    a = schedule.alphas_cumprod[t][:, None]
    return (x - jnp.sqrt(a) * x0) / jnp.sqrt(1 - a)

  return eps


@pytest.mark.parametrize("guidance", [0.0, 2.0])
def test_ddim_with_an_oracle_returns_its_target(guidance):
  s = diffusion.linear_schedule(1000)
  x0 = jnp.asarray(np.random.default_rng(0).uniform(-0.9, 0.9, (4, 5)), jnp.float32)
  out = diffusion.ddim_sample(
    _oracle(s, x0),
    s,
    jnp.zeros(4, jnp.int32),
    jax.random.key(1),
    shape=(5,),
    null_label=3,
    sample_steps=25,
    guidance=guidance,  # the oracle ignores labels: guidance changes nothing
  )
  np.testing.assert_allclose(np.asarray(out), np.asarray(x0), atol=1e-4)


def test_frechet_distance_of_one_dimensional_gaussians():
  # FID between N(m1, s1²) and N(m2, s2²) is (m1 − m2)² + (s1 − s2)²
  for m1, s1, m2, s2 in [(0, 1, 0, 1), (1, 2, -1, 0.5), (3, 0.1, 3, 3)]:
    got = diffusion.frechet_distance([m1], [[s1**2]], [m2], [[s2**2]])
    assert got == pytest.approx((m1 - m2) ** 2 + (s1 - s2) ** 2, abs=1e-9)


def test_fid_is_zero_for_one_set_and_grows_with_a_shift():
  a = np.random.default_rng(0).normal(size=(500, 4))
  assert diffusion.fid(a, a) == pytest.approx(0.0, abs=1e-6)
  assert diffusion.fid(a, a + 1.0) == pytest.approx(4.0, rel=1e-6)  # ‖shift‖² = 4


def test_per_example_mse():
  p, t = jnp.ones((2, 2, 2)), jnp.zeros((2, 2, 2))
  np.testing.assert_allclose(np.asarray(diffusion.per_example_mse(p, t)), [1.0, 1.0])
