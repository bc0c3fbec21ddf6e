#!/bin/sh
# Quick A/B: nginx serving a 4-deep small static file from the raw tree, through
# toctou-guard-fs in no-open and passthrough mode, and with nginx's own
# `disable_symlinks if_not_owner`, in interleaved rounds of the same run.
# Prints requests/s and nginx-worker CPU µs per request (robust on a busy machine),
# and the daemon's request counters (0 OPEN/READ per warm request in no-open mode,
# 0 READ in passthrough mode).
# usage: fusefs/scripts/nginx-compare.sh [path/to/toctou-guard-fs] [rounds] [seconds]
set -eu
BIN=${1:-target/release/toctou-guard-fs}
ROUNDS=${2:-5}
SECS=${3:-3}
W=$(mktemp -d /tmp/tg-nginx-XXXXXX)
cleanup() {
    [ -f "$W/nginx.pid" ] && kill "$(cat "$W/nginx.pid")" 2>/dev/null || true
    for p in "$W"/fs*.pid; do [ -f "$p" ] && kill "$(cat "$p")" 2>/dev/null || true; done
    sleep 0.5
    for m in "$W/m1" "$W/m2"; do umount -l "$m" 2>/dev/null || true; done
    rm -rf "$W"
}
trap cleanup EXIT INT TERM
mkdir -p "$W/src/alice/pub/a/b/c" "$W/m1" "$W/m2" "$W/logs"
head -c 1536 /dev/urandom | base64 > "$W/src/alice/pub/a/b/c/d.html"
chown -R 1001:1001 "$W/src/alice"
chmod -R a+rX "$W"
"$BIN" "$W/src" "$W/m1" --allow-other --stats "$W/s1" 2>"$W/fs1.log" & echo $! > "$W/fs1.pid"
"$BIN" "$W/src" "$W/m2" --allow-other --mode passthrough --stats "$W/s2" 2>"$W/fs2.log" & echo $! > "$W/fs2.pid"
for m in m1 m2; do
    i=0; until grep -q " $W/$m .* - fuse" /proc/self/mountinfo; do
        i=$((i+1)); [ $i -gt 500 ] && { echo "no mount $m"; exit 1; }; sleep 0.01; done
done
cat > "$W/nginx.conf" <<CONF
worker_processes 1;
daemon off;
pid $W/nginx.pid;
error_log $W/logs/error.log;
events { worker_connections 1024; }
http {
  access_log off;
  sendfile on;
  server { listen 127.0.0.1:18181; root $W/src/alice/pub; }
  server { listen 127.0.0.1:18182; root $W/m1/alice/pub; }
  server { listen 127.0.0.1:18183; root $W/m2/alice/pub; }
  server { listen 127.0.0.1:18184; root $W/src/alice/pub; disable_symlinks if_not_owner; }
}
CONF
nginx -c "$W/nginx.conf" & sleep 1
WORKER=$(pgrep -P "$(cat "$W/nginx.pid")" | head -1)
cpu() { awk '{print $14 + $15}' "/proc/$WORKER/stat"; }   # clock ticks
TCK=$(getconf CLK_TCK)
for port in 18181 18182 18183 18184; do curl -sf "http://127.0.0.1:$port/a/b/c/d.html" >/dev/null; done
kill -USR1 "$(cat "$W/fs1.pid")" "$(cat "$W/fs2.pid")"; sleep 0.3
S1=$(cat "$W/s1"); S2=$(cat "$W/s2")
echo "round raw noopen passthrough nginx-if_not_owner   (req/s | worker cpu us/req)"
r=1
while [ $r -le "$ROUNDS" ]; do
    line="$r"
    for port in 18181 18182 18183 18184; do
        c0=$(cpu)
        out=$(wrk -t1 -c8 -d"${SECS}s" "http://127.0.0.1:$port/a/b/c/d.html")
        c1=$(cpu)
        rps=$(echo "$out" | awk '/Requests\/sec/ {printf "%d", $2}')
        reqs=$(echo "$out" | awk '/requests in/ {print $1}')
        us=$(awk -v d=$((c1 - c0)) -v n="$reqs" -v t="$TCK" 'BEGIN {printf "%.1f", d * 1e6 / t / n}')
        line="$line $rps|$us"
    done
    echo "$line"
    r=$((r + 1))
done
kill -USR1 "$(cat "$W/fs1.pid")" "$(cat "$W/fs2.pid")"; sleep 0.3
echo "noopen daemon before: $S1"
echo "noopen daemon after:  $(cat "$W/s1")"
echo "passthrough before:   $S2"
echo "passthrough after:    $(cat "$W/s2")"
