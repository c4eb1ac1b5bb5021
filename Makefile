# The two commands the README promises: `make run` and `make test`. Both install what is
# missing first (scripts/deps.sh), then build.
SHELL := /bin/bash
CACHE_DIR ?= $(HOME)/.cache/otelcol-ebpf
OCB_VERSION ?= v0.158.0
export CACHE_DIR OCB_VERSION
# Cargo's target dir lives outside the clone so a fresh clone reuses the last build.
export CARGO_TARGET_DIR ?= $(CACHE_DIR)/target
export PATH := $(CACHE_DIR)/bin:$(PATH)
CONFIG ?= config/otelcol-ebpf.yaml
LIB := build/lib/libotelcol_ebpf_core.a
HEADER := include/otelcol_ebpf.h
BIN := bin/otelcol-ebpf

.PHONY: all deps build core header check-header collector run demo demo-screenshot test test-rust test-fuzz test-go test-deploy test-e2e bench clean

all: build

deps:
	@scripts/deps.sh

build: deps core check-header collector

core:
	cargo build --release -p otelcol-ebpf-core
	@mkdir -p build/lib
	cp $(CARGO_TARGET_DIR)/release/libotelcol_ebpf_core.a $(LIB)

header:
	cd rust-core && cbindgen --config cbindgen.toml --output ../$(HEADER) .

# CI fails when the committed header no longer matches the Rust ABI.
check-header:
	@tmp=$$(mktemp); (cd rust-core && cbindgen --quiet --config cbindgen.toml --output $$tmp .) && \
	  if ! cmp -s $$tmp $(HEADER); then echo "$(HEADER) is stale: run 'make header' and commit it"; diff -u $(HEADER) $$tmp | head -40; rm -f $$tmp; exit 1; fi; rm -f $$tmp

# Go's build cache does not see the contents of the static library cgo links, so its hash
# goes into the link flags: a new core always relinks the collector.
collector: $(LIB)
	builder-$(OCB_VERSION) --config otelcol-builder.yaml \
	  --ldflags="-s -w -X main.rustCoreHash=$$(sha256sum $(LIB) | cut -c1-16)"
	@mkdir -p bin
	# Renamed into place: works while a collector from the old binary still runs.
	cp build/otelcol-ebpf/otelcol-ebpf $(BIN).new && mv -f $(BIN).new $(BIN)

# GOGC=200: the receiver's steady stream of short-lived pdata is cheaper to collect half
# as often (measured: 5.5 -> 4.9 us of collector CPU per span, RSS unchanged; docs/benchmarks.md).
run: build
	GOGC=$${GOGC:-200} $(BIN) --config $(CONFIG)

# A shop of three services, PostgreSQL and Redis under light load, traced into Zipkin's web
# UI (demo/run.py prints the URL); Ctrl-C stops everything.
demo: build
	python3 demo/run.py

# Regenerates the README's picture of one trace's waterfall (headless Chromium).
demo-screenshot: build
	python3 demo/run.py --screenshot docs/images/demo-trace.png

test: build test-rust test-fuzz test-go test-deploy test-e2e

test-rust:
	cargo clippy --release -p otelcol-ebpf-core --all-targets -- -D warnings
	cargo test --release -p otelcol-ebpf-core

test-fuzz:
	scripts/fuzz.sh 30

test-go:
	cd go-receiver && go vet ./... && go test ./... && CGO_ENABLED=0 go build ./... && CGO_ENABLED=0 go test ./...

# deploy/ checked offline: the Kubernetes objects and Helm values against the real
# k8s.io/api types and our rules (test/deploy), the unit by systemd-analyze, the configs by
# the built collector; deps.sh --build-only is what the Dockerfile's builder runs.
test-deploy:
	scripts/deps.sh --build-only
	cd test/deploy && go vet ./... && go test -count=1 ./...
	scripts/verify-unit.sh

test-e2e:
	python3 -m pytest -v test/e2e

bench: build
	python3 scripts/bench.py

clean:
	rm -rf build bin
