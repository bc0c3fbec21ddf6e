/* Threads open guarded files while the main thread forks; each child opens too.
 * A lock held across fork (ours or libc's) would hang a child: the parent notices
 * through a bounded wait and exits 3. usage: forkstress ALLOWED DENIED FORKS */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static const char *allowed, *denied;
static volatile int stop;
static long opened_ok, denied_ok, wrong;

static void *opener(void *arg) {
    (void)arg;
    long ok = 0, den = 0, bad = 0;
    while (!stop) {
        int fd = open(allowed, O_RDONLY);
        if (fd >= 0) { ok++; close(fd); } else bad++;
        fd = open(denied, O_RDONLY);
        if (fd < 0 && errno == EACCES) den++; else { bad++; if (fd >= 0) close(fd); }
        FILE *f = fopen(allowed, "r");
        if (f) fclose(f); else bad++;
    }
    __atomic_add_fetch(&opened_ok, ok, __ATOMIC_RELAXED);
    __atomic_add_fetch(&denied_ok, den, __ATOMIC_RELAXED);
    __atomic_add_fetch(&wrong, bad, __ATOMIC_RELAXED);
    return NULL;
}

int main(int argc, char **argv) {
    if (argc != 4) return 2;
    allowed = argv[1]; denied = argv[2];
    int forks = atoi(argv[3]);
    pthread_t t[4];
    for (int i = 0; i < 4; i++) pthread_create(&t[i], NULL, opener, NULL);
    int hung = 0, child_bad = 0;
    for (int i = 0; i < forks; i++) {
        pid_t pid = fork();
        if (pid == 0) {
            int fd = open(allowed, O_RDONLY);
            int fd2 = open(denied, O_RDONLY);
            FILE *f = fopen(allowed, "r");
            _exit(fd >= 0 && fd2 < 0 && errno == EACCES && f ? 0 : 1);
        }
        /* Bounded wait: 5 s per child. */
        int status = 0, done = 0;
        for (int ms = 0; ms < 5000 && !done; ms++) {
            pid_t r = waitpid(pid, &status, WNOHANG);
            if (r == pid) done = 1; else usleep(1000);
        }
        if (!done) { hung++; kill(pid, SIGKILL); waitpid(pid, &status, 0); }
        else if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) child_bad++;
    }
    stop = 1;
    for (int i = 0; i < 4; i++) pthread_join(t[i], NULL);
    printf("forks=%d hung=%d child_bad=%d thread_ok=%ld thread_denied=%ld thread_wrong=%ld\n",
           forks, hung, child_bad, opened_ok, denied_ok, wrong);
    return hung ? 3 : (child_bad || wrong) ? 4 : 0;
}
