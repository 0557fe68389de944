#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
# The QEMU end-to-end migration: boot the test VM with an emulated intel-iommu and three
# device-model functions (A and B on one shared disk image, C with another queue count), then
# run e2e.py in it. Runs inside the toolchain root, like run-vm.sh:
#
#   tools/testing/vm/in-root.sh tools/testing/qemu-e2e/run-e2e.sh [--timeout S] [--no-owners]
#                                                                 [E2E_ARGS...]
#
# --no-owners gives the functions no owner: no device dirty tracking, QEMU treats all RAM as
# dirty (the baseline). E2E_ARGS go to e2e.py (--suites, --report, --baseline, --observe ...). The exit status is
# the guest's verdict; a guest that outlives the timeout fails.

set -euo pipefail
E2E_DIR=$(cd "$(dirname "$0")" && pwd)
source "$E2E_DIR/../vm/common.sh"

timeout_s=900 owners=--owners
while [ $# -gt 0 ]; do
	case "$1" in
	--timeout) timeout_s=$2; shift 2 ;;
	--no-owners) owners=; shift ;;
	*) break ;;
	esac
done

"$E2E_DIR/build-l2-initramfs.sh" "$CACHE_DIR/build/kout/e2e/l2-initramfs.cpio"
# A (instance 0) holds each request 30 ms, so that the switchover usually
# stops it with a request in flight whose completion interrupt QEMU delivers
# only after it saved L2's interrupt controller; B must recover from that.
# C (instance 2) differs from A in an identity field and refuses A's stream.
# Every instance has an owner function, whose write recording tracks the
# member's DMA: QEMU migrates at its default downtime limit.
exec "$VM_DIR/run-vm.sh" --viommu $owners --devices 3 --shared-disk \
	--devsim-args-for 0 "--request-delay-ms 30" --devsim-args-for 2 "--queues 2" \
	--timeout "$timeout_s" -- "$E2E_DIR/e2e.py" "$@"
