#!/usr/bin/env bash
# Fetches the Java parts of the e2e tests from Maven Central into $CACHE_DIR/jars (once;
# a second run finds them and costs nothing). Each line: group:artifact:version, or
# group:artifact:version:jar:classifier for a jar with a classifier (Maven names it
# artifact-version-classifier.jar).
set -euo pipefail
CACHE_DIR=${CACHE_DIR:-$HOME/.cache/otelcol-ebpf}
dir=$CACHE_DIR/jars
mkdir -p "$dir"
artifacts=(
  org.postgresql:postgresql:42.7.14   # the PostgreSQL JDBC driver (test_28_postgres.py)
  io.zipkin:zipkin-server:3.5.1:jar:exec   # Zipkin's server with its web UI (make demo, test_38_demo_viewer.py; 131 MB)
)
for a in "${artifacts[@]}"; do
  IFS=: read -r _ name version _ classifier <<<"$a"
  jar=$dir/$name-$version${classifier:+-$classifier}.jar
  [ -s "$jar" ] && continue
  printf '[deps] fetching %s from Maven Central\n' "$a"
  mvn -q -B -Dstyle.color=never dependency:copy -Dartifact="$a" -DoutputDirectory="$dir" >/dev/null
  [ -s "$jar" ] || { echo "[deps] $a: not fetched" >&2; exit 1; }
done

# Apache Kafka 4.4.0 (the KRaft broker of test_33_kafka.py, test/e2e/kafka_server.py):
# the broker and its runtime dependencies (45 jars) copied by Maven from a small pom into
# $dir/kafka-4.4.0/; a marker file says the copy completed.
KAFKA_VERSION=4.4.0
kdir=$dir/kafka-$KAFKA_VERSION
if [ ! -e "$kdir/.complete" ]; then
  printf '[deps] fetching Apache Kafka %s (broker jars) from Maven Central\n' "$KAFKA_VERSION"
  pom=$(mktemp -d)
  trap 'rm -rf "$pom"' EXIT
  cat >"$pom/pom.xml" <<POM
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>otelcol-ebpf</groupId>
  <artifactId>kafka-broker-jars</artifactId>
  <version>1</version>
  <packaging>pom</packaging>
  <dependencies>
    <dependency><groupId>org.apache.kafka</groupId><artifactId>kafka_2.13</artifactId><version>$KAFKA_VERSION</version></dependency>
    <dependency><groupId>org.apache.logging.log4j</groupId><artifactId>log4j-slf4j-impl</artifactId><version>2.25.5</version></dependency>
  </dependencies>
</project>
POM
  rm -rf "$kdir"
  mkdir -p "$kdir"
  mvn -q -B -Dstyle.color=never -f "$pom/pom.xml" dependency:copy-dependencies \
    -DincludeScope=runtime -DoutputDirectory="$kdir" >/dev/null
  ls "$kdir"/kafka_2.13-$KAFKA_VERSION.jar >/dev/null || { echo "[deps] Kafka $KAFKA_VERSION: not fetched" >&2; exit 1; }
  touch "$kdir/.complete"
fi
