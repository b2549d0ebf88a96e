"""Check the wheel matrix that cibuildwheel would build.

    python ci/check_matrix.py IDS_LINUX IDS_MACOS IDS_WINDOWS

Each file holds the output of ``cibuildwheel --print-build-identifiers
--platform <name>``.  The matrix must be exactly what the wheel issue asks
for: CPython 3.11-3.14 and free-threaded 3.14t; Linux manylinux and musllinux
on x86_64 and aarch64; macOS x86_64 and arm64; Windows AMD64 and ARM64.
Nothing else (PyPy gets the pure py3-none-any wheel).
"""

from __future__ import annotations

import itertools
import sys

PYTHONS = ["cp311", "cp312", "cp313", "cp314", "cp314t"]
EXPECTED = {
    "linux": {f"{py}-{libc}_{arch}" for py, libc, arch in itertools.product(
        PYTHONS, ["manylinux", "musllinux"], ["x86_64", "aarch64"])},
    "macos": {f"{py}-macosx_{arch}" for py, arch in itertools.product(PYTHONS, ["x86_64", "arm64"])},
    "windows": {f"{py}-win_{arch}" for py, arch in itertools.product(PYTHONS, ["amd64", "arm64"])},
}


def main(paths: list[str]) -> int:
    if len(paths) != 3:
        print(__doc__.strip().splitlines()[2], file=sys.stderr)
        return 2
    problems = 0
    for platform, path in zip(["linux", "macos", "windows"], paths, strict=False):
        with open(path) as fh:
            found = {line.strip() for line in fh if line.strip()}
        missing, extra = EXPECTED[platform] - found, found - EXPECTED[platform]
        for ident in sorted(missing):
            print(f"  FAIL {platform}: {ident} is not built")
        for ident in sorted(extra):
            print(f"  FAIL {platform}: {ident} is built but not intended")
        problems += len(missing) + len(extra)
        if not missing and not extra:
            print(f"  OK {platform}: {len(found)} wheels")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
