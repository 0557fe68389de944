#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
# Build our kselftests against the uapi headers of the guest kernel. Runs in the toolchain root.

source "$(dirname "$0")/common.sh"

KSRC=$CACHE_DIR/build/linux
KOUT=$CACHE_DIR/build/kout

make -s -C "$KSRC" O="$KOUT" LLVM=-19 headers
# lib.mk writes into OUTPUT but does not create it.
mkdir -p "$KOUT/selftests/vfio/virtio_mig"
make -s -C "$KSRC/tools/testing/selftests/vfio/virtio_mig" \
	OUTPUT="$KOUT/selftests/vfio/virtio_mig" \
	KHDR_INCLUDES="-isystem $KOUT/usr/include"
