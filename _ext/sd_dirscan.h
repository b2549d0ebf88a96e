/* Thin portable wrapper over opendir/readdir for sessionsd._codec_c.
 *
 * POSIX: entry types come from d_type; DT_UNKNOWN (some network and FUSE file
 * systems, old XFS) is resolved by fstatat(AT_SYMLINK_NOFOLLOW), so a symlink
 * is never followed.  Windows has no <dirent.h>: SD_HAVE_DIRENT is 0 and the
 * Cython side lists the directory with os.scandir instead.
 */
#ifndef SESSIONSD_DIRSCAN_H
#define SESSIONSD_DIRSCAN_H

#include <errno.h>
#include <string.h>

#define SD_KIND_UNKNOWN 0
#define SD_KIND_REGULAR 1
#define SD_KIND_OTHER 2

#if defined(_WIN32)

#define SD_HAVE_DIRENT 0
typedef struct { int unused; } sd_dir;
static int sd_dir_open(sd_dir *d, const char *path) { (void)d; (void)path; errno = ENOSYS; return -1; }
static int sd_dir_next(sd_dir *d, const char **name, Py_ssize_t *len, int *kind) {
    (void)d; (void)name; (void)len; (void)kind; errno = ENOSYS; return -1;
}
static int sd_dir_is_regular_nofollow(sd_dir *d, const char *name) { (void)d; (void)name; return 0; }
static void sd_dir_close(sd_dir *d) { (void)d; }
static Py_ssize_t sd_read_head(const char *path, char *buf, Py_ssize_t size,
                               char *tail, Py_ssize_t tail_size, Py_ssize_t *tail_n, int *err) {
    (void)path; (void)buf; (void)size; (void)tail; (void)tail_size; (void)tail_n;
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
#if defined(DT_UNKNOWN) && defined(DT_REG)
    if (e->d_type == DT_REG) *kind = SD_KIND_REGULAR;
    else if (e->d_type == DT_UNKNOWN) *kind = SD_KIND_UNKNOWN;
    else *kind = SD_KIND_OTHER;
#else
    *kind = SD_KIND_UNKNOWN;
#endif
    return 1;
}

/* 1 when `name` inside the open directory is a regular file (not followed
 * through a symlink); 0 otherwise, including when it vanished meanwhile. */
static int sd_dir_is_regular_nofollow(sd_dir *d, const char *name) {
    struct stat st;
    if (fstatat(dirfd(d->dir), name, &st, AT_SYMLINK_NOFOLLOW) != 0) return 0;
    return S_ISREG(st.st_mode) ? 1 : 0;
}

static void sd_dir_close(sd_dir *d) {
    if (d->dir != NULL) closedir(d->dir);
    d->dir = NULL;
}

#include <unistd.h>
#ifndef O_CLOEXEC
#define O_CLOEXEC 0
#endif

/* Read at most `size` bytes from the start of `path` into `buf` and its last
 * `tail_size` bytes (fewer for a shorter file; *tail_n says how many) into
 * `tail`, without following a symlink; O_NONBLOCK so a planted FIFO cannot
 * block.  Returns the head's byte count, or -1 with *err set.  Safe to call
 * without the GIL. */
static Py_ssize_t sd_read_head(const char *path, char *buf, Py_ssize_t size,
                               char *tail, Py_ssize_t tail_size, Py_ssize_t *tail_n, int *err) {
    Py_ssize_t n, t;
    int fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0) { *err = errno; return -1; }
    do { n = (Py_ssize_t)read(fd, buf, (size_t)size); } while (n < 0 && errno == EINTR);
    if (n < 0) {
        *err = errno;
    } else if (n < size) {
        t = n < tail_size ? n : tail_size;
        memcpy(tail, buf + n - t, (size_t)t);
        *tail_n = t;
    } else if (lseek(fd, -(off_t)tail_size, SEEK_END) < 0) {
        *err = errno;
        n = -1;
    } else {
        do { t = (Py_ssize_t)read(fd, tail, (size_t)tail_size); } while (t < 0 && errno == EINTR);
        if (t < 0) { *err = errno; n = -1; } else { *tail_n = t; }
    }
    close(fd);
    return n;
}

/* What a path that is not (or no longer) a regular file answers: missing, a
 * symlink (O_NOFOLLOW), a directory, a FIFO/socket.  Same set as the twin. */
static int sd_is_not_a_file(int err) {
    return err == ENOENT || err == ELOOP || err == EISDIR || err == ENOTDIR
        || err == ENXIO || err == EAGAIN || err == EWOULDBLOCK;
}

#endif
#endif /* SESSIONSD_DIRSCAN_H */
