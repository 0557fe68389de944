# SPDX-License-Identifier: GPL-2.0
# Shared settings for the build and VM scripts; sourced, not run.

set -euo pipefail

VM_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
SRC_TOP=$(cd "$VM_DIR/../../.." && pwd)

# Everything expensive lives outside the checkout so later builds reuse it.
CACHE_DIR=${VVM_CACHE:-/var/cache/virtio-vfio-mig}
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}

# Host cargo builds share one target directory in the cache, so a fresh checkout reuses them.
CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$CACHE_DIR/build/cargo-target}
DEVSIM_BIN=$CARGO_TARGET_DIR/release/virtio-devsim

die() {
	echo "error: $*" >&2
	exit 1
}

need_root() {
	[ "$(id -u)" = 0 ] || die "$1 needs root (mmdebstrap, chroot and bind mounts)"
}

packages_for() {
	awk -v want="$1" '/^# suite:/ { suite = $3; next } /^#/ || NF == 0 { next } suite == want' \
		"$VM_DIR/packages.txt"
}

toolchain_root() {
	local hash
	hash=$(sha256sum "$VM_DIR/packages.txt" | cut -c1-12)
	echo "$CACHE_DIR/toolchain-$hash"
}

# Install a missing host tool from the Debian archive.
need_host_tool() {
	command -v "$1" >/dev/null && return
	echo "installing $1" >&2
	apt-get update -qq >&2
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${2:-$1}" >&2
}
