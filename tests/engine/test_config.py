"""Run configurations: the shared budget, each method's own hyper-parameters, one source of
truth for IGS's defaults, traced fields as metadata, flat keys routed to where they live."""

import dataclasses

import pytest

from jaxunlearn.engine.config import MethodConfig, UnlearnConfig, override, traced_names
from jaxunlearn.engine.methods import (
  METHODS,
  IGSConfig,
  config_from_dict,
  every_key,
  make_config,
)
from jaxunlearn.errors import ConfigError
from jaxunlearn.transforms.implicit import VARIANTS

# implicit.Variant's fields under the config's names
_VARIANT_KEYS = {f: f for f in VARIANTS["paper"]._fields} | {"dual": "dual_optimizer"}


def test_traced_fields_are_marked_on_the_fields_and_all_numeric():
  for name in METHODS:
    cfg = make_config(name)
    for config in (UnlearnConfig, cfg.hparams):
      for f in dataclasses.fields(config):
        if f.metadata.get("traced"):
          assert isinstance(f.default, float), (name, f.name)
    # what a zero would leave out of the program, or what sizes a mask, is not traced
    for key in ("momentum", "weight_decay", "clip_norm", "aggregate_scale", "salun_sparsity"):
      assert key not in cfg.traced_values()
    assert set(cfg.traced_values()) == set(traced_names(UnlearnConfig)) | set(
      traced_names(cfg.hparams)
    )
  # start_noise and start_reinit act before the loop, host-side: traced so runs that differ
  # in them batch in one program (tests/engine/test_starts.py)
  assert traced_names(UnlearnConfig) == (
    "learning_rate",
    "heldout_loss",
    "start_noise",
    "start_reinit",
  )
  assert set(traced_names(IGSConfig)) == {
    "tolerance",
    "dual_lr",
    "dual_weight_decay",
    "init_multiplier",
  }


def test_igs_hyper_parameters_come_from_the_variants_only():
  for method, variant in (("igs_paper", "paper"), ("igs", "anchored")):
    cfg = make_config(method)
    assert isinstance(cfg.hparams, IGSConfig)
    for field, key in _VARIANT_KEYS.items():
      assert getattr(cfg, key) == getattr(VARIANTS[variant], field), (method, key)
  assert IGSConfig() == make_config("igs_paper").hparams  # the class defaults: the paper's


def test_every_method_owns_its_keys_and_none_shadows_the_budget():
  budget = set(UnlearnConfig().keys())
  for name, entry in METHODS.items():
    own = entry.hparams()
    assert isinstance(own, MethodConfig) and dataclasses.is_dataclass(own)
    assert not budget & {f.name for f in dataclasses.fields(own)}, name
  assert make_config("npo").keys() == (*UnlearnConfig().keys(), "npo_beta")
  assert make_config("ga").keys() == UnlearnConfig().keys()  # GA has no knob of its own


def test_keys_route_to_the_budget_or_the_method():
  cfg = make_config("igs").replace(tolerance=0.3, steps=7)
  assert cfg.hparams.tolerance == 0.3 and cfg.tolerance == 0.3 and cfg.steps == 7
  assert cfg.to_dict()["tolerance"] == 0.3 and "npo_beta" not in cfg.to_dict()
  with pytest.raises(ConfigError, match="'npo_beta'"):
    cfg.replace(npo_beta=0.2)  # NPO's key, not IGS's
  with pytest.raises(AttributeError, match="IGSConfig"):
    cfg.npo_beta  # noqa: B018


def test_a_typo_names_the_closest_key():
  with pytest.raises(ConfigError, match="did you mean 'tolerance'"):
    override(make_config("igs"), ["tolerence=0.1"])
  with pytest.raises(ConfigError, match="did you mean 'npo_beta'"):
    make_config("npo", npo_bta=0.1)


def test_another_methods_key_is_an_error_from_the_user_and_skipped_from_a_scenario():
  with pytest.raises(ConfigError, match="unknown ga config key 'tolerance'"):
    make_config("ga", tolerance=0.1)
  assert make_config("ga", {"tolerance": 0.1}) == make_config("ga")
  assert make_config("explicit", {"tolerance": 0.1}).tolerance == 0.1  # both own a tolerance
  assert make_config("igs", {"tolerance": 0.1}).tolerance == 0.1
  with pytest.raises(ConfigError, match="tolerance"):
    make_config("ga", {"tolerence": 0.1})  # a key of no method stays an error
  # a comparison's --set: each method takes the keys it has
  assert override(make_config("ga"), ["tolerance=0.1"], elsewhere=every_key()) == make_config("ga")
  with pytest.raises(ConfigError):
    override(make_config("ga"), ["tolerence=0.1"], elsewhere=every_key())


def test_records_round_trip_and_old_flat_records_load():
  cfg = make_config("cagrad", cagrad_c=0.8, seed=3)
  assert config_from_dict(cfg.to_dict()) == cfg
  # before per-method configs a record held every method's key
  old = {**make_config("igs").to_dict(), "npo_beta": 0.1, "famo_lr": 0.025, "cagrad_c": 0.8}
  old["method"] = "cagrad"
  assert config_from_dict(old).cagrad_c == 0.8
  assert config_from_dict(old).keys() == make_config("cagrad").keys()


def test_validation_lives_with_each_config():
  with pytest.raises(ConfigError, match="salun_sparsity"):
    make_config("salun", salun_sparsity=1.5).validate()
  with pytest.raises(ConfigError, match="signal"):
    make_config("igs", signal="psychic").validate()
  with pytest.raises(ConfigError, match="finite"):
    make_config("npo", npo_beta=float("nan")).validate()
  with pytest.raises(ConfigError, match="clip_norm"):
    make_config("mgda", clip_norm=-1.0).validate()
