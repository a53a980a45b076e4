"""The progress bar counts the compile apart from the step rate."""

import io

from jaxunlearn.engine.progress import CompileApartBar


def test_rate_starts_after_the_compiling_step():
  out = io.StringIO()
  bar = CompileApartBar(total=10, file=out, mininterval=0, desc="x")
  bar.first_step_done(1, compile_seconds=3.0)
  assert bar._bar.initial == 1 and bar._bar.n == 1
  bar.update(4)
  bar.close()
  text = out.getvalue()
  assert "compile 3.0s" in text
  assert "5/10" in text


class _Stream(io.StringIO):
  def __init__(self, tty: bool):
    super().__init__()
    self._tty = tty

  def isatty(self):
    return self._tty


def test_a_bar_on_a_redirected_stderr_stays_hidden(monkeypatch):
  """A log file of a long run is not flooded with carriage-return frames (issue 22)."""
  from jaxunlearn.engine import progress

  for tty, shown in ((False, False), (True, True)):
    stream = _Stream(tty)
    monkeypatch.setattr(progress.sys, "stderr", stream)
    assert progress.hidden(True) is not shown
    bar = CompileApartBar(total=3, desc="run", mininterval=0, file=None)
    bar.update(3)
    bar.close()
    assert ("3/3" in stream.getvalue()) is shown
  assert progress.hidden(False) and not progress.hidden(True, file=io.StringIO())
