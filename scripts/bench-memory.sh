#!/usr/bin/env bash
# The relay's resident memory alone (a measurement, not a test; the quick part of bench.sh):
# RSS with no flows yet, after 200 short connections and 50 DNS queries, peak (sampled every
# 0.1 s) while BENCH_ACTIVE_FLOWS flows echo 16 KiB messages for 10 s, 3 s and 8 s after they
# closed. `phonehome capture`, then tun2proxy on the same rig when it is installed (`cargo install
# tun2proxy`; no proxy, as in bench-connections.sh), BENCH_ROUNDS rounds interleaved.
# Same rig as bench.sh. Usage: sudo scripts/bench-memory.sh   (BENCH_MTU=9000 (the capture default),
# BENCH_ACTIVE_FLOWS=1000, BENCH_ROUNDS=1, PHONEHOME=path, TUN2PROXY=path)
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
TOOLS="$HERE/bench_tools.py"
SERVER=198.18.0.1
PH=${PHONEHOME:-$ROOT/target/release/phonehome}
MTU=${BENCH_MTU:-9000}
FLOWS=${BENCH_ACTIVE_FLOWS:-1000}
ROUNDS=${BENCH_ROUNDS:-1}
wait_for() { for _ in $(seq 3000); do grep -qs "$2" "$1" && return 0; sleep 0.05; done; return 1; }

# Inner part: the traffic, run inside the relay. It announces each phase in $2.phase; the outer
# part, which sees the relay's processes, samples their RSS. $3: the DNS server to query, "resolv"
# for the one in /etc/resolv.conf (the capture's own DNS service), or "none" (tun2proxy without
# a proxy answers no DNS, as in bench-connections.sh).
if [ "${1:-}" = "--inner" ]; then
    phase() { echo "$1" > "$2.phase.part"; mv "$2.phase.part" "$2.phase"; }
    ulimit -n "$(ulimit -Hn)"
    dns=$3
    [ "$dns" = resolv ] && dns=$(awk '$1 == "nameserver" {print $2; exit}' /etc/resolv.conf)
    sleep 1
    phase idle "$2"; sleep 0.5
    python3 "$TOOLS" conns $SERVER 7 200 > /dev/null
    [ "$dns" = none ] || python3 "$TOOLS" dns "$dns" 50 > /dev/null
    sleep 2
    phase short "$2"; sleep 0.5
    phase active "$2"
    python3 "$TOOLS" active $SERVER 7 "$FLOWS" 10 > "$2.active"
    phase closed "$2"; sleep 3
    phase closed3 "$2"; sleep 5
    phase closed8 "$2"; sleep 0.5
    phase end "$2"
    exit 0
fi

# RSS in KiB of a process and its descendants running the same program (tun2proxy re-executes
# itself in its namespace; `descendants` is in bench-rig.sh).
tree_rss() {
    local exe total=0 p
    exe=$(readlink "/proc/$1/exe" 2> /dev/null) || { echo 0; return; }
    for p in "$1" $(descendants "$1"); do
        [ "$(readlink "/proc/$p/exe" 2> /dev/null)" = "$exe" ] &&
            total=$((total + $(awk '$1 == "VmRSS:" {print $2}' "/proc/$p/status" 2> /dev/null || echo 0)))
    done
    echo $total
}
# Samples the relay $1 until its traffic ends; writes "phase KiB" lines to $2.rss (the first
# sample of each phase; for the active phase its peak). Echo flows still running 30 s into their
# 10 s phase mean the relay stalled them: "stalled" is recorded with the peak so far.
sample() {
    local seen="" now peak=0 p ticks=0
    while kill -0 "$1" 2> /dev/null; do
        p=$(cat "$2.phase" 2> /dev/null || true)
        now=$(tree_rss "$1")
        if [ "$p" = active ]; then
            [ "$now" -gt "$peak" ] && peak=$now
            ticks=$((ticks + 1))
            if [ $ticks -gt 300 ]; then
                echo "active $peak" >> "$2.rss"
                echo "stalled: the echo flows had not finished 30 s into their 10 s" > "$2.active"
                return 1
            fi
        fi
        if [ -n "$p" ] && [ "$p" != "$seen" ]; then
            [ "$seen" = active ] && echo "active $peak" >> "$2.rss"
            [ "$p" != active ] && [ "$p" != end ] && echo "$p $now" >> "$2.rss"
            seen=$p
        fi
        [ "$p" = end ] && return 0
        sleep 0.1
    done
    grep -qs end "$2.phase" && return 0
    echo "relay exited in phase ${seen:-none}" > "$2.active"
    return 1
}

[ "$(id -u)" = 0 ] || { echo "bench-memory: needs root (network namespaces)" >&2; exit 1; }
T2P=${TUN2PROXY:-$(command -v tun2proxy-bin || echo "$HOME/.cargo/bin/tun2proxy-bin")}
[ -x "$T2P" ] || T2P=""
. "$ROOT/scripts/bench-rig.sh"
bench_rig phm$$
bench_echo_servers tcp:7 udp:53
echo "Relay memory — $(date -u +%FT%TZ), load $(cut -d' ' -f1 /proc/loadavg), TUN MTU $MTU, $FLOWS active flows, $PH${T2P:+, $T2P}"
systems="phonehome${T2P:+ tun2proxy}"
# Both relays hold a socket per flow (tun2proxy does not raise its own limit).
ulimit -n "$(ulimit -Hn)"
for round in $(seq "$ROUNDS"); do
    for sys in $systems; do
        run="$OUT/$sys.$round"
        if [ $sys = phonehome ]; then
            ip netns exec $UP "$PH" capture --quiet --mtu "$MTU" --db "$OUT/memory.$round.db" \
                --dns-upstream $SERVER:53 -- bash "$HERE/bench-memory.sh" --inner "$run" resolv \
                2> "$run.log" &
        else
            # As in bench-connections.sh: its own namespace with the TUN, routed by the command;
            ip netns exec $UP "$T2P" --unshare --tun tun0 --proxy none://0.0.0.0:0 --mtu "$MTU" \
                --tcp-mss $((MTU - 40)) --max-sessions $((FLOWS * 4)) -v off \
                -- bash -c "ip link set lo up && ip link set tun0 up && ip addr add 198.19.0.2/32 dev tun0 \
                    && ip route add default dev tun0 \
                    && exec bash '$HERE/bench-memory.sh' --inner '$run' none" > "$run.log" 2>&1 &
        fi
        relay=$!
        wait_for "$run.phase" idle || { echo "bench-memory: $sys did not start" >&2; cat "$run.log" >&2; exit 1; }
        sample $relay "$run" || true
        for _ in $(seq 100); do kill -0 $relay 2> /dev/null || break; sleep 0.05; done
        for p in $(descendants $relay) $relay; do kill -9 "$p" 2> /dev/null || true; done
        wait $relay 2> /dev/null || true
    done
done

mb() { awk -v k="$1" '$1 == k {printf "%.1f", $2 / 1024}' "$2"; }
printf '%-44s' "RSS (MB), round:"; for sys in $systems; do for r in $(seq "$ROUNDS"); do printf '%12s' "$sys.$r"; done; done; echo
for row in "idle:no flows yet" "short:after 200 connections, 50 lookups" "active:peak, $FLOWS active flows" \
           "closed3:3 s after they closed" "closed8:8 s after they closed"; do
    printf '%-44s' "${row#*:}"
    for sys in $systems; do for r in $(seq "$ROUNDS"); do printf '%12s' "$(mb "${row%%:*}" "$OUT/$sys.$r.rss")"; done; done; echo
done
for sys in $systems; do for r in $(seq "$ROUNDS"); do echo "$sys.$r: $(cat "$OUT/$sys.$r.active" 2> /dev/null)"; done; done
