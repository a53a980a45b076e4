"""The README's example is the file a test runs, and it does what the README says."""

import pathlib
import re
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]


def test_readme_example_is_the_quickstart_file():
  readme = (ROOT / "README.md").read_text()
  blocks = re.findall(r"```python\n(.*?)```", readme, flags=re.S)
  assert (ROOT / "examples" / "quickstart.py").read_text() in blocks


def test_quickstart_runs_and_forgets():
  out = subprocess.run(
    [sys.executable, str(ROOT / "examples" / "quickstart.py")],
    capture_output=True,
    text=True,
    timeout=300,
    cwd=ROOT,
  )
  assert out.returncode == 0, out.stderr[-2000:]
  match = re.search(r"forget-set accuracy ([\d.]+)%  retain accuracy ([\d.]+)%", out.stdout)
  assert match, out.stdout
  forget_acc, retain_acc = map(float, match.groups())
  assert forget_acc <= 1.0 and retain_acc >= 97.0


def test_readme_first_screen_has_the_two_commands():
  first_screen = "\n".join((ROOT / "README.md").read_text().splitlines()[:25])
  assert "experiments.compare" in first_screen
  assert "pytest" in first_screen and "python3 -m venv .venv" in first_screen


def test_readme_your_model_example_is_the_file_and_runs():
  readme = (ROOT / "README.md").read_text()
  blocks = re.findall(r"```python\n(.*?)```", readme, flags=re.S)
  assert (ROOT / "examples" / "your_model.py").read_text() in blocks
  out = subprocess.run(
    [sys.executable, str(ROOT / "examples" / "your_model.py")],
    capture_output=True,
    text=True,
    timeout=300,
    cwd=ROOT,
  )
  assert out.returncode == 0, out.stderr[-2000:]
  lines = re.findall(r"request (\d): UA ([\d.]+), RA ([\d.]+), TA ([\d.]+)", out.stdout)
  assert [n for n, *_ in lines] == ["1", "2"], out.stdout
  for _, _ua, ra, ta in lines:
    assert float(ra) >= 95 and float(ta) >= 90  # utility kept
  assert "(90 rows forgotten)" in out.stdout
