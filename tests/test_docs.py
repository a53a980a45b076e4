"""Docs that hold: public functions carry runnable examples, Markdown links resolve to
committed files, and no comment cites a file outside the repository."""

import inspect
import pathlib
import re
import subprocess

import pytest

import jaxunlearn
import jaxunlearn.engine
import jaxunlearn.objectives
import jaxunlearn.transforms

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _public_functions():
  seen = {}
  for module in (jaxunlearn, jaxunlearn.transforms, jaxunlearn.engine):
    for name in module.__all__:
      obj = getattr(module, name)
      if inspect.isfunction(obj):
        seen[f"{obj.__module__}.{obj.__qualname__}"] = obj
  for name, obj in vars(jaxunlearn.objectives).items():
    if (
      inspect.isfunction(obj)
      and not name.startswith("_")
      and obj.__module__ == ("jaxunlearn.objectives")
    ):
      seen[f"jaxunlearn.objectives.{name}"] = obj
  return sorted(seen.items())


PUBLIC = _public_functions()


# ids by name only: a function's repr holds its address, which differs between processes
@pytest.mark.parametrize("name,fn", PUBLIC, ids=[name for name, _ in PUBLIC])
def test_public_function_has_an_example(name, fn):
  # The examples themselves run as doctests (pytest --doctest-modules).
  assert ">>>" in (fn.__doc__ or ""), f"{name} has no runnable example in its docstring"


def _tracked() -> set:
  try:
    out = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True)
  except OSError:
    return set()
  return set(out.stdout.split()) if out.returncode == 0 else set()


@pytest.mark.parametrize("doc", ["README.md", "CONTRIBUTING.md", "docs/design.md"])
def test_markdown_links_resolve_to_committed_files(doc):
  text = (ROOT / doc).read_text()
  tracked = _tracked()
  for target in re.findall(r"\]\(([^)#\s]+)", text):
    if re.match(r"[a-z]+:", target):  # URLs
      continue
    path = (ROOT / doc).parent / target
    assert path.exists(), f"{doc} links {target}, which does not exist"
    if tracked:
      rel = str(path.resolve().relative_to(ROOT))
      assert rel in tracked or any(t.startswith(rel + "/") for t in tracked), (
        f"{doc} links {target}, which is not committed (check .gitignore)"
      )


def test_no_reference_to_files_outside_the_repository():
  for path in [
    *ROOT.glob("jaxunlearn/**/*.py"),
    *ROOT.glob("experiments/*.py"),
    *ROOT.glob("benchmarks/*.py"),
    ROOT / "README.md",
  ]:
    assert "DESIGN.md" not in path.read_text(), f"{path} cites DESIGN.md; cite docs/design.md"
