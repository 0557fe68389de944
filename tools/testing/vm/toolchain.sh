#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
# Create the pinned toolchain root (Debian trixie + trixie-backports) unless it is cached.
# Prints the root's path on success.

source "$(dirname "$0")/common.sh"

need_root "creating the toolchain root"
root=$(toolchain_root)
[ -e "$root/.complete" ] && { echo "$root"; exit 0; }

# One creator at a time; a second caller waits and then finds the root complete.
mkdir -p "$CACHE_DIR"
exec 9>"$CACHE_DIR/.toolchain.lock"
flock 9
[ -e "$root/.complete" ] && { echo "$root"; exit 0; }

need_host_tool mmdebstrap

tmp="$root.partial"
# A crashed run may leave mounts below the partial root: never cross into them.
rm -rf --one-file-system "$tmp"
echo "creating toolchain root $root (a few minutes)" >&2
main_pkgs=$(packages_for trixie | paste -sd, -)
bpo_pkgs=$(packages_for trixie-backports | paste -sd' ' -)
mmdebstrap --variant=apt --mode=root --components=main \
	--include="$main_pkgs" \
	--customize-hook="chroot \"\$1\" apt-get update -qq" \
	--customize-hook="chroot \"\$1\" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends -t trixie-backports $bpo_pkgs" \
	--customize-hook="chroot \"\$1\" apt-get clean" \
	trixie "$tmp" \
	"deb $MIRROR trixie main" \
	"deb $MIRROR trixie-backports main" >&2
touch "$tmp/.complete"
mv "$tmp" "$root"
echo "$root"
