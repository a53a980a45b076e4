"""Graceful stop: the first SIGTERM or Ctrl-C asks the loops to stop at a safe point.

The commands install :func:`handle_signals`; the loops call :func:`requested` at their safe
points (the unlearning loop after each step, pretraining after each epoch's checkpoint, a
comparison between runs), save what makes the run resumable, and raise :class:`Stopped`,
which the commands print as one line saying how to resume. A second signal stops at once
(Python's default: ``KeyboardInterrupt``, or termination). Library users who install no
handler are never asked to stop.

Example:
  >>> import os, signal
  >>> with handle_signals():
  ...     os.kill(os.getpid(), signal.SIGTERM)
  ...     requested()
  True
  >>> requested()
  False
"""

from __future__ import annotations

import contextlib
import signal
import sys
import threading

from jaxunlearn.errors import JaxUnlearnError

_SIGNALS = (signal.SIGTERM, signal.SIGINT)
_requested = threading.Event()


class Stopped(JaxUnlearnError):
  """A run stopped on request after saving a resumable state; the message says how to resume."""


def requested() -> bool:
  """Whether a stop was asked for (by a signal, under :func:`handle_signals`)."""
  return _requested.is_set()


def request() -> None:
  """Asks the loops to stop at their next safe point (what the first signal does)."""
  _requested.set()


@contextlib.contextmanager
def handle_signals():
  """First SIGTERM/SIGINT: :func:`request`; the second: the previous handler at once."""
  if threading.current_thread() is not threading.main_thread():
    yield  # signal handlers can only be installed from the main thread
    return
  previous = {s: signal.getsignal(s) for s in _SIGNALS}

  def handler(signum, frame):
    if _requested.is_set():  # second signal: stop now
      signal.signal(signum, previous[signum])
      signal.raise_signal(signum)
      return
    _requested.set()
    print(
      f"\n{signal.Signals(signum).name}: stopping at the next safe point (saving a resumable "
      "state); send it again to stop at once",
      file=sys.stderr,
      flush=True,
    )

  for s in _SIGNALS:
    signal.signal(s, handler)
  try:
    yield
  finally:
    for s, h in previous.items():
      signal.signal(s, h)
    _requested.clear()
