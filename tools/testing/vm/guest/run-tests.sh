#!/bin/bash
# Guest side of 'make check': the in-VM suites, each framed for the host summarizer.
#
#   run-tests.sh [all|viommu]
#
# "viommu" is the smoke run with DMA translated by an emulated IOMMU: binding and I/O only.

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
	run_suite module-unload unload
	;;
viommu)
	run_suite viommu-virtio-mig-bind bind_tests
	run_suite viommu-vfio-virtio-blk blk_tests
	;;
*)
	echo "unknown suite set $1" >&2
	exit 2
	;;
esac
