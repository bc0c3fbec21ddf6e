/* clone: a C variadic function, which stable Rust cannot define. Its optional arguments are
 * read only when the flags say they were passed (as the man page lays them out: parent_tid,
 * then tls, then child_tid), the shim is told what the child will share (src/cwd.rs: a child
 * that shares the working directory but not our memory, or the reverse, ends the
 * remembering of it), then glibc's own clone runs with the same arguments. The exported name
 * is a Rust trampoline that jumps here. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <sched.h>
#include <stdarg.h>
#include <stddef.h>
#include <sys/types.h>

void toctou_guard_cwd_clone_flags(int flags);

typedef int (*clone_fn)(int (*)(void *), void *, int, void *, ...);
static clone_fn real_clone;

int toctou_guard_clone(int (*fn)(void *), void *stack, int flags, void *arg, ...) {
    pid_t *parent_tid = NULL, *child_tid = NULL;
    void *tls = NULL;
    va_list ap;
    va_start(ap, arg);
    if (flags & (CLONE_PARENT_SETTID | CLONE_PIDFD | CLONE_SETTLS | CLONE_CHILD_SETTID |
                 CLONE_CHILD_CLEARTID))
        parent_tid = va_arg(ap, pid_t *);
    if (flags & (CLONE_SETTLS | CLONE_CHILD_SETTID | CLONE_CHILD_CLEARTID))
        tls = va_arg(ap, void *);
    if (flags & (CLONE_CHILD_SETTID | CLONE_CHILD_CLEARTID))
        child_tid = va_arg(ap, pid_t *);
    va_end(ap);
    toctou_guard_cwd_clone_flags(flags);
    clone_fn f = __atomic_load_n(&real_clone, __ATOMIC_ACQUIRE);
    if (!f) {
        f = (clone_fn)dlsym(RTLD_NEXT, "clone");
        __atomic_store_n(&real_clone, f, __ATOMIC_RELEASE);
    }
    if (!f) {
        errno = ENOSYS;
        return -1;
    }
    return f(fn, stack, flags, arg, parent_tid, tls, child_tid);
}
