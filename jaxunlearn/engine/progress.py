"""Progress bars that show the compile apart from the step rate.

The first call of a jitted step compiles it (seconds on CPU), so a bar that counts it
as a step shows a rate and an ETA off by orders of magnitude for the first many steps.
:func:`bar` starts the clock after the first step and names the compile time instead.
"""

from __future__ import annotations

import sys

from tqdm.auto import tqdm


def hidden(progress: bool, file=None) -> bool:
  """Whether a bar asked for (``progress``) stays hidden: always when not asked, and when
  it would go to a stderr that is not a terminal (a redirected log would fill with
  carriage-return frames), except in a notebook, whose bars are widgets. A bar given
  its own ``file`` shows there.

  Examples:
    >>> hidden(False)
    True
  """
  if not progress:
    return True
  if file is not None or "notebook" in tqdm.__module__:
    return False
  return not (hasattr(sys.stderr, "isatty") and sys.stderr.isatty())


class CompileApartBar:
  """A tqdm bar whose rate starts after the first (compiling) step.

  Examples:
    >>> b = CompileApartBar(total=3, desc="demo", disable=True)
    >>> b.first_step_done(1, compile_seconds=2.5); b.update(2); b.close()
    >>> b.compile_seconds
    2.5
  """

  def __init__(self, *, total: int, initial: int = 0, disable: bool = False, **kwargs):
    off = hidden(not disable, kwargs.get("file"))
    self._bar = tqdm(total=total, initial=initial, disable=off, **kwargs)
    self.compile_seconds = 0.0

  def first_step_done(self, done: int, *, compile_seconds: float) -> None:
    """Marks ``done`` steps complete, the last of which compiled; restarts the rate clock."""
    self.compile_seconds = compile_seconds
    bar = self._bar
    if bar.disable:
      return
    bar.n = bar.last_print_n = bar.initial = done
    bar.start_t = bar.last_print_t = bar._time()  # noqa: SLF001 - tqdm's own clock
    bar.set_postfix_str(f"compile {compile_seconds:.1f}s", refresh=True)

  def update(self, n: int = 1) -> None:
    """Counts ``n`` more steps."""
    self._bar.update(n)

  def set_postfix_str(self, text: str) -> None:
    """Shows ``text`` after the compile time."""
    self._bar.set_postfix_str(f"compile {self.compile_seconds:.1f}s, {text}")

  def close(self) -> None:
    """Closes the bar."""
    self._bar.close()
