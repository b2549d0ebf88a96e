# Type stub of the compiled codec: its public names, signatures and behaviour
# are those of the pure twin, which is the type source.
from sessionsd._codec_py import (
    ENTRY_PREFIX as ENTRY_PREFIX,
    ENTRY_SUFFIX as ENTRY_SUFFIX,
    HASHED_NAME_LENGTH as HASHED_NAME_LENGTH,
    HEADER_BYTES as HEADER_BYTES,
    HASHED_PREFIX as HASHED_PREFIX,
    KEY_WHITESPACE as KEY_WHITESPACE,
    MAX_INLINE_KEY_BYTES as MAX_INLINE_KEY_BYTES,
    SPLIT_MAX_DEPTH as SPLIT_MAX_DEPTH,
    ObjectSplitter as ObjectSplitter,
    SplitError as SplitError,
    classify_name as classify_name,
    copy_json as copy_json,
    decode_name as decode_name,
    decode_names as decode_names,
    encode_key as encode_key,
    prefetch_files as prefetch_files,
    read_files as read_files,
    read_updated_at as read_updated_at,
    same_json as same_json,
    scan_entries as scan_entries,
    scan_entries_with_skipped as scan_entries_with_skipped,
    stat_entries as stat_entries,
    validate_key as validate_key,
)

def _set_scan_mode(force_lstat: bool = ..., force_scandir: bool = ...) -> None: ...
def _scan_with_scandir(
    path: str, skipped: list[tuple[str, str]] | None = ...
) -> list[tuple[str, str | None]]: ...
