#!/usr/bin/env bash
# Usage: .ci/node.sh MAJOR
# Prints the directory holding bin/node for the newest Node.js MAJOR release, unpacked once into the CI cache.
# The binary comes from the npm registry's node-linux-<arch> package (`npm pack` checks its integrity against
# the registry); nothing else is downloaded. Idempotent: a cached binary of the right major is reused; a
# broken or missing one is fetched again, unpacked beside the cache and moved into place only once it runs.
set -euo pipefail

major="${1:?usage: .ci/node.sh MAJOR}"
case "$major" in *[!0-9]* | '') echo ".ci/node.sh: MAJOR must be a number, got '$major'" >&2; exit 2 ;; esac
cache="${STAPLERD_CI_CACHE:-/var/cache/staplerd-ci}"
dest="$cache/node-$major"

case "$(uname -m)" in
  x86_64) arch=x64 ;;
  aarch64) arch=arm64 ;;
  *) echo ".ci/node.sh: no node-linux package for $(uname -m)" >&2; exit 1 ;;
esac

is_ok() { [ -x "$1/bin/node" ] && [ "$("$1/bin/node" -p 'process.versions.node.split(".")[0]' 2>/dev/null)" = "$major" ]; }

mkdir -p "$cache"
if is_ok "$dest"; then
  echo "$dest"
  exit 0
fi

work="$(mktemp -d "$cache/.node-$major.XXXXXX")"
trap 'rm -rf "$work"' EXIT
echo ".ci/node.sh: fetching node-linux-$arch@$major from the npm registry" >&2
(cd "$work" && npm pack --silent "node-linux-$arch@$major" >/dev/null)
tarball="$(ls "$work"/node-linux-"$arch"-*.tgz)"
tar -xzf "$tarball" -C "$work"
if ! is_ok "$work/package"; then
  echo ".ci/node.sh: $tarball holds no working Node $major binary" >&2
  exit 1
fi
rm -rf "$dest"
mv "$work/package" "$dest"
echo "$dest"
