/* execl, execlp, execle: C variadic functions, which stable Rust cannot define. Each collects
 * its arguments into an array, exactly as glibc's own do (the same E2BIG past INT_MAX
 * arguments), then hands it to the shim's Rust execve / execvpe (src/exec.rs), which keeps
 * the child guarded. The array is a small one on the stack or, for many arguments, a
 * mapping of its own (a worker may run on a small stack); never malloc (exec may follow
 * fork() in a threaded parent, where malloc's lock can be held). The exported names are Rust trampolines that jump here (a
 * cdylib exports only Rust's own symbols). */
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stddef.h>
#include <sys/mman.h>

extern char **environ;
int toctou_guard_execve(const char *path, char *const argv[], char *const envp[]);
int toctou_guard_execvpe(const char *file, char *const argv[], char *const envp[]);

enum kind { EXECL, EXECLP, EXECLE };

/* Count the arguments after `arg` up to the NULL, as glibc does; -1 (E2BIG) past INT_MAX. */
static ptrdiff_t count(va_list ap) {
    ptrdiff_t argc;
    for (argc = 1; va_arg(ap, const char *); argc++)
        if (argc == INT_MAX) {
            errno = E2BIG;
            return -1;
        }
    return argc;
}

/* Up to this many arguments the array is on the stack (512 bytes): no system call, and
 * nothing left mapped in the parent by a vfork() child whose exec succeeds. */
#define STACK_ARGS 64

static int run(enum kind kind, const char *path, const char *arg, ptrdiff_t argc, va_list ap) {
    char *small[STACK_ARGS];
    size_t len = (size_t)(argc + 1) * sizeof(char *);
    char **argv = small;
    if (argc + 1 > STACK_ARGS) {
        argv = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (argv == MAP_FAILED)
            return -1; /* errno ENOMEM from mmap */
    }
    argv[0] = (char *)arg;
    for (ptrdiff_t i = 1; i <= argc; i++)
        argv[i] = va_arg(ap, char *);
    char **envp = kind == EXECLE ? va_arg(ap, char **) : environ;
    int r = kind == EXECLP ? toctou_guard_execvpe(path, argv, envp)
                           : toctou_guard_execve(path, argv, envp);
    if (argv != small) {
        int saved = errno; /* only reached on failure */
        munmap(argv, len);
        errno = saved;
    }
    return r;
}

#define VARIADIC_EXEC(name, kind)                                                           \
    int name(const char *path, const char *arg, ...) {                                      \
        va_list ap;                                                                         \
        va_start(ap, arg);                                                                  \
        ptrdiff_t argc = count(ap);                                                         \
        va_end(ap);                                                                         \
        if (argc < 0)                                                                       \
            return -1;                                                                      \
        va_start(ap, arg);                                                                  \
        int r = run(kind, path, arg, argc, ap);                                             \
        va_end(ap);                                                                         \
        return r;                                                                           \
    }

VARIADIC_EXEC(toctou_guard_execl, EXECL)
VARIADIC_EXEC(toctou_guard_execlp, EXECLP)
VARIADIC_EXEC(toctou_guard_execle, EXECLE)
