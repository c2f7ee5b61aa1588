#!/usr/bin/env bash
# Shows that `make build` is reproducible: two clones of this commit in different directories, each built
# with empty Go caches, must give byte-identical custos binaries.
set -euo pipefail
top=$(git rev-parse --show-toplevel)
work=$(mktemp -d)
trap 'chmod -R u+w "$work" 2>/dev/null; rm -rf "$work"' EXIT

sums=()
for name in first second-dir-with-a-longer-name; do
  dir="$work/$name/custos"
  mkdir -p "$(dirname "$dir")"
  # The working tree as it is (tracked and untracked, not ignored), so an uncommitted change is checked too.
  (cd "$top" && git ls-files -z --cached --others --exclude-standard) | (cd "$top" && tar --null -T - -cf -) | (mkdir -p "$dir" && tar -C "$dir" -xf -)
  GOCACHE="$work/$name/gocache" GOTMPDIR="" make -s -C "$dir" build >/dev/null
  sums+=("$(sha256sum "$dir/bin/custos" | cut -d' ' -f1)")
done
if [ "${sums[0]}" != "${sums[1]}" ]; then
  echo "repro: FAIL: two builds differ: ${sums[0]} vs ${sums[1]}" >&2
  exit 1
fi
echo "repro: ok: two builds from different directories with empty caches: ${sums[0]}"
