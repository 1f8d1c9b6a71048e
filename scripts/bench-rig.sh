# Sourced by the benchmarks: two namespaces joined by a veth pair, the uplink side ($UP,
# 198.18.0.2 and fd00:198:18::2) and the server side ($SRV, 198.18.0.1 and fd00:198:18::1),
# a scratch folder $OUT, and a cleanup on exit that kills what runs in them (PIDS too).
# Usage: bench_rig TAG   (TAG unique per run, e.g. phb$$)
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
