#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
# Configure and build the guest kernel, our module and the selftests out of tree.
# Runs inside the toolchain root, after kernel-overlay.sh prepared the source.

source "$(dirname "$0")/common.sh"

KSRC=$CACHE_DIR/build/linux
KOUT=$CACHE_DIR/build/kout
KMAKE=(make -C "$KSRC" O="$KOUT" LLVM=-19 -j"$(nproc)")
mkdir -p "$KOUT"

# Regenerate .config only when the fragment changed, so incremental builds stay incremental.
if ! cmp -s "$VM_DIR/kernel.config" "$KOUT/.fragment"; then
	"${KMAKE[@]}" KCONFIG_ALLCONFIG="$VM_DIR/kernel.config" allnoconfig >/dev/null
	cp "$VM_DIR/kernel.config" "$KOUT/.fragment"
fi

# Every symbol the fragment asks for must have survived Kconfig's dependency resolution.
missing=0
while IFS= read -r line; do
	case "$line" in CONFIG_*=[ym]*) ;; *) continue ;; esac
	grep -qx "$line" "$KOUT/.config" || { echo "kernel config lacks $line" >&2; missing=1; }
done <"$VM_DIR/kernel.config"
[ $missing = 0 ] || die "the kernel config fragment did not apply; see above"

"${KMAKE[@]}" "$@"
