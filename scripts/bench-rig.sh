# Sourced by the benchmarks: two namespaces joined by a veth pair, the uplink side ($UP,
# 198.18.0.2 and fd00:198:18::2) and the server side ($SRV, 198.18.0.1 and fd00:198:18::1),
# a scratch folder $OUT, and a cleanup on exit that kills what runs in them (PIDS too).
# Usage: bench_rig TAG   (TAG unique per run, e.g. phb$$)
# The pids below $1 at any depth (tun2proxy re-executes itself in its namespace, and a stalled
# round's traffic runs under that child).
descendants() {
    ps -eo pid=,ppid= | awk -v root="$1" '
        {parent[$1] = $2}
        END {for (p in parent) {q = parent[p]; while (q > 1 && q != root) q = parent[q]; if (q == root) print p}}'
}
bench_rig() {
    TAG=$1
    UP=$TAG-up
    SRV=$TAG-srv
    OUT=$(mktemp -d)
    chmod 755 "$OUT"
    PIDS=()
    trap bench_rig_cleanup EXIT
    ip netns add $UP
    ip netns add $SRV
    ip -n $UP link set lo up
    ip -n $SRV link set lo up
    ip -n $UP link add eth0 type veth peer name eth0 netns $SRV
    ip -n $UP addr add 198.18.0.2/24 dev eth0
    ip -n $SRV addr add 198.18.0.1/24 dev eth0
    ip -n $UP -6 addr add fd00:198:18::2/64 dev eth0 nodad
    ip -n $SRV -6 addr add fd00:198:18::1/64 dev eth0 nodad
    ip -n $UP link set eth0 up
    ip -n $SRV link set eth0 up
}

bench_rig_cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2> /dev/null || true; done
    for ns in $UP $SRV; do
        for p in $(ip netns pids $ns 2> /dev/null); do kill -9 "$p" 2> /dev/null || true; done
        ip netns del $ns 2> /dev/null || true
    done
    if [ -n "${BENCH_KEEP:-}" ]; then echo "kept $OUT" >&2; else rm -rf "$OUT"; fi
}

# Echo servers in $SRV (scripts/bench_tools.py at $TOOLS), their pids in PIDS; returns once the
# TCP echo on port 7 answers from $UP. Usage: bench_echo_servers tcp:7 udp:7 udp:53
bench_echo_servers() {
    local spec
    for spec in "$@"; do
        case $spec in
            tcp:*) ip netns exec $SRV bash -c "exec python3 '$TOOLS' echo-server ${spec#tcp:}" & ;;
            udp:*) ip netns exec $SRV bash -c "exec python3 '$TOOLS' udp-echo-server ${spec#udp:}" & ;;
            *) echo "bench_echo_servers: $spec is not tcp:PORT or udp:PORT" >&2; return 1 ;;
        esac
        PIDS+=($!)
    done
    for _ in $(seq 100); do
        ip netns exec $UP bash -c "exec 3<>/dev/tcp/$SERVER/7" 2> /dev/null && return 0
        sleep 0.1
    done
}
