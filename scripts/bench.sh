#!/usr/bin/env bash
# PhoneHome engine benchmark (a measurement, not a test). Needs root, iperf3, python3, iproute2.
#
# Builds two network namespaces joined by a veth pair (198.18.0.0/24, fd00:198:18::/64; nothing
# else is reachable), runs iperf3 and an echo server in one, and measures from the other:
#   - iperf3 throughput over the direct path and through `phonehome capture` (the engine), both
#     directions, and the ratio;
#   - the same with 2,000 idle connections held open through the engine;
#   - CPU seconds per GB relayed, peak RSS (also with 1,000 active flows), CPU used in 10 s idle;
#   - round-trip latency of small request/responses, direct and through the engine.
#
# Usage: sudo scripts/bench.sh            (BENCH_SECONDS=10 per iperf3 run; PHONEHOME=path/to/bin)
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
TOOLS="$HERE/bench_tools.py"
SECS=${BENCH_SECONDS:-10}
SERVER=198.18.0.1
IDLE_CONNS=${BENCH_IDLE_CONNS:-2000}
ACTIVE_FLOWS=${BENCH_ACTIVE_FLOWS:-1000}

json_field() { # file python-expression-on-j
    python3 -c "import json,sys; j=json.load(open(sys.argv[1])); print($2)" "$1"
}
# iperf3 with one retry: a run can fail with "the server is busy" while the previous test's
# control connection is still closing.
iperf() { # out.json iperf3-args...
    local out=$1; shift
    for attempt in 1 2; do
        iperf3 "$@" -J > "$out" || true
        python3 -c "import json,sys; j=json.load(open(sys.argv[1])); sys.exit(0 if 'sum_received' in j['end'] else 1)" "$out" 2> /dev/null && return 0
        echo "bench: iperf3 $*: $(json_field "$out" "j.get('error', 'no result')" 2> /dev/null || echo 'no output') (attempt $attempt)" >&2
        sleep 2
    done
    return 1
}
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
vm() { awk -v k="$2:" '$1 == k {print $2}' "/proc/$1/status"; }  # kB

# --- inner part: runs as the captured command; $PPID is the phonehome process -----------------
if [ "${1:-}" = "--inner" ]; then
    OUT=$2
    ENGINE=$PPID
    TCK=$(getconf CLK_TCK)
    r() { echo "$1=$2" >> "$OUT/engine.txt"; }
    ulimit -n "$(ulimit -Hn)"

    c0=$(cpu_ticks $ENGINE); sleep 10; c1=$(cpu_ticks $ENGINE)
    r idle_cpu_s "$(echo "($c1 - $c0) / $TCK" | bc -l)"
    r rss_no_flows_kb "$(vm $ENGINE VmRSS)"

    c0=$(cpu_ticks $ENGINE)
    iperf "$OUT/up.json" -c $SERVER -t "$SECS"
    iperf "$OUT/down.json" -c $SERVER -t "$SECS" -R
    c1=$(cpu_ticks $ENGINE)
    r iperf_cpu_s "$(echo "($c1 - $c0) / $TCK" | bc -l)"
    r rss_after_iperf_kb "$(vm $ENGINE VmHWM)"

    python3 "$TOOLS" rr $SERVER 7 2000 64 > "$OUT/rr_engine.txt"

    # Throughput with idle connections is compared with runs right before and after, so drift in
    # the machine's load does not count as the idle connections' cost.
    iperf "$OUT/up_before_idle.json" -c $SERVER -t "$SECS"
    mkfifo "$OUT/hold.in"
    python3 "$TOOLS" hold $SERVER 7 "$IDLE_CONNS" < "$OUT/hold.in" > "$OUT/hold.out" &
    holder=$!
    exec 7> "$OUT/hold.in"
    for _ in $(seq 600); do grep -q ready "$OUT/hold.out" 2>/dev/null && break; sleep 0.1; done
    grep -q ready "$OUT/hold.out" || { echo "bench: idle connections not established" >&2; exit 1; }
    r rss_idle_conns_kb "$(vm $ENGINE VmRSS)"
    iperf "$OUT/up_idle.json" -c $SERVER -t "$SECS"
    exec 7>&-
    wait $holder
    iperf "$OUT/up_after_idle.json" -c $SERVER -t "$SECS"

    # Peak RSS while $ACTIVE_FLOWS flows move data at once (sampled, and the kernel's high-water
    # mark, which also covers the earlier phases).
    python3 "$TOOLS" active $SERVER 7 "$ACTIVE_FLOWS" 10 > "$OUT/active.txt" &
    active=$!
    peak=0
    while kill -0 $active 2> /dev/null; do
        now=$(vm $ENGINE VmRSS); [ "$now" -gt "$peak" ] && peak=$now; sleep 0.2
    done
    wait $active
    r rss_active_peak_kb "$peak"
    r rss_hwm_kb "$(vm $ENGINE VmHWM)"
    # Once they are gone (closed flows are kept a moment for late owner answers).
    sleep 3
    r rss_after_active_kb "$(vm $ENGINE VmRSS)"
    exit 0
fi

# --- outer part ---------------------------------------------------------------------------------
[ "$(id -u)" = 0 ] || { echo "bench.sh: needs root (it creates network namespaces); run with sudo" >&2; exit 1; }
for tool in ip iperf3 python3 bc; do
    command -v $tool > /dev/null || { echo "bench.sh: $tool not found (apt-get install iproute2 iperf3 python3 bc)" >&2; exit 1; }
done
PH=${PHONEHOME:-$ROOT/target/release/phonehome}
if [ -z "${PHONEHOME:-}" ]; then
    echo "building release binary..." >&2
    (cd "$ROOT" && cargo build --release -q -p phonehome-core --bin phonehome)
fi

LOAD_AT_START=$(cut -d' ' -f1 /proc/loadavg)
. "$ROOT/scripts/bench-rig.sh"
bench_rig phb$$

ip netns exec $SRV iperf3 -s > /dev/null 2>&1 &
PIDS+=($!)
ip netns exec $SRV bash -c "exec python3 '$TOOLS' echo-server 7" &
PIDS+=($!)
for _ in $(seq 100); do
    ip netns exec $UP bash -c "exec 3<>/dev/tcp/$SERVER/7 && exec 4<>/dev/tcp/$SERVER/5201" 2> /dev/null && break
    sleep 0.1
done

echo "direct path..." >&2
export -f iperf json_field
ip netns exec $UP bash -c "iperf '$OUT/direct_up.json' -c $SERVER -t $SECS"
ip netns exec $UP bash -c "iperf '$OUT/direct_down.json' -c $SERVER -t $SECS -R"
ip netns exec $UP python3 "$TOOLS" rr $SERVER 7 2000 64 > "$OUT/rr_direct.txt"

echo "through the engine..." >&2
ip netns exec $UP "$PH" capture --quiet --mtu "${BENCH_MTU:-9000}" --db "$OUT/bench.db" --dns-upstream $SERVER:53 -- bash "$HERE/bench.sh" --inner "$OUT"

# --- report -------------------------------------------------------------------------------------
get() { awk -F= -v k="$1" '$1 == k {print $2}' "$OUT/engine.txt"; }
gbps() { json_field "$1" "'%.2f' % (j['end']['sum_received']['bits_per_second'] / 1e9)"; }
bytes() { json_field "$1" "j['end']['sum_received']['bytes']"; }
rtt() { sed -E "s/.* $2=([0-9.]+).*/\\1/" "$1"; }
pct() { echo "scale=0; 100 * $1 / $2" | bc -l; }

du=$(gbps "$OUT/direct_up.json"); dd=$(gbps "$OUT/direct_down.json")
eu=$(gbps "$OUT/up.json"); ed=$(gbps "$OUT/down.json"); ei=$(gbps "$OUT/up_idle.json")
eb=$(echo "scale=2; ($(gbps "$OUT/up_before_idle.json") + $(gbps "$OUT/up_after_idle.json")) / 2" | bc -l)
moved=$(( $(bytes "$OUT/up.json") + $(bytes "$OUT/down.json") ))
cpu_per_gb=$(echo "$(get iperf_cpu_s) / ($moved / 1000000000)" | bc -l)
rd=$(rtt "$OUT/rr_direct.txt" p50); re=$(rtt "$OUT/rr_engine.txt" p50)
rdm=$(rtt "$OUT/rr_direct.txt" mean); rem=$(rtt "$OUT/rr_engine.txt" mean)

printf "\nPhoneHome engine benchmark — %s, %s CPUs (load average at start %s), %s s per iperf3 run, TUN MTU %s, release build\n" \
    "$(date -u +%FT%TZ)" "$(nproc)" "$LOAD_AT_START" "$SECS" "${BENCH_MTU:-9000}"
printf '%-48s %10s %10s %8s  %s\n' "measure" "direct" "engine" "ratio" "target"
printf '%-48s %10s %10s %7s%%  %s\n' "iperf3 TCP upload (Gbit/s)" "$du" "$eu" "$(pct "$eu" "$du")" ">= 50%"
printf '%-48s %10s %10s %7s%%  %s\n' "iperf3 TCP download (Gbit/s)" "$dd" "$ed" "$(pct "$ed" "$dd")" ">= 50%"
printf '%-48s %10s %10s %7s%%  %s\n' "upload with $IDLE_CONNS idle connections (Gbit/s)" "$eb" "$ei" "$(pct "$ei" "$eb")" ">= 80% of without"
printf '%-48s\n' "  (left column: engine without them, mean of the runs just before and after)"
printf '%-48s %10s %10.2f\n' "CPU seconds per GB relayed (whole process)" "-" "$cpu_per_gb"
printf '%-48s %10s %10.1f\n' "request/response RTT, 64 B (median, µs)" "$rd" "$re"
printf '%-48s %10s %10.1f\n' "request/response RTT, 64 B (mean, µs)" "$rdm" "$rem"
printf '%-48s %10s %10.1f\n' "added RTT per request/response (median, µs)" "-" "$(echo "$re - $rd" | bc -l)"
printf '%-48s %10s %10.2f  %s\n' "CPU used in 10 s idle (s)" "-" "$(get idle_cpu_s)" "0"
printf '%-48s %10s %10.1f  %s\n' "RSS with no flows yet (MB)" "-" "$(echo "$(get rss_no_flows_kb) / 1024" | bc -l)" "<= 8"
printf '%-48s %10s %10.1f\n' "RSS with $IDLE_CONNS idle connections (MB)" "-" "$(echo "$(get rss_idle_conns_kb) / 1024" | bc -l)"
printf '%-48s %10s %10.1f  %s\n' "peak RSS, $ACTIVE_FLOWS active flows (MB, sampled)" "-" "$(echo "$(get rss_active_peak_kb) / 1024" | bc -l)" "<= 25"
printf '%-48s %10s %10.1f\n' "RSS 3 s after they closed (MB)" "-" "$(echo "$(get rss_after_active_kb) / 1024" | bc -l)"
printf '%-48s %10s %10.1f\n' "peak RSS, whole run (MB, VmHWM)" "-" "$(echo "$(get rss_hwm_kb) / 1024" | bc -l)"
cat "$OUT/active.txt" | sed 's/^/  /' >&2

# New-connection cost (TCP, UDP, DNS), with tun2proxy on the same rig, interleaved rounds.
if [ "${BENCH_CONNECTIONS:-1}" != 0 ]; then
    PHONEHOME="$PH" BENCH_MTU="${BENCH_CONN_MTU:-1500}" bash "$HERE/bench-connections.sh"
fi
