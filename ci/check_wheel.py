"""Check what a built wheel or sdist contains.

    python ci/check_wheel.py WHEEL           # compiled wheel
    python ci/check_wheel.py --pure WHEEL    # py3-none-any wheel
    python ci/check_wheel.py --sdist SDIST   # source distribution (.tar.gz)

A compiled wheel must carry the extension, its type stub, py.typed and every
module of the package, and nothing else: no Cython sources, no generated C,
no tests or benchmarks, no build debris, no stale module that is no longer in
src/.  A pure wheel must carry no compiled module and be tagged py3-none-any.
Both declare Python >= 3.11 and the runtime dependencies (orjson on CPython,
except in a free-threaded wheel: orjson has no wheels for those).

An sdist must carry what building the extension needs (the .pyx and its
header, setup.py, pyproject.toml), the package sources and the tests, and no
compiled or generated files: installing it has to run Cython.

The expected module list is read from src/sessionsd/ next to this script, so
a module added there is expected in the wheel without editing this file.
"""

from __future__ import annotations

import argparse
import email.parser
import os
import re
import sys
import tarfile
import zipfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGE_SRC = os.path.join(ROOT, "src", "sessionsd")
MODULES = sorted(n for n in os.listdir(PACKAGE_SRC) if n.endswith(".py"))
TYPING_FILES = ["py.typed", "_codec_c.pyi"]
FORBIDDEN = re.compile(r"(\.pyx$|\.pxd$|\.c$|\.h$|\.o$|^tests/|^bench/|^_ext/|^build/|__pycache__|\.egg-info/)")
EXTENSION = re.compile(r"^sessionsd/_codec_c\.[^/]*\.(so|pyd)$|^sessionsd/_codec_c\.(so|pyd)$")
# In an sdist: compiled objects, generated C, caches, stray venvs or results.
SDIST_FORBIDDEN = re.compile(
    r"(\.so$|\.pyd$|\.o$|\.dll$|_codec_c\.c$|\.html$|__pycache__|\.pyc$|/\.venv|/build/|/dist/|"
    r"/wheelhouse/|/\.hypothesis/|/\.benchmarks/|/bench/results/)"
)


def check_metadata(metadata: str, tag: str) -> list[str]:
    problems = []
    fields = email.parser.Parser().parsestr(metadata)
    if fields.get("Requires-Python", "").replace(" ", "") != ">=3.11":
        problems.append(f"Requires-Python is {fields.get('Requires-Python')!r}, expected '>=3.11'")
    requires = [r for r in fields.get_all("Requires-Dist") or [] if "extra ==" not in r]
    names = {re.split(r"[<>=!~;\s\[]", r, maxsplit=1)[0].lower(): r for r in requires}
    for name in ("filelock", "json5"):
        if name not in names:
            problems.append(f"runtime dependency {name} missing from Requires-Dist {requires}")
    free_threaded = re.search(r"-cp3\d+t-", f"-{tag}-") is not None
    orjson = names.get("orjson")
    if free_threaded:
        if orjson is not None:
            problems.append(f"free-threaded wheel requires orjson ({orjson}): it has no wheels there")
    elif orjson is None or "platform_python_implementation" not in orjson:
        problems.append(f"orjson must be required on CPython only, found {orjson!r}")
    return problems


def check(path: str, pure: bool) -> list[str]:
    problems = []
    with zipfile.ZipFile(path) as wheel:
        names = wheel.namelist()
        metadata = [n for n in names if n.endswith(".dist-info/METADATA")]
        if len(metadata) != 1:
            return [f"expected one .dist-info/METADATA, found {metadata}"]
        metadata_text = wheel.read(metadata[0]).decode("utf-8")
    tag = os.path.basename(path)[:-4].split("-", 2)[2]
    for module in MODULES:
        if f"sessionsd/{module}" not in names:
            problems.append(f"missing module sessionsd/{module}")
    for required in TYPING_FILES:
        if f"sessionsd/{required}" not in names:
            problems.append(f"missing sessionsd/{required}")
    compiled = [n for n in names if EXTENSION.match(n)]
    if pure:
        if compiled:
            problems.append(f"pure wheel contains a compiled module: {compiled}")
        if tag != "py3-none-any":
            problems.append(f"pure wheel is tagged {tag}, expected py3-none-any")
    else:
        if len(compiled) != 1:
            problems.append(f"expected exactly one compiled sessionsd._codec_c, found {compiled}")
        if tag.endswith("none-any"):
            problems.append(f"compiled wheel is tagged {tag}")
    expected = {f"sessionsd/{n}" for n in MODULES + TYPING_FILES} | set(compiled)
    for name in names:
        if name.endswith("/"):
            continue  # a directory entry (auditwheel writes them)
        if FORBIDDEN.search(name) and not name.endswith(".dist-info/RECORD"):
            problems.append(f"does not belong in a wheel: {name}")
        elif ".dist-info/" not in name and name not in expected:
            # e.g. a module deleted from src/ but left in a stale build/ tree
            problems.append(f"not a file of the package: {name}")
    problems += check_metadata(metadata_text, tag)
    print(f"{os.path.basename(path)}: {len(names)} files, tag {tag}, "
          f"compiled module: {compiled[0] if compiled else 'none'}")
    return problems


def check_sdist(path: str) -> list[str]:
    problems = []
    with tarfile.open(path) as sdist:
        members = sdist.getnames()
    top = os.path.commonpath(members)
    names = {os.path.relpath(m, top).replace(os.sep, "/") for m in members}
    required = ["pyproject.toml", "setup.py", "MANIFEST.in", "README.md", "PKG-INFO",
                "_ext/_codec_c.pyx", "_ext/sd_dirscan.h", "tests/conftest.py"]
    required += [f"src/sessionsd/{n}" for n in MODULES + TYPING_FILES]
    for name in required:
        if name not in names:
            problems.append(f"missing {name}")
    for name in sorted(names):
        if SDIST_FORBIDDEN.search("/" + name):
            problems.append(f"does not belong in an sdist: {name}")
    print(f"{os.path.basename(path)}: {len(names)} entries")
    return problems


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dist")
    kind = parser.add_mutually_exclusive_group()
    kind.add_argument("--pure", action="store_true")
    kind.add_argument("--sdist", action="store_true")
    args = parser.parse_args()
    problems = check_sdist(args.dist) if args.sdist else check(args.dist, args.pure)
    for problem in problems:
        print(f"  FAIL {problem}")
    print("  OK" if not problems else f"  {len(problems)} problem(s)")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
