"""Backend selection: the env switch, the visible choice, the required check."""

from __future__ import annotations

import os
import subprocess
import sys

import sessionsd

from conftest import EXTENSION_REQUIRED


def run_python(code: str, **env: str) -> str:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("SESSIONSD_")}
    full_env.update(env)
    done = subprocess.run([sys.executable, "-c", code], env=full_env,
                          capture_output=True, text=True, check=True)
    return done.stdout.strip()


def test_required_extension_is_active():
    """Fails -- does not skip -- when the extension is required but missing."""
    if EXTENSION_REQUIRED:
        assert sessionsd.BACKEND == "compiled"
        from sessionsd import _codec, _codec_c

        assert _codec.encode_key is _codec_c.encode_key


def test_backend_is_one_of_two():
    assert sessionsd.BACKEND in ("compiled", "python")


def test_no_extensions_env_forces_the_twin():
    code = "import sessionsd, sessionsd._codec as c; print(sessionsd.BACKEND, c._impl.__name__)"
    assert run_python(code, SESSIONSD_NO_EXTENSIONS="1") == "python sessionsd._codec_py"


def test_selector_prefers_compiled_when_built():
    code = "import sessionsd; print(sessionsd.BACKEND)"
    try:
        import sessionsd._codec_c  # noqa: F401
    except ImportError:
        assert run_python(code) == "python"
    else:
        assert run_python(code) == "compiled"


def test_version_names_the_backend():
    code = "import sys; from sessionsd.cli import main; sys.exit(main(['--version']))"
    try:
        import sessionsd._codec_c  # noqa: F401

        default = "compiled"
    except ImportError:
        default = "python"
    out = run_python(code)
    assert out.startswith(f"sessionsd {sessionsd.__version__} ({default} codec")
    assert run_python(code, SESSIONSD_NO_EXTENSIONS="1").startswith(
        f"sessionsd {sessionsd.__version__} (python codec"
    )
