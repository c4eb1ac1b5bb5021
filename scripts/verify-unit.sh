#!/usr/bin/env bash
# systemd-analyze verify of deploy/systemd/otelcol-ebpf.service, offline (systemd need not
# be PID 1). verify insists that ExecStart's binary exists, so a copy of the unit points at
# the built one; any output (an unknown key is only a warning to systemd) is a failure.
set -euo pipefail
cd "$(dirname "$0")/.."
unit=deploy/systemd/otelcol-ebpf.service
[ -x bin/otelcol-ebpf ] || { echo "bin/otelcol-ebpf is missing: run make build first" >&2; exit 1; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
sed "s#^ExecStart=/usr/local/bin/otelcol-ebpf #ExecStart=$PWD/bin/otelcol-ebpf #" "$unit" > "$tmp/otelcol-ebpf.service"
grep -q "^ExecStart=$PWD/bin/otelcol-ebpf " "$tmp/otelcol-ebpf.service" || { echo "$unit: ExecStart is not /usr/local/bin/otelcol-ebpf" >&2; exit 1; }
out=$(systemd-analyze verify --man=no "$tmp/otelcol-ebpf.service" 2>&1) || { echo "$out" >&2; exit 1; }
# Without systemd as PID 1 verify cannot load the default targets; that line is not the unit's.
out=$(grep -v "Unit sysinit.target not found" <<<"$out" || true)
if [ -n "$out" ]; then echo "$unit:"; echo "$out"; exit 1; fi
echo "$unit: systemd-analyze verify clean"
