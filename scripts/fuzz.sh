#!/usr/bin/env bash
# Short libFuzzer run of the HTTP/1 parser (rust-core/fuzz), on stable Rust: the
# sanitizer-coverage instrumentation is requested with plain codegen flags, so neither
# nightly nor cargo-fuzz is needed. Usage: scripts/fuzz.sh [seconds]
set -euo pipefail
secs=${1:-30}
cd "$(dirname "$0")/../rust-core/fuzz"
export CARGO_TARGET_DIR=${CACHE_DIR:-$HOME/.cache/otelcol-ebpf}/fuzz-target
target=x86_64-unknown-linux-gnu
# --target keeps the coverage flags off build scripts.
RUSTFLAGS="-Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4 \
-Cllvm-args=-sanitizer-coverage-inline-8bit-counters -Cllvm-args=-sanitizer-coverage-pc-table \
-Cllvm-args=-sanitizer-coverage-trace-compares --cfg fuzzing -Cdebug-assertions -Coverflow-checks" \
  cargo build --quiet --release --bin http1 --target "$target"
corpus=$CARGO_TARGET_DIR/corpus/http1
mkdir -p "$corpus"
"$CARGO_TARGET_DIR/$target/release/http1" -max_total_time="$secs" -dict=http1.dict "$corpus" seeds/http1 2>&1 | tail -n 3
