#!/usr/bin/env bash
# Every PhoneHome test, in one command (the README's test command; CI runs it through .ci/run).
#   1. the offline country/ASN file (fetched from npm once, reused after);
#   2. cargo fmt --check, cargo clippy -D warnings; cargo test: unit tests, store/report/export tests (headless Chromium for the HTML report),
#      the corpus agreement test over ../shared/corpus, and the end-to-end tests with real TUN
#      devices in network namespaces (root; without root they say so and are skipped);
#      the library and fuzz seeds again on i686 (32-bit);
#   3. a short run of every fuzz target (FUZZ_SECONDS each, default 15);
#   4. the Android checks (scripts/check-android.sh): cargo check for the three Android ABIs,
#      aapt2 link, Kotlin against the framework, JVM + Robolectric tests, R8 and the JNI surface,
#      a signed APK skeleton, the 16 KB check; then planted faults that those checks must catch.
# Ends with one line "N passed, N failed, N skipped" over all suites (a test that cannot run
# here says "SKIPPED" and counts as skipped).
set -uo pipefail
cd "$(dirname "$0")/.."
log_dir=$(mktemp -d)
status=0

run() {   # run NAME CMD...: run a suite, keep its output for the summary
    local name=$1; shift
    printf '\n===== %s: %s\n' "$name" "$*"
    local start=$SECONDS
    "$@" 2>&1 | tee "$log_dir/$name.log"
    local rc=${PIPESTATUS[0]}
    printf '===== %s took %d s\n' "$name" $((SECONDS - start))
    if [ "$rc" -ne 0 ]; then
        echo "===== $name FAILED (exit $rc)"
        status=1
        failed_suites=$((failed_suites + 1))
    fi
}
failed_suites=0

geo="${CARGO_TARGET_DIR:-target}/phonehome-geo.bin"
if [ ! -s "$geo" ]; then
    run geo scripts/fetch-geo.sh
fi
run fmt cargo fmt --all --check
run clippy cargo clippy --workspace --all-targets -- -D warnings
run cargo cargo test --workspace --no-fail-fast
# The parsers and the fuzz seeds on a 32-bit target, where `u32 as usize` + offset can wrap.
CC_i686_unknown_linux_gnu=i686-linux-gnu-gcc CARGO_TARGET_I686_UNKNOWN_LINUX_GNU_LINKER=i686-linux-gnu-gcc \
    run i686 cargo test -p phonehome-core --no-default-features --target i686-unknown-linux-gnu --lib --test fuzz_seeds
run fuzz scripts/fuzz-smoke.sh "${FUZZ_SECONDS:-15}"
run android scripts/check-android.sh
run android-planted scripts/android-host/test-check-fails.sh

# Totals: cargo's "test result" lines, Maven Surefire's "Tests run" summary, fuzz targets run.
passed=0; failed=0; skipped=0
while read -r p f i; do
    passed=$((passed + p)); failed=$((failed + f)); skipped=$((skipped + i))
done < <(cat "$log_dir"/*.log | sed -n 's/.*test result: [a-zA-Z]*\. \([0-9]*\) passed; \([0-9]*\) failed; \([0-9]*\) ignored.*/\1 \2 \3/p')
while read -r r f e s; do
    passed=$((passed + r - f - e - s)); failed=$((failed + f + e)); skipped=$((skipped + s))
done < <(cat "$log_dir"/android.log 2>/dev/null | sed -n 's/^\[[A-Z]*\] Tests run: \([0-9]*\), Failures: \([0-9]*\), Errors: \([0-9]*\), Skipped: \([0-9]*\)$/\1 \2 \3 \4/p')
# A test that could not run here (no root, corpus, Chromium...) passed in cargo's count but
# wrote "SKIPPED ..." to stderr (maybe mid-line, between parallel tests): it counts as skipped.
cargo_skips=$(cat "$log_dir"/cargo.log "$log_dir"/i686.log 2>/dev/null | grep -o 'SKIPPED ' | wc -l)
passed=$((passed - cargo_skips)); skipped=$((skipped + cargo_skips))
# The Android shell checks (16 KB check, planted faults) close with "NAME: N passed, N failed".
while read -r p f; do
    passed=$((passed + p)); failed=$((failed + f))
done < <(cat "$log_dir"/android*.log 2>/dev/null | sed -n 's/^[a-z0-9 -]*: \([0-9]*\) passed, \([0-9]*\) failed$/\1 \2/p')
# Each fuzz target run counts as one test; a build failure counts as one failure.
fuzz_ok=$(grep -c '^fuzz-smoke: ok ' "$log_dir"/fuzz.log)
fuzz_bad=$(grep -c '^fuzz-smoke: FAILED ' "$log_dir"/fuzz.log)
passed=$((passed + fuzz_ok)); failed=$((failed + fuzz_bad))
if [ "$fuzz_ok" -eq 0 ] && [ "$fuzz_bad" -eq 0 ]; then failed=$((failed + 1)); fi
# A suite that failed without a failing test of its own (a build error, fmt, clippy, a shell
# check) still counts once, so the line never says 0 failed for a red run.
[ "$status" -ne 0 ] && [ "$failed" -lt "$failed_suites" ] && failed=$failed_suites
[ "$failed" -gt 0 ] && status=1
rm -rf "$log_dir"
echo
echo "$passed passed, $failed failed, $skipped skipped"
exit $status
