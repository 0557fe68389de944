#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
# The suites that need the device model started with other options, one VM boot each
# (tools/testing/vm/guest/run-tests.sh names the suite sets):
#
#   mig-load           requests are still in flight when a queue migrates
#                      (vfio_virtio_mig_test, all of it, under load)
#   mig-fault          queues never stop: the driver must time out into ERROR
#                      (vfio_virtio_mig_fault_test)
#   dirty-gra          the device tracks 16 KiB pages: START at 4 KiB returns 16 KiB and a
#                      REPORT at 4 KiB still holds every written page
#   dirty-past-length  the device sets bits past bitmap_length: neither the kernel nor the
#                      reports may suffer (the driver also runs with a small bitmap cap)
#   dirty-byte         the device sets whole bitmap bytes, eight pages at once
#
# Runs inside the toolchain root, like run-vm.sh:
#
#   tools/testing/vm/in-root.sh tools/testing/vm/run-variant-tests.sh [--timeout SECONDS] \
#       [--kernel-variant NAME] [SET...]
#
# --kernel-variant boots the kernel kernel-build.sh --variant NAME built (make check-debug).
#
# Without a set every set runs. The output carries the @@suite/@@end markers summarize.py
# reads; the exit status is that of the first boot that failed.

source "$(dirname "$0")/common.sh"

declare -A DEVSIM_ARGS=(
	[mig-load]="--request-delay-ms 20"
	[mig-fault]="--request-delay-ms 20 --fault-never-stop"
	[dirty-gra]="--min-gra-power 2"
	[dirty-past-length]="--fault-bits-past-length"
	[dirty-byte]="--byte-granular-dirty"
)
ALL_SETS=(mig-load mig-fault dirty-gra dirty-past-length dirty-byte)

parse_set_args 600 "${ALL_SETS[@]}" -- "$@"

rc=0
for set in "${SETS[@]}"; do
	status=0
	boot_set "$set" --devsim-args "${DEVSIM_ARGS[$set]}" || status=$?
	[ $rc != 0 ] || rc=$status
done
exit $rc
