/* Thin portable wrapper over opendir/readdir, and a whole-file read, for
 * sessionsd._codec_c.
 *
 * POSIX: entry types come from d_type; DT_UNKNOWN (some network and FUSE file
 * systems, old XFS) is resolved by fstatat(AT_SYMLINK_NOFOLLOW), so a symlink
 * is never followed.  Windows has no <dirent.h>: SD_HAVE_DIRENT is 0 and the
 * Cython side lists the directory with os.scandir (and reads files with the
 * pure twin) instead.
 */
#ifndef SESSIONSD_DIRSCAN_H
#define SESSIONSD_DIRSCAN_H

#include <errno.h>
#include <string.h>

#define SD_KIND_UNKNOWN 0
#define SD_KIND_REGULAR 1
#define SD_KIND_OTHER 2
#define SD_KIND_LINK 3
#define SD_KIND_DIR 4

#if defined(_WIN32)

#define SD_HAVE_DIRENT 0
typedef struct { int unused; } sd_dir;
static int sd_dir_open(sd_dir *d, const char *path) { (void)d; (void)path; errno = ENOSYS; return -1; }
static int sd_dir_next(sd_dir *d, const char **name, Py_ssize_t *len, int *kind) {
    (void)d; (void)name; (void)len; (void)kind; errno = ENOSYS; return -1;
}
static int sd_dir_kind_nofollow(sd_dir *d, const char *name) { (void)d; (void)name; return SD_KIND_OTHER; }
static void sd_dir_close(sd_dir *d) { (void)d; }
static int sd_read_file(const char *path, char *stack, Py_ssize_t stack_size,
                        char **data, Py_ssize_t *n, int *err) {
    (void)path; (void)stack; (void)stack_size; (void)data; (void)n;
    *err = ENOSYS; return -1;
}
static int sd_is_not_a_file(int err) { (void)err; return 0; }

#else

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/types.h>

#define SD_HAVE_DIRENT 1
typedef struct { DIR *dir; } sd_dir;

static int sd_dir_open(sd_dir *d, const char *path) {
    d->dir = opendir(path);
    return d->dir ? 0 : -1;
}

/* 1: an entry was read; 0: end of directory; -1: error, errno set. */
static int sd_dir_next(sd_dir *d, const char **name, Py_ssize_t *len, int *kind) {
    struct dirent *e;
    errno = 0;
    e = readdir(d->dir);
    if (e == NULL) return errno ? -1 : 0;
    *name = e->d_name;
    *len = (Py_ssize_t)strlen(e->d_name);
#if defined(DT_UNKNOWN) && defined(DT_REG) && defined(DT_LNK) && defined(DT_DIR)
    switch (e->d_type) {
    case DT_REG: *kind = SD_KIND_REGULAR; break;
    case DT_UNKNOWN: *kind = SD_KIND_UNKNOWN; break;
    case DT_LNK: *kind = SD_KIND_LINK; break;
    case DT_DIR: *kind = SD_KIND_DIR; break;
    default: *kind = SD_KIND_OTHER;
    }
#else
    *kind = SD_KIND_UNKNOWN;
#endif
    return 1;
}

/* The kind of `name` inside the open directory, from lstat (a symlink is
 * never followed); SD_KIND_OTHER when it cannot be stat'ed (vanished). */
static int sd_dir_kind_nofollow(sd_dir *d, const char *name) {
    struct stat st;
    if (fstatat(dirfd(d->dir), name, &st, AT_SYMLINK_NOFOLLOW) != 0) return SD_KIND_OTHER;
    if (S_ISREG(st.st_mode)) return SD_KIND_REGULAR;
    if (S_ISLNK(st.st_mode)) return SD_KIND_LINK;
    if (S_ISDIR(st.st_mode)) return SD_KIND_DIR;
    return SD_KIND_OTHER;
}

static void sd_dir_close(sd_dir *d) {
    if (d->dir != NULL) closedir(d->dir);
    d->dir = NULL;
}

#include <stdlib.h>
#include <unistd.h>
#ifndef O_CLOEXEC
#define O_CLOEXEC 0
#endif

/* What open() answers for a path that is not (or no longer) a regular file:
 * missing, a symlink (O_NOFOLLOW), a directory, a path through a
 * non-directory.  The twin's NOT_A_FILE_ERRNOS (sessionsd._fsutil). */
static int sd_is_not_a_file(int err) {
    return err == ENOENT || err == ELOOP || err == EISDIR || err == ENOTDIR || err == ENXIO;
}

/* Read the whole regular file at `path`, as the twin's read_regular does:
 * never through a symlink, O_NONBLOCK so a planted FIFO cannot block, fstat
 * to refuse anything but a regular file, one read of size + 1 bytes (more
 * only if the file grew meanwhile).  The bytes land in `stack` when they fit
 * in `stack_size`, else in a malloc'd buffer: *data points at them and the
 * caller frees *data when it is not `stack`.  Returns 0 with *data and *n
 * set, 1 when `path` is not a regular file, -1 with *err set.  Safe to call
 * without the GIL. */
static int sd_read_file(const char *path, char *stack, Py_ssize_t stack_size,
                        char **data, Py_ssize_t *n, int *err) {
    struct stat st;
    char *buf = stack, *grown;
    size_t cap, used = 0, size;
    ssize_t got;
    int fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0) {
        *err = errno;
        return sd_is_not_a_file(*err) ? 1 : -1;
    }
    if (fstat(fd, &st) != 0) { *err = errno; close(fd); return -1; }
    if (!S_ISREG(st.st_mode)) { close(fd); return 1; }
    size = (size_t)st.st_size;
    cap = size + 1;  /* one byte more than fstat said: a file that grew shows it */
    if (cap > (size_t)stack_size) {
        buf = (char *)malloc(cap);
        if (buf == NULL) { *err = ENOMEM; close(fd); return -1; }
    } else {
        cap = (size_t)stack_size;
    }
    do { got = read(fd, buf, cap); } while (got < 0 && errno == EINTR);
    if (got < 0) { *err = errno; goto fail; }
    used = (size_t)got;
    if (used > size) {  /* grew since fstat: read on to the end */
        for (;;) {
            if (used == cap) {
                grown = (char *)malloc(cap * 2);
                if (grown == NULL) { *err = ENOMEM; goto fail; }
                memcpy(grown, buf, used);
                if (buf != stack) free(buf);
                buf = grown;
                cap *= 2;
            }
            do { got = read(fd, buf + used, cap - used); } while (got < 0 && errno == EINTR);
            if (got < 0) { *err = errno; goto fail; }
            if (got == 0) break;
            used += (size_t)got;
        }
    }
    close(fd);
    *data = buf;
    *n = (Py_ssize_t)used;
    return 0;
fail:
    if (buf != stack) free(buf);
    close(fd);
    return -1;
}

#endif
#endif /* SESSIONSD_DIRSCAN_H */
