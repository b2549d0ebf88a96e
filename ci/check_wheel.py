"""Check what a built wheel contains.

    python ci/check_wheel.py WHEEL           # compiled wheel
    python ci/check_wheel.py --pure WHEEL    # py3-none-any wheel

A compiled wheel must carry the extension, its type stub, py.typed and every
module of the package, and nothing else: no Cython sources, no generated C,
no tests or benchmarks, no build debris.  A pure wheel must carry no compiled
module and be tagged py3-none-any.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import zipfile

MODULES = [
    "__init__.py", "__main__.py", "_codec.py", "_codec_py.py", "_directory.py", "_documents.py",
    "_faults.py", "_fsutil.py", "_json.py", "_layout.py", "_legacy.py", "_lock.py", "check.py",
    "cli.py", "datagen.py", "demo.py", "discovery.py", "errors.py", "maintenance.py",
    "migration.py", "store.py",
]
FORBIDDEN = re.compile(r"(\.pyx$|\.pxd$|\.c$|\.h$|\.o$|^tests/|^bench/|^_ext/|^build/|__pycache__|\.egg-info/)")
EXTENSION = re.compile(r"^sessionsd/_codec_c\.[^/]*\.(so|pyd)$|^sessionsd/_codec_c\.(so|pyd)$")


def check(path: str, pure: bool) -> list[str]:
    problems = []
    with zipfile.ZipFile(path) as wheel:
        names = wheel.namelist()
    tag = os.path.basename(path)[:-4].split("-", 2)[2]
    for module in MODULES:
        if f"sessionsd/{module}" not in names:
            problems.append(f"missing module sessionsd/{module}")
    for required in ("sessionsd/py.typed", "sessionsd/_codec_c.pyi"):
        if required not in names:
            problems.append(f"missing {required}")
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
    for name in names:
        if FORBIDDEN.search(name) and not name.endswith(".dist-info/RECORD"):
            problems.append(f"does not belong in a wheel: {name}")
    print(f"{os.path.basename(path)}: {len(names)} files, tag {tag}, "
          f"compiled module: {compiled[0] if compiled else 'none'}")
    return problems


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("wheel")
    parser.add_argument("--pure", action="store_true")
    args = parser.parse_args()
    problems = check(args.wheel, args.pure)
    for problem in problems:
        print(f"  FAIL {problem}")
    print("  OK" if not problems else f"  {len(problems)} problem(s)")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
