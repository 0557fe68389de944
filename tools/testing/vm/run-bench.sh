#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
# Benchmarks in the test VM ('make bench'): the device register accesses of one migration with
# an idle queue and with 20 requests in flight (virtio_mig_demo, counted by the device models),
# and the DMA_LOGGING_REPORT latency of virtio_vfio_mig for 1 GiB and 16 GiB tracked at about
# 0.1 % and 50 % of pages dirty, next to a userspace scan of the same bitmap in the same run
# (guest/bench.sh, dirty_log_bench). The guest runs under TCG: absolute times are slow and
# noisy, the ratios and counts are what to compare. Each row names its goal; not pass/fail.
# Runs inside the toolchain root, like run-vm.sh:
#
#   tools/testing/vm/in-root.sh tools/testing/vm/run-bench.sh [--timeout SECONDS] \
#       [-- dirty_log_bench options]

source "$(dirname "$0")/common.sh"

timeout_s=1800
while [ $# -gt 0 ]; do
	case "$1" in
	--timeout) timeout_s=$2; shift ;;
	--) shift; break ;;
	*) die "unknown option $1" ;;
	esac
	shift
done
[ -x "$CACHE_DIR/build/kout/selftests/vfio/virtio_mig/dirty_log_bench" ] ||
	die "dirty_log_bench missing: run 'make selftests'"
# Through a pipe: the VM reopens its output and would truncate a file there.
"$VM_DIR/run-vm.sh" --timeout "$timeout_s" -- "$VM_DIR/guest/bench.sh" report "$@" 2>&1 | cat
# Register accesses with requests in flight: the device models hold each request 100 ms.
"$VM_DIR/run-vm.sh" --timeout "$timeout_s" --devsim-args "--request-delay-ms 100" -- \
	"$VM_DIR/guest/bench.sh" loaded 2>&1 | cat
