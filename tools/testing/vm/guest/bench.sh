#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
# Guest side of 'make bench' (tools/testing/vm/run-bench.sh): DMA_LOGGING_REPORT latency of
# virtio_vfio_mig against a userspace scan of the same bitmap, on the first device.
#
#   bench.sh [dirty_log_bench options: -m BUFFER_MIB -s SAMPLES]

source "$(dirname "$0")/lib.sh"
guest_setup

modprobe "$DRIVER" || exit 1
bdf=$(devsim_devices | head -n 1)
[ -n "$bdf" ] || { echo "no device-model function" >&2; exit 1; }
[ "$(basename "$(readlink "/sys/bus/pci/devices/$bdf/driver")")" = "$DRIVER" ] ||
	bind_driver "$bdf" || { echo "binding $bdf failed" >&2; exit 1; }
# The buffer is locked 4 KiB pages; hugepages would only take memory from it.
echo 0 >/proc/sys/vm/nr_hugepages
echo "# guest: $(nproc) CPUs, $(awk '/MemTotal/ { print int($2 / 1024) }' /proc/meminfo) MiB," \
	"$(uname -r)"
"$SELFTESTS/dirty_log_bench" -b "$bdf" "$@" 2>&1
