/* A library whose constructor opens a guarded file before main: preloaded beside the shim,
 * it runs before (or after) the shim's own constructor; either way the open must be judged.
 * The result goes to the file named by $EARLY_OUT as "OK" or "ERR <errno>". */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

__attribute__((constructor)) static void early(void) {
    const char *path = getenv("EARLY_PATH"), *out = getenv("EARLY_OUT");
    if (!path || !out) return;
    int fd = open(path, O_RDONLY);
    char msg[64];
    int n = fd >= 0 ? snprintf(msg, sizeof msg, "OK\n") : snprintf(msg, sizeof msg, "ERR %s\n", strerrorname_np(errno));
    int o = open(out, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (o >= 0) { if (write(o, msg, n) != n) {} close(o); }
}
