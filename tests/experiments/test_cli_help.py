"""Every flag of every command has a help text, and ``--help`` shows the defaults."""

import argparse
import importlib

import pytest

COMMANDS = [
  "experiments.pretrain",
  "experiments.unlearn",
  "experiments.compare",
  "experiments.tofu",
  "experiments.pareto",
  "experiments.igs_variants",
  "experiments.ranks",
  "experiments.audit",
  "experiments.results_page",
  "benchmarks.forget_score",
  "benchmarks.conv_grad",
  "benchmarks.convex",
  "benchmarks.scaling",
  "benchmarks.step_cost",
]


def _parser(name: str) -> argparse.ArgumentParser:
  parser = importlib.import_module(name).build_parser()
  assert isinstance(parser, argparse.ArgumentParser)
  return parser


def _flags(parser):
  return [a for a in parser._actions if not isinstance(a, argparse._HelpAction)]


@pytest.mark.parametrize("name", COMMANDS)
def test_every_flag_has_a_help_text(name):
  parser = _parser(name)
  assert _flags(parser)
  for action in _flags(parser):
    flag = "/".join(action.option_strings) or action.dest
    assert isinstance(action.help, str) and action.help.strip(), f"{name}: {flag} has no help"


@pytest.mark.parametrize("name", COMMANDS)
def test_help_shows_the_defaults(name):
  parser = _parser(name)
  assert issubclass(parser.formatter_class, argparse.ArgumentDefaultsHelpFormatter), name
  text = " ".join(parser.format_help().split())  # undo the line wrapping
  shown = [
    a
    for a in _flags(parser)
    if a.option_strings and a.default is not None and a.default is not False and a.default != []
  ]
  for action in shown:
    assert f"(default: {action.default})" in text, f"{name}: {action.option_strings} default"
  if shown:
    assert "(default:" in text
  # a required flag, or one whose absence means "unset", shows no default of None
  assert "(default: None)" not in text, name
  # nor does a repeatable flag given no value (--set)
  assert "(default: [])" not in text, name


@pytest.mark.parametrize("name", COMMANDS)
def test_usage_names_the_command_as_it_is_run(name):
  assert _parser(name).format_usage().startswith(f"usage: python -m {name} ")
