#!/bin/sh
# A/B of two toctou-guard-fs builds on the warm small-file path, without a web server:
# the bench's `openloop` child, as a non-owner uid (the web server's case), loops
# open+read+close of a 4-deep 512-byte file on the raw tree, through daemon A and through
# daemon B (both `noopen`, defaults: ACLs on), in interleaved rounds. Prints per round the
# caller's thread CPU ns per op (user + system: the kernel's FUSE work is in it) and the
# daemon's CPU ns per op (from /proc/PID/stat), then each daemon's GETXATTR count per op.
# Hardware counters (`perf stat -e instructions`) are not exposed in this KVM guest, so CPU
# time of the caller is the steadiest figure here.
# usage: fusefs/scripts/open-loop-compare.sh DAEMON_A DAEMON_B [rounds 7] [iterations 20000]
set -eu
A=$1
B=$2
ROUNDS=${3:-7}
N=${4:-20000}
OPENLOOP=${OPENLOOP:-target/release/openloop}
UID_=${LOOP_UID:-33}
W=$(mktemp -d /tmp/tg-openloop-XXXXXX)
cleanup() {
    for p in "$W"/fs*.pid; do [ -f "$p" ] && kill "$(cat "$p")" 2>/dev/null || true; done
    sleep 0.5
    for m in "$W/ma" "$W/mb"; do umount -l "$m" 2>/dev/null || true; done
    rm -rf "$W"
}
trap cleanup EXIT INT TERM
mkdir -p "$W/src/alice/pub/d1/d2/d3" "$W/ma" "$W/mb"
head -c 384 /dev/urandom | base64 > "$W/src/alice/pub/d1/d2/d3/small0.html"
chown -R 41001:41001 "$W/src/alice"
cp "$OPENLOOP" "$W/openloop"
chmod -R a+rX "$W"
"$A" "$W/src" "$W/ma" --stats "$W/sa" 2>"$W/fsa.log" & echo $! > "$W/fsa.pid"
"$B" "$W/src" "$W/mb" --stats "$W/sb" 2>"$W/fsb.log" & echo $! > "$W/fsb.pid"
for m in ma mb; do
    i=0; until grep -q " $W/$m .* - fuse" /proc/self/mountinfo; do
        i=$((i+1)); [ $i -gt 500 ] && { echo "no mount $m"; exit 1; }; sleep 0.01; done
done
TCK=$(getconf CLK_TCK)
dcpu() { awk '{print $14 + $15}' "/proc/$(cat "$W/fs$1.pid")/stat"; }
# One child per variant, alive for the whole run; fifos carry the commands.
for v in raw a b; do
    case $v in raw) root=src ;; a) root=ma ;; b) root=mb ;; esac
    mkfifo "$W/in-$v" "$W/out-$v"
    setpriv --reuid "$UID_" --regid "$UID_" --clear-groups \
        "$W/openloop" "$W/$root/alice/pub/d1/d2/d3/small" .html 1 <"$W/in-$v" >"$W/out-$v" &
done
exec 4>"$W/in-raw" 5>"$W/in-a" 6>"$W/in-b" 7<"$W/out-raw" 8<"$W/out-a" 9<"$W/out-b"
ask() { # variant fd-in fd-out -> cpu ns per op
    echo "run $N" >&"$2"
    read -r _wall cpu <&"$3"
    echo $((cpu / N))
}
ask raw 4 7 >/dev/null; ask a 5 8 >/dev/null; ask b 6 9 >/dev/null   # warm
kill -USR1 "$(cat "$W/fsa.pid")" "$(cat "$W/fsb.pid")"; sleep 0.3
# GETXATTR in a stats dump (counted as `other` before it had its own counter).
gx() { tr ' ' '\n' <"$1" | awk -F= '$1 == "getxattr" || $1 == "other" { n += $2 } END { print n + 0 }'; }
GA0=$(gx "$W/sa"); GB0=$(gx "$W/sb")
echo "round  raw-ns  A-ns  B-ns  A-daemon-ns  B-daemon-ns   (caller CPU per open+read+close; daemon CPU per op)"
r=1
while [ "$r" -le "$ROUNDS" ]; do
    raw=$(ask raw 4 7)
    d0=$(dcpu a); a=$(ask a 5 8); da=$(( ($(dcpu a) - d0) * 1000000000 / TCK / N ))
    d0=$(dcpu b); b=$(ask b 6 9); db=$(( ($(dcpu b) - d0) * 1000000000 / TCK / N ))
    echo "$r  $raw  $a  $b  $da  $db"
    r=$((r+1))
done
kill -USR1 "$(cat "$W/fsa.pid")" "$(cat "$W/fsb.pid")"; sleep 0.3
GA1=$(gx "$W/sa"); GB1=$(gx "$W/sb")
OPS=$((ROUNDS * N))
echo "GETXATTR (+other) during the timed rounds, per op: A $(awk "BEGIN { printf \"%.3f\", ($GA1 - $GA0) / $OPS }")  B $(awk "BEGIN { printf \"%.3f\", ($GB1 - $GB0) / $OPS }")   ($OPS ops each)"
echo "A: $A"; echo "A stats: $(cat "$W/sa")"
echo "B: $B"; echo "B stats: $(cat "$W/sb")"
