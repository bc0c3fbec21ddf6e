#!/usr/bin/env python3
"""Memory of the owner cache across the workers of one server. No timing.

    LD_PRELOAD=libtoctou_guard.so TOCTOU_GUARD_CONFIG=CONF python3 workers_rss.py BASE N W

This process is the master: it loads the configuration (so it makes the shared table), then
forks W workers. Each opens BASE/tenants/t{i}/public_html/index.html for every i < N (the
whole table gets touched), waits until all have, then reports the shared-memory lines of
/proc/self/smaps_rollup: the table is the only shared anonymous mapping, so RssShmem is how
much of it the worker maps and Pss_Shmem its share of the one copy.
"""
import os
import sys


def shmem():
    out = {}
    with open("/proc/self/smaps_rollup") as f:
        for line in f:
            key, _, rest = line.partition(":")
            if key in ("Rss", "Pss", "RssShmem", "Pss_Shmem"):
                out[key] = int(rest.split()[0])
    with open("/proc/self/status") as f:
        for line in f:
            key, _, rest = line.partition(":")
            if key == "RssShmem":
                out[key] = int(rest.split()[0])
    return out


def main():
    base, n, workers = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    ready_r, ready_w = os.pipe()
    kids = []
    for _ in range(workers):
        go_r, go_w = os.pipe()
        res_r, res_w = os.pipe()
        pid = os.fork()
        if pid == 0:
            # Only the master holds the write ends: a worker sees EOF if the master dies.
            for fd in [go_w, ready_r] + [k[1] for k in kids]:
                os.close(fd)
            for i in range(n):
                with open(f"{base}/tenants/t{i}/public_html/index.html", "rb") as f:
                    f.read()
            os.write(ready_w, b"x")
            os.read(go_r, 1)  # every worker has opened its files
            os.write(res_w, repr(shmem()).encode())
            os.read(go_r, 1)  # every worker has measured
            os._exit(0)
        os.close(res_w)
        os.close(go_r)
        kids.append((pid, go_w, res_r))
    got = 0
    while got < workers:
        got += len(os.read(ready_r, workers))
    for _, go_w, _ in kids:
        os.write(go_w, b"x")
    for w, (_, _, res_r) in enumerate(kids):
        data = b""
        while len(data) == 0 or not data.endswith(b"}"):
            data += os.read(res_r, 4096)
        print(f"worker {w}: {data.decode()}")
    for pid, go_w, _ in kids:
        os.write(go_w, b"x")
        os.waitpid(pid, 0)


main()
