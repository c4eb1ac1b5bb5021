#!/usr/bin/env bash
# Fetches the Java parts of the e2e tests from Maven Central into $CACHE_DIR/jars (once;
# a second run finds them and costs nothing). Each line: group:artifact:version.
set -euo pipefail
CACHE_DIR=${CACHE_DIR:-$HOME/.cache/otelcol-ebpf}
dir=$CACHE_DIR/jars
mkdir -p "$dir"
artifacts=(
  org.postgresql:postgresql:42.7.14   # the PostgreSQL JDBC driver (test_28_postgres.py)
)
for a in "${artifacts[@]}"; do
  IFS=: read -r _ name version <<<"$a"
  [ -s "$dir/$name-$version.jar" ] && continue
  printf '[deps] fetching %s from Maven Central\n' "$a"
  mvn -q -B -Dstyle.color=never dependency:copy -Dartifact="$a" -DoutputDirectory="$dir" >/dev/null
  [ -s "$dir/$name-$version.jar" ] || { echo "[deps] $a: not fetched" >&2; exit 1; }
done
