/* listing: glibc's directory walkers (glob, scandir, scandirat, nftw, ftw), each printing
 * what it saw in a fixed text form, so that a run under the shim can be compared with a
 * bare run line by line (adversary_listing.rs).
 *
 *   listing glob FLAGS PATTERN [PATTERN...]   FLAGS: comma list of BRACE NOCHECK MARK
 *       ONLYDIR ERR NOSORT PERIOD NOESCAPE DOOFFS, or "-"; every pattern after the first
 *       adds GLOB_APPEND. Prints each call's return, errfunc calls, then gl_pathc, the
 *       caller-visible gl_flags and the paths.
 *   listing glob-alt PATTERN       glob with the caller's own GLOB_ALTDIRFUNC functions
 *   listing scandir DIR [nodot] [alpha]
 *   listing scandirat DIRFD_PATH NAME [nodot] [alpha]
 *   listing nftw PATH FLAGS NOPENFD  FLAGS: comma list of PHYS MOUNT CHDIR DEPTH
 *       ACTIONRETVAL, or "-". With ACTIONRETVAL a directory named skip* answers
 *       FTW_SKIP_SUBTREE, a file named sib* FTW_SKIP_SIBLINGS.
 *   listing ftw PATH NOPENFD
 * LISTING_REPEAT=N repeats the command (for races; see repeat()). The exit status is 0;
 * errors are printed, never written to fd 2.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <glob.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static const char *ename(int e) {
    const char *n = strerrorname_np(e);
    return n ? n : "E?";
}

static int has(const char *list, const char *word) {
    size_t n = strlen(word);
    for (const char *p = list; (p = strstr(p, word)); p += n)
        if ((p == list || p[-1] == ',') && (p[n] == 0 || p[n] == ','))
            return 1;
    return 0;
}

static int errfunc(const char *path, int e) {
    printf("errfunc %s %s\n", path, ename(e));
    return 0;
}

static int alt_calls;
static void *alt_opendir(const char *p) { alt_calls++; return opendir(p); }
static void alt_closedir(void *d) { closedir(d); }
static struct dirent *alt_readdir(void *d) { return readdir(d); }

static int do_glob(int argc, char **argv) {
    const char *fl = argv[2];
    int flags = 0;
    if (has(fl, "BRACE")) flags |= GLOB_BRACE;
    if (has(fl, "NOCHECK")) flags |= GLOB_NOCHECK;
    if (has(fl, "MARK")) flags |= GLOB_MARK;
    if (has(fl, "ONLYDIR")) flags |= GLOB_ONLYDIR;
    if (has(fl, "ERR")) flags |= GLOB_ERR;
    if (has(fl, "NOSORT")) flags |= GLOB_NOSORT;
    if (has(fl, "PERIOD")) flags |= GLOB_PERIOD;
    if (has(fl, "NOESCAPE")) flags |= GLOB_NOESCAPE;
    glob_t g;
    memset(&g, 0, sizeof g);
    if (has(fl, "DOOFFS")) { flags |= GLOB_DOOFFS; g.gl_offs = 2; }
    for (int i = 3; i < argc; i++) {
        int r = glob(argv[i], flags | (i > 3 ? GLOB_APPEND : 0), errfunc, &g);
        printf("glob %s -> %d\n", argv[i], r);
    }
    printf("pathc %zu flags %#x\n", g.gl_pathc, g.gl_flags);
    for (size_t i = 0; i < g.gl_offs + g.gl_pathc; i++)
        printf("  %s\n", g.gl_pathv[i] ? g.gl_pathv[i] : "(null)");
    globfree(&g);
    return 0;
}

static int do_glob_alt(char **argv) {
    glob_t g;
    memset(&g, 0, sizeof g);
    g.gl_opendir = alt_opendir;
    g.gl_closedir = alt_closedir;
    g.gl_readdir = alt_readdir;
    g.gl_lstat = lstat;
    g.gl_stat = stat;
    int r = glob(argv[2], GLOB_ALTDIRFUNC, errfunc, &g);
    printf("glob %s -> %d; own opendir called %s\n", argv[2], r, alt_calls ? "yes" : "no");
    for (size_t i = 0; i < g.gl_pathc; i++) printf("  %s\n", g.gl_pathv[i]);
    globfree(&g);
    return 0;
}

static int nodot(const struct dirent *d) { return d->d_name[0] != '.'; }

static int print_scandir(int n, struct dirent **list) {
    if (n < 0) { printf("scandir -> -1 %s\n", ename(errno)); return 0; }
    printf("scandir -> %d\n", n);
    for (int i = 0; i < n; i++) {
        printf("  %s type %d\n", list[i]->d_name, list[i]->d_type);
        free(list[i]);
    }
    free(list);
    return 0;
}

static int do_scandir(int argc, char **argv, int at) {
    int first = at ? 4 : 3;
    int (*filter)(const struct dirent *) = 0;
    int (*cmp)(const struct dirent **, const struct dirent **) = 0;
    for (int i = first; i < argc; i++) {
        if (!strcmp(argv[i], "nodot")) filter = nodot;
        if (!strcmp(argv[i], "alpha")) cmp = alphasort;
    }
    struct dirent **list = 0;
    errno = 0;
    int n;
    if (!at) {
        n = scandir(argv[2], &list, filter, cmp);
    } else {
        int dfd = open(argv[2], O_RDONLY | O_DIRECTORY);
        if (dfd < 0) { printf("open %s %s\n", argv[2], ename(errno)); return 0; }
        n = scandirat(dfd, argv[3], &list, filter, cmp);
    }
    return print_scandir(n, list);
}

static int walk_flags;
static const char *tname(int t) {
    switch (t) {
    case FTW_F: return "F";
    case FTW_D: return "D";
    case FTW_DNR: return "DNR";
    case FTW_NS: return "NS";
    case FTW_SL: return "SL";
    case FTW_DP: return "DP";
    case FTW_SLN: return "SLN";
    }
    return "?";
}

static int on_nftw(const char *p, const struct stat *st, int type, struct FTW *f) {
    printf("%s level %d base %d %s", tname(type), f->level, f->base, p);
    if (type != FTW_NS) printf(" mode %o", (unsigned)(st->st_mode & S_IFMT));
    if (walk_flags & FTW_CHDIR) {
        char cwd[4096];
        printf(" cwd %s", getcwd(cwd, sizeof cwd) ? cwd : ename(errno));
    }
    printf("\n");
    if (walk_flags & FTW_ACTIONRETVAL) {
        const char *b = p + f->base;
        if (type == FTW_D && !strncmp(b, "skip", 4)) return FTW_SKIP_SUBTREE;
        if (type == FTW_F && !strncmp(b, "sib", 3)) return FTW_SKIP_SIBLINGS;
    }
    return 0;
}

static int on_ftw(const char *p, const struct stat *st, int type) {
    printf("%s %s", tname(type), p);
    if (type != FTW_NS) printf(" mode %o", (unsigned)(st->st_mode & S_IFMT));
    printf("\n");
    return 0;
}

static int run(int argc, char **argv) {
    walk_flags = 0;
    alt_calls = 0;
    const char *e = argv[1];
    if (!strcmp(e, "glob") && argc > 3) return do_glob(argc, argv);
    if (!strcmp(e, "glob-alt")) return do_glob_alt(argv);
    if (!strcmp(e, "scandir")) return do_scandir(argc, argv, 0);
    if (!strcmp(e, "scandirat") && argc > 3) return do_scandir(argc, argv, 1);
    if (!strcmp(e, "nftw") && argc > 4) {
        const char *fl = argv[3];
        if (has(fl, "PHYS")) walk_flags |= FTW_PHYS;
        if (has(fl, "MOUNT")) walk_flags |= FTW_MOUNT;
        if (has(fl, "CHDIR")) walk_flags |= FTW_CHDIR;
        if (has(fl, "DEPTH")) walk_flags |= FTW_DEPTH;
        if (has(fl, "ACTIONRETVAL")) walk_flags |= FTW_ACTIONRETVAL;
        if (has(fl, "BOGUS")) walk_flags |= 0x4000;
        errno = 0;
        int r = nftw(argv[2], on_nftw, atoi(argv[4]), walk_flags);
        printf("nftw -> %d %s\n", r, r < 0 ? ename(errno) : "");
        char cwd[4096];
        printf("cwd after %s\n", getcwd(cwd, sizeof cwd) ? cwd : ename(errno));
        return 0;
    }
    if (!strcmp(e, "ftw") && argc > 3) {
        errno = 0;
        int r = ftw(argv[2], on_ftw, atoi(argv[3]));
        printf("ftw -> %d %s\n", r, r < 0 ? ename(errno) : "");
        return 0;
    }
    printf("usage\n");
    return 2;
}

/* LISTING_REPEAT=N: run the command up to N times (and at most 20 s), until its output has
 * contained both LISTING_SEEN1 and LISTING_SEEN2 at least once; print each distinct output
 * line once, then the number of runs. */
static int repeat(int argc, char **argv, int n) {
    const char *want1 = getenv("LISTING_SEEN1"), *want2 = getenv("LISTING_SEEN2");
    int seen1 = !want1, seen2 = !want2, i, r = 0;
    static char *distinct[512];
    int ndistinct = 0;
    struct timespec t0, t;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    FILE *out = stdout;
    for (i = 0; i < n && !(seen1 && seen2) && r == 0; i++) {
        clock_gettime(CLOCK_MONOTONIC, &t);
        if (t.tv_sec - t0.tv_sec > 20) break;
        char *buf = 0;
        size_t len = 0;
        FILE *m = open_memstream(&buf, &len);
        if (!m) { fprintf(out, "open_memstream %s\n", ename(errno)); return 2; }
        stdout = m;
        r = run(argc, argv);
        fclose(m);
        stdout = out;
        if (want1 && strstr(buf, want1)) seen1 = 1;
        if (want2 && strstr(buf, want2)) seen2 = 1;
        for (char *line = strtok(buf, "\n"); line; line = strtok(0, "\n")) {
            int k;
            for (k = 0; k < ndistinct && strcmp(distinct[k], line); k++) {}
            if (k < ndistinct) continue;
            printf("%s\n", line);
            if (ndistinct < 512) distinct[ndistinct++] = strdup(line);
        }
        free(buf);
    }
    printf("runs %d\n", i);
    return r;
}

int main(int argc, char **argv) {
    setvbuf(stdout, 0, _IOLBF, 0);
    if (argc < 3) { printf("usage\n"); return 2; }
    const char *rep = getenv("LISTING_REPEAT");
    return rep ? repeat(argc, argv, atoi(rep)) : run(argc, argv);
}
