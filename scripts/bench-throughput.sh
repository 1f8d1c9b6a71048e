#!/usr/bin/env bash
# Throughput through `phonehome capture` against the direct path, in interleaved rounds (a
# measurement, not a test). Needs root, iperf3, python3, iproute2.
#
# Each round runs, one after the other: the direct veth path up and down, then each binary in
# PHONEHOMES (space-separated paths; default: the release build) up and down at TUN MTU
# BENCH_MTU. Drift in the machine's load hits every column of a round alike, so the per-round
# ratios and their median are what to compare, not the absolute Gbit/s. The engine's CPU
# seconds per GB relayed (user + system, whole process) drift less with the load.
#
# Usage: sudo BENCH_MTU=1500 scripts/bench-throughput.sh   (BENCH_ROUNDS=3, BENCH_SECONDS=5)
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
SECS=${BENCH_SECONDS:-5}
ROUNDS=${BENCH_ROUNDS:-3}
MTU=${BENCH_MTU:-1500}
SERVER=198.18.0.1
gbps() { python3 -c "import json,sys; print('%.3f' % (json.load(sys.stdin)['end']['sum_received']['bits_per_second'] / 1e9))"; }

# Inner part: runs as the captured command ($PPID is the phonehome process); writes
# "<up Gbit/s> <down Gbit/s> <engine CPU s per GB up> <per GB down>".
if [ "${1:-}" = "--inner" ]; then
    ticks() { awk '{print $14 + $15}' "/proc/$PPID/stat"; }
    run() { # iperf3 args; one retry (the previous test's control connection may still close)
        local t0 json
        t0=$(ticks)
        json=$(iperf3 -c $SERVER -t "$SECS" -J "$@" 2> /dev/null) ||
            { sleep 1; t0=$(ticks); json=$(iperf3 -c $SERVER -t "$SECS" -J "$@"); }
        python3 -c "import json,sys; e=json.loads(sys.argv[1])['end']['sum_received']; \
print('%.3f %.2f' % (e['bits_per_second'] / 1e9, ($(ticks) - $t0) / $(getconf CLK_TCK) / (e['bytes'] / 1e9)))" "$json"
    }
    read -r up cpu_up <<< "$(run)"
    read -r down cpu_down <<< "$(run -R)"
    echo "$up $down $cpu_up $cpu_down"
    exit 0
fi

[ "$(id -u)" = 0 ] || { echo "bench-throughput.sh: needs root" >&2; exit 1; }
if [ -z "${PHONEHOMES:-}" ]; then
    (cd "$ROOT" && cargo build --release -q -p phonehome-core --bin phonehome)
    PHONEHOMES=$ROOT/target/release/phonehome
fi

LOAD_AT_START=$(cut -d' ' -f1 /proc/loadavg)
. "$ROOT/scripts/bench-rig.sh"
bench_rig pht$$
ip netns exec $SRV iperf3 -s > /dev/null 2>&1 &
PIDS+=($!)
for _ in $(seq 100); do
    ip netns exec $UP bash -c "exec 4<>/dev/tcp/$SERVER/5201" 2> /dev/null && break
    sleep 0.1
done
sleep 1

printf 'throughput, TUN MTU %s, %s s per run, %s rounds, load average at start %s\n' \
    "$MTU" "$SECS" "$ROUNDS" "$LOAD_AT_START"
printf '%-6s %-32s %8s %8s %7s %7s %9s %9s\n' round path "up" "down" "up%" "down%" "CPUs/GBup" "CPUs/GBdn"
for round in $(seq "$ROUNDS"); do
    du=$(ip netns exec $UP iperf3 -c $SERVER -t "$SECS" -J | gbps)
    dd=$(ip netns exec $UP iperf3 -c $SERVER -t "$SECS" -J -R | gbps)
    printf '%-6s %-32s %8s %8s\n' "$round" direct "$du" "$dd"
    for ph in $PHONEHOMES; do
        got=$(ip netns exec $UP env BENCH_SECONDS="$SECS" "$ph" capture --quiet --mtu "$MTU" \
            --db "$OUT/t.db" --dns-upstream $SERVER:53 -- bash "$HERE/bench-throughput.sh" --inner)
        rm -f "$OUT"/t.db*
        read -r eu ed cu cd <<< "$got"
        printf '%-6s %-32s %8s %8s %6.0f%% %6.0f%% %9s %9s\n' "$round" "$ph" "$eu" "$ed" \
            "$(echo "100 * $eu / $du" | bc -l)" "$(echo "100 * $ed / $dd" | bc -l)" "$cu" "$cd"
    done
done
printf 'load average at end %s\n' "$(cut -d' ' -f1 /proc/loadavg)"
