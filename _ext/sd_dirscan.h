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

#endif
#endif /* SESSIONSD_DIRSCAN_H */
