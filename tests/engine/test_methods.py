"""The method registry: every entry is complete, tunable on an equal budget, and valid."""

import pytest

from jaxunlearn.engine.methods import METHODS, TUNING_BUDGET, get_method, make_config


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
