#!/usr/bin/env bash
# Dissector benchmarks: per-flow cost of naming (TLS, QUIC, DNS, DNS cache, HTTP leak scan).
# Release build; prints medians of 5 runs. Not a pass/fail test.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo run --release -q -p phonehome-core --example dissect_bench
