#!/usr/bin/env bash
# Builds FerretDB (a MongoDB wire protocol server over SQLite, for the MongoDB e2e tests and
# golden captures) from the Go module proxy into $CACHE_DIR/bin/ferretdb, once.
# The module zip lacks build/version/version.txt (cmd/ferretdb panics at start without
# it): the module is copied to a temp dir, the file written, and the copy built.
set -euo pipefail
CACHE_DIR=${CACHE_DIR:-$HOME/.cache/otelcol-ebpf}
FERRETDB_VERSION=${FERRETDB_VERSION:-v1.24.2}
bin="$CACHE_DIR/bin/ferretdb"
stamp="$CACHE_DIR/bin/ferretdb.version"
if [ -x "$bin" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$FERRETDB_VERSION" ]; then
  exit 0
fi
mkdir -p "$CACHE_DIR/bin"
echo "[deps] building FerretDB $FERRETDB_VERSION" >&2
tmp=$(mktemp -d)
trap 'chmod -R u+w "$tmp" 2>/dev/null; rm -rf "$tmp"' EXIT
cd "$tmp"
dir=$(go mod download -json "github.com/FerretDB/FerretDB@$FERRETDB_VERSION" | python3 -c 'import json,sys; print(json.load(sys.stdin)["Dir"])')
cp -r "$dir" src
chmod -R u+w src
echo "$FERRETDB_VERSION" > src/build/version/version.txt
cd src
CGO_ENABLED=0 go build -trimpath -o "$bin.tmp" ./cmd/ferretdb
mv "$bin.tmp" "$bin"
echo "$FERRETDB_VERSION" > "$stamp"
