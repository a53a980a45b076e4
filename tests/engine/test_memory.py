"""jaxunlearn.engine.memory: the budget a batch of runs is chunked to."""

import pathlib

import jax
import jax.numpy as jnp
import pytest

from jaxunlearn.engine import memory
from jaxunlearn.errors import ConfigError


def test_parse_bytes_units_and_errors():
  assert memory.parse_bytes("4GiB") == 4 * 2**30
  assert memory.parse_bytes("1.5 kib") == 1536
  assert memory.parse_bytes("2000") == 2000
  for bad in ("lots", "-3GiB", "0", "4 parsecs"):
    with pytest.raises(ConfigError, match="JAXUNLEARN_MEMORY_BUDGET"):
      memory.parse_bytes(bad)


def test_budget_reads_the_environment(monkeypatch):
  monkeypatch.setenv(memory.ENV, "3MiB")
  assert memory.budget_bytes() == 3 * 2**20
  monkeypatch.delenv(memory.ENV)
  # CPU: a quarter of the host's RAM, which /proc/meminfo states independently
  meminfo = pathlib.Path("/proc/meminfo").read_text().splitlines()
  total_kib = next(int(line.split()[1]) for line in meminfo if line.startswith("MemTotal:"))
  assert abs(memory.budget_bytes() - total_kib * 1024 // 4) <= 2**20


def test_program_bytes_counts_arguments_and_outputs():
  # f(x) = (x + 1, 2x) on 1000 float32: 4000 bytes in, 8000 out, nothing aliased
  compiled = jax.jit(lambda x: (x + 1, 2 * x)).lower(jnp.zeros(1000, jnp.float32)).compile()
  assert memory.program_bytes(compiled) >= 12_000


@pytest.mark.parametrize(
  "total, runs, budget, fits",
  [(800, 8, 1000, 8), (800, 8, 800, 8), (800, 8, 799, 7), (800, 8, 5, 1)],
)
def test_runs_that_fit(total, runs, budget, fits):
  assert memory.runs_that_fit(total, runs, budget) == fits
