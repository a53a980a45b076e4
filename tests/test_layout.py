"""The layering of the package: imports point down, never up or sideways in a circle.

Read statically from every module's import statements (``ast``), so a violation is
caught even on a code path no test runs.
"""

import ast
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]

# What each part of the tree may import of ours (prefixes); anything else is an error.
ERRORS = ("jaxunlearn.errors",)
GROUND = (
  "jaxunlearn.transforms",
  "jaxunlearn.nn",
  "jaxunlearn.data",
  "jaxunlearn.objectives",
  "jaxunlearn.metrics",
  "jaxunlearn.diffusion",
) + ERRORS
ALLOWED = {
  "jaxunlearn.errors": (),
  "jaxunlearn.transforms": ("jaxunlearn.transforms",),
  "jaxunlearn.nn": ("jaxunlearn.nn",) + ERRORS,
  "jaxunlearn.data": ("jaxunlearn.data",) + ERRORS,
  "jaxunlearn.objectives": ERRORS,
  "jaxunlearn.metrics": ("jaxunlearn.metrics",) + ERRORS,
  "jaxunlearn.diffusion": ERRORS,
  "jaxunlearn.engine": GROUND + ("jaxunlearn.engine",),
  # the package's own __init__ (the rest of the package is imported lazily, by name)
  "jaxunlearn": ("jaxunlearn.transforms",),
  "experiments": ("jaxunlearn", "experiments"),
  # benchmarks measure the library and, for throughput, the comparison's job loop
  "benchmarks": ("jaxunlearn", "benchmarks", "experiments"),
}
# Inside the engine, data flows config → methods → steps → evaluation → loops: a module
# imports only engine modules of a lower rank.
ENGINE_RANK = {
  "config": 0,
  "checkpoint": 0,
  "parallel": 0,
  "memory": 0,
  "records": 1,
  "progress": 1,
  "locking": 0,
  "stopping": 0,
  "methods": 1,
  "layouts": 0,
  "inputs": 0,
  "starts": 1,
  "steps": 2,
  "evaluation": 3,
  "answers": 3,
  "training": 4,
  "unlearning": 4,
  "loading": 5,
  "population": 5,
  "api": 6,
}


def _modules():
  for top in ("jaxunlearn", "experiments", "benchmarks"):
    for path in sorted((ROOT / top).rglob("*.py")):
      parts = path.relative_to(ROOT).with_suffix("").parts
      name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
      yield name, path


def _ours(path: pathlib.Path, name: str):
  """Our modules imported by ``path`` (absolute names)."""
  for node in ast.walk(ast.parse(path.read_text())):
    if isinstance(node, ast.Import):
      names = [a.name for a in node.names]
    elif isinstance(node, ast.ImportFrom):
      assert node.level == 0, f"{name}: relative import; use absolute imports"
      names = [f"{node.module}.{a.name}" for a in node.names]
    else:
      continue
    for n in names:
      if n.split(".")[0] in ("jaxunlearn", "experiments", "benchmarks"):
        yield n


def _part(name: str) -> str:
  for key in sorted(ALLOWED, key=len, reverse=True):
    if name == key or name.startswith(key + "."):
      return key
  raise AssertionError(f"{name} belongs to no layer; add it to tests/test_layout.py")


def _allowed(target: str, prefixes) -> bool:
  return any(target == p or target.startswith(p + ".") for p in prefixes)


MODULES = list(_modules())


@pytest.mark.parametrize("name,path", MODULES, ids=[m for m, _ in MODULES])
def test_imports_point_down(name, path):
  part = _part(name)
  for target in set(_ours(path, name)):
    if part == "jaxunlearn" and name != "jaxunlearn":
      continue
    assert _allowed(target, ALLOWED[part]), f"{name} may not import {target}"
    if name.startswith("jaxunlearn.engine.") and target.startswith("jaxunlearn.engine."):
      me, other = name.split(".")[2], target.split(".")[2]
      if other in ENGINE_RANK:  # `from jaxunlearn.engine import x` names x as the target
        assert ENGINE_RANK[other] < ENGINE_RANK[me], f"{name} may not import {target}"


def test_every_engine_module_has_a_rank():
  engine = {p.stem for p in (ROOT / "jaxunlearn" / "engine").glob("*.py")} - {"__init__"}
  assert engine == set(ENGINE_RANK)


def test_the_layout_catches_a_violation(tmp_path):
  bad = tmp_path / "m.py"
  bad.write_text("from jaxunlearn.engine import methods\n")
  targets = set(_ours(bad, "jaxunlearn.transforms.m"))
  assert not all(_allowed(t, ALLOWED["jaxunlearn.transforms"]) for t in targets)


def _module_of(target: str, names) -> str | None:
  """The module an imported name lives in (``a.b.c`` → ``a.b`` when ``c`` is a name)."""
  while target and target not in names:
    target = target.rpartition(".")[0]
  return target or None


def _import_graph(modules) -> dict[str, set[str]]:
  """Module → the modules of ours it imports: every import statement, the deferred ones
  inside functions included (``ast.walk``), so a circle that works today only because
  one side imports late is still a circle."""
  names = {n for n, _ in modules}
  graph = {}
  for name, path in modules:
    targets = {_module_of(t, names) for t in _ours(path, name)}
    graph[name] = {t for t in targets if t and t != name}
  return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
  """The strongly connected components of more than one module (Tarjan's algorithm)."""
  index, low, stack, on_stack, out = {}, {}, [], set(), []

  def visit(v):
    index[v] = low[v] = len(index)
    stack.append(v)
    on_stack.add(v)
    for w in sorted(graph.get(v, ())):
      if w not in index:
        visit(w)
        low[v] = min(low[v], low[w])
      elif w in on_stack:
        low[v] = min(low[v], index[w])
    if low[v] == index[v]:
      component = []
      while True:
        w = stack.pop()
        on_stack.discard(w)
        component.append(w)
        if w == v:
          break
      if len(component) > 1:
        out.append(sorted(component))

  for v in sorted(graph):
    if v not in index:
      visit(v)
  return out


def test_no_module_imports_itself_through_a_circle():
  assert _cycles(_import_graph(MODULES)) == []


def test_a_deferred_import_that_closes_a_circle_is_caught(tmp_path):
  a, b = tmp_path / "a.py", tmp_path / "b.py"
  a.write_text("from jaxunlearn.data import b\n")
  b.write_text("def f():\n  from jaxunlearn.data import a\n  return a\n")
  graph = _import_graph([("jaxunlearn.data.a", a), ("jaxunlearn.data.b", b)])
  assert _cycles(graph) == [["jaxunlearn.data.a", "jaxunlearn.data.b"]]
