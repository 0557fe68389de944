#!/bin/bash
# The migration suites that need device models started with other options, one VM boot each
# (tools/testing/vm/guest/run-tests.sh names the suite sets):
#
#   mig-load   virtio-devsim --request-delay-ms 20: requests are still in flight when a queue
#              migrates (vfio_virtio_mig_test, the whole of it, under load);
#   mig-fault  virtio-devsim --fault-never-stop (and the delay): queues never stop, so the
#              driver must time out into ERROR (vfio_virtio_mig_fault_test).
#
# Runs inside the toolchain root, like run-vm.sh:
#
#   tools/testing/vm/in-root.sh tools/testing/vm/run-fault-tests.sh [--timeout SECONDS]
#
# The output carries the @@suite/@@end markers summarize.py reads; the exit status is that of
# the first boot that failed.

source "$(dirname "$0")/common.sh"

DELAY_MS=20
timeout_s=600
while [ $# -gt 0 ]; do
	case "$1" in
	--timeout) timeout_s=$2; shift ;;
	*) die "unknown option $1" ;;
	esac
	shift
done

rc=0
boot() {
	local args=$1 set=$2 status=0
	# Through a pipe: the VM reopens its output and would truncate a file there.
	"$VM_DIR/run-vm.sh" --timeout "$timeout_s" --devsim-args "$args" -- \
		"$VM_DIR/guest/run-tests.sh" "$set" 2>&1 | cat || status=$?
	[ $rc != 0 ] || rc=$status
}

boot "--request-delay-ms $DELAY_MS" mig-load
boot "--request-delay-ms $DELAY_MS --fault-never-stop" mig-fault
exit $rc
