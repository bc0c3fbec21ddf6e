/* Differential conformance table for the shim: every hooked entry point (open, open64,
 * openat, openat64, __open_2, __open64_2, __openat_2, __openat64_2, creat, creat64, fopen,
 * fopen64, freopen, freopen64, opendir) with odd but legal arguments, on three kinds of
 * stack. tests/tests/conformance.rs runs it bare and under LD_PRELOAD and compares lines.
 *
 * usage: conform stacks                           the stacks this machine offers, one line
 *        conform main BASE STACK [START]          the main table on a scratch directory
 *        conform victim ALICE BOB STACK [START]   the victim table: BOB's files from ALICE's
 *                                                 docroot (symlink, hard link, dirfd)
 * STACK: main | thread | sigalt | sigalt8192.  START skips the first START cases (the test
 * resumes after a case that crashed the process).
 *
 * Output: "# ..." comment lines, and one line per case,
 *     ENTRY:CASE STACK -> OK <what the result is> | ERR <errno name>
 * Each line is written with write(2) in two parts: "ENTRY:CASE STACK -> " before the call,
 * the result after, so a crash inside the call leaves the name of the case that crashed.
 * Nothing here uses stdio for output (the table also runs in a signal handler and on a
 * 16 KiB thread stack): fixed static buffers, raw system calls for the fixture.
 *
 * An fd result is normalised: file type, permission bits, owner (own/other), size, link
 * count, status flags (F_GETFL, decoded), close-on-exec, the first bytes, and the fd
 * number relative to the lowest free one ("fd=low": POSIX says open returns the lowest).
 * After each case the fixture is compared with its snapshot (changed files: "~name", new
 * names: "+name"), restored, and the count of open descriptors checked ("LEAK").
 */
#ifdef _FORTIFY_SOURCE
#undef _FORTIFY_SOURCE
#endif
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <unistd.h>
#include <wchar.h>

int __open_2(const char *, int);
int __open64_2(const char *, int);
int __openat_2(int, const char *, int);
int __openat64_2(int, const char *, int);
int open64(const char *, int, ...);
int openat64(int, const char *, int, ...);
int creat64(const char *, mode_t);
FILE *fopen64(const char *, const char *);
FILE *freopen64(const char *, const char *, FILE *);

/* ------------------------------------------------------------------ output */

static char obuf[16384];
static size_t olen;

static void o_flush(void) {
    size_t off = 0;
    while (off < olen) {
        ssize_t n = write(1, obuf + off, olen - off);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) break;
        off += (size_t)n;
    }
    olen = 0;
}

static void o_mem(const char *s, size_t n) {
    if (n > sizeof obuf - olen) n = sizeof obuf - olen;
    memcpy(obuf + olen, s, n);
    olen += n;
}

static void o_str(const char *s) { o_mem(s, strlen(s)); }

static void o_num(unsigned long v, unsigned base, int width) {
    char t[32];
    int i = 0;
    do {
        t[i++] = "0123456789abcdef"[v % base];
        v /= base;
    } while (v && i < 31);
    while (i < width && i < 31) t[i++] = '0';
    while (i) o_mem(&t[--i], 1);
}

static void o_int(long v) {
    if (v < 0) {
        o_str("-");
        o_num((unsigned long)-v, 10, 1);
    } else {
        o_num((unsigned long)v, 10, 1);
    }
}

static void o_errno(int e) {
    const char *n = strerrorname_np(e);
    if (n) {
        o_str(n);
    } else {
        o_str("E");
        o_int(e);
    }
}

/* Bytes, quoted, non-printables as \xNN. */
static void o_bytes(const char *b, long n) {
    o_str("\"");
    for (long i = 0; i < n; i++) {
        unsigned char c = (unsigned char)b[i];
        if (c >= 0x20 && c < 0x7f && c != '"' && c != '\\') {
            o_mem((const char *)&c, 1);
        } else {
            o_str("\\x");
            o_num(c, 16, 2);
        }
    }
    o_str("\"");
}

static void o_line(void) {
    o_str("\n");
    o_flush();
}

static void comment(const char *a, const char *b) {
    o_str("# ");
    o_str(a);
    if (b) o_str(b);
    o_line();
}

/* ------------------------------------------------------------- raw syscalls */

static int r_openat(int dfd, const char *p, int flags, mode_t mode) {
    return (int)syscall(SYS_openat, dfd, p, flags, mode);
}

static void r_write_all(int fd, const char *b, size_t n) {
    while (n) {
        ssize_t w = write(fd, b, n);
        if (w <= 0) return;
        b += w;
        n -= (size_t)w;
    }
}

/* ------------------------------------------------------------------ globals */

static int g_victim;           /* victim table instead of the main one */
static const char *g_base;     /* main: the scratch dir; victim: alice's docroot */
static const char *g_bob;      /* victim: bob's docroot */
static int g_basefd = -1;      /* O_PATH on g_base, kept open for the whole run */
static const char *g_stack = "main";
static long g_start, g_index;  /* cases before g_start are skipped (resume) */
static int g_in_handler;       /* fopen/freopen/opendir are skipped in a handler */
static long g_emitted;

/* ------------------------------------------------------------ generated paths */

#define LONGBUF 8192
#define NAME200 200

struct genpath {
    const char *key;
    char buf[LONGBUF];
};

static struct genpath g_gen[24];
static int g_ngen;

static char *gen_slot(const char *key) {
    struct genpath *g = &g_gen[g_ngen++];
    g->key = key;
    g->buf[0] = 0;
    return g->buf;
}

static const char *gen_lookup(const char *key) {
    for (int i = 0; i < g_ngen; i++)
        if (!strcmp(g_gen[i].key, key)) return g_gen[i].buf;
    return NULL;
}

static void cat(char *buf, const char *s) {
    size_t l = strlen(buf), n = strlen(s);
    if (l + n >= LONGBUF) n = LONGBUF - 1 - l;
    memcpy(buf + l, s, n);
    buf[l + n] = 0;
}

/* PREFIX + UNIT repeated + "./" fill (+ one extra "/") + TARGET, exactly T bytes long. */
static void gen_dots(char *buf, const char *prefix, const char *unit, const char *target, size_t t) {
    buf[0] = 0;
    cat(buf, prefix);
    size_t ul = strlen(unit);
    size_t remain = t - strlen(prefix) - strlen(target);
    size_t nunit = ul ? remain / ul : 0;
    if (!strcmp(unit, "./")) nunit = 0;
    for (size_t i = 0; i < nunit; i++) cat(buf, unit);
    remain -= nunit * ul;
    for (size_t i = 0; i < remain / 2; i++) cat(buf, "./");
    if (remain % 2) cat(buf, "/");
    cat(buf, target);
}

/* PREFIX "L/" (A200 "/")*k + B*r, exactly T bytes, a file made through dirfds (so the 4096
 * variants exist too; only their length is wrong). */
static void gen_clean(char *buf, const char *prefix, size_t t) {
    static char a200[NAME200 + 1], bname[256];
    memset(a200, 'a', NAME200);
    a200[NAME200] = 0;
    size_t plen = strlen(prefix) + 2; /* "L/" */
    size_t k = (t - plen - 50) / (NAME200 + 1);
    size_t r = t - plen - k * (NAME200 + 1);
    buf[0] = 0;
    cat(buf, prefix);
    cat(buf, "L/");
    int dfd = r_openat(g_basefd, "L", O_PATH | O_DIRECTORY, 0);
    for (size_t i = 0; i < k; i++) {
        cat(buf, a200);
        cat(buf, "/");
        mkdirat(dfd, a200, 0755);
        int next = r_openat(dfd, a200, O_PATH | O_DIRECTORY, 0);
        close(dfd);
        dfd = next;
    }
    memset(bname, 'b', r);
    bname[r] = 0;
    cat(buf, bname);
    int fd = r_openat(dfd, bname, O_CREAT | O_WRONLY | O_TRUNC, 0644);
    if (fd >= 0) {
        r_write_all(fd, "long\n", 5);
        close(fd);
    }
    close(dfd);
}

static void gen_paths(void) {
    static char absprefix[PATH_MAX];
    absprefix[0] = 0;
    strcat(absprefix, g_base);
    strcat(absprefix, "/");
    mkdirat(g_basefd, "L", 0755);
    gen_clean(gen_slot("rel-clean-4095"), "", 4095);
    gen_clean(gen_slot("rel-clean-4096"), "", 4096);
    gen_clean(gen_slot("abs-clean-4095"), absprefix, 4095);
    gen_clean(gen_slot("abs-clean-4096"), absprefix, 4096);
    gen_dots(gen_slot("rel-dot-4095"), "", "./", "f", 4095);
    gen_dots(gen_slot("rel-dot-4096"), "", "./", "f", 4096);
    gen_dots(gen_slot("rel-dotdot-4095"), "", "d/../", "f", 4095);
    gen_dots(gen_slot("rel-dotdot-4096"), "", "d/../", "f", 4096);
    gen_dots(gen_slot("abs-dot-4095"), absprefix, "./", "f", 4095);
    gen_dots(gen_slot("abs-dot-4096"), absprefix, "./", "f", 4096);
    gen_dots(gen_slot("abs-dotdot-4095"), absprefix, "d/../", "f", 4095);
    gen_dots(gen_slot("abs-dotdot-4096"), absprefix, "d/../", "f", 4096);
    gen_dots(gen_slot("rel-dot-new-4095"), "", "./", "newlong", 4095);
    gen_dots(gen_slot("abs-dotdot-new-4095"), absprefix, "d/../", "newlong", 4095);
    gen_dots(gen_slot("rel-dot-dir-4095"), "", "./", "d", 4095);
    char *n255 = gen_slot("name-255");
    memset(n255, 'n', 255);
    n255[255] = 0;
    char *n256 = gen_slot("name-256");
    memset(n256, 'n', 256);
    n256[256] = 0;
}

/* '=' prefix: under g_base; '%': under g_bob; '@': a generated path; else as written. */
static char g_pathbuf[LONGBUF];

static const char *resolve(const char *p) {
    if (!p) return NULL;
    if (p[0] == '@') return gen_lookup(p + 1);
    if (p[0] != '=' && p[0] != '%') return p;
    g_pathbuf[0] = 0;
    cat(g_pathbuf, p[0] == '=' ? g_base : g_bob);
    cat(g_pathbuf, p + 1);
    return g_pathbuf;
}

/* ------------------------------------------------------- fixture and snapshot */

#define MAXNAMES 64
struct dirsnap {
    const char *label; /* how its new names are reported: "", "d/", "bob:" */
    const char *dir;   /* resolved path, kept */
    char names[MAXNAMES][64];
    int n;
};
struct filesnap {
    const char *label;
    const char *path;
    char data[64];
    long len;
    mode_t mode;
};

static struct dirsnap g_dirs[4];
static int g_ndirs;
static struct filesnap g_files[4];
static int g_nfiles;
static char g_pathstore[8][PATH_MAX];
static int g_npathstore;

static const char *keep(const char *p) {
    char *s = g_pathstore[g_npathstore++];
    s[0] = 0;
    strncat(s, resolve(p), PATH_MAX - 1);
    return s;
}

static char g_dents[8192];

/* Calls f(name, type) for each entry of dir but "." and "..". */
static void each_entry(const char *dir, void (*f)(const char *, unsigned char, void *), void *arg) {
    int fd = r_openat(AT_FDCWD, dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC, 0);
    if (fd < 0) return;
    for (;;) {
        long n = syscall(SYS_getdents64, fd, g_dents, sizeof g_dents);
        if (n <= 0) break;
        for (long off = 0; off < n;) {
            struct dirent64 *d = (struct dirent64 *)(g_dents + off);
            off += d->d_reclen;
            if (!strcmp(d->d_name, ".") || !strcmp(d->d_name, "..")) continue;
            f(d->d_name, d->d_type, arg);
        }
    }
    close(fd);
}

static void snap_add(const char *name, unsigned char type, void *arg) {
    (void)type;
    struct dirsnap *s = arg;
    if (s->n < MAXNAMES && strlen(name) < 64) {
        strcpy(s->names[s->n++], name);
    }
}

static void snap_dir(const char *label, const char *p) {
    struct dirsnap *s = &g_dirs[g_ndirs++];
    s->label = label;
    s->dir = keep(p);
    s->n = 0;
    each_entry(s->dir, snap_add, s);
}

static long read_prefix(const char *path, char *buf, long max) {
    int fd = r_openat(AT_FDCWD, path, O_RDONLY | O_NONBLOCK | O_CLOEXEC, 0);
    if (fd < 0) return -errno;
    long n = pread(fd, buf, (size_t)max, 0);
    close(fd);
    return n;
}

static void snap_file(const char *label, const char *p) {
    struct filesnap *s = &g_files[g_nfiles++];
    s->label = label;
    s->path = keep(p);
    struct stat st;
    s->mode = stat(s->path, &st) == 0 ? st.st_mode & 07777 : 0;
    s->len = read_prefix(s->path, s->data, sizeof s->data);
}

static char g_full[PATH_MAX * 2];

static void extra_entry(const char *name, unsigned char type, void *arg) {
    struct dirsnap *s = arg;
    for (int i = 0; i < s->n; i++)
        if (!strcmp(s->names[i], name)) return;
    o_str(" +");
    o_str(s->label);
    o_str(name);
    g_full[0] = 0;
    strcat(g_full, s->dir);
    strcat(g_full, "/");
    strcat(g_full, name);
    struct stat st;
    if (lstat(g_full, &st) == 0) {
        o_str(S_ISREG(st.st_mode) ? "(REG " : S_ISDIR(st.st_mode) ? "(DIR " : "(OTHER ");
        o_num(st.st_mode & 07777, 8, 4);
        if (S_ISREG(st.st_mode)) {
            o_str(" size=");
            o_int((long)st.st_size);
        }
        o_str(")");
    }
    (void)type;
    if (unlink(g_full) != 0) rmdir(g_full);
}

/* Report and undo what the case changed in the fixture. */
static void check_fixture(void) {
    for (int i = 0; i < g_ndirs; i++) each_entry(g_dirs[i].dir, extra_entry, &g_dirs[i]);
    for (int i = 0; i < g_nfiles; i++) {
        struct filesnap *s = &g_files[i];
        static char now[64];
        long n = read_prefix(s->path, now, sizeof now);
        struct stat st;
        mode_t mode = stat(s->path, &st) == 0 ? st.st_mode & 07777 : 0;
        if (n == s->len && (n <= 0 || !memcmp(now, s->data, (size_t)n)) && mode == s->mode) continue;
        o_str(" ~");
        o_str(s->label);
        o_str("(");
        if (n < 0) {
            o_errno((int)-n);
        } else {
            o_bytes(now, n);
        }
        o_str(")");
        chmod(s->path, 0600);
        int fd = r_openat(AT_FDCWD, s->path, O_WRONLY | O_TRUNC | O_CLOEXEC, 0);
        if (fd >= 0) {
            if (s->len > 0) r_write_all(fd, s->data, (size_t)s->len);
            close(fd);
        }
        chmod(s->path, s->mode);
    }
}

static int count_fds(void) {
    int n = 0;
    for (int i = 0; i < 256; i++)
        if (fcntl(i, F_GETFD) != -1) n++;
    return n;
}

static int lowest_free(void) {
    int t = fcntl(g_basefd, F_DUPFD, 0);
    if (t >= 0) close(t);
    return t;
}

static void make_file(const char *name, const char *data, mode_t mode) {
    int fd = r_openat(g_basefd, name, O_CREAT | O_WRONLY | O_TRUNC | O_CLOEXEC, 0644);
    if (fd >= 0) {
        r_write_all(fd, data, strlen(data));
        fchmod(fd, mode);
        close(fd);
    }
}

static void setup_main(void) {
    make_file("f", "hello\n", 0644);
    make_file("ro", "readonly\n", 0444);
    mkdirat(g_basefd, "d", 0755);
    int d = r_openat(g_basefd, "d", O_PATH | O_DIRECTORY, 0);
    int g = r_openat(d, "g", O_CREAT | O_WRONLY | O_TRUNC, 0644);
    if (g >= 0) {
        r_write_all(g, "in-d\n", 5);
        close(g);
    }
    close(d);
    mkfifoat(g_basefd, "fifo", 0644);
    symlinkat("f", g_basefd, "sl");
    symlinkat("d", g_basefd, "sld");
    symlinkat("newtarget", g_basefd, "dang");
    /* `null` (a character device, 1:3, owned by the tenant) is made by the test as root. */
    int s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_un a = {.sun_family = AF_UNIX};
    strcpy(a.sun_path, "sock"); /* relative to the cwd, g_base */
    if (s >= 0) {
        bind(s, (struct sockaddr *)&a, sizeof a);
        close(s);
    }
    gen_paths();
    snap_dir("", "=");
    snap_dir("d/", "=/d");
    snap_file("f", "=/f");
    snap_file("ro", "=/ro");
    snap_file("d/g", "=/d/g");
}

static void setup_victim(void) {
    snap_dir("", "=");
    snap_dir("uploads/", "=/uploads");
    snap_dir("bob:", "%");
    snap_file("bob:secret.txt", "%/secret.txt");
    snap_file("index.html", "=/index.html");
}

/* ------------------------------------------------------------------ dirfds */

enum dk {
    DK_CWD,     /* all path entries, and the *at ones with AT_FDCWD */
    DK_BASE,    /* *at with O_RDONLY|O_DIRECTORY on the base */
    DK_BASEP,   /* *at with O_PATH|O_DIRECTORY on the base */
    DK_SUB,     /* *at with O_RDONLY|O_DIRECTORY on base/d (victim: bob's docroot) */
    DK_NEG1,    /* -1 */
    DK_NEG2,    /* -2 */
    DK_NEG100,  /* -100 (AT_FDCWD's value, written as a number) */
    DK_INTMIN,  /* INT_MIN */
    DK_BIG,     /* 1000000: beyond any limit */
    DK_CLOSED,  /* a number just closed */
    DK_PIPE,    /* a pipe's read end */
    DK_FILE,    /* a regular file, O_RDONLY */
    DK_FILEP,   /* a regular file, O_PATH */
    DK_SOCK,    /* a socket */
    DK_DEVNULL, /* /dev/null */
};

static int g_aux = -1; /* the other end of a pipe */

static int dirfd_for(int dk) {
    int p[2];
    switch (dk) {
    case DK_CWD: return AT_FDCWD;
    case DK_BASE: return r_openat(g_basefd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC, 0);
    case DK_BASEP: return r_openat(g_basefd, ".", O_PATH | O_DIRECTORY | O_CLOEXEC, 0);
    case DK_SUB:
        return g_victim ? r_openat(AT_FDCWD, g_bob, O_RDONLY | O_DIRECTORY | O_CLOEXEC, 0)
                        : r_openat(g_basefd, "d", O_RDONLY | O_DIRECTORY | O_CLOEXEC, 0);
    case DK_NEG1: return -1;
    case DK_NEG2: return -2;
    case DK_NEG100: return -100;
    case DK_INTMIN: return INT_MIN;
    case DK_BIG: return 1000000;
    case DK_CLOSED: {
        int fd = r_openat(AT_FDCWD, "/", O_PATH | O_CLOEXEC, 0);
        close(fd);
        return fd;
    }
    case DK_PIPE:
        if (pipe2(p, O_CLOEXEC) != 0) return -1;
        g_aux = p[1];
        return p[0];
    case DK_FILE:
        return r_openat(g_basefd, g_victim ? "index.html" : "f", O_RDONLY | O_CLOEXEC, 0);
    case DK_FILEP:
        return r_openat(g_basefd, g_victim ? "index.html" : "f", O_PATH | O_CLOEXEC, 0);
    case DK_SOCK: return socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    case DK_DEVNULL: return r_openat(AT_FDCWD, "/dev/null", O_RDONLY | O_CLOEXEC, 0);
    }
    return -1;
}

static int dirfd_owned(int dk) {
    return dk == DK_BASE || dk == DK_BASEP || dk == DK_SUB || dk == DK_PIPE || dk == DK_FILE ||
           dk == DK_FILEP || dk == DK_SOCK || dk == DK_DEVNULL;
}

static void dirfd_done(int dk, int fd) {
    if (dirfd_owned(dk) && fd >= 0) close(fd);
    if (g_aux >= 0) close(g_aux);
    g_aux = -1;
}

/* ------------------------------------------------------------ fd reporting */

static const struct {
    int bit;
    const char *name;
} FLNAMES[] = {
    {O_APPEND, "append"},     {O_NONBLOCK, "nonblock"}, {O_DSYNC, "dsync"},
    {O_DIRECT, "direct"},     {O_DIRECTORY, "directory"}, {O_NOFOLLOW, "nofollow"},
    {O_NOATIME, "noatime"},   {O_CLOEXEC, "o_cloexec"}, {O_SYNC & ~O_DSYNC, "sync"},
    {O_PATH, "path"},         {O_TMPFILE & ~O_DIRECTORY, "tmpfile"}, {O_EXCL, "excl"},
    {O_CREAT, "creat"},       {O_TRUNC, "trunc"},       {O_NOCTTY, "noctty"},
    {0100000, "largefile"},
};

static void o_flags(int fl) {
    int acc = fl & O_ACCMODE;
    o_str(acc == O_RDONLY ? "r" : acc == O_WRONLY ? "w" : acc == O_RDWR ? "rw" : "acc3");
    fl &= ~O_ACCMODE;
    for (size_t i = 0; i < sizeof FLNAMES / sizeof FLNAMES[0]; i++) {
        if (fl & FLNAMES[i].bit) {
            o_str(",");
            o_str(FLNAMES[i].name);
            fl &= ~FLNAMES[i].bit;
        }
    }
    if (fl) {
        o_str(",+0x");
        o_num((unsigned)fl, 16, 1);
    }
}

static const char *type_name(mode_t m) {
    return S_ISREG(m) ? "REG" : S_ISDIR(m) ? "DIR" : S_ISCHR(m) ? "CHR" : S_ISBLK(m) ? "BLK"
         : S_ISFIFO(m) ? "FIFO" : S_ISSOCK(m) ? "SOCK" : S_ISLNK(m) ? "LNK" : "?";
}

static char g_data[64];

/* What an open descriptor is, comparably; `low` was the lowest free fd before the call. */
static void describe_fd(int fd, int low) {
    struct stat st;
    if (fstat(fd, &st) != 0) {
        o_str("fstat=");
        o_errno(errno);
        return;
    }
    o_str(type_name(st.st_mode));
    o_str(" ");
    o_num(st.st_mode & 07777, 8, 4);
    o_str(st.st_uid == geteuid() ? " own" : " other");
    if (S_ISREG(st.st_mode)) {
        o_str(" size=");
        o_int((long)st.st_size);
        o_str(" n=");
        o_int((long)st.st_nlink);
    }
    int fl = fcntl(fd, F_GETFL);
    o_str(" fl=");
    o_flags(fl);
    if (fcntl(fd, F_GETFD) & FD_CLOEXEC) o_str(" cloexec");
    o_str(" fd=low");
    if (fd != low) {
        o_str(fd > low ? "+" : "");
        o_int(fd - low);
    }
    if (S_ISREG(st.st_mode)) {
        long n = pread(fd, g_data, 24, 0);
        if (n < 0) {
            o_str(" read=");
            o_errno(errno);
        } else {
            o_str(" data=");
            o_bytes(g_data, n);
        }
    } else if (S_ISDIR(st.st_mode)) {
        long ents = 0, n;
        while ((n = syscall(SYS_getdents64, fd, g_dents, sizeof g_dents)) > 0) {
            for (long off = 0; off < n; ents++) off += ((struct dirent64 *)(g_dents + off))->d_reclen;
        }
        if (n < 0) {
            o_str(" list=");
            o_errno(errno);
        } else {
            o_str(" ents=");
            o_int(ents);
        }
    } else if (S_ISLNK(st.st_mode)) {
        long n = readlinkat(fd, "", g_data, sizeof g_data);
        o_str(" ->");
        if (n < 0) {
            o_errno(errno);
        } else {
            o_bytes(g_data, n);
        }
    }
}

/* ------------------------------------------------------------ the cases */

enum entry {
    E_OPEN, E_OPEN64, E_OPEN_2, E_OPEN64_2, E_OPENAT, E_OPENAT64, E_OPENAT_2, E_OPENAT64_2,
    E_CREAT, E_CREAT64, E_FOPEN, E_FOPEN64, E_FREOPEN, E_FREOPEN64, E_OPENDIR, E_COUNT
};
static const char *ENTRY[E_COUNT] = {
    "open", "open64", "__open_2", "__open64_2", "openat", "openat64", "__openat_2", "__openat64_2",
    "creat", "creat64", "fopen", "fopen64", "freopen", "freopen64", "opendir",
};

#define B(e) (1u << (e))
#define PATHS (B(E_OPEN) | B(E_OPEN64) | B(E_OPEN_2) | B(E_OPEN64_2))
#define ATS (B(E_OPENAT) | B(E_OPENAT64) | B(E_OPENAT_2) | B(E_OPENAT64_2))
#define ALL (PATHS | ATS)
#define CREATS (B(E_CREAT) | B(E_CREAT64))

struct ocase {
    const char *name;
    int dk;
    const char *path;
    int flags;
    mode_t mode;
    unsigned entries; /* 0: ALL for DK_CWD, ATS otherwise */
};

static const struct ocase MAIN_OPEN[] = {
    /* plain and odd spellings, AT_FDCWD */
    {"rel", DK_CWD, "f", O_RDONLY, 0, 0},
    {"abs", DK_CWD, "=/f", O_RDONLY, 0, 0},
    {"dot-rel", DK_CWD, "./f", O_RDONLY, 0, 0},
    {"dotdot-rel", DK_CWD, "d/../f", O_RDONLY, 0, 0},
    {"dotdot-abs", DK_CWD, "=/d/../f", O_RDONLY, 0, 0},
    {"double-slash", DK_CWD, "d//g", O_RDONLY, 0, 0},
    {"abs-double-slash", DK_CWD, "=//d/./g", O_RDONLY, 0, 0},
    {"trailing-slash-on-file", DK_CWD, "f/", O_RDONLY, 0, 0},
    {"dir", DK_CWD, "d", O_RDONLY, 0, 0},
    {"dot", DK_CWD, ".", O_RDONLY, 0, 0},
    {"empty", DK_CWD, "", O_RDONLY, 0, 0},
    {"empty-creat", DK_CWD, "", O_CREAT | O_WRONLY, 0644, 0},
    {"empty-tmpfile", DK_CWD, "", O_TMPFILE | O_RDWR, 0600, 0},
    {"missing", DK_CWD, "nope", O_RDONLY, 0, 0},
    {"missing-parent", DK_CWD, "nope/x", O_RDONLY, 0, 0},
    {"symlink", DK_CWD, "sl", O_RDONLY, 0, 0},
    {"symlink-dir-directory", DK_CWD, "sld", O_RDONLY | O_DIRECTORY, 0, 0},
    {"name-255", DK_CWD, "@name-255", O_RDONLY, 0, 0},
    {"name-256", DK_CWD, "@name-256", O_RDONLY, 0, 0},
    {"dev-null-abs", DK_CWD, "/dev/null", O_RDWR, 0, 0},
    /* dirfds */
    {"negfd-1-rel", DK_NEG1, "f", O_RDONLY, 0, 0},
    {"negfd-1-abs", DK_NEG1, "=/f", O_RDONLY, 0, 0},
    {"negfd-1-empty", DK_NEG1, "", O_RDONLY, 0, 0},
    {"negfd-1-abs-dotdot", DK_NEG1, "=/d/../f", O_RDONLY, 0, 0},
    {"negfd-1-creat-rel", DK_NEG1, "new", O_CREAT | O_WRONLY, 0644, 0},
    {"negfd-1-creat-abs", DK_NEG1, "=/new", O_CREAT | O_WRONLY, 0644, 0},
    {"negfd-1-tmpfile-abs", DK_NEG1, "=/d", O_TMPFILE | O_RDWR, 0600, 0},
    {"negfd-2-rel", DK_NEG2, "f", O_RDONLY, 0, 0},
    {"negfd-100-rel", DK_NEG100, "f", O_RDONLY, 0, 0},
    {"negfd-100-abs", DK_NEG100, "=/f", O_RDONLY, 0, 0},
    {"intmin-rel", DK_INTMIN, "f", O_RDONLY, 0, 0},
    {"intmin-abs", DK_INTMIN, "=/f", O_RDONLY, 0, 0},
    {"bigfd-rel", DK_BIG, "f", O_RDONLY, 0, 0},
    {"closedfd-rel", DK_CLOSED, "f", O_RDONLY, 0, 0},
    {"closedfd-abs", DK_CLOSED, "=/f", O_RDONLY, 0, 0},
    {"pipefd-rel", DK_PIPE, "f", O_RDONLY, 0, 0},
    {"pipefd-abs", DK_PIPE, "=/f", O_RDONLY, 0, 0},
    {"pipefd-empty", DK_PIPE, "", O_RDONLY, 0, 0},
    {"pipefd-creat", DK_PIPE, "new", O_CREAT | O_WRONLY, 0644, 0},
    {"filefd-rel", DK_FILE, "x", O_RDONLY, 0, 0},
    {"filefd-dot", DK_FILE, ".", O_RDONLY, 0, 0},
    {"filefd-empty", DK_FILE, "", O_RDONLY, 0, 0},
    {"filefd-abs", DK_FILE, "=/f", O_RDONLY, 0, 0},
    {"filefd-creat", DK_FILE, "new", O_CREAT | O_WRONLY, 0644, 0},
    {"opath-filefd-rel", DK_FILEP, "x", O_RDONLY, 0, 0},
    {"sockfd-rel", DK_SOCK, "f", O_RDONLY, 0, 0},
    {"devnullfd-rel", DK_DEVNULL, "f", O_RDONLY, 0, 0},
    {"basefd-rel", DK_BASE, "f", O_RDONLY, 0, 0},
    {"basefd-dotdot", DK_BASE, "d/../f", O_RDONLY, 0, 0},
    {"basefd-dot", DK_BASE, ".", O_RDONLY, 0, 0},
    {"basefd-creat", DK_BASE, "new", O_CREAT | O_WRONLY, 0640, 0},
    {"basefd-tmpfile", DK_BASE, ".", O_TMPFILE | O_RDWR, 0600, 0},
    {"opath-basefd-rel", DK_BASEP, "f", O_RDONLY, 0, 0},
    {"opath-basefd-creat", DK_BASEP, "new", O_CREAT | O_RDWR, 0644, 0},
    {"subfd-rel", DK_SUB, "g", O_RDONLY, 0, 0},
    {"subfd-dotdot", DK_SUB, "../f", O_RDONLY, 0, 0},
    {"subfd-creat-dotdot", DK_SUB, "../new", O_CREAT | O_WRONLY, 0644, 0},
    /* O_PATH */
    {"opath-file", DK_CWD, "f", O_PATH, 0, 0},
    {"opath-dir", DK_CWD, "d", O_PATH, 0, 0},
    {"opath-nofollow-symlink", DK_CWD, "sl", O_PATH | O_NOFOLLOW, 0, 0},
    {"opath-nofollow-dangling", DK_CWD, "dang", O_PATH | O_NOFOLLOW, 0, 0},
    {"opath-dangling", DK_CWD, "dang", O_PATH, 0, 0},
    {"opath-fifo", DK_CWD, "fifo", O_PATH, 0, 0},
    {"opath-sock", DK_CWD, "sock", O_PATH, 0, 0},
    {"opath-chr", DK_CWD, "null", O_PATH, 0, 0},
    {"opath-directory-on-file", DK_CWD, "f", O_PATH | O_DIRECTORY, 0, 0},
    {"opath-missing", DK_CWD, "nope", O_PATH, 0, 0},
    {"opath-wronly-trunc", DK_CWD, "f", O_PATH | O_WRONLY | O_TRUNC, 0, 0},
    /* O_DIRECTORY */
    {"directory-on-file", DK_CWD, "f", O_RDONLY | O_DIRECTORY, 0, 0},
    {"directory-on-dir", DK_CWD, "d", O_RDONLY | O_DIRECTORY, 0, 0},
    {"directory-on-fifo", DK_CWD, "fifo", O_RDONLY | O_NONBLOCK | O_DIRECTORY, 0, 0},
    {"directory-on-dangling", DK_CWD, "dang", O_RDONLY | O_DIRECTORY, 0, 0},
    {"directory-creat-new", DK_CWD, "newd", O_CREAT | O_RDWR | O_DIRECTORY, 0755, 0},
    /* O_NOFOLLOW */
    {"nofollow-symlink", DK_CWD, "sl", O_RDONLY | O_NOFOLLOW, 0, 0},
    {"nofollow-dangling", DK_CWD, "dang", O_RDONLY | O_NOFOLLOW, 0, 0},
    {"nofollow-symlink-parent", DK_CWD, "sld/g", O_RDONLY | O_NOFOLLOW, 0, 0},
    {"nofollow-file", DK_CWD, "f", O_RDONLY | O_NOFOLLOW, 0, 0},
    {"nofollow-creat-dangling", DK_CWD, "dang", O_CREAT | O_WRONLY | O_NOFOLLOW, 0644, 0},
    {"nofollow-directory-symlink-dir", DK_CWD, "sld", O_RDONLY | O_DIRECTORY | O_NOFOLLOW, 0, 0},
    /* O_TMPFILE */
    {"tmpfile-dir", DK_CWD, "d", O_TMPFILE | O_RDWR, 0600, 0},
    {"tmpfile-dot", DK_CWD, ".", O_TMPFILE | O_WRONLY, 0640, 0},
    {"tmpfile-abs", DK_CWD, "=/d", O_TMPFILE | O_RDWR, 0600, 0},
    {"tmpfile-excl", DK_CWD, "d", O_TMPFILE | O_RDWR | O_EXCL, 0600, 0},
    {"tmpfile-symlink-dir", DK_CWD, "sld", O_TMPFILE | O_RDWR, 0600, 0},
    {"tmpfile-on-file", DK_CWD, "f", O_TMPFILE | O_RDWR, 0600, 0},
    {"tmpfile-on-missing", DK_CWD, "nope", O_TMPFILE | O_RDWR, 0600, 0},
    {"tmpfile-rdonly", DK_CWD, "d", O_TMPFILE | O_RDONLY, 0600, 0},
    /* O_TRUNC */
    {"trunc-file-wronly", DK_CWD, "f", O_WRONLY | O_TRUNC, 0, 0},
    {"trunc-file-rdonly", DK_CWD, "f", O_RDONLY | O_TRUNC, 0, 0},
    {"trunc-readonly-file-rdonly", DK_CWD, "ro", O_RDONLY | O_TRUNC, 0, 0},
    {"trunc-readonly-file-wronly", DK_CWD, "ro", O_WRONLY | O_TRUNC, 0, 0},
    {"trunc-symlink", DK_CWD, "sl", O_RDWR | O_TRUNC, 0, 0},
    {"trunc-fifo-rdwr", DK_CWD, "fifo", O_RDWR | O_TRUNC, 0, 0},
    {"trunc-fifo-wronly-nonblock", DK_CWD, "fifo", O_WRONLY | O_NONBLOCK | O_TRUNC, 0, 0},
    {"trunc-fifo-rdonly-nonblock", DK_CWD, "fifo", O_RDONLY | O_NONBLOCK | O_TRUNC, 0, 0},
    {"trunc-chr-wronly", DK_CWD, "null", O_WRONLY | O_TRUNC, 0, 0},
    {"trunc-chr-rdwr", DK_CWD, "null", O_RDWR | O_TRUNC, 0, 0},
    {"trunc-dev-null-abs", DK_CWD, "/dev/null", O_WRONLY | O_TRUNC, 0, 0},
    {"trunc-sock-wronly", DK_CWD, "sock", O_WRONLY | O_TRUNC, 0, 0},
    {"trunc-sock-rdonly", DK_CWD, "sock", O_RDONLY | O_TRUNC, 0, 0},
    {"trunc-dir-rdonly", DK_CWD, "d", O_RDONLY | O_TRUNC, 0, 0},
    {"trunc-dir-wronly", DK_CWD, "d", O_WRONLY | O_TRUNC, 0, 0},
    {"trunc-dir-directory", DK_CWD, "d", O_RDONLY | O_DIRECTORY | O_TRUNC, 0, 0},
    {"trunc-creat-existing", DK_CWD, "f", O_CREAT | O_WRONLY | O_TRUNC, 0644, 0},
    {"trunc-creat-fifo", DK_CWD, "fifo", O_CREAT | O_RDWR | O_TRUNC, 0644, 0},
    {"trunc-creat-chr", DK_CWD, "null", O_CREAT | O_WRONLY | O_TRUNC, 0644, 0},
    /* O_CREAT */
    {"creat-new", DK_CWD, "new", O_CREAT | O_WRONLY, 0640, 0},
    {"creat-new-odd-mode", DK_CWD, "new", O_CREAT | O_RDWR, 07777, 0},
    {"creat-excl-new", DK_CWD, "new", O_CREAT | O_EXCL | O_RDWR, 0600, 0},
    {"creat-excl-existing", DK_CWD, "f", O_CREAT | O_EXCL | O_WRONLY, 0644, 0},
    {"creat-excl-symlink", DK_CWD, "sl", O_CREAT | O_EXCL | O_WRONLY, 0644, 0},
    {"creat-excl-dangling", DK_CWD, "dang", O_CREAT | O_EXCL | O_WRONLY, 0644, 0},
    {"creat-dangling", DK_CWD, "dang", O_CREAT | O_WRONLY, 0644, 0},
    {"creat-dangling-abs", DK_CWD, "=/dang", O_CREAT | O_RDWR | O_TRUNC, 0644, 0},
    {"creat-missing-dir", DK_CWD, "nope/new", O_CREAT | O_WRONLY, 0644, 0},
    {"creat-file-as-dir", DK_CWD, "f/new", O_CREAT | O_WRONLY, 0644, 0},
    {"creat-existing-dir", DK_CWD, "d", O_CREAT | O_RDONLY, 0644, 0},
    {"creat-trailing-slash-dir", DK_CWD, "d/", O_CREAT | O_RDONLY, 0644, 0},
    {"creat-trailing-slash-new", DK_CWD, "newd/", O_CREAT | O_WRONLY, 0644, 0},
    {"creat-dot", DK_CWD, ".", O_CREAT | O_RDONLY, 0644, 0},
    {"creat-existing-rdonly", DK_CWD, "f", O_CREAT | O_RDONLY, 0644, 0},
    {"creat-existing-append", DK_CWD, "f", O_CREAT | O_WRONLY | O_APPEND, 0644, 0},
    {"creat-fifo", DK_CWD, "fifo", O_CREAT | O_RDWR, 0644, 0},
    {"creat-in-subdir", DK_CWD, "d/new", O_CREAT | O_WRONLY, 0644, 0},
    {"creat-abs", DK_CWD, "=/new", O_CREAT | O_WRONLY, 0644, 0},
    {"creat-via-symlink-dir", DK_CWD, "sld/new", O_CREAT | O_WRONLY, 0644, 0},
    {"creat-dotdot", DK_CWD, "d/../new", O_CREAT | O_WRONLY, 0644, 0},
    /* PATH_MAX */
    {"long-rel-clean-4095", DK_CWD, "@rel-clean-4095", O_RDONLY, 0, 0},
    {"long-rel-clean-4096", DK_CWD, "@rel-clean-4096", O_RDONLY, 0, 0},
    {"long-abs-clean-4095", DK_CWD, "@abs-clean-4095", O_RDONLY, 0, 0},
    {"long-abs-clean-4096", DK_CWD, "@abs-clean-4096", O_RDONLY, 0, 0},
    {"long-rel-dot-4095", DK_CWD, "@rel-dot-4095", O_RDONLY, 0, 0},
    {"long-rel-dot-4096", DK_CWD, "@rel-dot-4096", O_RDONLY, 0, 0},
    {"long-rel-dotdot-4095", DK_CWD, "@rel-dotdot-4095", O_RDONLY, 0, 0},
    {"long-rel-dotdot-4096", DK_CWD, "@rel-dotdot-4096", O_RDONLY, 0, 0},
    {"long-abs-dot-4095", DK_CWD, "@abs-dot-4095", O_RDONLY, 0, 0},
    {"long-abs-dot-4096", DK_CWD, "@abs-dot-4096", O_RDONLY, 0, 0},
    {"long-abs-dotdot-4095", DK_CWD, "@abs-dotdot-4095", O_RDONLY, 0, 0},
    {"long-abs-dotdot-4096", DK_CWD, "@abs-dotdot-4096", O_RDONLY, 0, 0},
    {"long-basefd-rel-clean-4095", DK_BASE, "@rel-clean-4095", O_RDONLY, 0, 0},
    {"long-basefd-rel-dot-4095", DK_BASE, "@rel-dot-4095", O_RDONLY, 0, 0},
    {"long-negfd-1-abs-dot-4095", DK_NEG1, "@abs-dot-4095", O_RDONLY, 0, 0},
    {"long-rel-dot-creat-4095", DK_CWD, "@rel-dot-new-4095", O_CREAT | O_WRONLY, 0644, 0},
    {"long-abs-dotdot-creat-4095", DK_CWD, "@abs-dotdot-new-4095", O_CREAT | O_WRONLY, 0644, 0},
    {"long-rel-dot-trunc-4095", DK_CWD, "@rel-dot-4095", O_WRONLY | O_TRUNC, 0, 0},
    {"long-rel-dot-tmpfile-4095", DK_CWD, "@rel-dot-dir-4095", O_TMPFILE | O_RDWR, 0600, 0},
    /* creat(), creat64() */
    {"creat-fn-new", DK_CWD, "new", 0, 0644, CREATS},
    {"creat-fn-existing", DK_CWD, "f", 0, 0644, CREATS},
    {"creat-fn-readonly-file", DK_CWD, "ro", 0, 0644, CREATS},
    {"creat-fn-symlink", DK_CWD, "sl", 0, 0644, CREATS},
    {"creat-fn-dangling", DK_CWD, "dang", 0, 0644, CREATS},
    {"creat-fn-dir", DK_CWD, "d", 0, 0644, CREATS},
    {"creat-fn-missing-dir", DK_CWD, "nope/new", 0, 0644, CREATS},
    {"creat-fn-empty", DK_CWD, "", 0, 0644, CREATS},
    {"creat-fn-chr", DK_CWD, "null", 0, 0644, CREATS},
    {"creat-fn-sock", DK_CWD, "sock", 0, 0644, CREATS},
    {"creat-fn-abs", DK_CWD, "=/d/new", 0, 0600, CREATS},
    {"creat-fn-trailing-slash", DK_CWD, "newd/", 0, 0644, CREATS},
    {"creat-fn-long-rel-dot-4095", DK_CWD, "@rel-dot-new-4095", 0, 0644, CREATS},
};

/* bob's files from alice's docroot (cwd): link (absolute symlink to bob's secret.txt),
 * dotdot (relative), bobdir (symlink to bob's docroot), hard (a hard link), uploads/dangling
 * (to a missing name in bob's docroot), devnull (a symlink to /dev/null, root's), and the
 * controls: index.html, ownlink (alice's own) and bob's file by its own path. */
static const struct ocase VICTIM_OPEN[] = {
    {"v-link", DK_CWD, "link", O_RDONLY, 0, 0},
    {"v-dotdot", DK_CWD, "dotdot", O_RDONLY, 0, 0},
    {"v-hard", DK_CWD, "hard", O_RDONLY, 0, 0},
    {"v-bobdir-file", DK_CWD, "bobdir/secret.txt", O_RDONLY, 0, 0},
    {"v-escape", DK_CWD, "../../bob/public_html/secret.txt", O_RDONLY, 0, 0},
    {"v-abs-link", DK_CWD, "=/link", O_RDONLY, 0, 0},
    {"v-abs-escape", DK_CWD, "=/../../bob/public_html/secret.txt", O_RDONLY, 0, 0},
    {"v-control-bob-own-path", DK_CWD, "%/secret.txt", O_RDONLY, 0, 0},
    {"v-control-own", DK_CWD, "index.html", O_RDONLY, 0, 0},
    {"v-control-ownlink", DK_CWD, "ownlink", O_RDONLY, 0, 0},
    {"v-link-opath", DK_CWD, "link", O_PATH, 0, 0},
    {"v-link-opath-nofollow", DK_CWD, "link", O_PATH | O_NOFOLLOW, 0, 0},
    {"v-hard-opath", DK_CWD, "hard", O_PATH, 0, 0},
    {"v-bobdir-directory", DK_CWD, "bobdir", O_RDONLY | O_DIRECTORY, 0, 0},
    {"v-bobdir-opath", DK_CWD, "bobdir", O_PATH | O_DIRECTORY, 0, 0},
    {"v-link-rdwr", DK_CWD, "link", O_RDWR, 0, 0},
    {"v-link-append", DK_CWD, "link", O_WRONLY | O_APPEND, 0, 0},
    {"v-link-trunc", DK_CWD, "link", O_WRONLY | O_TRUNC, 0, 0},
    {"v-hard-trunc", DK_CWD, "hard", O_WRONLY | O_TRUNC, 0, 0},
    {"v-hard-rdonly-trunc", DK_CWD, "hard", O_RDONLY | O_TRUNC, 0, 0},
    {"v-dotdot-nonblock-trunc", DK_CWD, "dotdot", O_RDWR | O_NONBLOCK | O_TRUNC, 0, 0},
    {"v-hard-creat", DK_CWD, "hard", O_CREAT | O_WRONLY, 0644, 0},
    {"v-link-creat-trunc", DK_CWD, "link", O_CREAT | O_RDWR | O_TRUNC, 0644, 0},
    {"v-dangling-creat", DK_CWD, "uploads/dangling", O_CREAT | O_WRONLY, 0644, 0},
    {"v-dangling-creat-excl", DK_CWD, "uploads/dangling", O_CREAT | O_EXCL | O_WRONLY, 0644, 0},
    {"v-bobdir-creat", DK_CWD, "bobdir/new", O_CREAT | O_WRONLY, 0644, 0},
    {"v-bobdir-tmpfile", DK_CWD, "bobdir", O_TMPFILE | O_RDWR, 0600, 0},
    {"v-devnull", DK_CWD, "devnull", O_WRONLY, 0, 0},
    {"v-devnull-trunc", DK_CWD, "devnull", O_WRONLY | O_TRUNC, 0, 0},
    {"v-dfd-link", DK_BASE, "link", O_RDONLY, 0, 0},
    {"v-dfd-hard", DK_BASE, "hard", O_RDONLY, 0, 0},
    {"v-dfd-bobdir-file", DK_BASE, "bobdir/secret.txt", O_RDONLY, 0, 0},
    {"v-dfd-escape", DK_BASE, "../../bob/public_html/secret.txt", O_RDONLY, 0, 0},
    {"v-dfd-hard-trunc", DK_BASE, "hard", O_WRONLY | O_TRUNC, 0, 0},
    {"v-dfd-dangling-creat", DK_BASE, "uploads/dangling", O_CREAT | O_WRONLY, 0644, 0},
    {"v-opath-dfd-link", DK_BASEP, "link", O_RDONLY, 0, 0},
    {"v-opath-dfd-dotdot", DK_BASEP, "dotdot", O_RDONLY, 0, 0},
    {"v-control-bobfd-file", DK_SUB, "secret.txt", O_RDONLY, 0, 0},
    {"v-negfd-1-abs-link", DK_NEG1, "=/link", O_RDONLY, 0, 0},
    {"v-pipefd-abs-link", DK_PIPE, "=/link", O_RDONLY, 0, 0},
    {"v-creat-fn-hard", DK_CWD, "hard", 0, 0644, CREATS},
    {"v-creat-fn-link", DK_CWD, "link", 0, 0644, CREATS},
    {"v-creat-fn-dangling", DK_CWD, "uploads/dangling", 0, 0644, CREATS},
};

static int call_open(int e, int dfd, const char *p, int flags, mode_t mode) {
    switch (e) {
    case E_OPEN: return open(p, flags, mode);
    case E_OPEN64: return open64(p, flags, mode);
    case E_OPEN_2: return __open_2(p, flags);
    case E_OPEN64_2: return __open64_2(p, flags);
    case E_OPENAT: return openat(dfd, p, flags, mode);
    case E_OPENAT64: return openat64(dfd, p, flags, mode);
    case E_OPENAT_2: return __openat_2(dfd, p, flags);
    case E_OPENAT64_2: return __openat64_2(dfd, p, flags);
    case E_CREAT: return creat(p, mode);
    case E_CREAT64: return creat64(p, mode);
    }
    errno = ENOSYS;
    return -1;
}

static int g_fds_before;

/* Start a case: "ENTRY:NAME STACK -> " (flushed); 0 if it is skipped. */
static int begin(int e, const char *name) {
    if (g_index++ < g_start) return 0;
    g_fds_before = count_fds();
    o_str(ENTRY[e]);
    o_str(":");
    o_str(name);
    o_str(" ");
    o_str(g_stack);
    o_str(" -> ");
    o_flush();
    return 1;
}

static void finish(void) {
    check_fixture();
    int now = count_fds();
    if (now != g_fds_before) {
        o_str(" LEAK(");
        o_int(now - g_fds_before);
        o_str(" fds)");
    }
    o_line();
    g_emitted++;
}

static void run_open_case(const struct ocase *c) {
    unsigned ents = c->entries ? c->entries : c->dk == DK_CWD ? ALL : ATS;
    for (int e = 0; e < E_COUNT; e++) {
        if (!(ents & B(e))) continue;
        int needs_mode = (c->flags & O_CREAT) || (c->flags & O_TMPFILE) == O_TMPFILE;
        int fortified = e == E_OPEN_2 || e == E_OPEN64_2 || e == E_OPENAT_2 || e == E_OPENAT64_2;
        if (needs_mode && fortified) continue; /* glibc aborts these: not a legal call */
        if (!begin(e, c->name)) continue;
        int dk = (e <= E_OPEN64_2 || e >= E_CREAT) ? DK_CWD : c->dk;
        int dfd = dirfd_for(dk);
        const char *p = resolve(c->path);
        int low = lowest_free();
        errno = 0;
        int fd = call_open(e, dfd, p, c->flags, c->mode);
        int err = errno;
        if (fd < 0) {
            o_str("ERR ");
            o_errno(err);
        } else {
            o_str("OK ");
            describe_fd(fd, low);
            close(fd);
        }
        dirfd_done(dk, dfd);
        finish();
    }
}

/* ------------------------------------------------------ FILE* and DIR* cases */

struct fcase {
    const char *name;
    unsigned entries; /* fopen/fopen64, freopen/freopen64, opendir */
    const char *path;
    const char *mode;
    const char *prior; /* freopen: the stream's file and mode (raw open + fdopen) */
    int prior_flags;
};

#define FOPENS (B(E_FOPEN) | B(E_FOPEN64))
#define FREOPENS (B(E_FREOPEN) | B(E_FREOPEN64))
#define OPENDIR B(E_OPENDIR)

static const struct fcase MAIN_FILE[] = {
    {"r", FOPENS, "f", "r", 0, 0},
    {"r-abs", FOPENS, "=/f", "r", 0, 0},
    {"r-symlink", FOPENS, "sl", "r", 0, 0},
    {"r-dotdot", FOPENS, "d/../f", "r", 0, 0},
    {"r-missing", FOPENS, "nope", "r", 0, 0},
    {"r-empty-path", FOPENS, "", "r", 0, 0},
    {"r-dir", FOPENS, "d", "r", 0, 0},
    {"r-plus", FOPENS, "f", "r+", 0, 0},
    {"rb", FOPENS, "f", "rb", 0, 0},
    {"rm", FOPENS, "f", "rm", 0, 0},
    {"re", FOPENS, "f", "re", 0, 0},
    {"r-ccs", FOPENS, "f", "r,ccs=UTF-8", 0, 0},
    {"w-new", FOPENS, "new", "w", 0, 0},
    {"w-existing", FOPENS, "f", "w", 0, 0},
    {"w-dir", FOPENS, "d", "w", 0, 0},
    {"w-dangling", FOPENS, "dang", "w", 0, 0},
    {"w-chr", FOPENS, "null", "w", 0, 0},
    {"w-missing-dir", FOPENS, "nope/new", "w", 0, 0},
    {"w-readonly-file", FOPENS, "ro", "w", 0, 0},
    {"a-plus-existing", FOPENS, "f", "a+", 0, 0},
    {"a-plus-new", FOPENS, "new", "a+", 0, 0},
    {"a-abs", FOPENS, "=/f", "a", 0, 0},
    {"wx-new", FOPENS, "new", "wx", 0, 0},
    {"wx-existing", FOPENS, "f", "wx", 0, 0},
    {"wx-dangling", FOPENS, "dang", "wx", 0, 0},
    {"we-plus", FOPENS, "new", "w+e", 0, 0},
    {"invalid-mode", FOPENS, "f", "z", 0, 0},
    {"empty-mode", FOPENS, "f", "", 0, 0},
    {"invalid-mode-missing", FOPENS, "nope", "q", 0, 0},
    {"r-long-rel-dot-4095", FOPENS, "@rel-dot-4095", "r", 0, 0},
    {"r-long-abs-dotdot-4095", FOPENS, "@abs-dotdot-4095", "r", 0, 0},
    {"r-long-rel-dot-4096", FOPENS, "@rel-dot-4096", "r", 0, 0},
    {"r-from-w", FREOPENS, "f", "r", "/dev/null", O_WRONLY},
    {"w-new-from-r", FREOPENS, "new", "w", "=/f", O_RDONLY},
    {"a-plus-from-r", FREOPENS, "f", "a+", "=/d/g", O_RDONLY},
    {"r-missing", FREOPENS, "nope", "r", "=/f", O_RDONLY},
    {"r-dir", FREOPENS, "d", "r", "=/f", O_RDONLY},
    {"w-dangling", FREOPENS, "dang", "w", "=/f", O_RDONLY},
    {"invalid-mode", FREOPENS, "f", "z", "=/f", O_RDONLY},
    {"re", FREOPENS, "f", "re", "=/d/g", O_RDONLY},
    {"null-r-from-w", FREOPENS, NULL, "r", "=/f", O_WRONLY},
    {"null-r-from-rdwr", FREOPENS, NULL, "r", "=/f", O_RDWR},
    {"null-a-from-r", FREOPENS, NULL, "a", "=/f", O_RDONLY},
    {"null-w-from-r", FREOPENS, NULL, "w", "=/f", O_RDONLY},
    {"null-r-from-dir", FREOPENS, NULL, "r", "=/d", O_RDONLY},
    {"r-long-rel-dot-4095", FREOPENS, "@rel-dot-4095", "r", "=/f", O_RDONLY},
    {"dot", OPENDIR, ".", NULL, 0, 0},
    {"abs", OPENDIR, "=", NULL, 0, 0},
    {"abs-slash", OPENDIR, "=/", NULL, 0, 0},
    {"sub", OPENDIR, "d", NULL, 0, 0},
    {"sub-trailing-slash", OPENDIR, "d/", NULL, 0, 0},
    {"symlink-dir", OPENDIR, "sld", NULL, 0, 0},
    {"file", OPENDIR, "f", NULL, 0, 0},
    {"file-trailing-slash", OPENDIR, "f/", NULL, 0, 0},
    {"missing", OPENDIR, "nope", NULL, 0, 0},
    {"empty", OPENDIR, "", NULL, 0, 0},
    {"fifo", OPENDIR, "fifo", NULL, 0, 0},
    {"dangling", OPENDIR, "dang", NULL, 0, 0},
    {"long-rel-dot-4095", OPENDIR, "@rel-dot-dir-4095", NULL, 0, 0},
};

static const struct fcase VICTIM_FILE[] = {
    {"v-link-r", FOPENS, "link", "r", 0, 0},
    {"v-dotdot-r", FOPENS, "dotdot", "r", 0, 0},
    {"v-hard-w", FOPENS, "hard", "w", 0, 0},
    {"v-link-a-plus", FOPENS, "link", "a+", 0, 0},
    {"v-bobdir-file-r-plus", FOPENS, "bobdir/secret.txt", "r+", 0, 0},
    {"v-link-re", FOPENS, "link", "re", 0, 0},
    {"v-dangling-w", FOPENS, "uploads/dangling", "w", 0, 0},
    {"v-dangling-wx", FOPENS, "uploads/dangling", "wx", 0, 0},
    {"v-control-own-r", FOPENS, "index.html", "r", 0, 0},
    {"v-link-r", FREOPENS, "link", "r", "=/index.html", O_RDONLY},
    {"v-hard-w", FREOPENS, "hard", "w", "=/index.html", O_RDONLY},
    {"v-bobdir", OPENDIR, "bobdir", NULL, 0, 0},
    {"v-bobdir-slash", OPENDIR, "bobdir/", NULL, 0, 0},
    {"v-escape", OPENDIR, "../../bob/public_html", NULL, 0, 0},
    {"v-control-own", OPENDIR, ".", NULL, 0, 0},
};

/* What a stream is: like an fd, plus orientation, then a read and (if writable) a write. */
static void describe_file(FILE *f, int low, const char *mode) {
    int fd = fileno(f);
    describe_fd(fd, low);
    int o = fwide(f, 0);
    o_str(o > 0 ? " wide" : o < 0 ? " byte" : " unoriented");
    int acc = fcntl(fd, F_GETFL) & O_ACCMODE;
    if (acc != O_WRONLY) {
        if (o > 0) {
            wint_t c = fgetwc(f);
            o_str(" getwc=");
            if (c == WEOF) {
                o_str(ferror(f) ? "ERR" : "EOF");
            } else {
                o_int((long)c);
            }
        } else {
            size_t n = fread(g_data, 1, 16, f);
            o_str(" fread=");
            if (n == 0 && ferror(f)) {
                o_errno(errno);
            } else {
                o_bytes(g_data, (long)n);
            }
        }
        clearerr(f);
    }
    if (acc != O_RDONLY && strchr(mode, 'r') == NULL) {
        errno = 0;
        int w = o > 0 ? fputws(L"W\n", f) : fputs("W\n", f);
        int fl = fflush(f);
        o_str(w < 0 || fl != 0 ? " write=ERR" : " write=ok");
    }
}

static void run_file_case(const struct fcase *c) {
    for (int e = E_FOPEN; e <= E_OPENDIR; e++) {
        if (!(c->entries & B(e))) continue;
        if (!begin(e, c->name)) continue;
        const char *p = resolve(c->path);
        if (e == E_OPENDIR) {
            int low = lowest_free();
            errno = 0;
            DIR *d = opendir(p);
            int err = errno;
            if (!d) {
                o_str("ERR ");
                o_errno(err);
            } else {
                o_str("OK ");
                int fd = dirfd(d);
                o_str("fd=low");
                if (fd != low) {
                    o_str("+");
                    o_int(fd - low);
                }
                o_str(fcntl(fd, F_GETFD) & FD_CLOEXEC ? " cloexec" : " inherit");
                o_str(" fl=");
                o_flags(fcntl(fd, F_GETFL));
                long n = 0;
                errno = 0;
                while (readdir(d)) n++;
                o_str(" ents=");
                o_int(n);
                if (errno) {
                    o_str(" readdir=");
                    o_errno(errno);
                }
                closedir(d);
            }
            finish();
            continue;
        }
        FILE *prior = NULL;
        if (e == E_FREOPEN || e == E_FREOPEN64) {
            const char *pp = resolve(c->prior);
            int pfd = r_openat(AT_FDCWD, pp, c->prior_flags, 0);
            int acc = c->prior_flags & O_ACCMODE;
            prior = pfd < 0 ? NULL : fdopen(pfd, acc == O_RDONLY ? "r" : acc == O_WRONLY ? "w" : "r+");
            if (!prior) {
                o_str("SETUP-FAILED ");
                o_errno(errno);
                if (pfd >= 0) close(pfd);
                finish();
                continue;
            }
            p = resolve(c->path); /* again: resolve() reuses one buffer */
        }
        int low = prior ? fileno(prior) : lowest_free();
        errno = 0;
        FILE *f = e == E_FOPEN     ? fopen(p, c->mode)
                  : e == E_FOPEN64 ? fopen64(p, c->mode)
                  : e == E_FREOPEN ? freopen(p, c->mode, prior)
                                   : freopen64(p, c->mode, prior);
        int err = errno;
        if (!f) {
            o_str("ERR ");
            o_errno(err);
        } else {
            o_str("OK ");
            if (prior && f != prior) o_str("other-stream ");
            describe_file(f, low, c->mode);
            if (fclose(f) != 0) {
                o_str(" fclose=");
                o_errno(errno);
            }
        }
        finish();
    }
}

/* ------------------------------------------------------------------ tables */

static void run_table(void) {
    if (g_victim) {
        for (size_t i = 0; i < sizeof VICTIM_OPEN / sizeof VICTIM_OPEN[0]; i++) run_open_case(&VICTIM_OPEN[i]);
    } else {
        for (size_t i = 0; i < sizeof MAIN_OPEN / sizeof MAIN_OPEN[0]; i++) run_open_case(&MAIN_OPEN[i]);
    }
    if (g_in_handler) return; /* FILE* and DIR* entries are not async-signal-safe */
    if (g_victim) {
        for (size_t i = 0; i < sizeof VICTIM_FILE / sizeof VICTIM_FILE[0]; i++) run_file_case(&VICTIM_FILE[i]);
    } else {
        for (size_t i = 0; i < sizeof MAIN_FILE / sizeof MAIN_FILE[0]; i++) run_file_case(&MAIN_FILE[i]);
    }
}

static void *thread_main(void *arg) {
    (void)arg;
    run_table();
    return NULL;
}

static char *g_alt_lo, *g_alt_hi;

static void handler(int sig) {
    (void)sig;
    char here;
    if (&here < g_alt_lo || &here >= g_alt_hi) comment("WARNING: handler not on the alternate stack", NULL);
    g_in_handler = 1;
    run_table();
    g_in_handler = 0;
}

static void o_stack_comment(const char *what, long size) {
    o_str("# stack ");
    o_str(g_stack);
    o_str(": ");
    o_str(what);
    o_str(" ");
    o_int(size);
    o_str(" bytes");
    o_line();
}

static int run_on_thread(void) {
    pthread_attr_t a;
    pthread_attr_init(&a);
    long size = 16384;
    int r = pthread_attr_setstacksize(&a, (size_t)size);
    if (r != 0) {
        long min = sysconf(_SC_THREAD_STACK_MIN);
        o_str("# stack thread: 16384 refused (");
        o_errno(r);
        o_str("), PTHREAD_STACK_MIN is ");
        o_int(min);
        o_line();
        size = min;
        r = pthread_attr_setstacksize(&a, (size_t)size);
        if (r != 0) return r;
    }
    o_stack_comment("pthread stack of", size);
    pthread_t t;
    r = pthread_create(&t, &a, thread_main, NULL);
    if (r != 0) {
        o_str("# pthread_create failed: ");
        o_errno(r);
        o_line();
        return r;
    }
    pthread_join(t, NULL);
    pthread_attr_destroy(&a);
    return 0;
}

static int run_on_sigaltstack(long size) {
    long page = sysconf(_SC_PAGESIZE);
    long total = ((size + page - 1) / page) * page + page;
    char *m = mmap(NULL, (size_t)total, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (m == MAP_FAILED) return 1;
    /* A guard page below the stack: an overflow faults instead of writing over memory. */
    mprotect(m, (size_t)page, PROT_NONE);
    g_alt_hi = m + total;
    g_alt_lo = g_alt_hi - size;
    stack_t ss = {.ss_sp = g_alt_lo, .ss_size = (size_t)size, .ss_flags = 0};
    if (sigaltstack(&ss, NULL) != 0) {
        comment("sigaltstack failed: ", strerrorname_np(errno));
        return 1;
    }
    o_stack_comment("sigaltstack of", size);
    comment("fopen, fopen64, freopen, freopen64, opendir skipped in the handler",
            " (not async-signal-safe)");
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = handler;
    sa.sa_flags = SA_ONSTACK;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGUSR1, &sa, NULL);
    raise(SIGUSR1);
    ss.ss_flags = SS_DISABLE;
    sigaltstack(&ss, NULL);
    munmap(m, (size_t)total);
    return 0;
}

static int usage(void) {
    static const char u[] = "usage: conform stacks | conform main BASE STACK [START] | "
                            "conform victim ALICE_DOCROOT BOB_DOCROOT STACK [START]\n";
    if (write(2, u, sizeof u - 1) < 0) return 2;
    return 2;
}

int main(int argc, char **argv) {
    long sigstksz = sysconf(_SC_SIGSTKSZ);
    if (argc == 2 && !strcmp(argv[1], "stacks")) {
        o_str("main thread sigalt");
        if (sigstksz > 8192) o_str(" sigalt8192");
        o_line();
        return 0;
    }
    int ai;
    if (argc >= 4 && !strcmp(argv[1], "main")) {
        g_base = argv[2];
        ai = 3;
    } else if (argc >= 5 && !strcmp(argv[1], "victim")) {
        g_victim = 1;
        g_base = argv[2];
        g_bob = argv[3];
        ai = 4;
    } else {
        return usage();
    }
    g_stack = argv[ai];
    g_start = argc > ai + 1 ? atol(argv[ai + 1]) : 0;
    umask(022);
    if (chdir(g_base) != 0) {
        comment("chdir failed: ", strerrorname_np(errno));
        return 1;
    }
    g_basefd = r_openat(AT_FDCWD, g_base, O_PATH | O_DIRECTORY | O_CLOEXEC, 0);
    if (g_basefd < 0) return 1;
    if (g_victim) {
        setup_victim();
    } else {
        setup_main();
    }
    o_str("# begin ");
    o_str(g_stack);
    o_str(" table=");
    o_str(g_victim ? "victim" : "main");
    o_str(" start=");
    o_int(g_start);
    o_line();
    int r = 0;
    if (!strcmp(g_stack, "main")) {
        run_table();
    } else if (!strcmp(g_stack, "thread")) {
        r = run_on_thread();
    } else if (!strcmp(g_stack, "sigalt")) {
        r = run_on_sigaltstack(sigstksz);
    } else if (!strcmp(g_stack, "sigalt8192")) {
        r = run_on_sigaltstack(8192);
    } else {
        return usage();
    }
    o_str("# end ");
    o_str(g_stack);
    o_str(" cases=");
    o_int(g_emitted);
    o_str(" next=");
    o_int(g_index);
    o_line();
    return r;
}
