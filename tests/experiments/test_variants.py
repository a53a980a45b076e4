import doctest

import pytest

from experiments import variants
from jaxunlearn.errors import ConfigError


def test_examples_and_rows_in_order():
  assert doctest.testmod(variants).failed == 0
  rows = variants.entries(["ga"], ["igs-h=igs:forget_objective=heldout:tolerance=0.0"])
  assert [(r.label, r.method, r.overrides) for r in rows] == [
    ("ga", "ga", ()),
    ("igs-h", "igs", ("forget_objective=heldout", "tolerance=0.0")),
  ]


@pytest.mark.parametrize("text", ["igs", "=igs", "a b=igs", "x="])
def test_a_malformed_variant_is_one_line_naming_it(text):
  with pytest.raises(ConfigError, match="--variant"):
    variants.parse_variant(text)
