#!/bin/sh
# Store benchmarks: writer ingest rate, database size per 100,000 flows, and the read API's
# query times on a database of N flows (default 1,000,000). Not a pass/fail test.
#   scripts/bench-store.sh [N]
# Needs ~0.5 GB in $TMPDIR for N = 1,000,000; takes ~2 minutes on 2 cores.
set -eu
cd "$(dirname "$0")/.."
N="${1:-1000000}"
cargo build --quiet --release --example store_bench -p phonehome-core
BIN=target/release/examples/store_bench
DB="${TMPDIR:-/tmp}/phonehome-bench-$N.db"
trap 'rm -f "$DB" "$DB-wal" "$DB-shm"' EXIT
echo "== machine: $(nproc) CPUs, load $(cut -d' ' -f1-3 /proc/loadavg)"
echo "== ingest (flow opened/updated/closed + DNS events, coalesced per write window)"
"$BIN" ingest 200000
echo "== ingest, worst case (every event a separate upsert)"
"$BIN" ingest-spread 200000
echo "== building a $N-flow database (10 sessions over 30 days)"
rm -f "$DB" "$DB-wal" "$DB-shm"
"$BIN" build "$DB" "$N"
echo "== read API on $N flows (median of 5)"
"$BIN" query "$DB"
