#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
# Configure and build the guest kernel, our module and the selftests out of tree.
# Runs inside the toolchain root, after kernel-overlay.sh prepared the source.
#
#   kernel-build.sh [--variant NAME] MAKE_TARGETS...
#
# --variant NAME builds kernel.config plus debug.config plus NAME.config (debug.config alone for
# NAME=debug) in its own directory, kout-NAME, beside the default kout.

source "$(dirname "$0")/common.sh"

KSRC=$CACHE_DIR/build/linux
KOUT=$CACHE_DIR/build/kout
fragment=$(mktemp)
trap 'rm -f "$fragment"' EXIT
cat "$VM_DIR/kernel.config" >"$fragment"
if [ "${1:-}" = --variant ]; then
	[ -r "$VM_DIR/$2.config" ] || die "no $VM_DIR/$2.config"
	KOUT=$CACHE_DIR/build/kout-$2
	# Every variant is a debug kernel; kasan adds its sanitizers to those checks.
	[ "$2" = debug ] || cat "$VM_DIR/debug.config" >>"$fragment"
	cat "$VM_DIR/$2.config" >>"$fragment"
	shift 2
fi
KMAKE=(make -C "$KSRC" O="$KOUT" LLVM=-19 -j"$(nproc)")
mkdir -p "$KOUT"

# Regenerate .config only when the fragment changed, so incremental builds stay incremental.
if ! cmp -s "$fragment" "$KOUT/.fragment"; then
	"${KMAKE[@]}" KCONFIG_ALLCONFIG="$fragment" allnoconfig >/dev/null
	cp "$fragment" "$KOUT/.fragment"
fi

# Every symbol the fragment asks for must have survived Kconfig's dependency resolution.
missing=0
while IFS= read -r line; do
	case "$line" in CONFIG_*=[ym]*) ;; *) continue ;; esac
	grep -qx "$line" "$KOUT/.config" || { echo "kernel config lacks $line" >&2; missing=1; }
done <"$fragment"
[ $missing = 0 ] || die "the kernel config fragment did not apply; see above"

"${KMAKE[@]}" "$@"
