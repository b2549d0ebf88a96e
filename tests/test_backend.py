"""Backend selection: the env switch, the visible choice, the required check."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

import sessionsd
from sessionsd import _codec

# The selector's own reading of the switch ("1", "true", "yes", ...), so this
# file and the selector can never disagree about whether it is set.
EXTENSION_REQUIRED = _codec._env_flag("SESSIONSD_REQUIRE_EXTENSIONS")

# Makes `import sessionsd._codec_c` raise ImportError, as on a machine where
# the extension was never built (an import of a None entry in sys.modules fails).
BLOCK_EXTENSION = "import sys; sys.modules['sessionsd._codec_c'] = None\n"


def run_python(code: str, *args: str, check: bool = True, **env: str) -> subprocess.CompletedProcess:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("SESSIONSD_")}
    full_env.update(env)
    return subprocess.run([sys.executable, *args, "-c", code] if code else [sys.executable, *args],
                          env=full_env, capture_output=True, text=True, check=check)


def output(code: str, *args: str, **env: str) -> str:
    return run_python(code, *args, **env).stdout.strip()


def compiled_is_built() -> bool:
    try:
        import sessionsd._codec_c  # noqa: F401
    except ImportError:
        return False
    return True


def test_required_extension_is_active():
    """Fails -- does not skip -- when the extension is required but missing."""
    if not EXTENSION_REQUIRED:
        return
    assert sessionsd.BACKEND == "compiled", (
        "SESSIONSD_REQUIRE_EXTENSIONS is set but sessionsd runs the pure-Python codec")
    from sessionsd import _codec_c

    assert _codec._impl is _codec_c
    assert _codec.encode_key is _codec_c.encode_key
    assert sessionsd.scan_entries is _codec_c.scan_entries


def test_backend_is_one_of_two():
    assert sessionsd.BACKEND in ("compiled", "python")
    assert _codec._impl.__name__ == {"compiled": "sessionsd._codec_c",
                                     "python": "sessionsd._codec_py"}[sessionsd.BACKEND]


def test_no_extensions_env_forces_the_twin():
    code = "import sessionsd, sessionsd._codec as c; print(sessionsd.BACKEND, c._impl.__name__)"
    assert output(code, SESSIONSD_NO_EXTENSIONS="1") == "python sessionsd._codec_py"
    # It wins over the requirement: a deliberate choice, not a missing build.
    assert output(code, SESSIONSD_NO_EXTENSIONS="1", SESSIONSD_REQUIRE_EXTENSIONS="1") == \
        "python sessionsd._codec_py"


def test_selector_prefers_compiled_when_built():
    code = "import sessionsd; print(sessionsd.BACKEND)"
    assert output(code) == ("compiled" if compiled_is_built() else "python")


def test_missing_extension_falls_back_with_a_debug_line():
    code = BLOCK_EXTENSION + (
        "import logging\n"
        "logging.basicConfig(level=logging.DEBUG, format='%(name)s %(levelname)s %(message)s')\n"
        "import sessionsd; print(sessionsd.BACKEND)")
    done = run_python(code)
    assert done.stdout.strip() == "python"
    assert "sessionsd._codec DEBUG compiled codec unavailable" in done.stderr
    # Quiet by default: nothing at WARNING or above for a missing extension.
    quiet = run_python(BLOCK_EXTENSION + "import logging; logging.basicConfig(level=logging.INFO)\n"
                       "import sessionsd")
    assert quiet.stderr == ""


@pytest.mark.parametrize("value", ["1", "true", "yes"])
def test_required_extension_missing_is_an_import_error(value):
    done = run_python(BLOCK_EXTENSION + "import sessionsd", check=False,
                      SESSIONSD_REQUIRE_EXTENSIONS=value)
    assert done.returncode == 1
    assert "ImportError: SESSIONSD_REQUIRE_EXTENSIONS is set but the compiled codec" in done.stderr


def test_version_names_the_backend():
    default = "compiled" if compiled_is_built() else "python"
    prefix = f"sessionsd {sessionsd.__version__} ("
    # Both entry points: `python -m sessionsd` and the console script's main().
    assert output("", "-m", "sessionsd", "--version").startswith(prefix + f"{default} codec, ")
    code = "import sys; from sessionsd.cli import main; sys.exit(main(['--version']))"
    assert output(code).startswith(prefix + f"{default} codec, ")
    assert run_python("", "-m", "sessionsd", "--version", SESSIONSD_NO_EXTENSIONS="1").stdout.startswith(
        prefix + "python codec, ")
