#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
# Guest side of 'make check': the in-VM suites, each framed for the host summarizer.
#
#   run-tests.sh [all|viommu|mig-load|mig-fault|dirty-gra|dirty-past-length|dirty-byte|
#                 admin|admin-viommu]
#
# "viommu" is the smoke run with DMA translated by an emulated IOMMU: binding and I/O only.
# "mig-load" and "mig-fault" need device models started with other options (requests held in
# flight, queues that never stop): tools/testing/vm/run-variant-tests.sh boots a VM for each.
# "dirty-gra", "dirty-past-length" and "dirty-byte" likewise run the dirty-logging test against
# other device-model options: tools/testing/vm/run-variant-tests.sh.
# "admin" and "admin-viommu" test dirty logging through owner functions (admin write
# recording), each instance's device model started with other options:
# tools/testing/vm/run-admin-tests.sh boots a VM for each (guest/admin-tests.sh).

source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/admin-tests.sh"
guest_setup

# KUnit suites built into the kernel ran at boot; debugfs keeps their KTAP results.
KUNIT_SUITES="rust_virtio_pci_caps rust_vfio_migration iova_bitmap"

kunit_results() {
	local suite rc=0
	for suite in $KUNIT_SUITES; do
		if [ -r "/sys/kernel/debug/kunit/$suite/results" ]; then
			cat "/sys/kernel/debug/kunit/$suite/results"
		else
			echo "not ok 1 $suite # results missing"
			rc=1
		fi
	done
	return $rc
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

# The driver gives the device DMA memory of its own (the tracker bitmap) and asks for 64-bit
# DMA addresses; vfio-pci leaves a function at the PCI default of 32 bits. A function that
# virtio_pci never had (it sets 64 bits itself) shows which: the last one is removed and
# found again with autoprobe off, then bound to the driver.
dma_mask_tests() {
	local bdf dev bits
	modprobe "$DRIVER" || { echo "not ok 1 modprobe $DRIVER"; return 1; }
	bdf=$(devsim_devices | tail -n 1)
	dev=/sys/bus/pci/devices/$bdf
	echo "1..3"
	echo 1 >"$dev/remove"
	echo 0 >/sys/bus/pci/drivers_autoprobe
	echo 1 >/sys/bus/pci/rescan
	echo 1 >/sys/bus/pci/drivers_autoprobe
	if [ ! -e "$dev" ] || [ -e "$dev/driver" ]; then
		echo "not ok 1 $bdf found again and left unbound"
		return 1
	fi
	echo "ok 1 $bdf found again and left unbound"
	bits=$(cat "$dev/consistent_dma_mask_bits")
	[ "$bits" = 32 ] && echo "ok 2 coherent DMA mask before binding: $bits bits" ||
		echo "not ok 2 coherent DMA mask before binding: $bits bits, not the PCI default"
	bind_driver "$bdf" || { echo "not ok 3 bind $bdf to $DRIVER"; return 1; }
	bits=$(cat "$dev/consistent_dma_mask_bits")
	[ "$bits" = 64 ] && echo "ok 3 coherent DMA mask of $DRIVER: $bits bits" ||
		{ echo "not ok 3 coherent DMA mask of $DRIVER: $bits bits"; return 1; }
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

# The dirty-logging test against device models started with other options, one VM boot each
# (tools/testing/vm/run-variant-tests.sh). The environment tells the test what to expect.
#   gra          devsim --min-gra-power 2: the device tracks 16 KiB pages
#   past-length  devsim --fault-bits-past-length, and max_bitmap_kib=256 so that START must
#                coarsen the page size for high ranges
#   byte         devsim --byte-granular-dirty: whole bitmap bytes, eight pages at a time
# The cases that do not depend on the device (argument checks) run in the "all" set only.
DIRTY_DEVICE_TESTS="report_exact_4k report_exact_2m report_at_4k report_again_clean above_4g
	harvest_race start_stop_cycles vfio_reset_reports_all virtio_reset_reports_all
	reset_reports_each_section_once"

dirty_log_variant() {
	local variant=$1 bdf params="" tests=$DIRTY_DEVICE_TESTS t args=() env=()
	case $variant in
	gra) env=(VIRTIO_MIG_DEVICE_PAGE=16384) ;;
	past-length)
		env=(VIRTIO_MIG_FAULT_PAST_LENGTH=1 VIRTIO_MIG_MAX_BITMAP_KIB=256)
		params="max_bitmap_kib=256"
		tests+=" bitmap_cap range_at_256g past_length_fault"
		;;
	byte) env=(VIRTIO_MIG_BYTE_GRANULAR=1) ;;
	esac
	echo 8 >/proc/sys/vm/nr_hugepages
	bdf=$(devsim_devices | head -n 1)
	# The driver parameters apply at load time.
	if [ -d "/sys/module/$DRIVER" ] && [ -n "$params" ]; then
		[ -e "/sys/bus/pci/devices/$bdf/driver" ] &&
			echo "$bdf" >"/sys/bus/pci/devices/$bdf/driver/unbind"
		modprobe -r "$DRIVER" || { echo "not ok 1 modprobe -r $DRIVER"; return 1; }
	fi
	modprobe "$DRIVER" $params || { echo "not ok 1 modprobe $DRIVER $params"; return 1; }
	[ "$(basename "$(readlink "/sys/bus/pci/devices/$bdf/driver")")" = "$DRIVER" ] ||
		bind_driver "$bdf" || { echo "not ok 1 bind $bdf"; return 1; }
	for t in $tests; do
		args+=(-t "$t")
	done
	# run_suite fails the suite on any kernel report, whatever the device did.
	env "${env[@]}" "$SELFTESTS/vfio_dirty_log_test" "$bdf" "${args[@]}" 2>&1
}

unload() {
	modprobe -r "$DRIVER" && echo "ok 1 modprobe -r $DRIVER" ||
		{ echo "not ok 1 modprobe -r $DRIVER"; return 1; }
}

case "${1:-all}" in
all)
	kmemleak_forget
	run_suite kunit kunit_results
	run_suite kselftest-virtio-mig-bind bind_tests
	run_suite kselftest-vfio-virtio-blk blk_tests
	run_suite kselftest-vfio-unbind unbind_tests
	run_suite dma-mask dma_mask_tests
	run_suite kselftest-vfio-virtio-mig mig_tests
	run_suite kselftest-vfio-dirty-log dirty_log_tests
	run_suite module-unload unload
	run_suite kmemleak kmemleak_tests
	;;
viommu)
	kmemleak_forget
	run_suite viommu-virtio-mig-bind bind_tests
	run_suite viommu-vfio-virtio-blk blk_tests
	run_suite viommu-kmemleak kmemleak_tests
	;;
mig-load)
	run_suite kselftest-vfio-virtio-mig-load mig_tests
	;;
mig-fault)
	run_suite kselftest-vfio-virtio-mig-fault mig_fault_tests
	;;
dirty-gra|dirty-past-length|dirty-byte)
	run_suite "kselftest-vfio-$1" dirty_log_variant "${1#dirty-}"
	;;
admin|admin-viommu)
	admin_suites "$1"
	;;
*)
	echo "unknown suite set $1" >&2
	exit 2
	;;
esac
