/* Relative opens judged by where the working directory is *now*, however it got there.
 * usage: cwd MODE DIR REL [NEWDIR]   prints one line per open: "OK <first line>" / "ERR <errno>"
 *   chdir DIR REL          chdir(DIR), open(REL)
 *   fchdir DIR REL         fchdir(open(DIR)), open(REL)
 *   thread-chdir DIR REL   another thread chdirs (libc), this one opens REL
 *   thread-rawchdir DIR REL  the same with the raw system call (no hook sees it)
 *   moved-into DIR REL NEWDIR  chdir(DIR), open(REL), rename DIR to NEWDIR (raw), open(REL)
 * After a directory the shim remembers ("/", or "/proc" for daemon), each of the calls that
 * move the working directory, then open(REL):
 *   after-chdir|after-fchdir|after-thread-chdir|after-fts|after-clone-fs DIR REL
 *   after-daemon REL       daemon(0, 1) (glibc's internal chdir("/"); REL relative to "/")
 * Processes that must not teach the remembered directory to this one:
 *   vfork-teach DIR REL    chdir(DIR); a vfork child chdirs to "/" and opens; then open(REL)
 *   unshare-teach DIR REL  chdir(DIR); a thread unshares CLONE_FS, chdirs to "/", opens
 *   count DIR REL N        chdir(DIR), N x open(REL); prints the last (strace counts getcwd)
 *   vfork-thread DIR REL   after "/" was remembered, a vfork child chdirs to DIR; another
 *                          thread of ours relative-opens from "/" meanwhile; the child
 *                          opens REL (its result printed by us)
 *   nftw-back DIR REL      chdir(DIR); nftw("/", FTW_CHDIR) whose callback opens from the
 *                          first entry's directory ("/", remembered), stops; then open(REL)
 * Built by tests/src/shim_fixture.rs; run under LD_PRELOAD as the server uid. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <fts.h>
#include <ftw.h>
#include <pthread.h>
#include <sched.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
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

/* Any relative open: the shim learns (and may remember) the working directory. */
static void learn(void) {
    int fd = open("toctou-guard-cwd-none", O_RDONLY);
    if (fd >= 0) close(fd);
}

static void *unshare_and_teach(void *unused) {
    (void)unused;
    if (unshare(CLONE_FS) || chdir("/")) printf("ERR unshare %s\n", strerrorname_np(errno));
    learn();
    return 0;
}

/* In "/" (FTW_CHDIR), at the first entry below it: learn "/", stop the walk. */
static int learn_and_stop(const char *path, const struct stat *st, int type, struct FTW *f) {
    (void)path, (void)st, (void)type;
    if (f->level == 0) return 0;
    learn();
    return 1;
}

/* vfork-thread: the child and our other thread in step through shared memory (bounded). */
static volatile int child_moved, thread_learnt;
static int wait_for(volatile int *flag) {
    struct timespec t0, t;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    do {
        if (*flag) return 1;
        sched_yield();
        clock_gettime(CLOCK_MONOTONIC, &t);
    } while (t.tv_sec - t0.tv_sec < 10);
    return *flag;
}
static void *learn_when_child_moved(void *unused) {
    (void)unused;
    if (wait_for(&child_moved)) learn();
    thread_learnt = 1;
    return 0;
}

static int clone_child(void *d) { return chdir(d) ? 1 : 0; }

/* Move the working directory to `dir` by `how`, after "/" was remembered. */
static int move_to(const char *how, const char *dir) {
    if (chdir("/")) return -1;
    learn();
    if (!strcmp(how, "after-chdir")) return chdir(dir);
    if (!strcmp(how, "after-fchdir")) {
        int fd = open(dir, O_RDONLY | O_DIRECTORY);
        return fd < 0 ? -1 : fchdir(fd);
    }
    if (!strcmp(how, "after-thread-chdir")) {
        pthread_t t;
        raw = 0;
        return pthread_create(&t, 0, enter, 0) || pthread_join(t, 0) ? -1 : 0;
    }
    if (!strcmp(how, "after-fts")) {
        /* glibc's fts fchdirs into a directory to read it: after the second entry we are in it. */
        char *paths[] = {(char *)dir, 0};
        FTS *fts = fts_open(paths, FTS_PHYSICAL, 0);
        return fts && fts_read(fts) && fts_read(fts) ? 0 : -1;
    }
    if (!strcmp(how, "after-clone-fs")) {
        /* A child sharing our working directory (not our memory) moves it. */
        size_t size = 1 << 16;
        char *stack = malloc(size);
        int st;
        pid_t pid = stack ? clone(clone_child, stack + size, CLONE_FS | SIGCHLD, (void *)dir) : -1;
        return pid < 0 || waitpid(pid, &st, 0) != pid || !WIFEXITED(st) || WEXITSTATUS(st) ? -1 : 0;
    }
    errno = EINVAL;
    return -1;
}

int main(int argc, char **argv) {
    if (argc < 3 || (argc < 4 && strcmp(argv[1], "after-daemon"))) {
        fprintf(stderr, "usage: cwd MODE DIR REL [NEWDIR|N]\n");
        return 2;
    }
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
    } else if (!strncmp(m, "after-", 6) && strcmp(m, "after-daemon")) {
        if (move_to(m, dir)) { printf("ERR %s %s\n", m, strerrorname_np(errno)); return 1; }
    } else if (!strcmp(m, "after-daemon")) {
        rel = argv[2];
        if (chdir("/proc")) return 1;
        learn();
        if (daemon(0, 1)) { printf("ERR daemon %s\n", strerrorname_np(errno)); return 1; }
    } else if (!strcmp(m, "vfork-teach")) {
        if (chdir(dir)) return 1;
        pid_t pid = vfork();
        if (pid == 0) {
            if (chdir("/") == 0) learn();
            _exit(0);
        }
        int st;
        if (pid < 0 || waitpid(pid, &st, 0) != pid) { printf("ERR vfork\n"); return 1; }
    } else if (!strcmp(m, "unshare-teach")) {
        if (chdir(dir)) return 1;
        pthread_t t;
        if (pthread_create(&t, 0, unshare_and_teach, 0) || pthread_join(t, 0)) { printf("ERR thread\n"); return 1; }
    } else if (!strcmp(m, "vfork-thread")) {
        static char got[256];
        static int err;
        pthread_t t;
        if (chdir("/")) return 1;
        learn();
        if (pthread_create(&t, 0, learn_when_child_moved, 0)) { printf("ERR thread\n"); return 1; }
        pid_t pid = vfork();
        if (pid == 0) {
            if (chdir(dir)) { err = errno; _exit(1); }
            child_moved = 1;
            wait_for(&thread_learnt);
            int fd = open(rel, O_RDONLY);
            if (fd < 0) err = errno;
            else if (read(fd, got, sizeof got - 1) < 0) err = errno;
            _exit(0);
        }
        int st;
        if (pid < 0 || waitpid(pid, &st, 0) != pid || pthread_join(t, 0)) { printf("ERR vfork\n"); return 1; }
        if (err) printf("ERR %s\n", strerrorname_np(err));
        else { got[strcspn(got, "\n")] = 0; printf("OK %s\n", got); }
        return 0;
    } else if (!strcmp(m, "nftw-back")) {
        if (chdir(dir)) return 1;
        /* nftw returns the callback's 1, and has come back to DIR. */
        if (nftw("/", learn_and_stop, 4, FTW_CHDIR | FTW_PHYS) != 1) { printf("ERR nftw\n"); return 1; }
    } else if (!strcmp(m, "count") && argc == 5) {
        if (chdir(dir)) { printf("ERR chdir %s\n", strerrorname_np(errno)); return 1; }
        for (int i = atoi(argv[4]); i > 1; i--) {
            int fd = open(rel, O_RDONLY);
            if (fd >= 0) close(fd);
        }
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
