#!/usr/bin/env bash
# Usage: .ci/trixie.sh [DIR]   (default /var/cache/staplerd-ci/trixie)
# Creates a Debian 13 (trixie) minbase chroot with haproxy 3.0, nginx-light 1.26 and openssl, for the
# end-to-end tests that run those servers next to the host's (HAProxy 2.6, nginx 1.22): processes in the
# chroot share the host's loopback, and the tests put the files they read under DIR/tmp.
# Idempotent: a complete chroot (debootstrap finished, and haproxy, nginx and openssl run in it) is kept;
# anything else is built again in DIR.new and moved into place only when complete. Needs root and debootstrap.
set -euo pipefail

dir="${1:-/var/cache/staplerd-ci/trixie}"
mirror="${STAPLERD_TRIXIE_MIRROR:-http://deb.debian.org/debian}"

complete() {
  # debootstrap removes DIR/debootstrap when it has finished; the three servers must run.
  [ -d "$1/usr/sbin" ] && [ ! -e "$1/debootstrap" ] \
    && chroot "$1" haproxy -v >/dev/null 2>&1 \
    && chroot "$1" nginx -v >/dev/null 2>&1 \
    && chroot "$1" openssl version >/dev/null 2>&1
}

# Never delete a tree that has something mounted under it (rm -rf would walk into the mount).
remove_tree() {
  if [ -e "$1" ]; then
    if awk -v d="$(realpath "$1")" '$2 == d || index($2, d "/") == 1 { found = 1 } END { exit !found }' /proc/mounts; then
      echo ".ci/trixie.sh: $1 has mounts under it; unmount them first" >&2
      exit 1
    fi
    rm -rf "$1"
  fi
}

if complete "$dir"; then
  # Test directories a killed run left behind (the tests remove their own); old enough not to be a live run's.
  find "$dir/tmp" -mindepth 1 -maxdepth 1 -name 'staplerd-*' -mmin +180 -exec rm -rf {} +
  echo ".ci/trixie.sh: $dir is complete: $(chroot "$dir" haproxy -v 2>&1 | sed -n 1p)"
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then echo ".ci/trixie.sh: must run as root (debootstrap, chroot)" >&2; exit 1; fi
command -v debootstrap >/dev/null || { echo ".ci/trixie.sh: debootstrap is not installed" >&2; exit 1; }

mkdir -p "$(dirname "$dir")"
new="$dir.new"
remove_tree "$new"
log="$(dirname "$dir")/$(basename "$dir").log"
echo ".ci/trixie.sh: creating $dir with debootstrap (log: $log)"
if ! debootstrap --variant=minbase --include=haproxy,nginx-light,openssl trixie "$new" "$mirror" >"$log" 2>&1; then
  tail -n 30 "$log" >&2
  echo ".ci/trixie.sh: debootstrap failed (full log: $log)" >&2
  exit 1
fi
if ! complete "$new"; then
  echo ".ci/trixie.sh: debootstrap finished but haproxy, nginx or openssl does not run in $new" >&2
  exit 1
fi
remove_tree "$dir"
mv "$new" "$dir"
echo ".ci/trixie.sh: created $dir: $(chroot "$dir" haproxy -v 2>&1 | sed -n 1p)"
