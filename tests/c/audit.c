/* An LD_AUDIT library that rebinds open/open64/openat/openat64 to raw system calls: what a
 * tenant could hand a guarded process's children to take the guard's hooks away. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <link.h>
#include <stdarg.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

static int raw_open(const char *p, int flags, ...) {
    va_list ap;
    va_start(ap, flags);
    int mode = va_arg(ap, int);
    va_end(ap);
    return (int)syscall(SYS_openat, AT_FDCWD, p, flags, mode);
}
static int raw_openat(int d, const char *p, int flags, ...) {
    va_list ap;
    va_start(ap, flags);
    int mode = va_arg(ap, int);
    va_end(ap);
    return (int)syscall(SYS_openat, d, p, flags, mode);
}
unsigned int la_version(unsigned int v) { return v; }
unsigned int la_objopen(struct link_map *m, Lmid_t l, uintptr_t *c) {
    (void)m; (void)l; (void)c;
    return LA_FLG_BINDTO | LA_FLG_BINDFROM;
}
uintptr_t la_symbind64(Elf64_Sym *sym, unsigned int ndx, uintptr_t *refcook, uintptr_t *defcook,
                       unsigned int *flags, const char *name) {
    (void)ndx; (void)refcook; (void)defcook; (void)flags;
    if (!strcmp(name, "open") || !strcmp(name, "open64")) return (uintptr_t)raw_open;
    if (!strcmp(name, "openat") || !strcmp(name, "openat64")) return (uintptr_t)raw_openat;
    return sym->st_value;
}
