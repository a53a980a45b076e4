"""The errors a user can fix: bad configuration, data, forget sets or checkpoints.

Commands print these (and ``OSError``) as one line naming the fix; anything else is a
bug and keeps its traceback. Each also subclasses the builtin it refines, so
``except ValueError`` in user code keeps working. This module imports nothing.
"""


class JaxUnlearnError(Exception):
  """Base of every error a user can fix; its message is one line."""


class ConfigError(JaxUnlearnError, ValueError):
  """A bad configuration value or key."""


class DataError(JaxUnlearnError, ValueError):
  """Bad data input: an unknown dataset, a batch larger than its split, bad ids."""


class ForgetSpecError(DataError):
  """A forget-set spec that cannot be parsed or does not fit the dataset."""


class DatasetNotPreparedError(JaxUnlearnError, RuntimeError):
  """A dataset that is not prepared in the data dir and cannot be built offline."""


class CheckpointError(JaxUnlearnError, RuntimeError):
  """A checkpoint that is missing, corrupt, or does not match what is restored."""


class WorkdirBusyError(JaxUnlearnError, RuntimeError):
  """A workdir that another live process is writing (it holds the workdir's lock)."""


def require(module: str, purpose: str, extra: str = "llm"):
  """``import module`` for an optional feature, or a one-line :class:`ConfigError` that
  names the extra to install."""
  import importlib

  try:
    return importlib.import_module(module)
  except ImportError as e:
    package = module.split(".")[0]
    raise ConfigError(f"{purpose} needs {package}: pip install 'jaxunlearn[{extra}]'") from e
