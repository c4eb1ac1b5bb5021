#!/bin/bash
# Does R14 at a syscall's exit name the goroutine that made it? 64 goroutines on 2 Ps each
# write 2000 times with length 1000 + their goid; a tp_btf/sys_exit program reads goid
# through R14 at each write's exit and counts matches (docs/architecture.md, Go programs).
# Usage (as root, under the e2e lock): scripts/goid-at-syscall/run.sh [go command] [goid offset]
set -euo pipefail
GO=${1:-go}
OFF=${2:-152}
cd "$(dirname "$0")"
d=$(mktemp -d)
trap 'rm -rf "$d"' EXIT
bpftool btf dump file /sys/kernel/btf/vmlinux format c > "$d/vmlinux.h"
clang -target bpf -D__TARGET_ARCH_x86 -O2 -g -I"$d" -c goid.bpf.c -o "$d/goid.bpf.o"
gcc -O2 -o "$d/load" load.c -lbpf
GOTOOLCHAIN=local GO111MODULE=off CGO_ENABLED=0 "$GO" build -ldflags="-s -w" -o "$d/app" app.go
cd "$d" && GOMAXPROCS=2 GOID_OFF=$OFF ./load ./app
