#!/usr/bin/env bash
# What `phonehome capture --pcapng` costs (a measurement, not a test). Needs root, iperf3,
# iproute2, python3 and a release build (cargo build --release -p phonehome-core).
#
# The namespace rig of scripts/bench-rig.sh; iperf3 for BENCH_SECONDS (5) through
# `phonehome capture`, upload and download, without and with --pcapng, and an upload capped at
# 500 Mbit/s with --pcapng. Prints throughput and the capture's pcapng line (packets written,
# with their owner, left out because the writer fell behind).
#
# Usage: sudo scripts/bench-pcapng.sh   (PHONEHOME=path/to/phonehome)
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
BIN=${PHONEHOME:-$ROOT/target/release/phonehome}
SECS=${BENCH_SECONDS:-5}
. "$ROOT/scripts/bench-rig.sh"
bench_rig php$$
U=$UP
S=$SRV
D=$OUT

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
