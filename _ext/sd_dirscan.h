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
static int sd_dir_fd(sd_dir *d) { (void)d; return -1; }
typedef struct { Py_ssize_t offset; Py_ssize_t length; int status; int err; } sd_batch_item;
static int sd_read_batch(int dir_fd, const char *const *names, Py_ssize_t count,
                         char **arena, size_t *capacity, sd_batch_item *out) {
    (void)dir_fd; (void)names; (void)count; (void)arena; (void)capacity; (void)out;
    return -1;
}
typedef struct { unsigned long long ino; long long mtime_ns; long long size; int status; int err; } sd_stat_item;
static void sd_stat_batch(int dir_fd, const char *const *names, Py_ssize_t count, sd_stat_item *out) {
    (void)dir_fd; (void)names; (void)count; (void)out;
}
typedef struct {
    int dir_fd; const char **names; Py_ssize_t count;
    char *arena; size_t capacity; sd_batch_item *out; int rc; int started;
    int parallel; Py_ssize_t split; char *arena2; size_t capacity2;
} sd_batch_job;
static void sd_batch_spawn(sd_batch_job *j) { j->started = 0; }
static void sd_batch_wait(sd_batch_job *j) { j->rc = -1; }
static void sd_stat_batch_parallel(int dir_fd, const char *const *names, Py_ssize_t count, sd_stat_item *out) {
    sd_stat_batch(dir_fd, names, count, out);
}

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

static int sd_dir_fd(sd_dir *d) { return dirfd(d->dir); }

/* -- batches: many files of one directory per call, without the GIL ---------- */

/* One file of a read batch: its bytes are arena[offset : offset + length]
 * when status is 0; status 1: not a regular file (or gone); status -1: the
 * error err. */
typedef struct { Py_ssize_t offset; Py_ssize_t length; int status; int err; } sd_batch_item;

#define SD_SMALL_READ 65536

/* Make room for `need` more bytes after `used` in the arena. */
static int sd_arena_reserve(char **arena, size_t *capacity, size_t used, size_t need) {
    size_t want = *capacity ? *capacity : (size_t)SD_SMALL_READ * 4;
    char *grown;
    if (used + need <= *capacity) return 0;
    while (want < used + need) want *= 2;
    grown = (char *)realloc(*arena, want);
    if (grown == NULL) return -1;
    *arena = grown;
    *capacity = want;
    return 0;
}

static ssize_t sd_read_retry(int fd, char *buf, size_t n) {
    ssize_t got;
    do { got = read(fd, buf, n); } while (got < 0 && errno == EINTR);
    return got;
}

/* Read each of `names` inside the directory `dir_fd` with the rules of
 * sessionsd._fsutil.read_regular_at: openat(O_NOFOLLOW | O_NONBLOCK), one
 * read of 64 KiB, and an fstat only when that read was empty or filled the
 * buffer (a regular file reads whole; a directory fails the read with EISDIR,
 * a FIFO with EAGAIN or reads empty, a device fills the buffer).  The bytes
 * of every file go to one growing arena (*arena, *capacity: malloc'd, the
 * caller frees it); offsets stay valid when it moves.  Returns 0, or -1 when
 * memory ran out.  Safe to call without the GIL. */
static int sd_read_batch(int dir_fd, const char *const *names, Py_ssize_t count,
                         char **arena, size_t *capacity, sd_batch_item *out) {
    size_t used = 0, total, want;
    Py_ssize_t i;
    ssize_t got;
    struct stat st;
    int fd;
    for (i = 0; i < count; i++) {
        sd_batch_item *item = &out[i];
        item->offset = (Py_ssize_t)used;
        item->length = 0;
        item->status = 0;
        item->err = 0;
        fd = openat(dir_fd, names[i], O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK);
        if (fd < 0) {
            item->err = errno;
            item->status = sd_is_not_a_file(item->err) ? 1 : -1;
            continue;
        }
        if (sd_arena_reserve(arena, capacity, used, SD_SMALL_READ) != 0) { close(fd); return -1; }
        got = sd_read_retry(fd, *arena + used, SD_SMALL_READ);
        if (got < 0) {
            item->err = errno;
            item->status = (item->err == EISDIR || item->err == EAGAIN || item->err == EWOULDBLOCK) ? 1 : -1;
            close(fd);
            continue;
        }
        total = (size_t)got;
        if (total == 0 || total == SD_SMALL_READ) {
            if (fstat(fd, &st) != 0) {
                item->err = errno;
                item->status = -1;
                close(fd);
                continue;
            }
            if (!S_ISREG(st.st_mode)) {
                item->status = 1;
                close(fd);
                continue;
            }
            for (;;) {
                want = (size_t)st.st_size + 1 > total ? (size_t)st.st_size + 1 - total : 0;
                if (want < SD_SMALL_READ) want = SD_SMALL_READ;
                if (sd_arena_reserve(arena, capacity, used + total, want) != 0) { close(fd); return -1; }
                got = sd_read_retry(fd, *arena + used + total, want);
                if (got < 0) { item->err = errno; item->status = -1; break; }
                if (got == 0) break;
                total += (size_t)got;
            }
            if (item->status != 0) { close(fd); continue; }
        }
        close(fd);
        item->length = (Py_ssize_t)total;
        used += total;
    }
    return 0;
}

/* One name of a stat batch: status 0 with the lstat fields, 1 when the
 * name is gone (ENOENT), 2 when it is not a regular file, -1 with err. */
typedef struct { unsigned long long ino; long long mtime_ns; long long size; int status; int err; } sd_stat_item;

/* fstatat(AT_SYMLINK_NOFOLLOW) each of `names` inside `dir_fd`.  Safe to
 * call without the GIL. */
static void sd_stat_batch(int dir_fd, const char *const *names, Py_ssize_t count, sd_stat_item *out) {
    struct stat st;
    Py_ssize_t i;
    for (i = 0; i < count; i++) {
        sd_stat_item *item = &out[i];
        item->err = 0;
        if (fstatat(dir_fd, names[i], &st, AT_SYMLINK_NOFOLLOW) != 0) {
            item->err = errno;
            item->status = item->err == ENOENT ? 1 : -1;
            continue;
        }
        if (!S_ISREG(st.st_mode)) { item->status = 2; continue; }
        item->status = 0;
        item->ino = (unsigned long long)st.st_ino;
#if defined(__APPLE__)
        item->mtime_ns = (long long)st.st_mtimespec.tv_sec * 1000000000LL + st.st_mtimespec.tv_nsec;
#else
        item->mtime_ns = (long long)st.st_mtim.tv_sec * 1000000000LL + st.st_mtim.tv_nsec;
#endif
        item->size = (long long)st.st_size;
    }
}


/* A read batch run by a thread of its own, which never touches Python:
 * the caller starts it (sd_batch_spawn), does other work, and collects it
 * (sd_batch_wait).  When no thread can be started, sd_batch_wait runs the
 * batch itself.
 *
 * With `parallel` set, a batch of at least SD_PARALLEL_READ_MIN files is
 * read by two threads, each half into an arena of its own: items before
 * `split` are in `arena`, the others in `arena2`.  (Each file costs an
 * openat, a read and a close: system calls that run side by side on two
 * cores.  The answer does not depend on the split.) */
#include <pthread.h>

#define SD_PARALLEL_READ_MIN 64

typedef struct {
    int dir_fd; const char **names; Py_ssize_t count;
    char *arena; size_t capacity; sd_batch_item *out; int rc; int started;
    int parallel; Py_ssize_t split; char *arena2; size_t capacity2;
    pthread_t thread;
} sd_batch_job;

typedef struct {
    int dir_fd; const char *const *names; Py_ssize_t count;
    char *arena; size_t capacity; sd_batch_item *out; int rc;
} sd_read_part;

static void *sd_read_part_main(void *arg) {
    sd_read_part *p = (sd_read_part *)arg;
    p->rc = sd_read_batch(p->dir_fd, p->names, p->count, &p->arena, &p->capacity, p->out);
    return NULL;
}

static void *sd_batch_main(void *arg) {
    sd_batch_job *j = (sd_batch_job *)arg;
    sd_read_part part;
    pthread_t helper;
    Py_ssize_t half = j->count / 2;
    j->split = j->count;
    if (j->parallel && j->count >= SD_PARALLEL_READ_MIN) {
        part.dir_fd = j->dir_fd;
        part.names = (const char *const *)j->names + half;
        part.count = j->count - half;
        part.arena = j->arena2;
        part.capacity = j->capacity2;
        part.out = j->out + half;
        part.rc = 0;
        if (pthread_create(&helper, NULL, sd_read_part_main, &part) == 0) {
            j->rc = sd_read_batch(j->dir_fd, (const char *const *)j->names, half, &j->arena, &j->capacity, j->out);
            pthread_join(helper, NULL);
            j->arena2 = part.arena;
            j->capacity2 = part.capacity;
            j->split = half;
            if (part.rc != 0) j->rc = part.rc;
            return NULL;
        }
    }
    j->rc = sd_read_batch(j->dir_fd, (const char *const *)j->names, j->count, &j->arena, &j->capacity, j->out);
    return NULL;
}

static void sd_batch_spawn(sd_batch_job *j) {
    j->started = pthread_create(&j->thread, NULL, sd_batch_main, j) == 0;
}

static void sd_batch_wait(sd_batch_job *j) {
    if (j->started) {
        pthread_join(j->thread, NULL);
        j->started = 0;
    } else {
        sd_batch_main(j);
    }
}

/* sd_stat_batch over two threads: the calling one and one of its own for
 * the second half, when the batch is large enough to pay for the thread
 * (each lstat is a system call of a few microseconds; the results do not
 * depend on the split).  Falls back to one thread when none can be started.
 * Safe to call without the GIL. */
#define SD_PARALLEL_STAT_MIN 4096

typedef struct {
    int dir_fd; const char *const *names; Py_ssize_t count; sd_stat_item *out;
} sd_stat_job;

static void *sd_stat_main(void *arg) {
    sd_stat_job *j = (sd_stat_job *)arg;
    sd_stat_batch(j->dir_fd, j->names, j->count, j->out);
    return NULL;
}

static void sd_stat_batch_parallel(int dir_fd, const char *const *names, Py_ssize_t count, sd_stat_item *out) {
    pthread_t thread;
    sd_stat_job job;
    Py_ssize_t half = count / 2;
    if (count < SD_PARALLEL_STAT_MIN) {
        sd_stat_batch(dir_fd, names, count, out);
        return;
    }
    job.dir_fd = dir_fd;
    job.names = names + half;
    job.count = count - half;
    job.out = out + half;
    if (pthread_create(&thread, NULL, sd_stat_main, &job) != 0) {
        sd_stat_batch(dir_fd, names, count, out);
        return;
    }
    sd_stat_batch(dir_fd, names, half, out);
    pthread_join(thread, NULL);
}

#endif
#endif /* SESSIONSD_DIRSCAN_H */
