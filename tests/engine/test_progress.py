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
