#!/usr/bin/env bash
# Fetch the local Kafka broker's jars (infra/kafka/pom.xml) from Maven Central into infra/kafka/lib/.
#
# Idempotent and fast when done: lib/.complete holds the sha256 of pom.xml it was built from, so a
# second run is a checksum and nothing else. Jars land in a staging folder first and replace lib/
# only when Maven succeeded, so an interrupted fetch never leaves a half-filled lib/ behind.
#
# Usage: infra/kafka/fetch-jars.sh [--force]        (MVN=/path/to/mvn to pick a Maven)
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
pom="$here/pom.xml"
lib="$here/lib"
stamp="$lib/.complete"
mvn="${MVN:-mvn}"

die() {
  echo "fetch-jars: error: $1" >&2
  [[ -n "${2:-}" ]] && echo "fetch-jars: hint: $2" >&2
  exit "${3:-1}"
}

checksum() {
  if command -v sha256sum >/dev/null 2>&1; then
    sha256sum "$1" | cut -d' ' -f1
  elif command -v shasum >/dev/null 2>&1; then
    shasum -a 256 "$1" | cut -d' ' -f1
  else
    die "neither sha256sum nor shasum found" "install coreutils"
  fi
}

force=0
case "${1:-}" in
  "") ;;
  --force) force=1 ;;
  -h|--help) sed -n '2,8p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
  *) die "unknown argument: $1" "usage: $0 [--force]" 2 ;;
esac

want="$(checksum "$pom")"
if [[ $force -eq 0 && -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; then
  exit 0
fi

if [[ -n "${JAVA_HOME:-}" && -x "$JAVA_HOME/bin/java" ]]; then
  :
elif ! command -v java >/dev/null 2>&1; then
  die "no Java runtime found (Maven and the Kafka broker need Java 17+)" \
      "install one (apt-get install openjdk-17-jdk-headless) or set JAVA_HOME" 127
fi
command -v "$mvn" >/dev/null 2>&1 \
  || die "Maven ('$mvn') not found; it resolves the broker jars from Maven Central" \
         "install Maven 3.6+ (apt-get install maven) or set MVN=/path/to/mvn" 127

mkdir -p "$here/target"
staging="$(mktemp -d "$here/target/lib.XXXXXX")"
trap 'rm -rf "$staging"' EXIT

echo "fetch-jars: resolving Kafka broker jars from Maven Central (first run only)..." >&2
if ! "$mvn" -q -B -Dstyle.color=never -f "$pom" dependency:copy-dependencies -Dkafka.lib.dir="$staging" >&2; then
  die "Maven could not resolve the broker jars (output above)" \
      "check network access to https://repo1.maven.org/maven2, then rerun $0"
fi
compgen -G "$staging/kafka_2.13-*.jar" >/dev/null \
  || die "Maven finished but no kafka_2.13 jar is in $staging" "rerun with --force"

echo "$want" >"$staging/.complete"
rm -rf "$lib"
mv "$staging" "$lib"
chmod 755 "$lib"
trap - EXIT
echo "fetch-jars: $(find "$lib" -name '*.jar' | wc -l | tr -d ' ') jars in $lib" >&2
