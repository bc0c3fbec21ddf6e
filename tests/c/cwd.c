/* Relative opens judged by where the working directory is *now*, however it got there.
 * usage: cwd MODE DIR REL [NEWDIR]   prints one line per open: "OK <first line>" / "ERR <errno>"
 *   chdir DIR REL          chdir(DIR), open(REL)
 *   fchdir DIR REL         fchdir(open(DIR)), open(REL)
 *   thread-chdir DIR REL   another thread chdirs (libc), this one opens REL
 *   thread-rawchdir DIR REL  the same with the raw system call (no hook sees it)
 *   moved-into DIR REL NEWDIR  chdir(DIR), open(REL), rename DIR to NEWDIR (raw), open(REL)
 * Built by tests/src/shim_fixture.rs; run under LD_PRELOAD as the server uid. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

static void report(int fd) {
    if (fd < 0) { printf("ERR %s\n", strerrorname_np(errno)); return; }
    char buf[256] = {0};
    ssize_t n = read(fd, buf, sizeof buf - 1);
    if (n < 0) n = 0;
    buf[n] = 0;
    buf[strcspn(buf, "\n")] = 0;
    printf("OK %s\n", buf);
    close(fd);
}

static const char *dir;
static int raw;
static void *enter(void *unused) {
    (void)unused;
    long r = raw ? syscall(SYS_chdir, dir) : chdir(dir);
    if (r) printf("ERR chdir %s\n", strerrorname_np(errno));
    return 0;
}

int main(int argc, char **argv) {
    if (argc < 4) { fprintf(stderr, "usage: cwd MODE DIR REL [NEWDIR]\n"); return 2; }
    const char *m = argv[1], *rel = argv[3];
    dir = argv[2];
    if (!strcmp(m, "chdir")) {
        if (chdir(dir)) { printf("ERR chdir %s\n", strerrorname_np(errno)); return 1; }
    } else if (!strcmp(m, "fchdir")) {
        int fd = open(dir, O_RDONLY | O_DIRECTORY);
        if (fd < 0 || fchdir(fd)) { printf("ERR fchdir %s\n", strerrorname_np(errno)); return 1; }
    } else if (!strcmp(m, "thread-chdir") || !strcmp(m, "thread-rawchdir")) {
        raw = !strcmp(m, "thread-rawchdir");
        pthread_t t;
        if (pthread_create(&t, 0, enter, 0) || pthread_join(t, 0)) { printf("ERR thread\n"); return 1; }
    } else if (!strcmp(m, "moved-into") && argc == 5) {
        if (chdir(dir)) { printf("ERR chdir %s\n", strerrorname_np(errno)); return 1; }
        report(open(rel, O_RDONLY));
        /* The tenant's move, made behind the guard's back (no hook sees a raw rename). */
        if (syscall(SYS_renameat2, AT_FDCWD, dir, AT_FDCWD, argv[4], 0)) {
            printf("ERR rename %s\n", strerrorname_np(errno));
            return 1;
        }
    } else {
        fprintf(stderr, "unknown mode %s\n", m);
        return 2;
    }
    report(open(rel, O_RDONLY));
    return 0;
}
