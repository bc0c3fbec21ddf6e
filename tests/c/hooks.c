/* Calls one interposed libc entry point on a path and reports what it got.
 * usage: hooks ENTRY PATH [DIR [NEWDIR]]  prints "OK <first line>" or "ERR <errno name>"
 * Built by tests/tests/shim.rs; run under LD_PRELOAD as an unprivileged uid. */
#define _GNU_SOURCE
#include <dirent.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

int __open_2(const char *, int);
int __open64_2(const char *, int);
int __openat_2(int, const char *, int);
int __openat64_2(int, const char *, int);
FILE *fopen64(const char *, const char *);
FILE *freopen64(const char *, const char *, FILE *);
int creat64(const char *, mode_t);

static int report_fd(int fd) {
    if (fd < 0) { printf("ERR %s\n", strerrorname_np(errno)); return 1; }
    char buf[256] = {0};
    ssize_t n = read(fd, buf, sizeof buf - 1);
    if (n < 0) { printf("OK (unreadable: %s)\n", strerrorname_np(errno)); return 0; }
    buf[strcspn(buf, "\n")] = 0;
    printf("OK %s\n", buf);
    return 0;
}

static int report_file(FILE *f) {
    if (!f) { printf("ERR %s\n", strerrorname_np(errno)); return 1; }
    char buf[256] = {0};
    if (!fgets(buf, sizeof buf, f)) buf[0] = 0;
    buf[strcspn(buf, "\n")] = 0;
    printf("OK %s\n", buf);
    return 0;
}

/* Entries that run an open somewhere unusual: a 16 KiB thread, a signal handler on a
 * SIGSTKSZ alternate stack. The result is printed by the caller. */
static const char *odd_path;
static int odd_fd = -2, odd_errno;
static void *open_in_thread(void *unused) {
    (void)unused;
    odd_fd = open(odd_path, O_RDONLY);
    odd_errno = errno; /* errno is per thread */
    return 0;
}
static void open_in_handler(int sig) {
    (void)sig;
    int saved = errno;
    odd_fd = open(odd_path, O_RDONLY);
    odd_errno = errno;
    errno = saved;
}

int main(int argc, char **argv) {
    if (argc < 3) { fprintf(stderr, "usage: hooks ENTRY PATH [DIR]\n"); return 2; }
    const char *e = argv[1], *p = argv[2];
    int dirfd = argc > 3 ? open(argv[3], O_RDONLY | O_DIRECTORY) : AT_FDCWD;
    if (!strcmp(e, "open")) return report_fd(open(p, O_RDONLY));
    if (!strcmp(e, "open64")) return report_fd(open64(p, O_RDONLY));
    if (!strcmp(e, "openat")) return report_fd(openat(dirfd, p, O_RDONLY));
    if (!strcmp(e, "openat64")) return report_fd(openat64(dirfd, p, O_RDONLY));
    if (!strcmp(e, "__open_2")) return report_fd(__open_2(p, O_RDONLY));
    if (!strcmp(e, "__open64_2")) return report_fd(__open64_2(p, O_RDONLY));
    if (!strcmp(e, "__openat_2")) return report_fd(__openat_2(dirfd, p, O_RDONLY));
    if (!strcmp(e, "__openat64_2")) return report_fd(__openat64_2(dirfd, p, O_RDONLY));
    if (!strcmp(e, "fopen")) return report_file(fopen(p, "r"));
    if (!strcmp(e, "fopen64")) return report_file(fopen64(p, "re"));
    if (!strcmp(e, "freopen")) return report_file(freopen(p, "r", stdin));
    if (!strcmp(e, "freopen64")) return report_file(freopen64(p, "r", stdin));
    if (!strcmp(e, "opendir")) {
        DIR *d = opendir(p);
        if (!d) { printf("ERR %s\n", strerrorname_np(errno)); return 1; }
        int n = 0;
        while (readdir(d)) n++;
        printf("OK %d entries\n", n);
        return 0;
    }
    /* Odd but legal calls (the shim once crashed or answered differently on each). */
    if (!strcmp(e, "openat-badfd")) return report_fd(openat(-1, p, O_RDONLY));
    if (!strcmp(e, "openat-pipe")) {
        int fds[2];
        if (pipe(fds)) return 2;
        return report_fd(openat(fds[0], p, O_RDONLY));
    }
    if (!strcmp(e, "thread16k")) {
        pthread_attr_t a;
        pthread_t t;
        odd_path = p;
        pthread_attr_init(&a);
        if (pthread_attr_setstacksize(&a, 16384)) { printf("ERR stacksize\n"); return 2; }
        if (pthread_create(&t, &a, open_in_thread, 0)) { printf("ERR thread\n"); return 2; }
        pthread_join(t, 0);
        errno = odd_errno;
        return report_fd(odd_fd);
    }
    if (!strcmp(e, "sigalt")) {
        stack_t ss = { .ss_size = SIGSTKSZ, .ss_sp = malloc(SIGSTKSZ) };
        struct sigaction sa = { .sa_handler = open_in_handler, .sa_flags = SA_ONSTACK };
        odd_path = p;
        if (sigaltstack(&ss, 0) || sigaction(SIGUSR1, &sa, 0)) { printf("ERR sigaltstack\n"); return 2; }
        raise(SIGUSR1);
        errno = odd_errno;
        return report_fd(odd_fd);
    }
    if (!strcmp(e, "trunc-rdwr")) {
        int fd = open(p, O_RDWR | O_TRUNC);
        if (fd < 0) { printf("ERR %s\n", strerrorname_np(errno)); return 1; }
        printf("OK opened\n");
        return 0;
    }
    if (!strcmp(e, "creat-long")) {
        /* O_CREAT of a non-clean path: PATH, then 2100 "./" and "new". */
        size_t n = strlen(p);
        char *q = malloc(n + 2 * 2100 + 8);
        strcpy(q, p);
        for (int i = 0; i < 2100; i++) strcat(q + n, "./");
        strcat(q, "new");
        return report_fd(open(q, O_CREAT | O_WRONLY, 0644));
    }
    /* A directory entered under a root, then moved (by its tenant) to argv[4], outside
     * every root: a relative open from it must still be judged by that root's tenant. */
    if (!strcmp(e, "moved-dirfd") || !strcmp(e, "moved-cwd")) {
        if (argc < 5) { fprintf(stderr, "usage: hooks %s NAME DIR NEWDIR\n", e); return 2; }
        if (dirfd < 0) { printf("ERR open-dir %s\n", strerrorname_np(errno)); return 2; }
        int cwd = !strcmp(e, "moved-cwd");
        if (cwd && chdir(argv[3])) { printf("ERR chdir %s\n", strerrorname_np(errno)); return 2; }
        if (rename(argv[3], argv[4])) { printf("ERR rename %s\n", strerrorname_np(errno)); return 2; }
        return report_fd(cwd ? open(p, O_RDONLY) : openat(dirfd, p, O_RDONLY));
    }
    if (!strcmp(e, "deepcwd")) {
        /* Climb down PATH (a count) directories of 200-byte names, past PATH_MAX, then
         * create and read a file there by a relative name. */
        char seg[201];
        memset(seg, 'd', 200);
        seg[200] = 0;
        int depth = atoi(p);
        for (int i = 0; i < depth; i++) {
            if (mkdir(seg, 0755) && errno != EEXIST) { printf("ERR mkdir %s\n", strerrorname_np(errno)); return 2; }
            if (chdir(seg)) { printf("ERR chdir %s\n", strerrorname_np(errno)); return 2; }
        }
        int fd = open("f", O_CREAT | O_WRONLY, 0644);
        if (fd < 0) { printf("ERR create %s\n", strerrorname_np(errno)); return 1; }
        if (write(fd, "deep\n", 5) != 5) return 2;
        close(fd);
        return report_fd(open("f", O_RDONLY));
    }
    /* Opens that write: report, then leave the file as the open left it. */
    if (!strcmp(e, "trunc")) {
        int fd = open(p, O_WRONLY | O_TRUNC);
        if (fd < 0) { printf("ERR %s\n", strerrorname_np(errno)); return 1; }
        printf("OK opened\n");
        return 0;
    }
    if (!strcmp(e, "fopen-w")) {
        FILE *f = fopen(p, "w");
        if (!f) { printf("ERR %s\n", strerrorname_np(errno)); return 1; }
        fputs("written\n", f);
        fclose(f);
        printf("OK written\n");
        return 0;
    }
    if (!strcmp(e, "creat") || !strcmp(e, "creat64")) {
        int fd = !strcmp(e, "creat") ? creat(p, 0644) : creat64(p, 0644);
        if (fd < 0) { printf("ERR %s\n", strerrorname_np(errno)); return 1; }
        if (write(fd, "created\n", 8) != 8) { printf("ERR write\n"); return 1; }
        printf("OK created\n");
        return 0;
    }
    fprintf(stderr, "unknown entry %s\n", e);
    return 2;
}
