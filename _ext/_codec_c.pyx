# cython: language_level=3, freethreading_compatible=True
# cython: boundscheck=False, wraparound=False, cdivision=True
"""Compiled key codec and entry-directory scan.

Twin of ``sessionsd._codec_py``: same public names, same results, same
exceptions and messages, same docstrings (copied from the twin at import).
The rules are documented there.  Decoding here checks canonical base64url and
strict UTF-8 directly instead of re-encoding; the differential tests hold the
two formulations to the same accepted set.
"""

from cpython.bytes cimport PyBytes_FromStringAndSize
from cpython.exc cimport PyErr_SetFromErrnoWithFilenameObject
from libc.errno cimport errno
from libc.stdlib cimport calloc, free, malloc, realloc
from libc.string cimport memchr, memcmp, memcpy, strlen

import os
from hashlib import sha256 as _sha256

from sessionsd import _codec_py as _twin
from sessionsd.errors import InvalidKeyError, InvalidKeyTypeError

cdef extern from "Python.h":
    object PyUnicode_New(Py_ssize_t size, Py_UCS4 maxchar)
    object PyUnicode_EncodeFSDefault(object o)
    object PyLong_FromLongLong(long long v)
    object PyLong_FromUnsignedLongLong(unsigned long long v)
    void* PyUnicode_DATA(object o)
    bint PyUnicode_IS_ASCII(object o)
    object PyUnicode_FromObject(object o)
    object PyUnicode_DecodeUTF8(const char* s, Py_ssize_t size, const char* errors)
    object PyUnicode_DecodeFSDefaultAndSize(const char* s, Py_ssize_t size)
    const char* PyUnicode_AsUTF8AndSize(object o, Py_ssize_t* size) except NULL

cdef extern from "sd_dirscan.h":
    ctypedef struct sd_dir:
        pass
    int SD_HAVE_DIRENT
    int SD_KIND_UNKNOWN
    int SD_KIND_REGULAR
    int SD_KIND_LINK
    int SD_KIND_DIR
    int sd_dir_open(sd_dir* d, const char* path)
    int sd_dir_next(sd_dir* d, const char** name, Py_ssize_t* length, int* kind)
    int sd_dir_kind_nofollow(sd_dir* d, const char* name)
    void sd_dir_close(sd_dir* d)
    int sd_read_file(const char* path, char* stack, Py_ssize_t stack_size,
                     char** data, Py_ssize_t* n, int* err) nogil
    int sd_dir_fd(sd_dir* d)
    ctypedef struct sd_batch_item:
        Py_ssize_t offset
        Py_ssize_t length
        int status
        int err
    ctypedef struct sd_stat_item:
        unsigned long long ino
        long long mtime_ns
        long long size
        int status
        int err
    int sd_read_batch(int dir_fd, const char** names, Py_ssize_t count,
                      char** arena, size_t* capacity, sd_batch_item* out) nogil
    void sd_stat_batch(int dir_fd, const char** names, Py_ssize_t count, sd_stat_item* out) nogil
    void sd_stat_batch_parallel(int dir_fd, const char** names, Py_ssize_t count, sd_stat_item* out) nogil
    ctypedef struct sd_batch_job:
        int dir_fd
        const char** names
        Py_ssize_t count
        char* arena
        size_t capacity
        sd_batch_item* out
        int rc
        int started
        int parallel
        Py_ssize_t split
        char* arena2
        size_t capacity2
    void sd_batch_spawn(sd_batch_job* j) nogil
    void sd_batch_wait(sd_batch_job* j) nogil

__all__ = list(_twin.__all__)

ENTRY_PREFIX = _twin.ENTRY_PREFIX
HASHED_PREFIX = _twin.HASHED_PREFIX
ENTRY_SUFFIX = _twin.ENTRY_SUFFIX
MAX_INLINE_KEY_BYTES = _twin.MAX_INLINE_KEY_BYTES
HASHED_NAME_LENGTH = _twin.HASHED_NAME_LENGTH
KEY_WHITESPACE = _twin.KEY_WHITESPACE
HEADER_BYTES = _twin.HEADER_BYTES
STAT_RECORD = _twin.STAT_RECORD

cdef enum:
    PREFIX_LEN = 8          # "session-"
    HASHED_PREFIX_LEN = 13  # "session-hash-"
    SUFFIX_LEN = 5          # ".json"
    MAX_INLINE_BYTES = 120
    MAX_INLINE_MIDDLE = 160
    HASHED_LEN = 61
    NAME_BUFFER = 256       # > 8 + 160 + 5

cdef const char* _ALPHABET = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
cdef signed char _DECODE[256]
cdef int _i
for _i in range(256):
    _DECODE[_i] = -1
for _i in range(64):
    _DECODE[<unsigned char>_ALPHABET[_i]] = _i

# Test hooks (see tests/test_scan.py): treat every d_type as DT_UNKNOWN, or
# take the os.scandir path that Windows builds use.
cdef bint _force_lstat = False
cdef bint _force_scandir = False
# And whether large lstat and read batches may use a second thread (the
# answer must not depend on it).
cdef bint _parallel_io = True


def _set_scan_mode(bint force_lstat=False, bint force_scandir=False, bint parallel_io=True):
    global _force_lstat, _force_scandir, _parallel_io
    _force_lstat = force_lstat
    _force_scandir = force_scandir
    _parallel_io = parallel_io


cdef inline void _stat_batch(int dir_fd, const char** names, Py_ssize_t count, sd_stat_item* out) noexcept nogil:
    if _parallel_io:
        sd_stat_batch_parallel(dir_fd, names, count, out)
    else:
        sd_stat_batch(dir_fd, names, count, out)


cdef inline bint _is_ws(Py_UCS4 c) noexcept nogil:
    # ECMAScript WhiteSpace + LineTerminator, the same set as KEY_WHITESPACE.
    if c <= 0x20:
        return c == 0x20 or (c >= 0x09 and c <= 0x0D)
    if c < 0xA0:
        return False
    return (c == 0xA0 or c == 0x1680 or (c >= 0x2000 and c <= 0x200A)
            or c == 0x2028 or c == 0x2029 or c == 0x202F or c == 0x205F
            or c == 0x3000 or c == 0xFEFF)


cdef str _trim(str key):
    cdef Py_ssize_t n = len(key)
    cdef Py_ssize_t start = 0
    cdef Py_ssize_t end = n
    while start < n and _is_ws(key[start]):
        start += 1
    while end > start and _is_ws(key[end - 1]):
        end -= 1
    if start == 0 and end == n:
        return key
    return key[start:end]


cdef str _validated(object key, const char** data, Py_ssize_t* size):
    """Trimmed key; *data/*size point at its UTF-8 (owned by the result)."""
    cdef str trimmed
    if not isinstance(key, str):
        raise InvalidKeyTypeError(
            f"session key must be a str, not {type(key).__name__}", key
        )
    # PyUnicode_FromObject turns a str subclass into an exact str, as the
    # twin's str.strip() does.
    trimmed = _trim(<str>PyUnicode_FromObject(key))
    if len(trimmed) == 0:
        raise InvalidKeyError("session key is empty after trimming whitespace", key)
    try:
        data[0] = PyUnicode_AsUTF8AndSize(trimmed, size)
    except UnicodeEncodeError as exc:
        raise InvalidKeyError(
            f"session key has a lone surrogate at position {exc.start} "
            "and cannot be encoded as UTF-8",
            key,
        ) from exc
    return trimmed


cdef inline Py_ssize_t _b64url_encode(const unsigned char* src, Py_ssize_t n,
                                      char* dst) noexcept nogil:
    cdef Py_ssize_t i = 0
    cdef Py_ssize_t o = 0
    cdef unsigned int v
    while i + 3 <= n:
        v = (<unsigned int>src[i] << 16) | (<unsigned int>src[i + 1] << 8) | src[i + 2]
        dst[o] = _ALPHABET[(v >> 18) & 63]
        dst[o + 1] = _ALPHABET[(v >> 12) & 63]
        dst[o + 2] = _ALPHABET[(v >> 6) & 63]
        dst[o + 3] = _ALPHABET[v & 63]
        i += 3
        o += 4
    if n - i == 1:
        v = <unsigned int>src[i] << 16
        dst[o] = _ALPHABET[(v >> 18) & 63]
        dst[o + 1] = _ALPHABET[(v >> 12) & 63]
        o += 2
    elif n - i == 2:
        v = (<unsigned int>src[i] << 16) | (<unsigned int>src[i + 1] << 8)
        dst[o] = _ALPHABET[(v >> 18) & 63]
        dst[o + 1] = _ALPHABET[(v >> 12) & 63]
        dst[o + 2] = _ALPHABET[(v >> 6) & 63]
        o += 3
    return o


cdef inline object _ascii_str(const char* s, Py_ssize_t n):
    result = PyUnicode_New(n, 127)
    memcpy(PyUnicode_DATA(result), s, n)
    return result


cdef object _decode_inline(const char* s, Py_ssize_t n):
    """Key of a canonical inline name (bytes s[0:n]), else None."""
    cdef Py_ssize_t m, i, o, rest
    cdef int a, b, c, d
    cdef unsigned char out[MAX_INLINE_BYTES]
    cdef str key
    if n < PREFIX_LEN + 2 + SUFFIX_LEN:
        return None
    if memcmp(s, b"session-", PREFIX_LEN) != 0 or memcmp(s + n - SUFFIX_LEN, b".json", SUFFIX_LEN) != 0:
        return None
    if memcmp(s, b"session-hash-", HASHED_PREFIX_LEN) == 0:
        return None
    m = n - PREFIX_LEN - SUFFIX_LEN
    if m > MAX_INLINE_MIDDLE or (m & 3) == 1:
        return None
    s += PREFIX_LEN
    i = 0
    o = 0
    while i + 4 <= m:
        a = _DECODE[<unsigned char>s[i]]
        b = _DECODE[<unsigned char>s[i + 1]]
        c = _DECODE[<unsigned char>s[i + 2]]
        d = _DECODE[<unsigned char>s[i + 3]]
        if (a | b | c | d) < 0:
            return None
        out[o] = <unsigned char>((a << 2) | (b >> 4))
        out[o + 1] = <unsigned char>(((b & 15) << 4) | (c >> 2))
        out[o + 2] = <unsigned char>(((c & 3) << 6) | d)
        i += 4
        o += 3
    rest = m - i
    if rest == 2:
        a = _DECODE[<unsigned char>s[i]]
        b = _DECODE[<unsigned char>s[i + 1]]
        if (a | b) < 0 or (b & 15) != 0:  # canonical: unused bits are zero
            return None
        out[o] = <unsigned char>((a << 2) | (b >> 4))
        o += 1
    elif rest == 3:
        a = _DECODE[<unsigned char>s[i]]
        b = _DECODE[<unsigned char>s[i + 1]]
        c = _DECODE[<unsigned char>s[i + 2]]
        if (a | b | c) < 0 or (c & 3) != 0:
            return None
        out[o] = <unsigned char>((a << 2) | (b >> 4))
        out[o + 1] = <unsigned char>(((b & 15) << 4) | (c >> 2))
        o += 2
    try:
        key = PyUnicode_DecodeUTF8(<const char*>out, o, NULL)
    except UnicodeDecodeError:
        return None
    # Re-encoding would trim: a key with surrounding whitespace has no name.
    if _is_ws(key[0]) or _is_ws(key[len(key) - 1]):
        return None
    return key


#: What _entry_name_key answers for a name that is no entry file.
cdef object _NOT_ENTRY = object()


cdef object _entry_name_key(const char* name, Py_ssize_t n):
    """The key an entry file's *name* spells: None for a canonical hashed
    name (the key is in the file), _NOT_ENTRY for a name that is not an
    entry file's.  The one name rule of every directory walk here."""
    if n >= HASHED_PREFIX_LEN and memcmp(name, b"session-hash-", HASHED_PREFIX_LEN) == 0:
        return None if _is_canonical_hashed(name, n) else _NOT_ENTRY
    key = _decode_inline(name, n)
    return _NOT_ENTRY if key is None else key


cdef inline bint _is_canonical_hashed(const char* s, Py_ssize_t n) noexcept nogil:
    cdef Py_ssize_t i
    if n != HASHED_LEN or memcmp(s, b"session-hash-", HASHED_PREFIX_LEN) != 0:
        return False
    if memcmp(s + HASHED_LEN - SUFFIX_LEN, b".json", SUFFIX_LEN) != 0:
        return False
    for i in range(HASHED_PREFIX_LEN, HASHED_LEN - SUFFIX_LEN):
        if _DECODE[<unsigned char>s[i]] < 0:
            return False
    # 32 digest bytes leave 2 unused bits in the last character.
    return (_DECODE[<unsigned char>s[HASHED_LEN - SUFFIX_LEN - 1]] & 3) == 0


cdef inline void _check_name_type(object name) except *:
    if not isinstance(name, str):
        raise TypeError(f"entry file name must be a str, not {type(name).__name__}")


def validate_key(key):
    cdef const char* data
    cdef Py_ssize_t size
    return _validated(key, &data, &size)


def encode_key(key):
    cdef const char* data
    cdef const char* digest_data
    cdef Py_ssize_t size
    cdef Py_ssize_t n
    cdef char buf[NAME_BUFFER]
    trimmed = _validated(key, &data, &size)  # keeps `data` alive
    if size > MAX_INLINE_BYTES:
        digest = _sha256(PyBytes_FromStringAndSize(data, size)).digest()
        digest_data = digest
        memcpy(buf, b"session-hash-", HASHED_PREFIX_LEN)
        n = HASHED_PREFIX_LEN + _b64url_encode(<const unsigned char*>digest_data, 32,
                                               buf + HASHED_PREFIX_LEN)
    else:
        memcpy(buf, b"session-", PREFIX_LEN)
        n = PREFIX_LEN + _b64url_encode(<const unsigned char*>data, size, buf + PREFIX_LEN)
    memcpy(buf + n, b".json", SUFFIX_LEN)
    return _ascii_str(buf, n + SUFFIX_LEN)


cdef object _decode_str(object name):
    _check_name_type(name)
    if not PyUnicode_IS_ASCII(name):
        return None
    return _decode_inline(<const char*>PyUnicode_DATA(name), len(name))


def decode_name(name):
    return _decode_str(name)


def classify_name(name):
    cdef const char* s
    cdef Py_ssize_t n
    _check_name_type(name)
    if not PyUnicode_IS_ASCII(name):
        return None
    s = <const char*>PyUnicode_DATA(name)
    n = len(name)
    if _is_canonical_hashed(s, n):
        return "hashed"
    if _decode_inline(s, n) is not None:
        return "inline"
    return None


def decode_names(names):
    cdef list decoded = []
    for name in names:
        decoded.append(_decode_str(name))
    return decoded


# Why a name is not loaded (scan_entries_with_skipped); the twin's words.
_TEMP_FILE = "temp file"
_DOTFILE = "dotfile"
_NOT_A_NAME = "name is not an entry name"
_SYMLINK = "symlink"
_DIRECTORY = "directory"
_NOT_REGULAR = "not a regular file"


cdef inline str _name_reason(const char* s, Py_ssize_t n):
    if n >= 4 and memcmp(s + n - 4, b".tmp", 4) == 0:
        return _TEMP_FILE
    if n >= 1 and s[0] == 46:  # '.'
        return _DOTFILE
    return _NOT_A_NAME


def _scan_with_scandir(str path, list skipped=None):
    """The portable listing (Windows builds, and the test hook)."""
    cdef list found = []
    cdef const char* s
    cdef Py_ssize_t n
    with os.scandir(path) as listing:
        for entry in listing:
            name = entry.name
            if not PyUnicode_IS_ASCII(name):
                if skipped is not None:
                    skipped.append((name, _twin._name_reason(name)))
                continue
            s = <const char*>PyUnicode_DATA(name)
            n = len(name)
            if n >= HASHED_PREFIX_LEN and memcmp(s, b"session-hash-", HASHED_PREFIX_LEN) == 0:
                key = None
                if not _is_canonical_hashed(s, n):
                    if skipped is not None:
                        skipped.append((name, _name_reason(s, n)))
                    continue
            else:
                key = _decode_inline(s, n)
                if key is None:
                    if skipped is not None:
                        skipped.append((name, _name_reason(s, n)))
                    continue
            try:
                regular = entry.is_file(follow_symlinks=False)
            except OSError:
                regular = False  # vanished or replaced between readdir and lstat
            if not regular:
                if skipped is not None:
                    skipped.append((name, _twin._type_reason(entry)))
                continue
            found.append((name, key))
    return found


cdef list _scan(object directory, list skipped):
    cdef sd_dir listing
    cdef const char* name = NULL
    cdef Py_ssize_t n = 0
    cdef int kind = 0
    cdef int rc
    cdef list found = []
    path = _twin._scan_path(directory)
    if not SD_HAVE_DIRENT or _force_scandir:
        return _scan_with_scandir(path, skipped)
    encoded = os.fsencode(path)
    if sd_dir_open(&listing, encoded) != 0:
        PyErr_SetFromErrnoWithFilenameObject(OSError, path)
    try:
        while True:
            rc = sd_dir_next(&listing, &name, &n, &kind)
            if rc == 0:
                break
            if rc < 0:
                PyErr_SetFromErrnoWithFilenameObject(OSError, path)
            # Names first (cheap, no syscall); lstat only the candidates.
            key = _entry_name_key(name, n)
            if key is _NOT_ENTRY:
                # "." and ".." are not names in the directory (os.scandir
                # leaves them out too).
                if skipped is not None and not (
                        name[0] == 46 and (n == 1 or (n == 2 and name[1] == 46))):
                    skipped.append((PyUnicode_DecodeFSDefaultAndSize(name, n),
                                    _name_reason(name, n)))
                continue
            if kind == SD_KIND_UNKNOWN or _force_lstat:
                kind = sd_dir_kind_nofollow(&listing, name)
            if kind != SD_KIND_REGULAR:
                if skipped is not None:
                    skipped.append((_ascii_str(name, n),
                                    _SYMLINK if kind == SD_KIND_LINK
                                    else _DIRECTORY if kind == SD_KIND_DIR
                                    else _NOT_REGULAR))
                continue
            found.append((_ascii_str(name, n), key))
    finally:
        sd_dir_close(&listing)
    return found


def scan_entries(directory):
    return _scan(directory, None)


def scan_entries_with_skipped(directory):
    cdef list skipped = []
    found = _scan(directory, skipped)
    return found, skipped


# -- batches: many files of one directory per call ------------------------------------

cdef const char** _batch_names(list names, list keep) except NULL:
    """C strings of *names*, checked as the twin checks them and kept alive
    by *names* and *keep*; the caller frees the array."""
    cdef Py_ssize_t count = len(names), i, n
    cdef const char* s
    cdef const char** out = <const char**>malloc((count + 1) * sizeof(char*))
    if out == NULL:
        raise MemoryError()
    try:
        for i in range(count):
            name = names[i]
            if type(name) is str and PyUnicode_IS_ASCII(name):
                # A compact ASCII str holds its bytes, NUL-terminated.
                s = <const char*>PyUnicode_DATA(name)
                n = len(name)
                if memchr(s, 47, <size_t>n) != NULL or memchr(s, 0, <size_t>n) != NULL:
                    _twin._check_batch_name(name)  # raises the twin's ValueError
            else:
                keep.append(_twin._check_batch_name(name))  # the twin's errors, or its bytes
                s = <bytes>keep[len(keep) - 1]
            out[i] = s
        return out
    except BaseException:
        free(out)
        raise


cdef class _PrefetchedFiles:
    """A read_files() batch running on a thread of its own (no Python on
    it); result() collects it."""

    cdef sd_batch_job job
    cdef list items
    cdef list keep
    cdef object fd
    cdef bint owned
    cdef bint pending   # the batch was started and not collected yet
    cdef bint done

    def __cinit__(self):
        self.job.names = NULL
        self.job.out = NULL
        self.job.arena = NULL
        self.job.capacity = 0
        self.job.arena2 = NULL
        self.job.capacity2 = 0
        self.job.split = 0
        self.job.parallel = 0
        self.job.started = 0
        self.pending = False
        self.done = False
        self.owned = False

    cdef _start(self, directory, names, bint thread):
        self.items = list(names)
        self.keep = []
        self.job.count = len(self.items)
        self.job.names = _batch_names(self.items, self.keep)
        self.job.out = <sd_batch_item*>malloc((self.job.count + 1) * sizeof(sd_batch_item))
        if self.job.out == NULL:
            raise MemoryError()
        self.fd, _, self.owned = _twin._open_batch_dir(directory)
        self.job.dir_fd = self.fd
        self.job.parallel = _parallel_io
        self.pending = True
        if thread and self.job.count:
            sd_batch_spawn(&self.job)

    cdef _wait(self):
        if self.pending:
            with nogil:
                sd_batch_wait(&self.job)
            self.pending = False
            if self.owned:
                self.owned = False
                os.close(self.fd)

    cdef _release(self):
        free(self.job.names)
        free(self.job.out)
        free(self.job.arena)
        free(self.job.arena2)
        self.job.names = NULL
        self.job.out = NULL
        self.job.arena = NULL
        self.job.arena2 = NULL

    def result(self):
        cdef Py_ssize_t i
        cdef list results
        cdef sd_batch_item* out
        if self.done:
            raise ValueError("result() was already collected")
        self._wait()
        self.done = True
        try:
            if self.job.rc != 0:
                raise MemoryError()
            out = self.job.out
            results = [None] * self.job.count
            for i in range(self.job.count):
                if out[i].status == 0:
                    results[i] = PyBytes_FromStringAndSize(
                        (self.job.arena if i < self.job.split else self.job.arena2) + out[i].offset, out[i].length)
                elif out[i].status < 0:
                    results[i] = OSError(out[i].err, os.strerror(out[i].err), self.items[i])
            return results
        finally:
            self._release()

    def close(self):
        """Wait for the batch and drop what it read."""
        self._wait()
        self.done = True
        self._release()

    def __dealloc__(self):
        if self.pending:
            with nogil:
                sd_batch_wait(&self.job)
            if self.owned:
                try:
                    os.close(self.fd)
                except OSError:
                    pass
        free(self.job.names)
        free(self.job.out)
        free(self.job.arena)
        free(self.job.arena2)


def read_files(directory, names):
    cdef _PrefetchedFiles batch
    if not SD_HAVE_DIRENT:
        return _twin.read_files(directory, names)
    batch = _PrefetchedFiles()
    batch._start(directory, names, False)
    return batch.result()


def prefetch_files(directory, names):
    cdef _PrefetchedFiles batch
    if not SD_HAVE_DIRENT:
        return _twin.prefetch_files(directory, names)
    batch = _PrefetchedFiles()
    batch._start(directory, names, True)
    return batch


def stat_entries(directory):
    cdef sd_dir listing
    cdef const char* name = NULL
    cdef Py_ssize_t n = 0, count, i
    cdef int kind = 0
    cdef int rc
    cdef list found = []
    cdef list results = []
    cdef const char** c_names = NULL
    cdef sd_stat_item* out = NULL
    path = _twin._scan_path(directory)
    if not SD_HAVE_DIRENT or _force_scandir:
        return _twin._stat_found(path, _scan_with_scandir(path, None))
    encoded = os.fsencode(path)
    if sd_dir_open(&listing, encoded) != 0:
        PyErr_SetFromErrnoWithFilenameObject(OSError, path)
    try:
        while True:
            rc = sd_dir_next(&listing, &name, &n, &kind)
            if rc == 0:
                break
            if rc < 0:
                PyErr_SetFromErrnoWithFilenameObject(OSError, path)
            # d_type already says "not a regular file": no stat (as the scan).
            if kind != SD_KIND_REGULAR and kind != SD_KIND_UNKNOWN:
                continue
            key = _entry_name_key(name, n)
            if key is _NOT_ENTRY:
                continue
            found.append((_ascii_str(name, n), key))
        # Every candidate's lstat, relative to the listed directory, in one
        # pass without the GIL.
        count = len(found)
        c_names = <const char**>malloc((count + 1) * sizeof(char*))
        out = <sd_stat_item*>malloc((count + 1) * sizeof(sd_stat_item))
        if c_names == NULL or out == NULL:
            raise MemoryError()
        for i in range(count):
            c_names[i] = <const char*>PyUnicode_DATA((<tuple>found[i])[0])
        rc = sd_dir_fd(&listing)
        with nogil:
            _stat_batch(rc, c_names, count, out)
        for i in range(count):
            if out[i].status == 0:
                entry = <tuple>found[i]
                results.append((entry[0], entry[1], PyLong_FromUnsignedLongLong(out[i].ino),
                                PyLong_FromLongLong(out[i].mtime_ns), PyLong_FromLongLong(out[i].size)))
            elif out[i].status < 0:
                errno = out[i].err
                PyErr_SetFromErrnoWithFilenameObject(OSError, (<tuple>found[i])[0])
    finally:
        sd_dir_close(&listing)
        free(c_names)
        free(out)
    return results


# -- comparing a directory with the stat rows of an index ---------------------------

cdef enum:
    STAT_RECORD_BYTES = 24  # <Qqq: st_ino, st_mtime_ns, st_size


cdef inline unsigned long long _le64(const unsigned char* p) noexcept nogil:
    return (<unsigned long long>p[0] | (<unsigned long long>p[1] << 8)
            | (<unsigned long long>p[2] << 16) | (<unsigned long long>p[3] << 24)
            | (<unsigned long long>p[4] << 32) | (<unsigned long long>p[5] << 40)
            | (<unsigned long long>p[6] << 48) | (<unsigned long long>p[7] << 56))


cdef inline unsigned long long _name_hash(const char* s, Py_ssize_t n) noexcept nogil:
    # FNV-1a: names are short; the table compares whole names on a hit.
    cdef unsigned long long h = 14695981039346656037ULL
    cdef Py_ssize_t i
    for i in range(n):
        h = (h ^ <unsigned char>s[i]) * 1099511628211ULL
    return h


cdef struct _Rows:
    # The rows' names (pointers into the caller's bytes) and a hash table
    # of the last row of each name.
    const char** name
    Py_ssize_t* length
    Py_ssize_t count
    Py_ssize_t* slots
    size_t mask


cdef inline Py_ssize_t _rows_find(_Rows* rows, const char* s, Py_ssize_t n) noexcept nogil:
    """The last row named s[0:n], or -1."""
    cdef size_t i = <size_t>_name_hash(s, n) & rows.mask
    cdef Py_ssize_t r
    while True:
        r = rows.slots[i]
        if r < 0:
            return -1
        if rows.length[r] == n and memcmp(rows.name[r], s, <size_t>n) == 0:
            return r
        i = (i + 1) & rows.mask


cdef int _rows_build(_Rows* rows, const char* blob, Py_ssize_t size, Py_ssize_t count) noexcept nogil:
    """Split *blob* (each name ended by a newline) into *count* names and
    hash them; a later row of a name replaces an earlier one.  0, -1 when
    the blob does not hold exactly *count* names, -2 when memory ran out."""
    cdef Py_ssize_t r = 0, start = 0, i
    cdef const char* end
    cdef size_t cap = 16, slot
    rows.name = <const char**>malloc((count + 1) * sizeof(char*))
    rows.length = <Py_ssize_t*>malloc((count + 1) * sizeof(Py_ssize_t))
    while cap < <size_t>(count * 2 + 2):
        cap *= 2
    rows.slots = <Py_ssize_t*>malloc(cap * sizeof(Py_ssize_t))
    rows.mask = cap - 1
    rows.count = count
    if rows.name == NULL or rows.length == NULL or rows.slots == NULL:
        return -2
    for slot in range(cap):
        rows.slots[slot] = -1
    while start < size:
        end = <const char*>memchr(blob + start, 10, <size_t>(size - start))
        if end == NULL or r >= count:
            return -1
        rows.name[r] = blob + start
        rows.length[r] = (end - blob) - start
        start = (end - blob) + 1
        r += 1
    if r != count:
        return -1
    for r in range(count):
        slot = <size_t>_name_hash(rows.name[r], rows.length[r]) & rows.mask
        while True:
            i = rows.slots[slot]
            if i < 0:
                rows.slots[slot] = r
                break
            if rows.length[i] == rows.length[r] and memcmp(rows.name[i], rows.name[r], <size_t>rows.length[r]) == 0:
                rows.slots[slot] = r  # the later row of this name counts
                break
            slot = (slot + 1) & rows.mask
    return 0


cdef void _rows_free(_Rows* rows) noexcept nogil:
    free(rows.name)
    free(rows.length)
    free(rows.slots)


def diff_entries(directory, names, stats, long long trusted_before):
    cdef sd_dir listing
    cdef const char* name = NULL
    cdef Py_ssize_t n = 0, count, i, r, used = 0, capacity = 0, rows_count
    cdef int kind = 0
    cdef int rc
    cdef list keys = []
    cdef list changed = []
    cdef list missing = []
    cdef char* arena = NULL
    cdef char* grown
    cdef Py_ssize_t* offsets = NULL
    cdef Py_ssize_t* grown_offsets
    cdef Py_ssize_t offsets_capacity = 0
    cdef const char** c_names = NULL
    cdef sd_stat_item* out = NULL
    cdef const unsigned char* record
    cdef unsigned char* seen = NULL
    cdef Py_ssize_t* row_of = NULL
    cdef const unsigned char* item
    cdef _Rows rows
    cdef const char* blob
    cdef Py_ssize_t blob_size
    _twin._check_diff_args(names, stats)
    path = _twin._scan_path(directory)
    if not SD_HAVE_DIRENT or _force_scandir:
        return _twin.diff_entries(path, names, stats, trusted_before)
    blob = <bytes>names
    blob_size = len(<bytes>names)
    rows_count = len(<bytes>stats) // STAT_RECORD_BYTES
    record = <const unsigned char*><const char*><bytes>stats
    rows.name = NULL
    rows.length = NULL
    rows.slots = NULL
    try:
        rc = _rows_build(&rows, blob, blob_size, rows_count)
        if rc == -2:
            raise MemoryError()
        if rc != 0:
            _twin._diff_mismatch()
        encoded = os.fsencode(path)
        if sd_dir_open(&listing, encoded) != 0:
            PyErr_SetFromErrnoWithFilenameObject(OSError, path)
        try:
            # The candidates, as stat_entries finds them; their names go to
            # one arena (no Python object per file).
            while True:
                rc = sd_dir_next(&listing, &name, &n, &kind)
                if rc == 0:
                    break
                if rc < 0:
                    PyErr_SetFromErrnoWithFilenameObject(OSError, path)
                if kind != SD_KIND_REGULAR and kind != SD_KIND_UNKNOWN:
                    continue
                key = _entry_name_key(name, n)
                if key is _NOT_ENTRY:
                    continue
                if used + n + 1 > capacity:
                    capacity = (capacity + n + 1) * 2
                    grown = <char*>realloc(arena, <size_t>capacity)
                    if grown == NULL:
                        raise MemoryError()
                    arena = grown
                count = len(keys)
                if count + 1 > offsets_capacity:
                    offsets_capacity = offsets_capacity * 2 + 256
                    grown_offsets = <Py_ssize_t*>realloc(offsets, offsets_capacity * sizeof(Py_ssize_t))
                    if grown_offsets == NULL:
                        raise MemoryError()
                    offsets = grown_offsets
                offsets[count] = used
                memcpy(arena + used, name, <size_t>n)
                arena[used + n] = 0
                used += n + 1
                keys.append(key)
            count = len(keys)
            c_names = <const char**>malloc((count + 1) * sizeof(char*))
            out = <sd_stat_item*>malloc((count + 1) * sizeof(sd_stat_item))
            seen = <unsigned char*>calloc(<size_t>(rows_count + 1), 1)
            row_of = <Py_ssize_t*>malloc((count + 1) * sizeof(Py_ssize_t))
            if c_names == NULL or out == NULL or seen == NULL or row_of == NULL:
                raise MemoryError()
            for i in range(count):
                c_names[i] = arena + offsets[i]
            rc = sd_dir_fd(&listing)
            with nogil:
                _stat_batch(rc, c_names, count, out)
                # Compare without the GIL: unchanged files leave no trace.
                for i in range(count):
                    row_of[i] = -1
                    if out[i].status != 0:
                        continue  # gone or not a regular file: not seen (an error raises below)
                    r = _rows_find(&rows, c_names[i], <Py_ssize_t>strlen(c_names[i]))
                    row_of[i] = r
                    if r < 0:
                        continue
                    seen[r] = 1
                    item = record + r * STAT_RECORD_BYTES
                    if (_le64(item) != 0 and _le64(item) == out[i].ino
                            and <long long>_le64(item + 8) == out[i].mtime_ns
                            and <long long>_le64(item + 16) == out[i].size
                            and out[i].mtime_ns <= trusted_before):
                        out[i].status = 3  # unchanged
            for i in range(count):
                if out[i].status == 0:
                    changed.append((_ascii_str(c_names[i], <Py_ssize_t>strlen(c_names[i])), keys[i],
                                    PyLong_FromUnsignedLongLong(out[i].ino), PyLong_FromLongLong(out[i].mtime_ns),
                                    PyLong_FromLongLong(out[i].size), row_of[i]))
                elif out[i].status < 0:
                    errno = out[i].err
                    PyErr_SetFromErrnoWithFilenameObject(
                        OSError, _ascii_str(c_names[i], <Py_ssize_t>strlen(c_names[i])))
            for r in range(rows_count):
                if not seen[r] and _rows_find(&rows, rows.name[r], rows.length[r]) == r:
                    missing.append(r)
        finally:
            sd_dir_close(&listing)
    finally:
        _rows_free(&rows)
        free(arena)
        free(offsets)
        free(c_names)
        free(out)
        free(seen)
        free(row_of)
    return changed, missing


# -- the updatedAt fast path --------------------------------------------------

cdef inline Py_ssize_t _expect(const char* s, Py_ssize_t i, Py_ssize_t n,
                               const char* lit, Py_ssize_t m) noexcept nogil:
    """Index after literal `lit` exactly at i, or -1."""
    if i < 0 or i + m > n or memcmp(s + i, lit, m) != 0:
        return -1
    return i + m


cdef Py_ssize_t _settle(const char* s, Py_ssize_t n, const char* key, Py_ssize_t klen,
                        long long* value) noexcept nogil:
    """The twin's rules (_HEADER, _END, _SHALLOW_LINE, _ENTRY_UPDATED_AT) by
    hand: 1 with *value set when the file settles the answer, else 0."""
    cdef Py_ssize_t i, start, digits, end, p
    cdef const char* q
    cdef long long v = 0
    cdef bint negative = False
    i = _expect(s, 0, n, b'{\n  "sessionKey": "', 19)
    if i < 0:
        return 0
    start = i
    while i < n and s[i] != 34:  # '"'
        if s[i] == 92 or <unsigned char>s[i] < 0x20:  # escapes, control bytes
            return 0
        i += 1
    if i >= n or i - start != klen or memcmp(s + start, key, klen) != 0:
        return 0
    i = _expect(s, i, n, b'",\n  "entry": {\n    "updatedAt": ', 33)
    if i < 0:
        return 0
    if i < n and s[i] == 45:  # '-'
        negative = True
        i += 1
    start = i
    while i < n and 48 <= s[i] <= 57 and i - start < 18:
        v = v * 10 + (s[i] - 48)
        i += 1
    digits = i - start
    if digits == 0 or (digits > 1 and s[start] == 48):  # no digits, or a leading zero
        return 0
    # The entry's "}" at indent 2, the document's at column 0, at the end.
    end = n - 6
    if n > 0 and s[n - 1] == 10:
        end -= 1
    if end < i or memcmp(s + end, b"\n  }\n}", 6) != 0:
        return 0
    if end > i:
        if s[i] != 44:  # ',': another field follows updatedAt
            return 0
        # Every line up to the end is indented >= 4; none, at any indent,
        # is another "updatedAt" field (a duplicate at the entry's level,
        # whatever its indent, would be the one JSON parsers keep; a nested
        # one only costs the full parse).
        p = i
        while True:
            q = <const char*>memchr(s + p, 10, <size_t>(end - p))
            if q == NULL:
                break
            p = q - s
            if p + 5 > end or memcmp(s + p + 1, b"    ", 4) != 0:
                return 0
            p += 5
            while p < end and s[p] == 32:
                p += 1
            if p + 12 <= end and memcmp(s + p, b'"updatedAt":', 12) == 0:
                return 0
    value[0] = -v if negative else v
    return 1


def read_updated_at(path, key):
    cdef char stack[4096]
    cdef char* data = NULL
    cdef const char* c_path
    cdef const char* c_key
    cdef Py_ssize_t klen
    cdef Py_ssize_t n = 0
    cdef int err = 0
    cdef int rc
    cdef Py_ssize_t settled = 0
    cdef long long value = 0
    if not SD_HAVE_DIRENT:
        return _twin.read_updated_at(path, key)
    encoded = PyUnicode_EncodeFSDefault(path) if type(path) is str else os.fsencode(path)
    c_path = encoded
    c_key = PyUnicode_AsUTF8AndSize(key, &klen)
    with nogil:
        rc = sd_read_file(c_path, stack, 4096, &data, &n, &err)
        if rc == 0:
            settled = _settle(data, n, c_key, klen, &value)
            if data != stack:
                free(data)
    if rc == 1:
        return (False, None)
    if rc < 0:
        errno = err
        PyErr_SetFromErrnoWithFilenameObject(OSError, path)
    if not settled:
        return None
    return (True, PyLong_FromLongLong(value))


# -- deep copy of JSON-shaped data ------------------------------------------------

cdef object _copy_json(object value):
    cdef dict copied
    if type(value) is dict:
        copied = {}
        for k, v in (<dict>value).items():
            copied[k] = _copy_json(v)
        return copied
    if type(value) is list:
        return [_copy_json(item) for item in <list>value]
    return value


def copy_json(value):
    return _copy_json(value)


cdef object _MISSING = object()


cdef bint _same_json(object a, object b) except -1:
    cdef object kind
    cdef object other
    cdef Py_ssize_t i, n
    if a is b:
        return True
    kind = type(a)
    if kind is not type(b):
        return False
    if kind is dict:
        if len(<dict>a) != len(<dict>b):
            return False
        for k, v in (<dict>a).items():
            other = (<dict>b).get(k, _MISSING)
            if other is _MISSING or not _same_json(v, other):
                return False
        return True
    if kind is list:
        n = len(<list>a)
        if n != len(<list>b):
            return False
        for i in range(n):
            if not _same_json((<list>a)[i], (<list>b)[i]):
                return False
        return True
    return bool(a == b)


def same_json(a, b):
    return _same_json(a, b)


# -- splitting the legacy sessions.json into its members ---------------------------------
# (the rules and the state machine are the twin's; this one walks the bytes
# of a window with the GIL released)

SPLIT_MAX_DEPTH = _twin.SPLIT_MAX_DEPTH
SplitError = _twin.SplitError

cdef enum:
    S_START, S_FIRST_KEY, S_KEY, S_IN_KEY, S_COLON, S_VALUE, S_IN_STRING, S_IN_CONTAINER
    S_IN_NESTED_STRING, S_IN_SCALAR, S_AFTER_VALUE, S_END

cdef enum:
    E_NONE, E_NOMEM, E_COMMA, E_DEPTH, E_VALUE, E_COLON, E_KEY, E_KEY_OR_END, E_NOT_OBJECT
    E_TRAILING

cdef tuple _ERROR_KINDS = ("", "", "comma", "depth", "value", "colon", "key", "key_or_end",
                            "not_object", "trailing")

# 1: JSON whitespace; 2: ends a scalar (whitespace and , : [ ] { } ")
cdef unsigned char _SPLIT_CLASS[256]
for _i in range(256):
    _SPLIT_CLASS[_i] = 0
for _i in b" \t\n\r":
    _SPLIT_CLASS[_i] = 3
for _i in b',:[]{}"':
    _SPLIT_CLASS[_i] = 2


cdef struct _Spans:
    # The members a scan() window completed: 4 offsets each, malloc'd.
    Py_ssize_t* data
    Py_ssize_t count
    Py_ssize_t capacity


cdef inline bint _push_member(_Spans* spans, Py_ssize_t member_start, Py_ssize_t key_end,
                              Py_ssize_t value_start, Py_ssize_t value_end) noexcept nogil:
    """Append one member's (key_start, key_end, value_start, value_end);
    False when memory ran out (*spans* is unchanged then)."""
    cdef Py_ssize_t* grown
    cdef Py_ssize_t capacity
    if spans.count + 4 > spans.capacity:
        capacity = spans.capacity * 2 + 64
        grown = <Py_ssize_t*>realloc(spans.data, capacity * sizeof(Py_ssize_t))
        if grown == NULL:
            return False
        spans.data = grown
        spans.capacity = capacity
    spans.data[spans.count] = member_start
    spans.data[spans.count + 1] = key_end
    spans.data[spans.count + 2] = value_start
    spans.data[spans.count + 3] = value_end
    spans.count += 4
    return True


cdef class ObjectSplitter:
    """Splits one top-level JSON object, fed in chunks, into its members.

    Call :meth:`scan` with consecutive windows of the input: *data* holds the
    input's bytes from absolute offset *offset* on, and must cover every
    byte from :attr:`keep_from` to where the previous window ended (more is
    fine).  It returns ``(key_start, key_end, value_start, value_end)`` for
    each member completed in this window -- absolute offsets; the key span
    is the string token, quotes included -- and raises :class:`SplitError`
    (a ``ValueError``) at the first byte that cannot belong to one object.
    Pass ``final=True`` with the last window: the input ends there.
    """

    cdef readonly Py_ssize_t max_depth
    cdef int _mode
    cdef bint _escape        # the window ended right after a backslash in a string
    cdef Py_ssize_t _depth
    cdef Py_ssize_t _position
    cdef Py_ssize_t _member_start
    cdef Py_ssize_t _key_end
    cdef Py_ssize_t _value_start
    cdef bint _done
    cdef object _error

    def __init__(self, Py_ssize_t max_depth=SPLIT_MAX_DEPTH):
        if max_depth < 1:
            raise ValueError(f"max_depth must be at least 1, not {max_depth}")
        self.max_depth = max_depth
        self._mode = S_START
        self._escape = False
        self._depth = 0
        self._position = 0
        self._member_start = -1
        self._key_end = -1
        self._value_start = -1
        self._done = False
        self._error = None

    @property
    def keep_from(self):
        """The first absolute offset the next window must still hold."""
        return self._member_start if self._member_start >= 0 else self._position

    @property
    def finished(self):
        """Whether the final window was scanned without an error."""
        return self._done

    def scan(self, data, Py_ssize_t offset, bint final=False):
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise TypeError(f"scan() needs bytes, bytearray or memoryview, not {type(data).__name__}")
        cdef const unsigned char[::1] view = data
        cdef const unsigned char* p = NULL
        cdef Py_ssize_t n = view.shape[0]
        cdef Py_ssize_t keep = self._member_start if self._member_start >= 0 else self._position
        cdef Py_ssize_t i
        cdef _Spans spans
        cdef Py_ssize_t k
        cdef int mode, err = E_NONE, err_byte = -1
        cdef Py_ssize_t depth, max_depth = self.max_depth, err_at = 0
        cdef Py_ssize_t member_start, key_end, value_start
        cdef bint escape
        cdef unsigned char c
        if offset < 0 or keep - offset < 0 or self._position - offset > n:
            raise ValueError(f"scan() needs the data from byte {keep} on; "
                             f"got bytes {offset} to {offset + n}")
        if self._error is not None:
            raise self._error
        if self._done:
            raise ValueError("scan() after the final window")
        spans.data = NULL
        spans.count = 0
        spans.capacity = 0
        if n:
            p = &view[0]
        i = self._position - offset
        mode, depth, escape = self._mode, self._depth, self._escape
        member_start, key_end, value_start = self._member_start, self._key_end, self._value_start
        with nogil:
            while True:
                if escape:  # the byte after a backslash that ended the last window
                    if i >= n:
                        break
                    i += 1
                    escape = False
                if mode == S_IN_CONTAINER:
                    while i < n:
                        c = p[i]
                        if c == 0x22:
                            break
                        if c == 0x7B or c == 0x5B:
                            depth += 1
                            if depth >= max_depth:
                                err = E_DEPTH
                                err_at = i
                                break
                        elif c == 0x7D or c == 0x5D:
                            depth -= 1
                            if depth == 0:
                                break
                        i += 1
                    if err or i >= n:
                        break
                    i += 1
                    if c == 0x22:
                        mode = S_IN_NESTED_STRING
                    else:  # the value's last bracket
                        if not _push_member(&spans, member_start, key_end, value_start, offset + i):
                            err = E_NOMEM
                            break
                        member_start = -1
                        mode = S_AFTER_VALUE
                elif mode == S_IN_STRING or mode == S_IN_KEY or mode == S_IN_NESTED_STRING:
                    while i < n:
                        c = p[i]
                        if c == 0x22:
                            break
                        if c == 0x5C:
                            if i + 1 >= n:
                                escape = True
                                i = n
                                break
                            i += 2
                        else:
                            i += 1
                    if i >= n:
                        break
                    i += 1
                    if mode == S_IN_NESTED_STRING:
                        mode = S_IN_CONTAINER
                    elif mode == S_IN_KEY:
                        key_end = offset + i
                        mode = S_COLON
                    else:
                        if not _push_member(&spans, member_start, key_end, value_start, offset + i):
                            err = E_NOMEM
                            break
                        member_start = -1
                        mode = S_AFTER_VALUE
                elif mode == S_IN_SCALAR:
                    while i < n and not (_SPLIT_CLASS[p[i]] & 2):
                        i += 1
                    if i >= n and not final:
                        break
                    if not _push_member(&spans, member_start, key_end, value_start, offset + i):
                        err = E_NOMEM
                        break
                    member_start = -1
                    mode = S_AFTER_VALUE
                else:
                    # The structural states: whitespace first, then one byte.
                    while i < n and (_SPLIT_CLASS[p[i]] & 1):
                        i += 1
                    if i >= n:
                        break
                    c = p[i]
                    if mode == S_AFTER_VALUE:
                        if c == 0x2C:
                            mode = S_KEY
                        elif c == 0x7D:
                            mode = S_END
                        else:
                            err = E_COMMA
                    elif mode == S_VALUE:
                        value_start = offset + i
                        if c == 0x22:
                            mode = S_IN_STRING
                        elif c == 0x7B or c == 0x5B:
                            depth = 1
                            mode = S_IN_CONTAINER
                            if depth >= max_depth:
                                err = E_DEPTH
                        elif c == 0x2C or c == 0x3A or c == 0x5D or c == 0x7D:
                            err = E_VALUE
                        else:
                            mode = S_IN_SCALAR
                    elif mode == S_COLON:
                        if c == 0x3A:
                            mode = S_VALUE
                        else:
                            err = E_COLON
                    elif mode == S_KEY or mode == S_FIRST_KEY:
                        if c == 0x22:
                            member_start = offset + i
                            mode = S_IN_KEY
                        elif c == 0x7D and mode == S_FIRST_KEY:
                            mode = S_END
                        else:
                            err = E_KEY if mode == S_KEY else E_KEY_OR_END
                    elif mode == S_START:
                        if c == 0x7B:
                            mode = S_FIRST_KEY
                        else:
                            err = E_NOT_OBJECT
                    else:  # S_END
                        err = E_TRAILING
                    if err:
                        err_at = i
                        err_byte = c
                        break
                    i += 1
        self._mode, self._depth, self._escape = mode, depth, escape
        self._position = offset + i
        self._member_start, self._key_end, self._value_start = member_start, key_end, value_start
        try:
            if err == E_NOMEM:
                raise MemoryError()
            if err:
                if err == E_DEPTH:
                    err_byte = -1
                self._error = _twin._split_error(_ERROR_KINDS[err], offset + err_at,
                                                 err_byte, max_depth)
                raise self._error
            members = [(spans.data[k], spans.data[k + 1], spans.data[k + 2], spans.data[k + 3])
                       for k in range(0, spans.count, 4)]
        finally:
            free(spans.data)
        if final:
            if mode == S_START:
                self._error = _twin._split_error("empty", offset + n)
                raise self._error
            if mode != S_END or escape:
                self._error = _twin._split_error("truncated", offset + n)
                raise self._error
            self._done = True
        return members


for _public in ("validate_key", "encode_key", "decode_name", "classify_name",
                "decode_names", "scan_entries", "scan_entries_with_skipped",
                "read_updated_at", "copy_json", "same_json", "read_files", "prefetch_files", "stat_entries",
                "diff_entries"):
    globals()[_public].__doc__ = getattr(_twin, _public).__doc__
del _public
