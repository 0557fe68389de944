# SPDX-License-Identifier: GPL-2.0
# Helpers for the guest scripts; sourced.

GUEST_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
CACHE_DIR=${VVM_CACHE:-/var/cache/virtio-vfio-mig}
KOUT=$CACHE_DIR/build/kout
SELFTESTS=$KOUT/selftests/vfio/virtio_mig
DRIVER=virtio_vfio_mig

# PCI addresses of the device-model functions (modern virtio-blk, subsystem 0x1100).
devsim_devices() {
	local dev
	for dev in /sys/bus/pci/devices/*; do
		[ "$(cat "$dev/vendor")" = 0x1af4 ] && [ "$(cat "$dev/device")" = 0x1042 ] &&
			[ "$(cat "$dev/subsystem_device")" = 0x1100 ] && basename "$dev"
	done
}

bind_driver() {
	local bdf=$1 dev=/sys/bus/pci/devices/$1
	echo "$DRIVER" >"$dev/driver_override"
	[ -e "$dev/driver" ] && echo "$bdf" >"$dev/driver/unbind"
	echo "$bdf" >/sys/bus/pci/drivers_probe
	[ "$(basename "$(readlink "$dev/driver")")" = "$DRIVER" ]
}

# Where each suite's output is also written: the console may lose output, the shared build
# directory does not. The host clears it before a run and reads it afterwards.
RESULTS_DIR=$CACHE_DIR/build/results

# Run one suite between the markers the host summarizer looks for.
run_suite() {
	local name=$1
	shift
	mkdir -p "$RESULTS_DIR"
	{
		echo "@@suite $name"
		"$@"
		echo "@@end $name rc=$?"
	} 2>&1 | tee "$RESULTS_DIR/$name.tap"
	sync
}

guest_setup() {
	mountpoint -q /sys/kernel/debug || mount -t debugfs debugfs /sys/kernel/debug
	dmesg -n 3
}
