#!/usr/bin/env bash
# The engine's resident memory alone (a measurement, not a test; the quick part of bench.sh):
# RSS with no flows yet, after 200 short connections and 50 DNS queries, peak (sampled every
# 0.2 s) while BENCH_ACTIVE_FLOWS flows echo 16 KiB messages for 10 s, 3 s and 8 s after they closed.
# Same rig as bench.sh. Usage: sudo scripts/bench-memory.sh   (BENCH_MTU=65000,
# BENCH_ACTIVE_FLOWS=1000, PHONEHOME=path)
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
TOOLS="$HERE/bench_tools.py"
SERVER=198.18.0.1
PH=${PHONEHOME:-$ROOT/target/release/phonehome}
MTU=${BENCH_MTU:-65000}
FLOWS=${BENCH_ACTIVE_FLOWS:-1000}
vm() { awk -v k="$2:" '$1 == k {print $2}' "/proc/$1/status"; }
mb() { echo "scale=1; $1 / 1024" | bc -l; }
if [ "${1:-}" = "--inner" ]; then
    engine=$PPID
    ulimit -n "$(ulimit -Hn)"
    sleep 1
    echo "RSS with no flows yet (MB):              $(mb "$(vm $engine VmRSS)")"
    python3 "$TOOLS" conns $SERVER 7 200 > /dev/null
    python3 "$TOOLS" dns "$(awk '$1 == "nameserver" {print $2; exit}' /etc/resolv.conf)" 50 > /dev/null
    sleep 2
    echo "RSS after 200 connections, 50 lookups (MB): $(mb "$(vm $engine VmRSS)")"
    python3 "$TOOLS" active $SERVER 7 "$FLOWS" 10 > "$2.active" &
    active=$!
    peak=0
    while kill -0 $active 2> /dev/null; do
        now=$(vm $engine VmRSS); [ "$now" -gt "$peak" ] && peak=$now; sleep 0.2
    done
    wait $active
    echo "peak RSS, $FLOWS active flows (MB):       $(mb $peak)   ($(cat "$2.active"))"
    sleep 3
    echo "RSS 3 s after they closed (MB):           $(mb "$(vm $engine VmRSS)")"
    # The engine drops closed flows on its next idle sweep: the settled figure comes later.
    sleep 5
    echo "RSS 8 s after they closed (MB):           $(mb "$(vm $engine VmRSS)")"
    exit 0
fi
[ "$(id -u)" = 0 ] || { echo "bench-memory: needs root (network namespaces)" >&2; exit 1; }
. "$ROOT/scripts/bench-rig.sh"
bench_rig phm$$
bench_echo_servers tcp:7 udp:53
echo "Engine memory — $(date -u +%FT%TZ), load $(cut -d' ' -f1 /proc/loadavg), TUN MTU $MTU, $PH"
ip netns exec $UP "$PH" capture --quiet --mtu "$MTU" --db "$OUT/memory.db" --dns-upstream $SERVER:53 \
    -- bash "$HERE/bench-memory.sh" --inner "$OUT/run"
