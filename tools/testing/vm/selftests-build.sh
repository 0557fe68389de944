#!/bin/bash
# Build our kselftests against the uapi headers of the guest kernel. Runs in the toolchain root.

source "$(dirname "$0")/common.sh"

KSRC=$CACHE_DIR/build/linux
KOUT=$CACHE_DIR/build/kout

make -s -C "$KSRC" O="$KOUT" LLVM=-19 headers
make -s -C "$KSRC/tools/testing/selftests/vfio/virtio_mig" \
	OUTPUT="$KOUT/selftests/vfio/virtio_mig" \
	KHDR_INCLUDES="-isystem $KOUT/usr/include"
