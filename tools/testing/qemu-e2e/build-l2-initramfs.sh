#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# Build the nested (L2) guest's initramfs: an uncompressed newc cpio with busybox (from
# the busybox-static package), its applet links, /init and a static blkcheck. Runs inside
# the toolchain root:
#
#   tools/testing/vm/in-root.sh tools/testing/qemu-e2e/build-l2-initramfs.sh OUT_CPIO
#
# Nothing is rebuilt while the inputs (sources, this script, busybox, the compiler) hash
# the same as for the existing OUT_CPIO; OUT_CPIO.inputs records that hash. The blkcheck
# binary is also left beside OUT_CPIO, for offline checks of a disk image on the host.

set -euo pipefail

E2E_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
L2_DIR=$E2E_DIR/l2
BUSYBOX=${BUSYBOX:-/bin/busybox}
CC=${CC:-gcc}
CFLAGS=(-static -O2 -Wall -Wextra)

die() {
	echo "build-l2-initramfs: $*" >&2
	exit 1
}

[ $# = 1 ] || die "usage: $0 OUT_CPIO"
out=$1
[ -x "$BUSYBOX" ] || die "$BUSYBOX missing (the busybox-static package)"
command -v cpio >/dev/null || die "cpio missing"
command -v "$CC" >/dev/null || die "$CC missing"
[ "$(id -u)" = 0 ] || die "needs root for the /dev/console node"

inputs=$( {
	sha256sum "$L2_DIR/blkcheck.c" "$L2_DIR/init" "${BASH_SOURCE[0]}" "$BUSYBOX" | cut -d' ' -f1
	"$CC" --version | head -n1
	echo "${CFLAGS[*]}"
} | sha256sum | cut -d' ' -f1)
checker=$(dirname "$out")/blkcheck
if [ -f "$out" ] && [ -x "$checker" ] && [ "$(cat "$out.inputs" 2>/dev/null)" = "$inputs" ]; then
	echo "build-l2-initramfs: $out is up to date"
	exit 0
fi

mkdir -p "$(dirname "$out")"
work=$(mktemp -d "$out.work.XXXXXX")
trap 'rm -rf "$work"' EXIT
stage=$work/root

mkdir -p "$stage"/{bin,sbin,usr/bin,usr/sbin,dev,proc,sys,tmp}
"$CC" "${CFLAGS[@]}" -o "$stage/bin/blkcheck" "$L2_DIR/blkcheck.c"
install -m 0755 "$BUSYBOX" "$stage/bin/busybox"
install -m 0755 "$L2_DIR/init" "$stage/init"
# Applet links where busybox would install them, relative so they hold in any root.
"$BUSYBOX" --list-full | while read -r applet; do
	case "$applet" in
	bin/busybox | linuxrc | */*/*/*) continue ;;
	esac
	if [ ! -d "$stage/${applet%/*}" ] || [ -e "$stage/$applet" ] || [ -L "$stage/$applet" ]; then
		continue
	fi
	case "$applet" in
	*/*/*) ln -s ../../bin/busybox "$stage/$applet" ;;
	*) ln -s ../bin/busybox "$stage/$applet" ;;
	esac
done
# The kernel opens /dev/console for /init before anything mounts devtmpfs.
mknod -m 0600 "$stage/dev/console" c 5 1

cpio_opts=(-o -H newc --owner=0:0 --quiet)
cpio --help 2>&1 | grep -q -- --reproducible && cpio_opts+=(--reproducible)
(cd "$stage" && find . -mindepth 1 | LC_ALL=C sort | cpio "${cpio_opts[@]}") >"$work/initramfs.cpio"
mv "$work/initramfs.cpio" "$out"
cp "$stage/bin/blkcheck" "$checker.new"
mv "$checker.new" "$checker"
echo "$inputs" >"$out.inputs"
echo "build-l2-initramfs: wrote $out ($(stat -c %s "$out") bytes)"
