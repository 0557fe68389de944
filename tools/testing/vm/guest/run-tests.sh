#!/bin/bash
# Guest side of 'make check': the in-VM suites, each framed for the host summarizer.
#
#   run-tests.sh [all|viommu|mig-load|mig-fault]
#
# "viommu" is the smoke run with DMA translated by an emulated IOMMU: binding and I/O only.
# "mig-load" and "mig-fault" need device models started with other options (requests held in
# flight, queues that never stop): tools/testing/vm/run-fault-tests.sh boots a VM for each.

source "$(dirname "$0")/lib.sh"
guest_setup

kunit_results() {
	local suite=/sys/kernel/debug/kunit/rust_virtio_pci_caps/results
	[ -r "$suite" ] || { echo "not ok 1 rust_virtio_pci_caps # results missing"; return 1; }
	cat "$suite"
}

bind_tests() {
	modprobe "$DRIVER" || { echo "not ok 1 modprobe $DRIVER"; return 1; }
	"$SELFTESTS/virtio_mig_bind_test" 2
}

# A userspace virtio-blk driver through VFIO, on each device (bound by the test above).
blk_tests() {
	local bdf rc=0
	echo 8 >/proc/sys/vm/nr_hugepages
	for bdf in $(devsim_devices); do
		"$SELFTESTS/vfio_virtio_blk_test" "$bdf" 2>&1 || rc=1
	done
	return $rc
}

# Unbind while a user holds the device open, then bind again.
unbind_tests() {
	local bdf
	bdf=$(devsim_devices | head -n 1)
	"$SELFTESTS/vfio_unbind_test" "$bdf" 2>&1
}

# Migration from the first device-model function to the second, both bound to the driver.
mig_setup() {
	local bdf
	echo 8 >/proc/sys/vm/nr_hugepages
	for bdf in $(devsim_devices); do
		[ "$(basename "$(readlink "/sys/bus/pci/devices/$bdf/driver")")" = "$DRIVER" ] ||
			bind_driver "$bdf" || { echo "not ok 1 bind $bdf to $DRIVER"; return 1; }
	done
}

# The kernel log of a failed migration suite, as TAP comments.
mig_dmesg() {
	dmesg | grep -i "vfio\|virtio" | tail -n 40 | sed 's/^/# /'
}

mig_tests() {
	modprobe "$DRIVER" || { echo "not ok 1 modprobe $DRIVER"; return 1; }
	mig_setup || return 1
	"$SELFTESTS/vfio_virtio_mig_test" 2>&1 || { mig_dmesg; return 1; }
}

# Queues that never stop: the driver must give up after its stop timeout, kept short here.
MIG_FAULT_TIMEOUT_MS=500
mig_fault_tests() {
	modprobe -r "$DRIVER" 2>/dev/null
	modprobe "$DRIVER" stop_timeout_ms=$MIG_FAULT_TIMEOUT_MS ||
		{ echo "not ok 1 modprobe $DRIVER"; return 1; }
	mig_setup || return 1
	"$SELFTESTS/vfio_virtio_mig_fault_test" --never-stop \
		--stop-timeout-ms $MIG_FAULT_TIMEOUT_MS 2>&1 || { mig_dmesg; return 1; }
}

# Device dirty-page logging on the first device, checked against the pages it writes.
dirty_log_tests() {
	local bdf
	echo 8 >/proc/sys/vm/nr_hugepages
	bdf=$(devsim_devices | head -n 1)
	modprobe "$DRIVER" || { echo "not ok 1 modprobe $DRIVER"; return 1; }
	[ "$(basename "$(readlink "/sys/bus/pci/devices/$bdf/driver")")" = "$DRIVER" ] ||
		bind_driver "$bdf" || { echo "not ok 1 bind $bdf"; return 1; }
	"$SELFTESTS/vfio_dirty_log_test" "$bdf" 2>&1
}

unload() {
	modprobe -r "$DRIVER" && echo "ok 1 modprobe -r $DRIVER" ||
		{ echo "not ok 1 modprobe -r $DRIVER"; return 1; }
}

case "${1:-all}" in
all)
	run_suite kunit-virtio-pci-caps kunit_results
	run_suite kselftest-virtio-mig-bind bind_tests
	run_suite kselftest-vfio-virtio-blk blk_tests
	run_suite kselftest-vfio-unbind unbind_tests
	run_suite kselftest-vfio-virtio-mig mig_tests
	run_suite kselftest-vfio-dirty-log dirty_log_tests
	run_suite module-unload unload
	;;
viommu)
	run_suite viommu-virtio-mig-bind bind_tests
	run_suite viommu-vfio-virtio-blk blk_tests
	;;
mig-load)
	run_suite kselftest-vfio-virtio-mig-load mig_tests
	;;
mig-fault)
	run_suite kselftest-vfio-virtio-mig-fault mig_fault_tests
	;;
*)
	echo "unknown suite set $1" >&2
	exit 2
	;;
esac
