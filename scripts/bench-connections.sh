#!/usr/bin/env bash
# The cost of a new connection (a measurement, not a test). Needs root, python3, iproute2;
# tun2proxy for the comparison (`cargo install tun2proxy`; skipped when TUN2PROXY is not found).
#
# Same rig as scripts/bench.sh: a client namespace and a server namespace joined by a veth.
# Each round measures, interleaved, the direct path, `phonehome capture`, and tun2proxy (no proxy:
# it relays with its own sockets, --tcp-mss = MTU - 40):
#   - new TCP connections in sequence (connect, one 64-byte request/response, close): p50/p99
#     of the whole exchange, connections/s, and the relay's CPU per connection;
#   - new UDP flows (a new socket, one datagram and its echo) and DNS queries (each from a new
#     socket; PhoneHome: to its DNS service, which holds each answer for the query's owner).
# "Added" figures are the relay's median minus the direct median of the same round.
#
# Usage: sudo scripts/bench-connections.sh   (BENCH_ROUNDS=3, BENCH_CONNS=500, BENCH_MTU=1500,
#                                              PHONEHOME=path, TUN2PROXY=path)
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
TOOLS="$HERE/bench_tools.py"
SERVER=198.18.0.1
ROUNDS=${BENCH_ROUNDS:-3}
N=${BENCH_CONNS:-500}
MTU=${BENCH_MTU:-1500}
cpu_ticks() { local t=0 p; for p in $1; do t=$((t + $(awk '{print $14 + $15}' "/proc/$p/stat"))); done; echo $t; }
# A process and its descendants running the same program (tun2proxy re-executes itself in
# its namespace, as /proc/self/fd/N, so the name differs but the executable does not);
# `descendants` is in bench-rig.sh.
tree_ticks() {
    local pids=$1 exe p
    exe=$(readlink "/proc/$1/exe")
    for p in $(descendants "$1"); do
        [ "$(readlink "/proc/$p/exe" 2> /dev/null)" = "$exe" ] && pids="$pids $p"
    done
    cpu_ticks "$pids"
}
wait_for() { for _ in $(seq 3000); do grep -qs "$2" "$1" && return 0; sleep 0.05; done; return 1; }

# --- inner part: the client side inside a relay; $2 = output prefix, $3 = relay pid ----------
if [ "${1:-}" = "--inner" ]; then
    prefix=$2
    relay=$3
    dns=$(awk '$1 == "nameserver" {print $2; exit}' /etc/resolv.conf)
    if [ "$relay" = outside ]; then
        # The relay's CPU is sampled by the outer script (this shell cannot see its process).
        echo ready > "$prefix.ready"
        wait_for "$prefix.go" go
        python3 "$TOOLS" conns $SERVER 7 "$N" > "$prefix.tcp.part"
        mv "$prefix.tcp.part" "$prefix.tcp"
        wait_for "$prefix.tcp" cpu_ticks
    else
        c0=$(cpu_ticks "$relay")
        python3 "$TOOLS" conns $SERVER 7 "$N" > "$prefix.tcp"
        c1=$(cpu_ticks "$relay")
        echo "cpu_ticks=$((c1 - c0))" >> "$prefix.tcp"
    fi
    python3 "$TOOLS" udpflows $SERVER 7 "$N" > "$prefix.udp"
    if [ "${4:-}" != "nodns" ]; then python3 "$TOOLS" dns "$dns" "$N" > "$prefix.dns"; fi
    exit 0
fi

[ "$(id -u)" = 0 ] || { echo "bench-connections: needs root (network namespaces)" >&2; exit 1; }
PH=${PHONEHOME:-$ROOT/target/release/phonehome}
T2P=${TUN2PROXY:-$(command -v tun2proxy-bin || echo "$HOME/.cargo/bin/tun2proxy-bin")}
[ -x "$T2P" ] || T2P=""
. "$ROOT/scripts/bench-rig.sh"
bench_rig phc$$
bench_echo_servers tcp:7 udp:7 udp:53
export N

for round in $(seq "$ROUNDS"); do
    echo "round $round: direct" >&2
    ip netns exec $UP env SERVER_DNS=$SERVER bash -c "
        python3 '$TOOLS' conns $SERVER 7 $N > '$OUT/direct.$round.tcp'
        python3 '$TOOLS' udpflows $SERVER 7 $N > '$OUT/direct.$round.udp'
        python3 '$TOOLS' dns $SERVER $N > '$OUT/direct.$round.dns'"
    echo "round $round: phonehome" >&2
    ip netns exec $UP "$PH" capture --quiet --mtu "$MTU" --db "$OUT/ph.$round.db" \
        --dns-upstream $SERVER:53 -- bash -c "exec bash '$HERE/bench-connections.sh' --inner '$OUT/ph.$round' \$PPID"
    if [ -n "$T2P" ]; then
        echo "round $round: tun2proxy" >&2
        # tun2proxy makes its own namespace (--unshare) with the TUN and runs the client in it;
        # its sockets stay in the client namespace, so they reach the server as ours do.
        # Its --setup refuses a TUN-only namespace ("routing loop"), so the command routes it.
        ip netns exec $UP "$T2P" --unshare --tun tun0 --proxy none://0.0.0.0:0 --mtu "$MTU" \
            --tcp-mss $((MTU - 40)) --max-sessions 4000 -v off \
            -- bash -c "ip link set lo up && ip link set tun0 up && ip addr add 198.19.0.2/32 dev tun0 \
                && ip route add default dev tun0 \
                && exec bash '$HERE/bench-connections.sh' --inner '$OUT/t2p.$round' outside nodns" \
            > "$OUT/t2p.$round.log" 2>&1 &
        t2p=$!
        if wait_for "$OUT/t2p.$round.ready" ready; then
            c0=$(tree_ticks $t2p)
            echo go > "$OUT/t2p.$round.go"
            while kill -0 $t2p 2> /dev/null && ! grep -qs count= "$OUT/t2p.$round.tcp"; do sleep 0.05; done
            c1=$(tree_ticks $t2p)
            echo "cpu_ticks=$((c1 - c0))" >> "$OUT/t2p.$round.tcp"
        fi
        # It may outlive its command; give it a moment, then end it.
        for _ in $(seq 100); do kill -0 $t2p 2> /dev/null || break; sleep 0.05; done
        # SIGTERM is not enough for it while its namespace child lives.
        for p in $(descendants $t2p) $t2p; do kill -9 "$p" 2> /dev/null || true; done
        wait $t2p 2> /dev/null || true
    fi
done

# --- report ------------------------------------------------------------------------------------
field() { sed -nE "s/.*$2=([0-9.]+).*/\\1/p" "$1" | head -1; }
median() { sort -n | awk '{a[NR]=$1} END {if (NR) print (NR % 2 ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2)}'; }
# series KIND SYSTEM FIELD: one value per round
series() { for r in $(seq "$ROUNDS"); do f="$OUT/$2.$r.$1"; [ -s "$f" ] && field "$f" "$3"; done; }
range() { sort -n | awk 'NR == 1 {lo = $1} {hi = $1} END {if (NR) printf "%.3f-%.3f", lo, hi}'; }
added() { # KIND SYSTEM FIELD: per-round (system - direct), median and range
    for r in $(seq "$ROUNDS"); do
        f="$OUT/$2.$r.$1"; d="$OUT/direct.$r.$1"
        [ -s "$f" ] && [ -s "$d" ] && echo "$(field "$f" "$3") - $(field "$d" "$3")" | bc -l
    done
}
cpu_ms() { for r in $(seq "$ROUNDS"); do f="$OUT/$1.$r.tcp"; [ -s "$f" ] && echo "$(field "$f" cpu_ticks) * 1000 / $(getconf CLK_TCK) / $N" | bc -l; done; }

printf "\nNew-connection benchmark — %s, %s CPUs, load %s, TUN MTU %s, %s rounds x %s, release build\n" \
    "$(date -u +%FT%TZ)" "$(nproc)" "$(cut -d' ' -f1 /proc/loadavg)" "$MTU" "$ROUNDS" "$N"
printf '%-34s %16s %16s %16s\n' "median of rounds (range)" "direct" "phonehome" "tun2proxy"
for kind in tcp udp dns; do
    for what in p50 p99; do
        printf '%-34s' "$kind exchange $what (ms)"
        for sys in direct ph t2p; do
            printf ' %16s' "$(series $kind $sys $what | median) ($(series $kind $sys $what | range))"
        done
        echo
    done
    for what in p50 p99; do
        printf '%-34s %16s' "$kind added $what (ms)" "-"
        for sys in ph t2p; do printf ' %16s' "$(added $kind $sys $what | median) ($(added $kind $sys $what | range))"; done
        echo
    done
    printf '%-34s' "$kind per second"
    for sys in direct ph t2p; do printf ' %16s' "$(series $kind $sys per_s | median)"; done
    echo
done
printf '%-34s %16s %16s %16s\n' "CPU per TCP connection (ms)" "-" \
    "$(cpu_ms ph | median | xargs -r printf '%.3f')" "$(cpu_ms t2p | median | xargs -r printf '%.3f')"
ph=$(added tcp ph p50 | median); t2=$(added tcp t2p p50 | median)
if [ -n "$t2" ] && [ -n "$ph" ]; then
    printf '%-34s %16s\n' "added TCP p50, phonehome/tun2proxy" "$(echo "$ph / $t2" | bc -l | xargs printf '%.2f')"
fi
ph=$(added tcp ph p99 | median); t2=$(added tcp t2p p99 | median)
if [ -n "$t2" ] && [ -n "$ph" ] && [ "$(echo "$t2 > 0" | bc)" = 1 ]; then
    printf '%-34s %16s\n' "added TCP p99, phonehome/tun2proxy" "$(echo "$ph / $t2" | bc -l | xargs printf '%.2f')"
fi
ph=$(series tcp ph per_s | median); t2=$(series tcp t2p per_s | median)
if [ -n "$t2" ] && [ -n "$ph" ]; then
    printf '%-34s %16s\n' "TCP connections/s, ph/tun2proxy" "$(echo "$ph / $t2" | bc -l | xargs printf '%.2f')"
fi
pc=$(cpu_ms ph | median); tc=$(cpu_ms t2p | median)
if [ -n "$tc" ] && [ -n "$pc" ] && [ "$(echo "$tc > 0" | bc)" = 1 ]; then
    printf '%-34s %16s\n' "CPU per connection, ph/tun2proxy" "$(echo "$pc / $tc" | bc -l | xargs printf '%.2f')"
fi
# Owner attribution of these short flows, from PhoneHome's own databases: every TCP and UDP flow
# of the benchmark (not the DNS service's flows to the resolver) should carry the uid.
for r in $(seq "$ROUNDS"); do
    db="$OUT/ph.$r.db"
    [ -s "$db" ] || continue
    python3 - "$db" "$r" << 'PY'
import sqlite3, sys
c = sqlite3.connect(sys.argv[1])
for proto in ("tcp", "udp"):
    n, owned = c.execute("SELECT count(*), count(uid) FROM flows WHERE proto = ?", (proto,)).fetchone()
    print("round %s: %s flows with an owner: %d of %d" % (sys.argv[2], proto, owned, n))
PY
done
