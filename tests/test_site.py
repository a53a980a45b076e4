"""The documentation site builds with warnings as errors and renders in a real browser.

The build needs the docs packages of the ``test`` extra; the browser check needs Debian's
Chromium (``apt-get install chromium``) and skips, saying so, where it is absent.
"""

import html
import os
import pathlib
import re
import shutil
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def site(tmp_path_factory):
  out = tmp_path_factory.mktemp("site")
  proc = subprocess.run(
    [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(out)],
    cwd=ROOT,
    capture_output=True,
    text=True,
    timeout=300,
    env={"NO_MKDOCS_2_WARNING": "1", "PATH": "/usr/bin:/bin"},
  )
  assert proc.returncode == 0, proc.stderr[-3000:]
  return out


def test_every_page_of_the_navigation_is_built(site):
  for page in (
    "index.html",
    "api/index.html",
    "results/index.html",
    "guides/your-model/index.html",
  ):
    assert (site / page).stat().st_size > 0, page
  api = (site / "api" / "index.html").read_text()
  for name in ("implicit_gradient_surgery", "scalarized_loss", "DeletionLedger", "unlearn"):
    assert name in api, name


def _browser() -> str:
  found = shutil.which("chromium") or shutil.which("chromium-browser")
  if found is None:
    if os.environ.get("CI") == "true":  # .ci/run installs it: a failed install must show
      pytest.fail("CI=true but no Chromium to render the site in (apt-get install chromium)")
    pytest.skip("no Chromium here (apt-get install chromium) to render the site in")
  return found


def _text(dom: str) -> str:
  """What a reader sees of a page: its DOM without tags, entities decoded."""
  return html.unescape(re.sub(r"<[^>]+>", "", dom))


def _rendered(browser: str, page: pathlib.Path) -> str:
  proc = subprocess.run(
    [browser, "--headless", "--no-sandbox", "--disable-gpu", "--dump-dom", page.as_uri()],
    capture_output=True,
    text=True,
    timeout=120,
  )
  assert proc.returncode == 0, proc.stderr[-2000:]
  return proc.stdout


@pytest.mark.parametrize("page", ["index.html", "api/index.html"])
def test_the_home_and_api_pages_render_with_their_navigation(site, page):
  dom = _rendered(_browser(), site / page)
  assert "<nav" in dom and 'class="md-nav' in dom
  for entry in ("Quick start", "Your own model", "Results", "API reference"):
    assert entry in dom, entry
  if page.startswith("api"):
    assert 'id="jaxunlearn.transforms.implicit.implicit_gradient_surgery"' in dom
  else:
    assert "implicit gradient surgery" in dom


@pytest.mark.parametrize(
  "page,example",
  [
    ("guides/quickstart", "examples/quickstart.py"),
    ("guides/your-model", "examples/your_model.py"),
    ("guides/language-models", "examples/language_model.py"),
  ],
)
def test_the_guides_show_the_code_of_their_examples(site, page, example):
  """The pages include their example (pymdownx.snippets): every code line of it is on
  the rendered page, and no include marker is left (ruff's Markdown formatter once
  rewrote ``--8<-- "examples/x.py"`` into ``--8 < --"examples/x.py"``, and the page
  showed that line instead of the code while the strict build still passed)."""
  shown = _text(_rendered(_browser(), site / page / "index.html"))
  assert "--8" not in shown
  lines = [l.strip() for l in (ROOT / example).read_text().splitlines()]
  code = [l for l in lines if l and not l.startswith("#")]
  missing = [l for l in code if l not in shown]
  assert not missing, missing[:5]
  assert len(code) > 20


def test_no_include_marker_in_the_docs_was_rewritten_by_the_formatter():
  for md in [*(ROOT / "docs").rglob("*.md"), ROOT / "README.md"]:
    text = md.read_text()
    assert "--8 <" not in text, md
    for line in text.splitlines():
      if line.startswith("--8<--"):
        assert re.fullmatch(r'--8<-- "[^"]+"', line), (md, line)


def _documented_parameters(page: str) -> dict:
  """``{object id: [(parameter name, its default column)]}`` of the API page's tables."""
  out = {}
  for section in re.split(r'(?=id="jaxunlearn\.[\w.]+" class="doc doc-heading")', page)[1:]:
    name = re.match(r'id="([\w.]+)"', section).group(1)
    table = re.search(r"<span[^>]*>Parameters:</span>.*?</table>", section, re.S) or re.search(
      r"Parameters:.*?</table>", section, re.S
    )
    if table is None:
      continue
    rows = re.findall(r'<tr class="doc-section-item">(.*?)</tr>', table.group(0), re.S)
    cells = [re.findall(r"<td>(.*?)</td>", r, re.S) for r in rows]
    out[name] = [(_text(c[0]).strip(), _text(c[-1]).strip()) for c in cells if len(c) == 4]
  return out


def test_the_api_reference_marks_required_only_what_has_no_default(site):
  """Each documented parameter is one name of the signature, and "required" exactly when
  it has no default (``x, y:`` in one docstring line once showed both, and ``steps``,
  ``epochs``, ``val``, ``test``, as required)."""
  import importlib
  import inspect

  documented = _documented_parameters((site / "api" / "index.html").read_text())
  assert "jaxunlearn.engine.api.unlearn" in documented
  checked = 0
  for name, rows in documented.items():
    module, _, attr = name.rpartition(".")
    try:
      obj = getattr(importlib.import_module(module), attr)
      signature = inspect.signature(obj)
    except (ImportError, AttributeError, TypeError, ValueError):
      continue
    for param, default in rows:
      param = param.lstrip("*")  # **config
      assert param in signature.parameters, (name, param)
      kind = signature.parameters[param].kind
      empty = signature.parameters[param].default is inspect.Parameter.empty
      empty = empty and kind not in (kind.VAR_KEYWORD, kind.VAR_POSITIONAL)
      assert (default == "required") == empty, (name, param, default)
      checked += 1
  assert checked > 40
