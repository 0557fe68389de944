#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
# Benchmarks in the test VM ('make bench'): the device register accesses of one migration with
# an idle queue and with 20 requests in flight (virtio_mig_demo, counted by the device models),
# and the DMA_LOGGING_REPORT latency of virtio_vfio_mig for 1 GiB and 16 GiB tracked at about
# 0.1 % and 50 % of pages dirty, next to a userspace scan of the same bitmap in the same run
# (guest/bench.sh, dirty_log_bench). Then the same latency through admin write recording
# (Documentation/driver-api/virtio/admin-write-recording.rst): a VM booted with owner
# functions (run-vm.sh --owners), its member's device model without a memory tracker, so the
# driver logs through the owner, with the admin commands and bytes of each REPORT and the
# record-store overflow rate from the device model's counters. The guest runs under TCG:
# absolute times are slow and noisy, the ratios and counts are what to compare. Each row
# names its goal; not pass/fail. Runs inside the toolchain root, like run-vm.sh:
#
#   tools/testing/vm/in-root.sh tools/testing/vm/run-bench.sh [--timeout SECONDS] \
#       [--only report|loaded|admin]... [-- dirty_log_bench options]
#
# --only  boot only for these rows (repeatable; default all): "report" the idle-queue
#         accesses and the tracker's REPORT rows, "loaded" the accesses with requests in
#         flight, "admin" the admin write-recording rows. The dirty_log_bench options go to
#         the REPORT rows of both backends (e.g. -c 1024:50 for one cell, -s 3).

source "$(dirname "$0")/common.sh"

# The admin rows' member: no memory tracker (the owner is the only backend), a record store
# that holds every page the bench dirties between two reports (at most the whole buffer,
# about 197000 pages) many times over, and a queue with room for three 1 MiB reads of 256
# one-page descriptors in flight.
ADMIN_DEVSIM_ARGS="--no-tracker --record-capacity 4194304 --queue-size 1024"
ADMIN_BENCH_ARGS=(-p 256)

timeout_s=1800
only=()
while [ $# -gt 0 ]; do
	case "$1" in
	--timeout) timeout_s=$2; shift ;;
	--only)
		case "$2" in report|loaded|admin) only+=("$2") ;; *) die "unknown --only $2" ;; esac
		shift
		;;
	--) shift; break ;;
	*) die "unknown option $1" ;;
	esac
	shift
done
[ -x "$CACHE_DIR/build/kout/selftests/vfio/virtio_mig/dirty_log_bench" ] ||
	die "dirty_log_bench missing: run 'make selftests'"
[ ${#only[@]} -gt 0 ] || only=(report loaded admin)
wanted() {
	[[ " ${only[*]} " == *" $1 "* ]]
}

if wanted report; then
	"$VM_DIR/run-vm.sh" --timeout "$timeout_s" -- "$VM_DIR/guest/bench.sh" report "$@"
fi
# Register accesses with requests in flight: the device models hold each request 100 ms.
if wanted loaded; then
	"$VM_DIR/run-vm.sh" --timeout "$timeout_s" --devsim-args "--request-delay-ms 100" -- \
		"$VM_DIR/guest/bench.sh" loaded
fi
# One owner and its member: 0000:00:10.0 and 0000:00:10.1.
if wanted admin; then
	echo "# admin write recording: run-vm.sh --owners --devices 1 --devsim-args-for 0" \
		"\"$ADMIN_DEVSIM_ARGS\" (reproduce alone: run-bench.sh --only admin [-- -c CELL])"
	"$VM_DIR/run-vm.sh" --timeout "$timeout_s" --owners --devices 1 \
		--devsim-args-for 0 "$ADMIN_DEVSIM_ARGS" -- \
		"$VM_DIR/guest/bench.sh" admin "${ADMIN_BENCH_ARGS[@]}" "$@"
fi
