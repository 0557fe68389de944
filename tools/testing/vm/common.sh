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

# The scripts that boot one VM per suite set (run-variant-tests.sh, run-admin-tests.sh) take
#   [--timeout SECONDS] [--kernel-variant NAME] [SET...]
# parse_set_args DEFAULT_TIMEOUT KNOWN_SETS... -- ARGS... leaves them in SET_TIMEOUT,
# SET_VARIANT (run-vm.sh options) and SETS (every known set when none is named).
parse_set_args() {
	local known=()
	SET_TIMEOUT=$1
	shift
	while [ "$1" != -- ]; do
		known+=("$1")
		shift
	done
	shift
	SET_VARIANT=()
	SETS=()
	while [ $# -gt 0 ]; do
		case "$1" in
		--timeout) SET_TIMEOUT=$2; shift ;;
		--kernel-variant) SET_VARIANT=(--kernel-variant "$2"); shift ;;
		*) [[ " ${known[*]} " == *" $1 "* ]] || die "unknown suite set $1"; SETS+=("$1") ;;
		esac
		shift
	done
	[ ${#SETS[@]} -gt 0 ] || SETS=("${known[@]}")
}

# boot_set SET RUN_VM_OPTIONS...: one VM running guest/run-tests.sh SET; its exit status.
boot_set() {
	local set=$1
	shift
	"$VM_DIR/run-vm.sh" --timeout "$SET_TIMEOUT" "${SET_VARIANT[@]}" "$@" -- \
		"$VM_DIR/guest/run-tests.sh" "$set"
}
