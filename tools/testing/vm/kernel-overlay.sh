#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
# Prepare the kernel source: extract linux-source-7.3 once, copy our files over it, apply
# patches/. Idempotent and incremental: unchanged files keep their timestamps.

source "$(dirname "$0")/common.sh"

need_host_tool rsync
KSRC=$CACHE_DIR/build/linux
if [ "${TOOLCHAIN:-root}" = host ]; then
	root=/
else
	root=$("$VM_DIR/toolchain.sh")
fi
tarball=$root/usr/src/linux-source-7.3.tar.xz
[ -e "$tarball" ] || die "$tarball missing"
# Keyed by the package version, so a rebuilt toolchain root with the same source keeps the tree.
version=$(dpkg-query --admindir="$root/var/lib/dpkg" -W -f='${Version}' linux-source-7.3)
stamp=$KSRC/.extracted-$version

if [ ! -e "$stamp" ]; then
	echo "extracting $(basename "$tarball")" >&2
	rm -rf "$KSRC" "$CACHE_DIR/build/kout"
	mkdir -p "$CACHE_DIR/build"
	tar -xf "$tarball" -C "$CACHE_DIR/build"
	mv "$CACHE_DIR/build/linux-source-7.3" "$KSRC"
	(cd "$KSRC" && find . -type f | sed 's|^\./||' | sort >.pristine-files)
	touch "$stamp"
fi

# New files: ours never replace a file of the base tree (that is what patches/ is for).
cd "$SRC_TOP"
manifest=$KSRC/.overlay-files
new_manifest=$(mktemp)
trap 'rm -f "$new_manifest"' EXIT
{
	find rust/kernel rust/helpers drivers samples tools/testing/selftests Documentation \
		-type f 2>/dev/null || true
	find rust/virtio_mig_core/src -type f -name '*.rs'
} | sort >"$new_manifest"
if [ -e "$manifest" ]; then
	comm -23 "$manifest" "$new_manifest" | while IFS= read -r gone; do rm -f "$KSRC/$gone"; done
fi
clashes=$(comm -12 "$new_manifest" "$KSRC/.pristine-files")
[ -z "$clashes" ] || die "these exist in the base tree; change them with a patch: $clashes"
rsync -rc --files-from="$new_manifest" . "$KSRC/"
cp "$new_manifest" "$manifest"

# Patches: the applied copy of each is kept so an edited patch is reverted before reapplying.
# Later patches may build on an edited one: from the first that changed on, every applied
# patch is reverted, last first, and applied again.
applied=$KSRC/.overlay-patches
mkdir -p "$applied"
stale=()
for old in "$applied"/*.patch; do
	[ -e "$old" ] || continue
	if [ ${#stale[@]} -gt 0 ] || ! cmp -s "$old" "patches/$(basename "$old")"; then
		stale+=("$old")
	fi
done
for ((i = ${#stale[@]} - 1; i >= 0; i--)); do
	old=${stale[i]}
	(cd "$KSRC" && git apply -R "$old") || die "cannot revert old $(basename "$old")"
	rm "$old"
done
for patch in patches/*.patch; do
	name=$(basename "$patch")
	[ -e "$applied/$name" ] && continue
	(cd "$KSRC" && git apply --check "$SRC_TOP/$patch") ||
		die "$patch does not apply to linux-source-7.3; rebase it"
	(cd "$KSRC" && git apply "$SRC_TOP/$patch")
	cp "$patch" "$applied/$name"
done
