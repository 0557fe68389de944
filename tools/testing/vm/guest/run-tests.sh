#!/bin/bash
# Guest side of 'make check': every in-VM suite, each framed for the host summarizer.

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
	local rc=$?
	modprobe -r "$DRIVER" || { echo "not ok 99 modprobe -r $DRIVER"; return 1; }
	return $rc
}

run_suite kunit-virtio-pci-caps kunit_results
run_suite kselftest-virtio-mig-bind bind_tests
