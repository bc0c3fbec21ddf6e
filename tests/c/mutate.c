/* Path-based calls that create, replace, truncate or remove, one per step:
 *   mutate OP ARG... [, OP ARG...]...
 * (`no-getrandom` makes getrandom(2) fail as before the entropy pool is ready.)
 * Prints one line per step: "OK" or "ERR <errno name>". Nothing random is printed (the
 * tests compare runs with and without the shim line by line). */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <stddef.h>
#include <sys/prctl.h>
#include <sys/random.h>
#include <sys/syscall.h>

static void report(int failed) {
    if (failed) {
        const char *name = strerrorname_np(errno);
        printf("ERR %s\n", name ? name : "?");
    } else {
        printf("OK\n");
    }
}

static int fd_result(int fd) {
    if (fd < 0)
        return 1;
    close(fd);
    return 0;
}

/* A copy: mkstemp and friends write into their template. */
static char *dup_arg(const char *s) {
    static char buf[8192];
    snprintf(buf, sizeof buf, "%s", s);
    return buf;
}

static unsigned octal(const char *s) { return (unsigned)strtoul(s, NULL, 8); }

/* From here on, getrandom(2) behaves as before the entropy pool is ready: with
 * GRND_NONBLOCK it fails EAGAIN; without, it would block, and a signal ends the wait with
 * EINTR (answered at once). */
static int no_getrandom(void) {
    struct sock_filter f[] = {
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_getrandom, 1, 0),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, args[2])),
        BPF_JUMP(BPF_JMP | BPF_JSET | BPF_K, GRND_NONBLOCK, 0, 1),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | EAGAIN),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | EINTR),
    };
    struct sock_fprog prog = {sizeof f / sizeof f[0], f};
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0))
        return 1;
    return syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &prog) != 0;
}

static int step(int argc, char **a) {
    const char *op = a[0];
#define NEED(n)                                                                 \
    if (argc < (n) + 1) {                                                       \
        printf("usage: %s needs %d argument(s)\n", op, n);                      \
        return 2;                                                               \
    }
    errno = 0;
    if (!strcmp(op, "mkstemp")) { NEED(1); report(fd_result(mkstemp(dup_arg(a[1])))); }
    else if (!strcmp(op, "mkstemp64")) { NEED(1); report(fd_result(mkstemp64(dup_arg(a[1])))); }
    else if (!strcmp(op, "mkostemp")) { NEED(1); report(fd_result(mkostemp(dup_arg(a[1]), O_CLOEXEC))); }
    else if (!strcmp(op, "mkstemps")) { NEED(2); report(fd_result(mkstemps(dup_arg(a[1]), atoi(a[2])))); }
    else if (!strcmp(op, "mkostemps")) { NEED(2); report(fd_result(mkostemps(dup_arg(a[1]), atoi(a[2]), O_APPEND))); }
    else if (!strcmp(op, "mkdtemp")) { NEED(1); report(mkdtemp(dup_arg(a[1])) == NULL); }
    else if (!strcmp(op, "rename")) { NEED(2); report(rename(a[1], a[2]) != 0); }
    else if (!strcmp(op, "renameat")) { NEED(2); report(renameat(AT_FDCWD, a[1], AT_FDCWD, a[2]) != 0); }
    else if (!strcmp(op, "renameat2")) {
        NEED(3);
        unsigned flags = !strcmp(a[3], "exchange") ? RENAME_EXCHANGE
                       : !strcmp(a[3], "noreplace") ? RENAME_NOREPLACE : 0;
        report(renameat2(AT_FDCWD, a[1], AT_FDCWD, a[2], flags) != 0);
    }
    else if (!strcmp(op, "truncate")) { NEED(2); report(truncate(a[1], atol(a[2])) != 0); }
    else if (!strcmp(op, "no-getrandom")) { report(no_getrandom()); }
    else if (!strcmp(op, "truncate64")) { NEED(2); report(truncate64(a[1], atol(a[2])) != 0); }
    else if (!strcmp(op, "unlink")) { NEED(1); report(unlink(a[1]) != 0); }
    else if (!strcmp(op, "unlinkat")) { NEED(1); report(unlinkat(AT_FDCWD, a[1], 0) != 0); }
    else if (!strcmp(op, "unlinkat-dir")) { NEED(1); report(unlinkat(AT_FDCWD, a[1], AT_REMOVEDIR) != 0); }
    else if (!strcmp(op, "remove")) { NEED(1); report(remove(a[1]) != 0); }
    else if (!strcmp(op, "rmdir")) { NEED(1); report(rmdir(a[1]) != 0); }
    else if (!strcmp(op, "link")) { NEED(2); report(link(a[1], a[2]) != 0); }
    else if (!strcmp(op, "linkat")) { NEED(2); report(linkat(AT_FDCWD, a[1], AT_FDCWD, a[2], 0) != 0); }
    else if (!strcmp(op, "linkat-follow")) { NEED(2); report(linkat(AT_FDCWD, a[1], AT_FDCWD, a[2], AT_SYMLINK_FOLLOW) != 0); }
    else if (!strcmp(op, "symlink")) { NEED(2); report(symlink(a[1], a[2]) != 0); }
    else if (!strcmp(op, "symlinkat")) { NEED(2); report(symlinkat(a[1], AT_FDCWD, a[2]) != 0); }
    else if (!strcmp(op, "mkdir")) { NEED(1); report(mkdir(a[1], 0755) != 0); }
    else if (!strcmp(op, "mkdirat")) { NEED(1); report(mkdirat(AT_FDCWD, a[1], 0755) != 0); }
    else if (!strcmp(op, "mkfifo")) { NEED(1); report(mkfifo(a[1], 0644) != 0); }
    else if (!strcmp(op, "mkfifoat")) { NEED(1); report(mkfifoat(AT_FDCWD, a[1], 0644) != 0); }
    else if (!strcmp(op, "mknod")) { NEED(1); report(mknod(a[1], S_IFREG | 0644, 0) != 0); }
    else if (!strcmp(op, "mknodat")) { NEED(1); report(mknodat(AT_FDCWD, a[1], S_IFIFO | 0644, 0) != 0); }
    else if (!strcmp(op, "open-trunc")) { NEED(1); report(fd_result(open(a[1], O_WRONLY | O_TRUNC))); }
    else if (!strcmp(op, "open-append")) { NEED(1); report(fd_result(open(a[1], O_WRONLY | O_APPEND))); }
    else if (!strcmp(op, "creat")) { NEED(1); report(fd_result(open(a[1], O_WRONLY | O_CREAT | O_EXCL, 0644))); }
    else if (!strcmp(op, "open-read")) { NEED(1); report(fd_result(open(a[1], O_RDONLY))); }
    else if (!strcmp(op, "moved-append")) {
        /* Hold DIR, let it be moved to NEWDIR (the raw system call: the tenant's own move,
         * past the guard), then append to REL relative to the held directory. */
        NEED(3);
        int d = open(a[1], O_RDONLY | O_DIRECTORY);
        if (d < 0) { report(1); return 0; }
        if (syscall(SYS_rename, a[1], a[2]) != 0) { report(1); close(d); return 0; }
        int fd = openat(d, a[3], O_WRONLY | O_APPEND);
        report(fd < 0 || write(fd, "MOVED-DIR\n", 10) != 10);
        if (fd >= 0) close(fd);
        close(d);
    }
    else if (!strcmp(op, "chmod")) { NEED(2); report(chmod(a[1], octal(a[2])) != 0); }
    else if (!strcmp(op, "lchmod")) { NEED(2); report(lchmod(a[1], octal(a[2])) != 0); }
    else if (!strcmp(op, "fchmodat")) { NEED(2); report(fchmodat(AT_FDCWD, a[1], octal(a[2]), 0) != 0); }
    else if (!strcmp(op, "fchmodat-nofollow")) { NEED(2); report(fchmodat(AT_FDCWD, a[1], octal(a[2]), AT_SYMLINK_NOFOLLOW) != 0); }
    else if (!strcmp(op, "chown")) { NEED(2); report(chown(a[1], (uid_t)atol(a[2]), (gid_t)-1) != 0); }
    else if (!strcmp(op, "lchown")) { NEED(2); report(lchown(a[1], (uid_t)atol(a[2]), (gid_t)-1) != 0); }
    else if (!strcmp(op, "fchownat")) { NEED(2); report(fchownat(AT_FDCWD, a[1], (uid_t)atol(a[2]), (gid_t)-1, 0) != 0); }
    else if (!strcmp(op, "fchownat-nofollow")) { NEED(2); report(fchownat(AT_FDCWD, a[1], (uid_t)atol(a[2]), (gid_t)-1, AT_SYMLINK_NOFOLLOW) != 0); }
    else { printf("unknown op %s\n", op); return 2; }
    return 0;
}

int main(int argc, char **argv) {
    int start = 1;
    setvbuf(stdout, NULL, _IOLBF, 0);
    for (int i = 1; i <= argc; i++) {
        if (i == argc || !strcmp(argv[i], ",")) {
            if (i > start && step(i - start, argv + start) == 2)
                return 2;
            start = i + 1;
        }
    }
    return 0;
}
