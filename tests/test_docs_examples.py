"""Every Python example in README.md and docs/**/*.md runs as written.

How examples are found and run:

* A fenced block whose info string is ``python`` (or ``py``, ``python3``) is
  an example.  Other blocks -- ``sh``, ``bash``, ``console``, ``text``, plain
  ``````` -- are never run.
* One test per Markdown file.  Its examples run in document order in one
  shared namespace (a later block may use names an earlier one defined), with
  a fresh temporary directory as the working directory, so relative paths in
  examples land there.  ``__name__`` is ``"__main__"``.
* An example must not name an absolute path in a string literal (say
  ``"/var/lib/host/sessions.json"``): the tests run as root in CI, and the
  store creates missing directories, so it would write outside the sandbox.
  Such a block fails without being run; use a relative path.
* To skip a block, put this HTML comment on the last non-blank line before its
  opening fence (it is invisible on GitHub and on the docs site)::

      <!-- docs-test: skip: why it cannot run here -->

  A reason is expected after the second colon.  Skipping must stay rare: the
  test reports how many blocks ran and were skipped, and a file that has
  Python blocks of which none ran fails.
* A failure names the file and the line of the block's opening fence, and
  the traceback points at the Markdown file's own line numbers.  Every block
  runs even after one failed (a later failure may only follow from an
  earlier one: read the first one first).

Outside a checkout (ci/run_installed_tests.py copies tests/ alone), there is
no README.md to read and the test is skipped.
"""

from __future__ import annotations

import ast
import re
import traceback
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
DOCS = ROOT / "docs"

#: Info strings of the blocks that run.
PYTHON_LANGS = frozenset({"python", "py", "python3"})
#: ``<!-- docs-test: skip -->`` or ``<!-- docs-test: skip: reason -->``.
SKIP_MARKER = re.compile(r"^\s*<!--\s*docs-test:\s*skip\b\s*:?\s*(?P<reason>.*?)\s*-->\s*$")
_FENCE_OPEN = re.compile(r"^(?P<indent>[ ]{0,3})(?P<fence>`{3,}|~{3,})\s*(?P<info>[^`]*?)\s*$")


@dataclass
class Block:
    """One fenced code block."""

    line: int  # 1-based line of the opening fence
    lang: str
    code: str
    skip_reason: str | None  # None: run it

    @property
    def first_code_line(self) -> int:
        return self.line + 1


def markdown_files() -> list[Path]:
    """README.md and every Markdown file under docs/, in a stable order."""
    files = [README] if README.is_file() else []
    if DOCS.is_dir():
        files.extend(sorted(path for path in DOCS.rglob("*.md") if path.is_file()))
    return files


def fenced_blocks(text: str) -> list[Block]:
    """Every fenced code block of *text* (CommonMark fences, backticks or tildes)."""
    lines = text.splitlines()
    blocks: list[Block] = []
    index = 0
    while index < len(lines):
        opening = _FENCE_OPEN.match(lines[index])
        if opening is None:
            index += 1
            continue
        fence = opening["fence"]
        indent = len(opening["indent"])
        info = opening["info"].strip()
        lang = info.split()[0].strip("{}.").lower() if info else ""
        skip_reason = None
        previous = index - 1
        while previous >= 0 and not lines[previous].strip():
            previous -= 1
        if previous >= 0 and (marker := SKIP_MARKER.match(lines[previous])):
            skip_reason = marker["reason"] or "no reason given"
        body: list[str] = []
        close = index + 1
        closing = re.compile(rf"^[ ]{{0,3}}{re.escape(fence[0])}{{{len(fence)},}}\s*$")
        while close < len(lines) and not closing.match(lines[close]):
            line = lines[close]
            # Content is de-indented by the opening fence's indentation.
            strip = min(indent, len(line) - len(line.lstrip(" ")))
            body.append(line[strip:])
            close += 1
        blocks.append(Block(index + 1, lang, "\n".join(body) + "\n", skip_reason))
        index = close + 1
    return blocks


def python_blocks(path: Path) -> list[Block]:
    return [block for block in fenced_blocks(path.read_text(encoding="utf-8")) if block.lang in PYTHON_LANGS]


def absolute_paths(tree: ast.AST) -> list[str]:
    """String literals in *tree* that are absolute POSIX paths (``/x/...``)."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            value = node.value
            if re.match(r"^/[A-Za-z0-9._-]+(/|$)", value) and value != "/":
                found.append(value)
    return found


def _relative(path: Path) -> str:
    try:
        return str(path.relative_to(ROOT))
    except ValueError:
        return str(path)


def _params() -> list:
    files = markdown_files()
    if not README.is_file():
        return [pytest.param(None, marks=pytest.mark.skip(reason="no README.md: not run from a checkout"))]
    return [pytest.param(path, id=_relative(path)) for path in files]


def test_the_examples_are_found():
    """The extractor itself: a file's blocks, languages, skip markers, lines."""
    text = "\n".join([
        "# title",
        "```python",
        "a = 1",
        "```",
        "",
        "<!-- docs-test: skip: needs a reference host -->",
        "",
        "```python",
        "raise SystemExit",
        "```",
        "```sh",
        "echo no",
        "```",
        "  ```py",
        "  b = a + 1",
        "  ```",
        "````python",
        "c = '```'",
        "````",
    ])
    blocks = fenced_blocks(text)
    assert [(b.line, b.lang, b.skip_reason) for b in blocks] == [
        (2, "python", None), (8, "python", "needs a reference host"), (11, "sh", None),
        (14, "py", None), (17, "python", None)]
    assert blocks[3].code == "b = a + 1\n"
    assert blocks[4].code == "c = '```'\n"
    assert absolute_paths(ast.parse('p = "/var/lib/x"; q = "rel/x"; r = "/"')) == ["/var/lib/x"]


@pytest.mark.parametrize("path", _params())
def test_markdown_examples_run(path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                               record_property) -> None:
    name = _relative(path)
    blocks = python_blocks(path)
    if not blocks:
        pytest.skip(f"{name} has no python blocks")
    monkeypatch.chdir(tmp_path)
    namespace: dict = {"__name__": "__main__", "__file__": str(tmp_path / "example.py")}
    failures: list[str] = []
    ran = skipped = 0
    for block in blocks:
        where = f"{name}:{block.line}"
        if block.skip_reason is not None:
            skipped += 1
            continue
        # Padded so that tracebacks give the Markdown file's line numbers.
        source = "\n" * (block.first_code_line - 1) + block.code
        try:
            tree = ast.parse(source, filename=str(path))
        except SyntaxError as exc:
            failures.append(f"{where}: the block is not valid Python: {exc}")
            continue
        outside = absolute_paths(tree)
        if outside:
            failures.append(f"{where}: not run: the block names absolute path(s) {outside}; examples run in a "
                            "temporary directory and must use relative paths")
            continue
        ran += 1
        try:
            exec(compile(tree, str(path), "exec"), namespace)  # noqa: S102 - running the docs is the point
        except BaseException as exc:  # noqa: BLE001 - report every block, whatever it raised
            if isinstance(exc, KeyboardInterrupt):
                raise
            # From the example's own frame on (not this test's).
            trace = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__.tb_next)).rstrip()
            failures.append(f"{where}: {type(exc).__name__}: {exc}\n{trace}")
    summary = f"{name}: {ran} python block(s) run, {skipped} skipped, {len(failures)} failed"
    print(summary)  # shown by pytest -rP / -s, and on failure
    record_property("python_blocks_run", ran)
    record_property("python_blocks_skipped", skipped)
    if failures:
        pytest.fail(summary + "\n\n" + "\n\n".join(failures), pytrace=False)
    if ran == 0:
        pytest.fail(f"{summary}: a file with python blocks must run at least one (skip markers are for rare cases)",
                    pytrace=False)
