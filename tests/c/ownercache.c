/* The shared tenant-owner cache across forked workers, seen from outside: what a worker
 * serves tells whether it used an entry another worker cached.
 * usage: ownercache share|killed|forge DOCROOT FILE LINK SERVER_UID OTHER_UID ALICE_UID BOB_UID
 * Run as root under LD_PRELOAD (the master); every worker is a fork that drops to a uid
 * with setuid() (hooked), opens, prints one line, exits. The master itself opens nothing
 * under a root (as root, not the configured uid, it would drop the table). It flips the owner of DOCROOT (the
 * tenant directory) with a raw fchownat between workers: a worker that still accepts
 * FILE (ALICE's) after DOCROOT became BOB's used a cached entry.
 *
 * `killed` plays a writer killed mid-update: a worker marks every bucket of the shared table
 * busy, stores BOB as the owner of each entry (half an update), and SIGKILLs itself. The
 * layout written is policy/src/owner_cache.rs `Bucket` (64 bytes: lock, referenced, then 3
 * entries of tag and `uid << 32 | expiry`) from the start of the mapping (shim/src/owners.rs).
 *
 * `forge` plays code of the configured uid's worker (PHP FFI, a memory bug) that knows the
 * table's seed (it can read its own process's memory; here it derives it from AT_RANDOM as
 * shim/src/ffi.rs `seed` does) and rewrites every cached ALICE owner to BOB with valid tags:
 * a sibling of its uid then believes it, a worker of another uid must not. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/auxv.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static const char *docroot, *file, *link_path;
static uid_t server, other, alice, bob;

static void drop_to(uid_t uid) {
    if (setgroups(0, NULL) || setgid(uid) || setuid(uid)) {
        printf("ERR drop to %u: %s\n", uid, strerrorname_np(errno));
        fflush(stdout);
        _exit(2);
    }
}

static void report_open(const char *label, const char *path) {
    int fd = open(path, O_RDONLY);
    if (fd < 0) {
        printf("%s ERR %s\n", label, strerrorname_np(errno));
        return;
    }
    char buf[64] = {0};
    ssize_t n = read(fd, buf, sizeof buf - 1);
    if (n < 0) n = 0;
    buf[n] = 0;
    buf[strcspn(buf, "\n")] = 0;
    printf("%s OK %s\n", label, buf);
    close(fd);
}

/* The shared anonymous mappings of this process: count, and the first one's range. */
static int shared_maps(uintptr_t *start, uintptr_t *end) {
    FILE *m = fopen("/proc/self/maps", "r");
    if (!m) return -1;
    char line[512];
    int count = 0;
    while (fgets(line, sizeof line, m)) {
        unsigned long a, b;
        char perms[8];
        if (sscanf(line, "%lx-%lx %7s", &a, &b, perms) == 3 && perms[3] == 's' &&
            strstr(line, "/dev/zero")) {
            if (count++ == 0 && start) { *start = a; *end = b; }
        }
    }
    fclose(m);
    return count;
}

static uint64_t now_ms(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC_COARSE, &t);
    return (uint64_t)t.tv_sec * 1000 + (uint64_t)t.tv_nsec / 1000000;
}

/* Every bucket busy since now, BOB stored as each entry's owner; then die unfinished. */
static void die_mid_update(void) {
    uintptr_t a = 0, b = 0;
    if (shared_maps(&a, &b) != 1) { printf("ERR no shared table\n"); fflush(stdout); _exit(2); }
    size_t len = b - a, n = 1;
    while (2 * n * 64 <= len) n *= 2;
    volatile uint64_t *bucket = (volatile uint64_t *)a;
    uint64_t now = now_ms(), stamp = now & 0x7fffffff;
    for (size_t i = 0; i < n; i++, bucket += 8) {
        uint64_t lock = __atomic_load_n(&bucket[0], __ATOMIC_ACQUIRE);
        __atomic_store_n(&bucket[0], (lock & ~0xffffffffULL) | (stamp << 1) | 1, __ATOMIC_RELEASE);
        for (int w = 0; w < 3; w++) bucket[3 + 2 * w] = (uint64_t)bob << 32 | ((now + 60000) & 0xffffffff);
    }
    raise(SIGKILL);
}

/* SipHash-2-4 of MSG then the byte TAIL under K (shim/src/ffi.rs `sip24`). */
#define ROTL(x, b) (uint64_t)(((x) << (b)) | ((x) >> (64 - (b))))
#define SIPROUND                                                                              \
    do {                                                                                      \
        v0 += v1; v1 = ROTL(v1, 13) ^ v0; v0 = ROTL(v0, 32);                                  \
        v2 += v3; v3 = ROTL(v3, 16) ^ v2;                                                     \
        v0 += v3; v3 = ROTL(v3, 21) ^ v0;                                                     \
        v2 += v1; v1 = ROTL(v1, 17) ^ v2; v2 = ROTL(v2, 32);                                  \
    } while (0)
static uint64_t sip24(const uint64_t k[2], const char *msg, uint8_t tail) {
    uint64_t v0 = k[0] ^ 0x736f6d6570736575ULL, v1 = k[1] ^ 0x646f72616e646f6dULL;
    uint64_t v2 = k[0] ^ 0x6c7967656e657261ULL, v3 = k[1] ^ 0x7465646279746573ULL;
    size_t len = strlen(msg) + 1, n = 0;
    uint8_t word[8] = {0};
    for (size_t i = 0; i < len; i++) {
        word[n++] = i + 1 < len ? (uint8_t)msg[i] : tail;
        if (n == 8) {
            uint64_t m;
            memcpy(&m, word, 8);
            v3 ^= m; SIPROUND; SIPROUND; v0 ^= m;
            n = 0;
        }
    }
    memset(word + n, 0, 8 - n);
    word[7] = (uint8_t)len;
    uint64_t m;
    memcpy(&m, word, 8);
    v3 ^= m; SIPROUND; SIPROUND; v0 ^= m;
    v2 ^= 0xff;
    SIPROUND; SIPROUND; SIPROUND; SIPROUND;
    return v0 ^ v1 ^ v2 ^ v3;
}

/* policy/src/owner_cache.rs `tag` without the key: tag = key ^ mix(word). */
static uint64_t mix(uint64_t word, uint64_t s1) {
    uint64_t x = word ^ s1;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
    return x ^ (x >> 31);
}

/* Every cached ALICE owner rewritten to BOB, its tag made valid for the new word. */
static void forge_entries(void) {
    uintptr_t a = 0, b = 0;
    if (shared_maps(&a, &b) != 1) { printf("ERR no shared table\n"); fflush(stdout); _exit(2); }
    uint64_t k[2];
    memcpy(k, (const void *)getauxval(AT_RANDOM), 16);
    uint64_t s1 = sip24(k, "toctou-guard owner cache", 1);
    volatile uint64_t *bucket = (volatile uint64_t *)a;
    int forged = 0;
    for (size_t i = 0; (i + 1) * 64 <= b - a; i++, bucket += 8) {
        for (int e = 0; e < 3; e++) {
            uint64_t tag = bucket[2 + 2 * e], word = bucket[3 + 2 * e];
            if (word >> 32 != alice || !(uint32_t)word) continue;
            uint64_t forged_word = (uint64_t)bob << 32 | (word & 0xffffffffULL);
            bucket[3 + 2 * e] = forged_word;
            bucket[2 + 2 * e] = tag ^ mix(word, s1) ^ mix(forged_word, s1);
            forged++;
        }
    }
    printf("forger rewrote %d entr%s to bob\n", forged, forged == 1 ? "y" : "ies");
}

enum action { OPEN_FILE, OPEN_LINK, OPEN_BOTH, COUNT_MAPS, DIE, FORGE };

static void worker(uid_t uid, const char *label, enum action what) {
    fflush(stdout);
    pid_t pid = fork();
    if (pid < 0) { printf("ERR fork\n"); exit(2); }
    if (pid == 0) {
        drop_to(uid);
        switch (what) {
        case OPEN_BOTH: report_open(label, link_path); /* fall through */
        case OPEN_FILE: report_open(label, file); break;
        case OPEN_LINK: report_open(label, link_path); break;
        case COUNT_MAPS: printf("%s shared-maps %d\n", label, shared_maps(NULL, NULL)); break;
        case DIE: die_mid_update(); break;
        case FORGE: report_open(label, file); forge_entries(); break;
        }
        fflush(stdout);
        _exit(0);
    }
    int status;
    if (waitpid(pid, &status, 0) != pid) { printf("ERR waitpid\n"); exit(2); }
    if (WIFSIGNALED(status)) printf("%s killed by %s\n", label, sigabbrev_np(WTERMSIG(status)));
}

static void owner_of_docroot(uid_t uid) {
    if (syscall(SYS_fchownat, AT_FDCWD, docroot, uid, uid, 0)) {
        printf("ERR chown: %s\n", strerrorname_np(errno));
        exit(2);
    }
}

int main(int argc, char **argv) {
    if (argc != 9) {
        fprintf(stderr, "usage: ownercache share|killed|forge DOCROOT FILE LINK SERVER OTHER ALICE BOB\n");
        return 2;
    }
    docroot = argv[2], file = argv[3], link_path = argv[4];
    server = atoi(argv[5]), other = atoi(argv[6]), alice = atoi(argv[7]), bob = atoi(argv[8]);
    if (!strcmp(argv[1], "share")) {
        worker(server, "first", OPEN_FILE);
        owner_of_docroot(bob);
        worker(server, "sibling", OPEN_FILE);
        worker(other, "other-uid", OPEN_FILE);
        worker(other, "other-uid", COUNT_MAPS);
        worker(server, "sibling", COUNT_MAPS);
        worker(server, "sibling-after", OPEN_FILE);
        owner_of_docroot(alice);
        return 0;
    }
    if (!strcmp(argv[1], "killed")) {
        worker(server, "first", OPEN_FILE);
        worker(server, "writer", DIE);
        uint64_t t0 = now_ms();
        worker(server, "next", OPEN_BOTH);
        owner_of_docroot(bob);
        worker(server, "after-chown", OPEN_FILE);
        owner_of_docroot(alice);
        printf("busy slots cost no wait: %s\n", now_ms() - t0 < 900 ? "yes" : "no");
        /* Not synchronisation: the time after which a dead writer's slot is taken over
         * (RECLAIM_MS, 1000 ms) is what is tested. */
        struct timespec pause = {1, 100 * 1000000L};
        nanosleep(&pause, NULL);
        worker(server, "reclaim", OPEN_FILE);
        owner_of_docroot(bob);
        worker(server, "shared-again", OPEN_FILE);
        owner_of_docroot(alice);
        return 0;
    }
    if (!strcmp(argv[1], "forge")) {
        worker(server, "forger", FORGE);
        /* Forked after the forgery, as a server's master forks workers on demand. */
        worker(server, "sibling", OPEN_LINK);
        worker(other, "other-uid", OPEN_LINK);
        worker(other, "other-uid", OPEN_FILE);
        worker(other, "other-uid", COUNT_MAPS);
        return 0;
    }
    fprintf(stderr, "unknown mode %s\n", argv[1]);
    return 2;
}
