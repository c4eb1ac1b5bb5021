#!/usr/bin/env bash
# Installs what the build and the tests need, skipping what is already there, so a second
# run costs a few seconds. Tools we build go to $CACHE_DIR/bin (outside the clone).
# --build-only: just what `make core check-header collector` needs (the Dockerfile's builder).
set -euo pipefail
BUILD_ONLY=0
[ "${1:-}" = "--build-only" ] && BUILD_ONLY=1
CACHE_DIR=${CACHE_DIR:-$HOME/.cache/otelcol-ebpf}
OCB_VERSION=${OCB_VERSION:-v0.158.0}
CBINDGEN_VERSION=${CBINDGEN_VERSION:-0.29.4}
mkdir -p "$CACHE_DIR/bin"

say() { printf '[deps] %s\n' "$*"; }

# Debian packages: compiler and BPF tooling for the build; servers and clients for the tests;
# headless Chromium, which drives Zipkin's web UI in test_38 and makes the README's screenshot.
apt_pkgs=(clang llvm libbpf-dev bpftool)
[ "$BUILD_ONLY" = 1 ] || apt_pkgs+=(curl nginx-light wrk iproute2 procps python3-pip openssl libssl3
  postgresql redis-server mariadb-server rabbitmq-server chromium linux-perf)
missing=()
for p in "${apt_pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" != 0 ]; then
    echo "[deps] missing Debian packages: ${missing[*]} (run as root to install them)" >&2
    exit 1
  fi
  say "installing ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  # The test suite starts nginx itself; the package's service must not hold port 80.
  if [[ " ${missing[*]} " == *" nginx-light "* ]]; then
    (systemctl stop nginx 2>/dev/null || nginx -s stop 2>/dev/null || true)
  fi
  # Nor the database services their ports: the tests start private servers.
  for svc in postgresql redis-server mariadb rabbitmq-server; do
    pkg=$svc; [ "$svc" = mariadb ] && pkg=mariadb-server
    if [[ " ${missing[*]} " == *" $pkg "* ]]; then (systemctl stop "$svc" 2>/dev/null || service "$svc" stop 2>/dev/null || true); fi
  done
fi

command -v cargo >/dev/null || { echo "[deps] cargo not found: install Rust 1.95 with rustup" >&2; exit 1; }
command -v go >/dev/null || { echo "[deps] go not found: install Go 1.26" >&2; exit 1; }
if ! cargo clippy --version >/dev/null 2>&1; then
  say "installing clippy"
  rustup component add clippy
fi

if ! "$CACHE_DIR/bin/cbindgen" --version 2>/dev/null | grep -q "$CBINDGEN_VERSION"; then
  say "installing cbindgen $CBINDGEN_VERSION"
  cargo install --quiet --locked --root "$CACHE_DIR" cbindgen --version "$CBINDGEN_VERSION"
fi

if [ ! -x "$CACHE_DIR/bin/builder-$OCB_VERSION" ]; then
  say "installing ocb $OCB_VERSION"
  GOBIN="$CACHE_DIR/bin" go install "go.opentelemetry.io/collector/cmd/builder@$OCB_VERSION"
  mv "$CACHE_DIR/bin/builder" "$CACHE_DIR/bin/builder-$OCB_VERSION"
fi

if [ "$BUILD_ONLY" = 1 ]; then
  say "ok (build only)"
  exit 0
fi

# Python test dependencies.
if ! python3 -c 'import grpc' 2>/dev/null; then
  say "installing grpcio (the gRPC peers of the e2e tests)"
  python3 -m pip install -q grpcio==1.66.1
fi
if ! python3 -c 'import pytest' 2>/dev/null; then
  say "installing pytest"
  python3 -m pip install -q pytest
fi
# The SDK-instrumented service next to the receiver (test/e2e/apps/sdk_app.py): the real
# OpenTelemetry Python SDK, OTLP/HTTP exporter, Flask and requests instrumentations.
if ! python3 -c 'import flask, requests, opentelemetry.sdk.trace, opentelemetry.exporter.otlp.proto.http.trace_exporter, opentelemetry.instrumentation.flask, opentelemetry.instrumentation.requests' 2>/dev/null; then
  say "installing the OpenTelemetry Python SDK, Flask and requests (the SDK app of the e2e tests)"
  python3 -m pip install -q flask==3.1.3 requests==2.34.2 opentelemetry-api==1.45.1 opentelemetry-sdk==1.45.1 \
    opentelemetry-exporter-otlp-proto-http==1.45.1 opentelemetry-instrumentation-flask==0.66b1 \
    opentelemetry-instrumentation-requests==0.66b1
fi
# Database clients of the e2e tests: psycopg (3) and psycopg2 (libpq), redis-py, PyMySQL and
# mysql-connector-python (server-side prepared statements).
if ! python3 -c 'import psycopg, psycopg2, redis, pymysql, mysql.connector' 2>/dev/null; then
  say "installing psycopg, psycopg2, redis-py, PyMySQL and mysql-connector-python (database clients of the e2e tests)"
  python3 -m pip install -q "psycopg[binary]==3.3.9" psycopg2-binary==2.9.13 redis==8.1.0 PyMySQL==1.2.4 \
    mysql-connector-python==26.10.0
fi
# Java and Go clients of the e2e tests: the JDBC driver and Zipkin's server (make demo) from Maven Central, the Go
# modules of test/e2e/apps/godb (pgx, go-redis), apps/goamqp (amqp091-go) and apps/gokafka (franz-go) into Go's module cache.
command -v java >/dev/null && command -v mvn >/dev/null || { echo "[deps] java and mvn are needed (OpenJDK 17, Maven)" >&2; exit 1; }
"$(dirname "$0")/jars.sh"
(cd "$(dirname "$0")/../test/e2e/apps/godb" && go mod download)
(cd "$(dirname "$0")/../test/e2e/apps/goamqp" && go mod download)
(cd "$(dirname "$0")/../test/e2e/apps/gokafka" && go mod download)
# Other Go releases, from the module proxy into Go's module cache (~70 MB each): the goroutine probes are
# checked against each (rust-core loader/goruntime.rs tests, test/e2e/test_40b_go_releases.py).
for v in go1.18.10 go1.20.14 go1.23.12 go1.27.3; do GOTOOLCHAIN=$v go version >/dev/null; done
# pymongo, the MongoDB client of the e2e tests.
if ! python3 -c 'import pymongo' 2>/dev/null; then
  say "installing pymongo (MongoDB client of the e2e tests)"
  python3 -m pip install -q pymongo==4.20.1
fi
# Kafka clients of the e2e tests and the golden recordings: confluent-kafka (librdkafka) and
# kafka-python (older protocol versions). The broker's jars come with jars.sh above.
if ! python3 -c 'import confluent_kafka, kafka' 2>/dev/null; then
  say "installing confluent-kafka and kafka-python (Kafka clients of the e2e tests)"
  python3 -m pip install -q confluent-kafka==2.16.1 kafka-python==3.0.12
fi
# pika, the RabbitMQ (AMQP 0-9-1) client of the e2e tests and golden captures.
if ! python3 -c 'import pika' 2>/dev/null; then
  say "installing pika (RabbitMQ client of the e2e tests)"
  python3 -m pip install -q pika==1.4.4
fi
# FerretDB, the MongoDB wire protocol server of the e2e tests (built once, cached).
CACHE_DIR="$CACHE_DIR" "$(dirname "$0")/ferretdb.sh"
say "ok"
