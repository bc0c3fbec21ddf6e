/* Start `cat FILE` the ways a PHP pool can, after emptying or rewriting the environment the
 * ways php-fpm's clear_env or tenant code can (issue 10 item 8).
 *
 *   execs ENV VIA FILE [CONFIG [WHERE]]   prints cat's output; exits with cat's status
 *   execs errno                   prints one line per failing exec ("CASE ERRNO"), for
 *                                 comparing errno with and without the shim
 *
 * ENV: keep | clearenv | unsetenv | setempty | setother | setbehind | putenv | putenv-unset |
 *      environ-null | setconfig (TOCTOU_GUARD_CONFIG=CONFIG) | bigenv (150 more variables) |
 *      setaudit (LD_AUDIT=CONFIG) | setdecoy (LD_LIBRARY_PATH=CONFIG) | setpreload (LD_PRELOAD=CONFIG)
 * VIA: system popen wordexp execve execv execvp execvpe execl execl-many execlp execle posix_spawn
 *      posix_spawnp fexecve execveat
 * The calls that take an envp are given an empty one (only NULL) unless ENV is `keep`
 * `setconfig` or `bigenv`, then `environ`.
 * WHERE: main (default) | forked (in a child of a threaded parent, where any malloc exits
 *        91: exec may follow fork() while another thread holds malloc's lock) |
 *        smallstack (on a thread with a PTHREAD_STACK_MIN stack)
 * With TG_LOADER=LDSO in the environment the program started is the dynamic loader itself,
 * `LDSO [TG_OPT1 [TG_OPT2]] /bin/cat FILE` (the p variants get LDSO too, a path). */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>
#include <wordexp.h>

extern char **environ;

/* Every allocation of the process passes here; in a `forked` child, one is a failure. */
extern void *__libc_malloc(size_t);
extern void *__libc_calloc(size_t, size_t);
extern void *__libc_realloc(void *, size_t);
extern void *__libc_memalign(size_t, size_t);
extern void __libc_free(void *);
static volatile int forbid;
static void check(void) {
    if (forbid) {
        static const char msg[] = "malloc after fork\n";
        write(1, msg, sizeof msg - 1);
        _exit(91);
    }
}
void *malloc(size_t n) { check(); return __libc_malloc(n); }
void *calloc(size_t a, size_t b) { check(); return __libc_calloc(a, b); }
void *realloc(void *p, size_t n) { check(); return __libc_realloc(p, n); }
void *memalign(size_t a, size_t n) { check(); return __libc_memalign(a, n); }
int posix_memalign(void **p, size_t a, size_t n) { check(); *p = __libc_memalign(a, n); return *p ? 0 : ENOMEM; }
void *aligned_alloc(size_t a, size_t n) { check(); return __libc_memalign(a, n); }
void free(void *p) { __libc_free(p); }

static char *empty_env[] = {NULL};

/* "WHAT ERRNO" to fd 1 with no stdio buffer: stdout's first use allocates, and this also
 * runs in a `forked` child. */
static void say_failed(const char *what, int e) {
    char line[64];
    int n = snprintf(line, sizeof line, "%s failed %d\n", what, e);
    if (n > 0)
        write(1, line, (size_t)n);
}

static int relay_wait(pid_t pid) {
    int st;
    if (waitpid(pid, &st, 0) < 0)
        return 97;
    return WIFEXITED(st) ? WEXITSTATUS(st) : 98;
}

static void mutate(const char *how, const char *config) {
    static char put_empty[] = "LD_PRELOAD=";
    static char put_unset[] = "LD_PRELOAD";
    static char put_conf[4200];
    if (!strcmp(how, "keep"))
        return;
    else if (!strcmp(how, "clearenv"))
        clearenv();
    else if (!strcmp(how, "unsetenv"))
        unsetenv("LD_PRELOAD");
    else if (!strcmp(how, "setempty"))
        setenv("LD_PRELOAD", "", 1);
    else if (!strcmp(how, "setother"))
        setenv("LD_PRELOAD", "libc.so.6", 1);
    else if (!strcmp(how, "setbehind")) { /* ours still named, but after libc: libc's open wins */
        char v[4200];
        const char *cur = getenv("LD_PRELOAD");
        snprintf(v, sizeof v, "libc.so.6:%s", cur ? cur : "");
        setenv("LD_PRELOAD", v, 1);
    } else if (!strcmp(how, "putenv"))
        putenv(put_empty);
    else if (!strcmp(how, "putenv-unset"))
        putenv(put_unset); /* glibc: a name without '=' removes the variable */
    else if (!strcmp(how, "bigenv")) { /* more entries than the shim's stack array holds */
        for (int i = 0; i < 150; i++) {
            char k[16];
            snprintf(k, sizeof k, "TG_FILL_%d", i);
            setenv(k, "some value", 1);
        }
        unsetenv("LD_PRELOAD");
    } else if (!strcmp(how, "environ-null"))
        environ = NULL;
    else if (!strcmp(how, "setaudit")) /* CONFIG names the audit library */
        setenv("LD_AUDIT", config ? config : "", 1);
    else if (!strcmp(how, "setdecoy")) { /* CONFIG names a directory with a decoy of our name */
        setenv("LD_PRELOAD", "libtoctou_guard.so", 1);
        setenv("LD_LIBRARY_PATH", config ? config : "", 1);
    } else if (!strcmp(how, "setpreload")) /* CONFIG is the LD_PRELOAD value itself */
        setenv("LD_PRELOAD", config ? config : "", 1);
    else if (!strcmp(how, "setconfig")) {
        snprintf(put_conf, sizeof put_conf, "TOCTOU_GUARD_CONFIG=%s", config ? config : "");
        putenv(put_conf);
    } else {
        printf("bad ENV %s\n", how);
        exit(2);
    }
}

static int run(const char *via, const char *file, char **envp) {
    /* Padded with NULLs: execl* below pass all five, the first NULL ends the list. */
    char *argv[6] = {"cat", (char *)file, NULL};
    const char *prog = "/bin/cat", *bare = "cat";
    static char cmd[8400];
    snprintf(cmd, sizeof cmd, "cat '%s'", file);
    char *ldso = getenv("TG_LOADER"), *opt1 = getenv("TG_OPT1"), *opt2 = getenv("TG_OPT2");
    if (ldso) {
        int i = 0;
        argv[i++] = ldso;
        if (opt1)
            argv[i++] = opt1;
        if (opt1 && opt2)
            argv[i++] = opt2;
        argv[i++] = "/bin/cat";
        argv[i++] = (char *)file;
        prog = bare = ldso;
        size_t at = 0; /* each argument quoted, for the shell */
        for (int k = 0; k < i && at < sizeof cmd; k++)
            at += snprintf(cmd + at, sizeof cmd - at, "%s'%s'", k ? " " : "", argv[k]);
    }
    if (!strcmp(via, "system")) {
        int st = system(cmd);
        return st >= 0 && WIFEXITED(st) ? WEXITSTATUS(st) : 98;
    }
    if (!strcmp(via, "popen")) {
        static char buf[4096]; /* static: the smallstack thread is small */
        FILE *p = popen(cmd, "r");
        if (!p)
            return 96;
        size_t n;
        while ((n = fread(buf, 1, sizeof buf, p)) > 0)
            fwrite(buf, 1, n, stdout);
        int st = pclose(p);
        return st >= 0 && WIFEXITED(st) ? WEXITSTATUS(st) : 98;
    }
    if (!strcmp(via, "wordexp")) { /* $(...) runs /bin/sh inside glibc */
        static char words[8500];
        wordexp_t we;
        snprintf(words, sizeof words, "$(%s)", cmd);
        if (wordexp(words, &we, 0) != 0)
            return 96;
        for (size_t i = 0; i < we.we_wordc; i++)
            printf("%s\n", we.we_wordv[i]);
        int status = we.we_wordc ? 0 : 1; /* cat refused: nothing came out */
        wordfree(&we);
        return status;
    }
    if (!strcmp(via, "posix_spawn") || !strcmp(via, "posix_spawnp")) {
        pid_t pid;
        int e = via[11] == 'p' ? posix_spawnp(&pid, bare, NULL, NULL, argv, envp)
                               : posix_spawn(&pid, prog, NULL, NULL, argv, envp);
        if (e) {
            say_failed("spawn", e);
            return 95;
        }
        return relay_wait(pid);
    }
    fflush(stdout);
    if (!strcmp(via, "execve"))
        execve(prog, argv, envp);
    else if (!strcmp(via, "execv"))
        execv(prog, argv);
    else if (!strcmp(via, "execvp"))
        execvp(bare, argv);
    else if (!strcmp(via, "execvpe"))
        execvpe(bare, argv, envp);
    else if (!strcmp(via, "execl"))
        execl(prog, argv[0], argv[1], argv[2], argv[3], argv[4], (char *)NULL);
    else if (!strcmp(via, "execl-many")) { /* more arguments than the shim's stack array */
#define N10 "/dev/null", "/dev/null", "/dev/null", "/dev/null", "/dev/null", "/dev/null", \
            "/dev/null", "/dev/null", "/dev/null", "/dev/null"
        execl("/bin/cat", "cat", file, N10, N10, N10, N10, N10, N10, N10, (char *)NULL);
    }
    else if (!strcmp(via, "execlp"))
        execlp(bare, argv[0], argv[1], argv[2], argv[3], argv[4], (char *)NULL);
    else if (!strcmp(via, "execle"))
        execle(prog, argv[0], argv[1], argv[2], argv[3], argv[4], (char *)NULL, envp);
    else if (!strcmp(via, "fexecve") || !strcmp(via, "execveat")) {
        int fd = open(prog, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
            return 94;
        if (via[1] == 'f')
            fexecve(fd, argv, envp);
        else
            execveat(fd, "", argv, envp, AT_EMPTY_PATH);
    } else {
        printf("bad VIA %s\n", via);
        return 2;
    }
    say_failed("exec", errno);
    return 93;
}

/* Exec calls that fail; the same errno with and without the shim. */
static void errnos(void) {
    char *argv[] = {"x", NULL};
    char *envp[] = {"A=1", NULL};
    static char big[200000];
    memset(big, 'a', sizeof big - 1);
    char *bigv[] = {"x", big, NULL};
    const char *volatile null_path = NULL; /* volatile: no -Wnonnull */
    int fd = open("/dev/null", O_RDONLY);
#define TRY(name, call)                                                                        \
    do {                                                                                       \
        errno = 0;                                                                             \
        int r_ = (call);                                                                       \
        printf("%s %d %d\n", name, r_, errno);                                                 \
        fflush(stdout);                                                                        \
    } while (0)
    TRY("execve-missing", execve("/nonexistent/prog", argv, envp));
    TRY("execve-null-path", execve(null_path, argv, envp));
    TRY("execve-noexec", execve("/dev/null", argv, envp));
    TRY("execve-notdir", execve("/dev/null/x", argv, envp));
    TRY("execve-e2big", execve("/bin/true", bigv, envp));
    TRY("execve-null-envp-missing", execve("/nonexistent/prog", argv, NULL));
    TRY("execv-missing", execv("/nonexistent/prog", argv));
    TRY("execvp-missing", execvp("no-such-prog-tg", argv));
    TRY("execvp-empty", execvp("", argv));
    TRY("execvp-noexec", execvp("/dev/null", argv));
    TRY("execvpe-missing", execvpe("no-such-prog-tg", argv, envp));
    TRY("execl-missing", execl("/nonexistent/prog", "x", (char *)NULL));
    TRY("execlp-missing", execlp("no-such-prog-tg", "x", (char *)NULL));
    TRY("execle-missing", execle("/nonexistent/prog", "x", (char *)NULL, envp));
    /* More arguments than the shim's stack array for execl* holds. */
#define X10 "x", "x", "x", "x", "x", "x", "x", "x", "x", "x"
#define X80 X10, X10, X10, X10, X10, X10, X10, X10
    TRY("execl-many-missing", execl("/nonexistent/prog", X80, (char *)NULL));
    TRY("execlp-many-missing", execlp("no-such-prog-tg", X80, (char *)NULL));
    TRY("execle-many-noexec", execle("/dev/null", X80, (char *)NULL, envp));
    TRY("fexecve-badfd", fexecve(-1, argv, envp));
    TRY("fexecve-noexec", fexecve(fd, argv, envp));
    TRY("execveat-missing", execveat(AT_FDCWD, "/nonexistent/prog", argv, envp, 0));
    TRY("execveat-badflags", execveat(AT_FDCWD, "/bin/true", argv, envp, 0x7fff0000));
    pid_t pid;
    TRY("posix_spawn-missing", posix_spawn(&pid, "/nonexistent/prog", NULL, NULL, argv, envp));
    TRY("posix_spawnp-missing", posix_spawnp(&pid, "no-such-prog-tg", NULL, NULL, argv, envp));
    TRY("posix_spawn-e2big", posix_spawn(&pid, "/bin/true", NULL, NULL, bigv, envp));
}

struct job {
    const char *via, *file;
    char **envp;
    int status;
};

static void *on_thread(void *p) {
    struct job *j = p;
    j->status = run(j->via, j->file, j->envp);
    return NULL;
}

static void *idle(void *p) {
    pause();
    return p;
}

int main(int argc, char **argv) {
    if (argc == 2 && !strcmp(argv[1], "errno")) {
        errnos();
        return 0;
    }
    if (argc < 4) {
        printf("usage: execs ENV VIA FILE [CONFIG]\n");
        return 2;
    }
    const char *env = argv[1], *via = argv[2], *file = argv[3];
    mutate(env, argc > 4 ? argv[4] : NULL);
    int keep = !strcmp(env, "keep") || !strcmp(env, "setconfig") || !strcmp(env, "bigenv") ||
               !strcmp(env, "setaudit") || !strcmp(env, "setdecoy") || !strcmp(env, "setpreload");
    const char *where = argc > 5 ? argv[5] : "main";
    struct job job = {via, file, keep ? environ : empty_env, 0};
    fflush(stdout);
    if (!strcmp(where, "forked")) {
        pthread_t t; /* a threaded parent */
        pthread_create(&t, NULL, idle, NULL);
        pid_t pid = fork();
        if (pid == 0) {
            forbid = 1;
            _exit(run(via, file, job.envp));
        }
        return pid < 0 ? 92 : relay_wait(pid);
    }
    if (!strcmp(where, "smallstack")) {
        pthread_attr_t a;
        pthread_t t;
        pthread_attr_init(&a);
        pthread_attr_setstacksize(&a, PTHREAD_STACK_MIN);
        if (pthread_create(&t, &a, on_thread, &job))
            return 92;
        pthread_join(t, NULL);
        fflush(stdout);
        return job.status;
    }
    int r = run(via, file, job.envp);
    fflush(stdout);
    return r;
}
