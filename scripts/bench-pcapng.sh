#!/usr/bin/env bash
# What `phonehome capture --pcapng` costs (a measurement, not a test). Needs root, iperf3,
# iproute2, python3 and a release build (cargo build --release -p phonehome-core).
#
# Two namespaces joined by a veth (198.18.0.0/24 only); iperf3 for BENCH_SECONDS (5) through
# `phonehome capture`, upload and download, without and with --pcapng, and an upload capped at
# 500 Mbit/s with --pcapng. Prints throughput and the capture's pcapng line (packets written,
# with their owner, left out because the writer fell behind).
#
# Usage: sudo scripts/bench-pcapng.sh   (PHONEHOME=path/to/phonehome)
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
BIN=${PHONEHOME:-$ROOT/target/release/phonehome}
SECS=${BENCH_SECONDS:-5}
U=phpu$$
S=phps$$
D=$(mktemp -d)
cleanup() {
    ip netns pids "$S" 2> /dev/null | xargs -r kill 2> /dev/null || true
    ip netns del "$U" 2> /dev/null || true
    ip netns del "$S" 2> /dev/null || true
    rm -rf "$D"
}
trap cleanup EXIT

ip netns add "$U"
ip netns add "$S"
ip link add phpv0 netns "$U" type veth peer name phpv1 netns "$S"
ip -n "$U" addr add 198.18.0.2/24 dev phpv0
ip -n "$S" addr add 198.18.0.1/24 dev phpv1
for ns in "$U" "$S"; do ip -n "$ns" link set lo up; done
ip -n "$U" link set phpv0 up
ip -n "$S" link set phpv1 up

run() { # label capture-args iperf3-args
    ip netns exec "$S" iperf3 -s -1 -D > /dev/null 2>&1
    sleep 0.3
    # shellcheck disable=SC2086 # word splitting of the argument lists is intended
    ip netns exec "$U" "$BIN" capture --db "$D/$1.db" --dns-upstream 198.18.0.1:53 $2 -- \
        iperf3 -c 198.18.0.1 -t "$SECS" $3 -J 2> "$D/$1.err" > "$D/$1.json"
    python3 -c "import json,sys; j=json.load(open(sys.argv[1])); print('%-18s %6.2f Gbit/s' % (sys.argv[2], j['end']['sum_received']['bits_per_second'] / 1e9))" "$D/$1.json" "$1"
    grep -h "packets written" "$D/$1.err" | sed 's/^/    /' || true
}

run upload "" ""
run upload-pcapng "--pcapng $D/up.pcapng" ""
run download "" "-R"
run download-pcapng "--pcapng $D/down.pcapng" "-R"
run upload-500M-pcapng "--pcapng $D/up500.pcapng" "-b 500M"
