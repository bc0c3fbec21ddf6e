/* Counts malloc-family calls made while the shim guards opens.
 * This program defines malloc & co., so every allocation in the process (the shim's Rust
 * allocator included) goes through these counters.
 * usage: noalloc ALLOWED DENIED N       prints "mallocs=<calls during the loop>" */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

extern void *__libc_malloc(size_t);
extern void *__libc_calloc(size_t, size_t);
extern void *__libc_realloc(void *, size_t);
extern void *__libc_memalign(size_t, size_t);
extern void __libc_free(void *);

static volatile long calls;
void *malloc(size_t n) { calls++; return __libc_malloc(n); }
void *calloc(size_t a, size_t b) { calls++; return __libc_calloc(a, b); }
void *realloc(void *p, size_t n) { calls++; return __libc_realloc(p, n); }
void *memalign(size_t a, size_t n) { calls++; return __libc_memalign(a, n); }
int posix_memalign(void **p, size_t a, size_t n) { calls++; *p = __libc_memalign(a, n); return *p ? 0 : ENOMEM; }
void *aligned_alloc(size_t a, size_t n) { calls++; return __libc_memalign(a, n); }
void free(void *p) { __libc_free(p); }

int main(int argc, char **argv) {
    if (argc != 4) return 2;
    int n = atoi(argv[3]);
    /* Warm up: the first hooked call loads the configuration (which may allocate). */
    int fd = open(argv[1], O_RDONLY);
    if (fd < 0) return 3;
    close(fd);
    long before = calls;
    int ok = 0, denied = 0;
    for (int i = 0; i < n; i++) {
        fd = open(argv[1], O_RDONLY);
        if (fd >= 0) { ok++; close(fd); }
        fd = open(argv[2], O_RDONLY);
        if (fd < 0 && errno == EACCES) denied++; else if (fd >= 0) close(fd);
    }
    long during = calls - before;
    printf("mallocs=%ld ok=%d denied=%d\n", during, ok, denied);
    return 0;
}
