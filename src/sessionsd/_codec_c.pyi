# Type stub of the compiled codec: its public names, signatures and behaviour
# are those of the pure twin, which is the type source.
from sessionsd._codec_py import (
    ENTRY_PREFIX as ENTRY_PREFIX,
)
from sessionsd._codec_py import (
    ENTRY_SUFFIX as ENTRY_SUFFIX,
)
from sessionsd._codec_py import (
    HASHED_NAME_LENGTH as HASHED_NAME_LENGTH,
)
from sessionsd._codec_py import (
    HASHED_PREFIX as HASHED_PREFIX,
)
from sessionsd._codec_py import (
    HEADER_BYTES as HEADER_BYTES,
)
from sessionsd._codec_py import (
    KEY_WHITESPACE as KEY_WHITESPACE,
)
from sessionsd._codec_py import (
    MAX_INLINE_KEY_BYTES as MAX_INLINE_KEY_BYTES,
)
from sessionsd._codec_py import (
    SPLIT_MAX_DEPTH as SPLIT_MAX_DEPTH,
)
from sessionsd._codec_py import (
    STAT_RECORD as STAT_RECORD,
)
from sessionsd._codec_py import (
    ObjectSplitter as ObjectSplitter,
)
from sessionsd._codec_py import (
    SplitError as SplitError,
)
from sessionsd._codec_py import (
    classify_name as classify_name,
)
from sessionsd._codec_py import (
    copy_json as copy_json,
)
from sessionsd._codec_py import (
    decode_name as decode_name,
)
from sessionsd._codec_py import (
    decode_names as decode_names,
)
from sessionsd._codec_py import (
    diff_entries as diff_entries,
)
from sessionsd._codec_py import (
    encode_key as encode_key,
)
from sessionsd._codec_py import (
    prefetch_files as prefetch_files,
)
from sessionsd._codec_py import (
    read_files as read_files,
)
from sessionsd._codec_py import (
    read_updated_at as read_updated_at,
)
from sessionsd._codec_py import (
    same_json as same_json,
)
from sessionsd._codec_py import (
    scan_entries as scan_entries,
)
from sessionsd._codec_py import (
    scan_entries_with_skipped as scan_entries_with_skipped,
)
from sessionsd._codec_py import (
    stat_entries as stat_entries,
)
from sessionsd._codec_py import (
    validate_key as validate_key,
)

def _set_scan_mode(force_lstat: bool = ..., force_scandir: bool = ..., parallel_io: bool = ...) -> None: ...
def _scan_with_scandir(
    path: str, skipped: list[tuple[str, str]] | None = ...
) -> list[tuple[str, str | None]]: ...
