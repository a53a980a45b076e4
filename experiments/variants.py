"""A row of a comparison: a method under its own name, or a variant of it with config
overrides of its own (``--variant igs-tol0=igs:tolerance=0.0``), for the audit and the
language-model comparison alike."""

from __future__ import annotations

import dataclasses

from jaxunlearn.errors import ConfigError


@dataclasses.dataclass(frozen=True)
class Entry:
  """One row: ``method`` under ``label``, with ``KEY=VALUE`` config ``overrides``."""

  label: str
  method: str
  overrides: tuple = ()


def parse_variant(text: str) -> Entry:
  """``LABEL=METHOD[:KEY=VALUE[:KEY=VALUE...]]``.

  Examples:
    >>> parse_variant("igs-warm=igs:init_multiplier=10:tolerance=0.0")
    Entry(label='igs-warm', method='igs', overrides=('init_multiplier=10', 'tolerance=0.0'))
  """
  label, sep, rest = text.partition("=")
  if not sep or not label or not rest:
    raise ConfigError(f"--variant {text!r} is not LABEL=METHOD[:KEY=VALUE...]")
  if not all(c.isalnum() or c in "-_." for c in label):
    raise ConfigError(f"--variant label {label!r}: use letters, digits, '-', '_' or '.'")
  method, *overrides = rest.split(":")
  return Entry(label, method, tuple(overrides))


def as_entry(method) -> Entry:
  """``method`` as a row: an :class:`Entry` as it is, a name under its own label."""
  return method if isinstance(method, Entry) else Entry(method, method)


def entries(methods, variants=()) -> list[Entry]:
  """The rows of ``methods`` (names) and ``variants`` (``--variant`` texts), in order."""
  return [Entry(m, m) for m in methods] + [parse_variant(v) for v in variants]
