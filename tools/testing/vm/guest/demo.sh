#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
# Guest side of 'make run': load the driver, bind it to both device-model functions, show what
# it discovered, then live-migrate a running virtio-blk workload from the first to the second.

source "$(dirname "$0")/lib.sh"
guest_setup

modprobe "$DRIVER" || exit 1
devices=$(devsim_devices)
for bdf in $devices; do
	echo "== $bdf: $(cat /sys/bus/pci/devices/$bdf/vendor):$(cat /sys/bus/pci/devices/$bdf/device)"
	bind_driver "$bdf" || { echo "binding $bdf failed"; exit 1; }
	awk 'NR <= 6 && $1 != "0x0000000000000000" { printf "   BAR%d %s-%s\n", NR - 1, $1, $2 }' \
		"/sys/bus/pci/devices/$bdf/resource"
	dmesg | grep "$DRIVER $bdf" | sed 's/^\[[^]]*\] /   /'
done

echo
echo 8 >/proc/sys/vm/nr_hugepages
# shellcheck disable=SC2086 # two addresses: source and destination
"$SELFTESTS/virtio_mig_demo" $devices "$CACHE_DIR/build/devsim-stats" 2>&1
