"""Run configurations: one source of truth for IGS's defaults, traced fields as metadata."""

import dataclasses

import pytest

from jaxunlearn.engine.config import TRACEABLE, UnlearnConfig, override
from jaxunlearn.engine.methods import igs_variant_config, make_config
from jaxunlearn.errors import ConfigError
from jaxunlearn.transforms.implicit import VARIANTS


def test_traced_fields_are_marked_on_the_fields_and_all_numeric():
  marked = [f for f in dataclasses.fields(UnlearnConfig) if f.metadata.get("traced")]
  assert tuple(f.name for f in marked) == TRACEABLE and len(TRACEABLE) == 18
  assert all(isinstance(f.default, float) for f in marked)
  # what a zero would leave out of the program, or what sizes a mask, is not traced
  for name in ("momentum", "weight_decay", "clip_norm", "aggregate_scale", "salun_sparsity"):
    assert name not in TRACEABLE


def test_the_config_defaults_are_the_paper_variant_and_the_igs_method_the_anchored_one():
  cfg, paper = UnlearnConfig(), igs_variant_config("paper")
  assert {k: getattr(cfg, k) for k in paper} == paper
  igs = make_config("igs")
  assert {k: getattr(igs, k) for k in paper} == igs_variant_config("anchored")
  assert igs.tolerance == VARIANTS["anchored"].tolerance


def test_a_typo_names_the_closest_key():
  with pytest.raises(ConfigError, match="tolerance"):
    override(UnlearnConfig(), ["tolerence=0.1"])
