"""Chooses the codec backend: the compiled ``_codec_c`` or its pure twin.

``SESSIONSD_NO_EXTENSIONS=1`` forces the twin.  Otherwise the compiled module
is used when it imports; when it does not, the twin is used and a DEBUG line
says why -- unless ``SESSIONSD_REQUIRE_EXTENSIONS=1``, which turns the missing
extension into an ``ImportError`` (for deployments and CI that must not run
on the slow path by accident).
"""

from __future__ import annotations

import logging
import os

_log = logging.getLogger(__name__)


def _env_flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() not in ("", "0", "false", "no", "off")


if _env_flag("SESSIONSD_NO_EXTENSIONS"):
    from . import _codec_py as _impl

    BACKEND = "python"
    _log.debug("SESSIONSD_NO_EXTENSIONS is set: using the pure-Python codec")
else:
    try:
        from . import _codec_c as _impl  # type: ignore[no-redef]

        BACKEND = "compiled"
    except ImportError as exc:
        if _env_flag("SESSIONSD_REQUIRE_EXTENSIONS"):
            raise ImportError(
                "SESSIONSD_REQUIRE_EXTENSIONS is set but the compiled codec "
                f"sessionsd._codec_c did not import: {exc}"
            ) from exc
        from . import _codec_py as _impl

        BACKEND = "python"
        _log.debug("compiled codec unavailable (%s): using the pure-Python codec", exc)

ENTRY_PREFIX = _impl.ENTRY_PREFIX
HASHED_PREFIX = _impl.HASHED_PREFIX
ENTRY_SUFFIX = _impl.ENTRY_SUFFIX
MAX_INLINE_KEY_BYTES = _impl.MAX_INLINE_KEY_BYTES
HASHED_NAME_LENGTH = _impl.HASHED_NAME_LENGTH
KEY_WHITESPACE = _impl.KEY_WHITESPACE
HEADER_BYTES = _impl.HEADER_BYTES

validate_key = _impl.validate_key
encode_key = _impl.encode_key
decode_name = _impl.decode_name
classify_name = _impl.classify_name
decode_names = _impl.decode_names
scan_entries = _impl.scan_entries
scan_entries_with_skipped = _impl.scan_entries_with_skipped
stat_entries = _impl.stat_entries
diff_entries = _impl.diff_entries
STAT_RECORD = _impl.STAT_RECORD
read_files = _impl.read_files
prefetch_files = _impl.prefetch_files
read_updated_at = _impl.read_updated_at
copy_json = _impl.copy_json
same_json = _impl.same_json
SPLIT_MAX_DEPTH = _impl.SPLIT_MAX_DEPTH
SplitError = _impl.SplitError
ObjectSplitter = _impl.ObjectSplitter
