"""The method registry: every entry is complete, tunable on an equal budget, and valid."""

import numpy as np
import pytest

from jaxunlearn.engine.methods import METHODS, TUNING_BUDGET, get_method, make_config
from jaxunlearn.errors import ConfigError


@pytest.mark.parametrize("name", list(METHODS))
def test_every_method_has_an_equal_tuning_budget_of_valid_configs(name):
  grid = get_method(name).tuning_grid()
  assert len(grid) == TUNING_BUDGET
  assert len({tuple(sorted(p.items())) for p in grid}) == TUNING_BUDGET  # all distinct
  for point in grid:
    make_config(name, **point).validate()


@pytest.mark.parametrize("name", list(METHODS))
def test_every_method_states_its_forget_target_and_shape(name):
  m = get_method(name)
  assert m.shape in ("single", "weighted", "aggregated")
  assert (m.loss is not None) == (m.shape == "single")
  assert isinstance(m.forget_target(make_config(name)), str)


def test_igs_defaults_to_the_anchored_variant_and_igs_paper_is_the_paper():
  igs, paper = make_config("igs"), make_config("igs_paper")
  assert (igs.reference, igs.normalize_weights, igs.log_losses) == ("start", True, False)
  assert (igs.dual_optimizer, igs.dual_lr, igs.tolerance) == ("sgd", 30.0, 0.02)
  assert (paper.reference, paper.normalize_weights, paper.log_losses) == ("previous", False, True)
  assert (paper.dual_optimizer, paper.dual_lr, paper.dual_weight_decay) == ("adam", 1.0, 0.01)


def test_igs_has_defaults_for_rows_over_its_own_and_the_users_keys_win():
  rows, whole = make_config("igs", request="rows"), make_config("igs", request="class")
  assert whole == make_config("igs")  # a class, or no request: the anchored defaults
  assert (rows.start_noise, rows.forget_objective) == (0.45, "heldout")
  assert (rows.tolerance, rows.init_multiplier) == (0.01, 10.0)
  assert rows.replace(start_noise=0.0, forget_objective="rl", tolerance=0.02,
                      init_multiplier=0.0) == whole  # fmt: skip
  # the user's keys over the request's; the scenario's under them
  mine = make_config("igs", {"tolerance": 0.3, "steps": 7}, request="rows", start_noise=0.1)
  assert (mine.start_noise, mine.tolerance, mine.steps) == (0.1, 0.01, 7)
  # igs_noise keeps its own start whatever the request; other methods have none
  assert make_config("igs_noise", request="rows") == make_config("igs_noise", request="class")
  assert make_config("ft", request="rows") == make_config("ft")
  with pytest.raises(ConfigError, match="request must be one of rows, class"):
    make_config("igs", request="row")


def test_heldout_objective_is_ascent_up_to_the_level():
  import jax
  import jax.numpy as jnp

  from jaxunlearn.engine.layouts import Parts
  from jaxunlearn.engine.methods import forget_objective, make_config

  losses = jnp.array([0.1, 0.3, 9.0, 0.0])  # the third row is a retain row (weight 0)
  weight = jnp.array([0.25, 0.25, 0.0, 0.25])
  out = Parts(forget_true_losses=losses, forget_weight=weight)
  cfg = make_config("igs", forget_objective="heldout", heldout_loss=0.5)
  # the forget part: mean (0.1 + 0.3 + 0) / 3, share 0.75
  assert float(forget_objective(out, cfg)) == pytest.approx(0.75 * (0.5 - 0.4 / 3))
  above = make_config("igs", forget_objective="heldout", heldout_loss=0.1)
  assert float(forget_objective(out, above)) == 0.0
  grad = jax.grad(lambda l: forget_objective(out._replace(forget_true_losses=l), cfg))(losses)
  np.testing.assert_allclose(grad, -weight, atol=1e-7)  # ascent on each forget row's loss
  split = Parts(forget_true_losses=jnp.array([0.1, 0.3]))
  assert float(forget_objective(split, cfg)) == pytest.approx(0.3)


def test_heldout_level_is_the_originals_validation_loss():
  from jaxunlearn import data, metrics
  from jaxunlearn.engine import training
  from jaxunlearn.engine.config import TrainConfig
  from jaxunlearn.engine.steps import make_predict
  from jaxunlearn.engine.unlearning import with_heldout_loss

  ds = data.load_dataset("digits")
  fm, params, state = training.build_model(TrainConfig(model_kwargs={"hidden": (8,)}), ds)
  cfg = with_heldout_loss(make_config("igs", forget_objective="heldout"), fm, params, state, ds)
  logits = np.asarray(make_predict(fm)(params, state, ds.val.images))
  assert cfg.heldout_loss == pytest.approx(metrics.per_example_loss(logits, ds.val.labels).mean())
  given = make_config("igs", forget_objective="heldout", heldout_loss=0.3)
  assert with_heldout_loss(given, fm, params, state, ds) is given


def test_objectives_that_reach_zero_are_weighed_without_logs():
  from jaxunlearn.engine.methods import uses_log_losses

  assert uses_log_losses(make_config("igs_paper"))
  for objective in ("ga", "heldout"):
    assert not uses_log_losses(make_config("igs_paper", forget_objective=objective))
  assert not uses_log_losses(make_config("igs"))  # the anchored default: raw losses anyway
