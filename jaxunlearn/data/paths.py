"""Where prepared datasets live on disk.

Example:
  >>> import os
  >>> from jaxunlearn.data import default_data_dir
  >>> os.environ["JAXUNLEARN_DATA_DIR"] = "/tmp/jaxunlearn-data"
  >>> str(default_data_dir())
  '/tmp/jaxunlearn-data'
  >>> del os.environ["JAXUNLEARN_DATA_DIR"]
"""

from __future__ import annotations

import os
import pathlib

ENV_VAR = "JAXUNLEARN_DATA_DIR"


def default_data_dir() -> pathlib.Path:
  """`$JAXUNLEARN_DATA_DIR` if set (and non-empty), else `~/.cache/jaxunlearn/datasets`."""
  env = os.environ.get(ENV_VAR, "").strip()
  if env:
    return pathlib.Path(env).expanduser()
  return pathlib.Path("~/.cache/jaxunlearn/datasets").expanduser()


def resolve_data_dir(data_dir: str | os.PathLike | None) -> pathlib.Path:
  """`data_dir` as an absolute path, or the default when None."""
  path = default_data_dir() if data_dir is None else pathlib.Path(data_dir).expanduser()
  return path.absolute()
