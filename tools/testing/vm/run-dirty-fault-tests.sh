#!/bin/bash
# The dirty-logging test against device models started with other options, one VM boot each
# (tools/testing/vm/guest/run-tests.sh names the suite sets):
#
#   gra          virtio-devsim --min-gra-power 2: the device tracks 16 KiB pages, so START at
#                4 KiB returns 16 KiB and a REPORT at 4 KiB still holds every written page;
#   past-length  virtio-devsim --fault-bits-past-length: a device that sets bits past
#                bitmap_length must not hurt the kernel or the reports (the driver is also
#                loaded with max_bitmap_kib=256, so high ranges coarsen the page size);
#   byte         virtio-devsim --byte-granular-dirty: whole bitmap bytes, eight pages at once.
#
# Runs inside the toolchain root, like run-vm.sh:
#
#   tools/testing/vm/in-root.sh tools/testing/vm/run-dirty-fault-tests.sh \
#       [--timeout SECONDS] [gra|past-length|byte ...]
#
# Without a set name every set runs. The output carries the @@suite/@@end markers
# summarize.py reads; the exit status is that of the first boot that failed.

source "$(dirname "$0")/common.sh"

timeout_s=600
sets=()
while [ $# -gt 0 ]; do
	case "$1" in
	--timeout) timeout_s=$2; shift ;;
	gra|past-length|byte) sets+=("$1") ;;
	*) die "unknown option $1" ;;
	esac
	shift
done
[ ${#sets[@]} -gt 0 ] || sets=(gra past-length byte)

rc=0
boot() {
	local args=$1 set=$2 status=0
	# Through a pipe: the VM reopens its output and would truncate a file there.
	"$VM_DIR/run-vm.sh" --timeout "$timeout_s" --devsim-args "$args" -- \
		"$VM_DIR/guest/run-tests.sh" "dirty-$set" 2>&1 | cat || status=$?
	[ $rc != 0 ] || rc=$status
}

for set in "${sets[@]}"; do
	case $set in
	gra) boot "--min-gra-power 2" gra ;;
	past-length) boot "--fault-bits-past-length" past-length ;;
	byte) boot "--byte-granular-dirty" byte ;;
	esac
done
exit $rc
