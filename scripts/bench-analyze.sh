#!/usr/bin/env bash
# Throughput of `phonehome analyze` over the capture corpus, side by side with tshark extracting
# the same naming fields (TLS/QUIC SNI, HTTP Host, DNS query) from the same files.
#
#   scripts/bench-analyze.sh [ROUNDS]        (default 3 rounds; the best round is reported)
#
# Two workloads: the corpus as it is (76 small files: one process per file for tshark, one
# analyze run and one database session per file for us), and one large file made of the corpus
# merged and repeated 5 times with shifted clocks (steady-state throughput). A third line gives
# the observer alone, without SQLite (examples/observe_bench.rs).
#
# Corpus: $PHONEHOME_CORPUS or shared/corpus beside the repository. Needs tshark, mergecap and
# editcap (apt-get install -y tshark). Builds the release binaries first.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
rounds="${1:-3}"
corpus="${PHONEHOME_CORPUS:-$repo/../shared/corpus}"
if [ ! -d "$corpus/ndpi/pcaps" ]; then
    echo "bench-analyze: corpus not found at $corpus (set PHONEHOME_CORPUS)" >&2
    exit 2
fi
for tool in tshark mergecap editcap; do
    command -v "$tool" >/dev/null || { echo "bench-analyze: $tool missing (apt-get install -y tshark)" >&2; exit 2; }
done

cargo build --release --quiet --manifest-path "$repo/Cargo.toml" -p phonehome-core --bin phonehome --example observe_bench
target="${CARGO_TARGET_DIR:-$repo/target}/release"
bin="$target/phonehome"

mapfile -t files < <(ls "$corpus"/ndpi/pcaps/*.pcap* "$corpus"/pcapdroid/*.pcap | sort)
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

# The large file: every corpus file, concatenated, five times one day apart.
mergecap -a -F pcapng -w "$work/all0.pcapng" "${files[@]}" 2>/dev/null
for i in 1 2 3 4; do editcap -t $((i * 86400)) "$work/all0.pcapng" "$work/all$i.pcapng"; done
mergecap -a -F pcapng -w "$work/big.pcapng" "$work"/all[0-4].pcapng
rm -f "$work"/all[0-4].pcapng

now() { date +%s.%N; }
calc() { awk "BEGIN { print $* }"; }
tshark_fields() {
    tshark -n -r "$1" -T fields -e ip.src -e ipv6.src -e tcp.srcport -e udp.srcport \
        -e tls.handshake.extensions_server_name -e http.host -e dns.qry.name >/dev/null 2>&1 || true
}

# best_of NAME COMMAND...: runs COMMAND $rounds times, sets $best to the fastest wall time.
best_of() {
    best=""
    for _ in $(seq "$rounds"); do
        rm -f "$work"/bench.db*
        local t0 t1 took
        t0=$(now)
        "$@"
        t1=$(now)
        took=$(calc "$t1 - $t0")
        if [ -z "$best" ] || [ "$(calc "($took < $best)")" = 1 ]; then best=$took; fi
    done
}
analyze_files() { "$bin" analyze --db "$work/bench.db" "$@" 2>"$work/ours.log" || [ $? -eq 2 ]; }
tshark_files() { for f in "$@"; do tshark_fields "$f"; done; }

row() { # label seconds bytes flows
    printf '  %-34s %8.3f %9.1f %10.0f\n' "$1" "$2" "$(calc "$3 / 1000000 / $2")" "$(calc "$4 / $2")"
}

report() { # title bytes
    local flows packets
    flows=$(grep -o '[0-9]* flows' "$work/ours.log" | awk '{s+=$1} END {print s+0}')
    packets=$(grep -o '[0-9]* packets' "$work/ours.log" | awk '{s+=$1} END {print s+0}')
    printf '%s: %.1f MB, %d packets, %d flows (best of %d)\n' "$1" "$(calc "$2 / 1000000")" "$packets" "$flows" "$rounds"
    printf '  %-34s %8s %9s %10s\n' "" "seconds" "MB/s" "flows/s"
    row "phonehome analyze (into SQLite)" "$ours" "$2" "$flows"
    row "tshark -T fields (names only)" "$theirs" "$2" "$flows"
    printf '  %-34s %8.1fx\n' "speed ratio phonehome / tshark" "$(calc "$theirs / $ours")"
}

bytes=$(cat "${files[@]}" | wc -c)
best_of analyze_files "${files[@]}"; ours=$best
best_of tshark_files "${files[@]}"; theirs=$best
report "corpus, ${#files[@]} files" "$bytes"

big_bytes=$(wc -c < "$work/big.pcapng")
best_of analyze_files "$work/big.pcapng"; ours=$best
best_of tshark_fields "$work/big.pcapng"; theirs=$best
report "one merged file (corpus x5)" "$big_bytes"

echo "engine alone, no database:"
"$target/examples/observe_bench" "$work/big.pcapng" | sed 's/^/  /'
