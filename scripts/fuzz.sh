#!/usr/bin/env bash
# Runs every Fuzz target in the module for FUZZ_TIME each (seed corpora in each package's testdata/fuzz
# run as ordinary tests too). Fails on the first crasher.
set -euo pipefail
fuzz_time=${FUZZ_TIME:-15s}
ran=0
for pkg in $(go list ./...); do
  for target in $(go test -list '^Fuzz' "$pkg" | grep '^Fuzz' || true); do
    echo "fuzz: $pkg $target for $fuzz_time"
    go test -run='^$' -fuzz="^${target}\$" -fuzztime="$fuzz_time" -timeout 10m "$pkg"
    ran=$((ran + 1))
  done
done
if [ "$ran" -eq 0 ]; then echo "fuzz: no fuzz targets found" >&2; exit 1; fi
echo "fuzz: $ran targets, $fuzz_time each"
