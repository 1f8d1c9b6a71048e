#!/usr/bin/env bash
# Short fuzz run of every cargo-fuzz target in rust-core/fuzz (CI smoke test).
#
#   scripts/fuzz-smoke.sh [SECONDS_PER_TARGET] [TARGET...]
#
# SECONDS_PER_TARGET defaults to 20; TARGETs default to all of `cargo fuzz list`. Each target
# starts from its committed seeds (rust-core/fuzz/seeds/<target>, if any) plus the corpus of
# earlier runs (rust-core/fuzz/corpus/<target>, not committed). Prints "fuzz-smoke: ok T" or
# "fuzz-smoke: FAILED T" per target (scripts/test.sh counts them) and exits non-zero if any target
# found a crash, leak or timeout; the reproducer is in rust-core/fuzz/artifacts/<target>/.
#
# Needs a nightly toolchain and cargo-fuzz:
#   rustup toolchain install nightly --profile minimal && cargo install cargo-fuzz
set -euo pipefail

secs="${1:-20}"
shift || true
cd "$(dirname "$0")/../rust-core/fuzz"

if [ "$#" -gt 0 ]; then
    targets=("$@")
else
    mapfile -t targets < <(cargo +nightly fuzz list)
fi

# -a: debug assertions, so overflow checks are on (-O alone turns them off). -s none: no
# AddressSanitizer; the fuzzed code is safe Rust (bounds and overflow checks panic, and libFuzzer
# reports the panic), and ASan doubled the build, the longest step of CI (199 s vs ~390 s).
cargo +nightly fuzz build -O -a -s none
failed=0

for t in "${targets[@]}"; do
    mkdir -p "corpus/$t"
    seeds=()
    [ -d "seeds/$t" ] && seeds=("seeds/$t")
    echo "== fuzz $t for ${secs}s"
    # -rss_limit_mb bounds memory; -max_len covers a large ClientHello or DNS-over-TCP message.
    set +e
    cargo +nightly fuzz run -O -a -s none "$t" "corpus/$t" "${seeds[@]}" -- \
        -max_total_time="$secs" -max_len=70000 -rss_limit_mb=2048 -timeout=10 -print_final_stats=1 \
        >"corpus/$t.log" 2>&1
    status=$?
    set -e
    grep -E '^stat::(number_of_executed_units|peak_rss_mb)|^#[0-9]+ +DONE' "corpus/$t.log" || true
    if [ "$status" -ne 0 ]; then
        tail -40 "corpus/$t.log" >&2
        echo "fuzz-smoke: FAILED $t (reproducer in rust-core/fuzz/artifacts/$t/)"
        failed=$((failed + 1))
    else
        echo "fuzz-smoke: ok $t"
    fi
done
echo "fuzz smoke: ${#targets[@]} targets x ${secs}s, $failed failed"
[ "$failed" -eq 0 ]
