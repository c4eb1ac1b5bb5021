#!/usr/bin/env bash
# Short libFuzzer runs of the protocol parsers (HTTP/1, HTTP/2, Redis, PostgreSQL, MySQL, MongoDB, Kafka, AMQP 0-9-1) (rust-core/fuzz), each for the
# given number of seconds, on stable Rust: the sanitizer-coverage instrumentation is
# requested with plain codegen flags, so neither nightly nor cargo-fuzz is needed. Then the
# Go receiver's OTLP decoder (go test -fuzz) for as long.
# Usage: scripts/fuzz.sh [seconds]
set -euo pipefail
secs=${1:-30}
cd "$(dirname "$0")/../rust-core/fuzz"
export CARGO_TARGET_DIR=${CACHE_DIR:-$HOME/.cache/otelcol-ebpf}/fuzz-target
target=x86_64-unknown-linux-gnu
targets=(http1 http2 redis postgres mysql mongodb kafka amqp)
# --target keeps the coverage flags off build scripts.
RUSTFLAGS="-Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4 \
-Cllvm-args=-sanitizer-coverage-inline-8bit-counters -Cllvm-args=-sanitizer-coverage-pc-table \
-Cllvm-args=-sanitizer-coverage-trace-compares --cfg fuzzing -Cdebug-assertions -Coverflow-checks" \
  cargo build --quiet --release "${targets[@]/#/--bin=}" --target "$target"
for t in "${targets[@]}"; do
  corpus=$CARGO_TARGET_DIR/corpus/$t
  mkdir -p "$corpus"
  echo "fuzz target $t (${secs}s):"
  "$CARGO_TARGET_DIR/$target/release/$t" -max_total_time="$secs" -dict="$t.dict" "$corpus" "seeds/$t" 2>&1 | tail -n 3
done
# The Go receiver's OTLP decoder against pdata's (go-receiver/otlpdecode_test.go).
echo "fuzz target go-receiver FuzzDecode (${secs}s):"
cd ../../go-receiver
go test -run - -fuzz FuzzDecode -fuzztime "${secs}s" -fuzzminimizetime 3s . 2>&1 | tail -n 3
