#!/usr/bin/env bash
# Builds the staplerd container image from the Dockerfile with podman and prints its name on stdout (all
# progress goes to stderr), for test/image/*.test.ts, which run it through `podman mount` + chroot:
#   STAPLERD_IMAGE="$(bash .ci/image.sh)"; export STAPLERD_IMAGE
# Run as root from anywhere in the repository. What works on these machines, and why:
# - `podman build --isolation chroot --network host --format docker`: no OCI runtime starts here (crun and
#   runc fail setting rlimits), chroot isolation needs none; docker format keeps HEALTHCHECK.
# - node:24-bookworm-slim cannot be pulled (no registry is reachable): when the pull fails, .ci/image/base.sh
#   assembles a stand-in from a Debian 12 minbase and the npm registry's Node 24. The base image is saved to
#   and loaded from CACHE (default /var/cache/staplerd-ci), so only a fresh machine pays for it.
# - the npm registry is reached through the CA bundle named by NODE_EXTRA_CA_CERTS: it goes to the build
#   stage as a build secret (never a layer, never in the runtime image; test/image checks that).
set -euo pipefail
cd "$(dirname "$0")/.."
exec 3>&1 1>&2

image=${STAPLERD_IMAGE:-localhost/staplerd:ci}
base=node:24-bookworm-slim
cache=${STAPLERD_CI_CACHE:-/var/cache/staplerd-ci}
base_tar=$cache/node-24-bookworm-slim.tar
started=$(date +%s)
log() { printf '=== .ci/image.sh: %s ===\n' "$*"; }

if [ "$(id -u)" -ne 0 ]; then
  echo ".ci/image.sh: must run as root (podman mount and debootstrap need it)" >&2
  exit 1
fi
missing=()
for tool in podman debootstrap; do command -v "$tool" >/dev/null || missing+=("$tool"); done
if [ "${#missing[@]}" -gt 0 ]; then
  log "installing ${missing[*]}"
  DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}"
fi

mkdir -p "$cache"
if podman image exists "$base"; then
  log "base $base: in podman's storage"
elif timeout 120 podman pull -q "docker.io/library/$base" >/dev/null 2>&1; then
  podman tag "docker.io/library/$base" "$base"
  log "base $base: pulled"
elif [ -s "$base_tar" ] && podman load -q -i "$base_tar" >/dev/null; then
  log "base $base: loaded from $base_tar"
else
  log "base $base: no registry; assembling it (.ci/image/base.sh)"
  bash .ci/image/base.sh "localhost/$base" "$cache"
  podman save -q --format oci-archive -o "$base_tar.tmp" "localhost/$base" && mv "$base_tar.tmp" "$base_tar"
fi

secret=()
if [ -n "${NODE_EXTRA_CA_CERTS:-}" ]; then secret=(--secret "id=ca,src=$NODE_EXTRA_CA_CERTS"); fi
log "podman build -t $image"
podman build --isolation chroot --network host --format docker --layers --pull=never "${secret[@]}" -t "$image" . >&2
log "built $image: $(podman image inspect --format '{{.Size}}' "$image") bytes in $(($(date +%s) - started)) s"
echo "$image" >&3
