"""Command plumbing: the persistent compile cache is on by default and can be turned off."""

import jax

from experiments import cli


def test_compile_cache_folder_and_opt_out(tmp_path, monkeypatch):
  before = jax.config.jax_compilation_cache_dir
  try:
    monkeypatch.setenv(cli.COMPILE_CACHE_ENV, str(tmp_path / "cache"))
    assert cli.enable_compile_cache() == str(tmp_path / "cache")
    assert (tmp_path / "cache").is_dir()
    assert jax.config.jax_compilation_cache_dir == str(tmp_path / "cache")
    assert jax.config.jax_persistent_cache_min_compile_time_secs == 0.1
    monkeypatch.setenv(cli.COMPILE_CACHE_ENV, "off")
    assert cli.enable_compile_cache() is None
  finally:
    jax.config.update("jax_compilation_cache_dir", before)
