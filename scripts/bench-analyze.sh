#!/usr/bin/env bash
# Throughput of `phonehome analyze` over the capture corpus, side by side with tshark extracting
# the same naming fields (TLS/QUIC SNI, HTTP Host, DNS query) from the same files.
#
#   scripts/bench-analyze.sh [ROUNDS]        (default 5 rounds; best round is reported)
#
# Corpus: $PHONEHOME_CORPUS or shared/corpus beside the repository. Needs tshark
# (apt-get install -y tshark). Builds the release binary first.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
rounds="${1:-5}"
corpus="${PHONEHOME_CORPUS:-$repo/../shared/corpus}"
if [ ! -d "$corpus/ndpi/pcaps" ]; then
    echo "bench-analyze: corpus not found at $corpus (set PHONEHOME_CORPUS)" >&2
    exit 2
fi
command -v tshark >/dev/null || { echo "bench-analyze: tshark missing (apt-get install -y tshark)" >&2; exit 2; }

cargo build --release --quiet --manifest-path "$repo/Cargo.toml" -p phonehome-core --bin phonehome
bin="${CARGO_TARGET_DIR:-$repo/target}/release/phonehome"

mapfile -t files < <(ls "$corpus"/ndpi/pcaps/*.pcap* "$corpus"/pcapdroid/*.pcap | sort)
bytes=$(cat "${files[@]}" | wc -c)
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

now() { date +%s.%N; }
calc() { awk "BEGIN { print $* }"; }
best_ours=""; best_tshark=""; flows=0
for r in $(seq "$rounds"); do
    rm -f "$work"/bench.db*
    t0=$(now)
    # Damaged captures in the corpus make analyze exit 2 after storing what they held.
    "$bin" analyze --db "$work/bench.db" "${files[@]}" 2>"$work/ours.log" || [ $? -eq 2 ]
    t1=$(now)
    for f in "${files[@]}"; do
        tshark -n -r "$f" -T fields -e ip.src -e ipv6.src -e tcp.srcport -e udp.srcport \
            -e tls.handshake.extensions_server_name -e http.host -e dns.qry.name \
            >/dev/null 2>>"$work/tshark.log" || true
    done
    t2=$(now)
    ours=$(calc "$t1 - $t0"); theirs=$(calc "$t2 - $t1")
    if [ -z "$best_ours" ] || [ "$(calc "($ours < $best_ours)")" = 1 ]; then best_ours=$ours; fi
    if [ -z "$best_tshark" ] || [ "$(calc "($theirs < $best_tshark)")" = 1 ]; then best_tshark=$theirs; fi
done
flows=$(grep -o '[0-9]* flows' "$work/ours.log" | awk '{s+=$1} END {print s+0}')
packets=$(grep -o '[0-9]* packets' "$work/ours.log" | awk '{s+=$1} END {print s+0}')

printf 'corpus: %d files, %.1f MB, %d packets, %d flows; best of %d rounds\n' \
    "${#files[@]}" "$(calc "$bytes / 1000000")" "$packets" "$flows" "$rounds"
printf '%-28s %9s %9s %11s\n' "" "seconds" "MB/s" "flows/s"
printf '%-28s %9.3f %9.1f %11.0f\n' "phonehome analyze (+SQLite)" "$best_ours" \
    "$(calc "$bytes / 1000000 / $best_ours")" "$(calc "$flows / $best_ours")"
printf '%-28s %9.3f %9.1f %11.0f\n' "tshark -T fields (names)" "$best_tshark" \
    "$(calc "$bytes / 1000000 / $best_tshark")" "$(calc "$flows / $best_tshark")"
printf 'speed ratio phonehome/tshark: %.1fx\n' "$(calc "$best_tshark / $best_ours")"
