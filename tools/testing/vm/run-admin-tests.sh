#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
# The admin write-recording suites: dirty logging of member functions through their owner
# functions (Documentation/driver-api/virtio/admin-write-recording.rst). One VM boot per set,
# with run-vm.sh --owners and, per instance, the device-model options of admin-sets.sh:
#
#   admin         no-IOMMU; members without a memory tracker: a healthy owner, one whose
#                 record store holds 4 pages, one that never completes READ, one that never
#                 completes START, one that fails READ, one that returns stray records, one
#                 that resets itself after 3 READs; binding order, owner unbound while
#                 logging
#   admin-viommu  behind an emulated intel-iommu: owner and member in IOMMU groups of their
#                 own, exact reports (memory above 4 GiB), a device taking one range only
#
# Runs inside the toolchain root, like run-vm.sh:
#
#   tools/testing/vm/in-root.sh tools/testing/vm/run-admin-tests.sh [--timeout SECONDS] \
#       [--kernel-variant NAME] [SET...]
#
# --kernel-variant boots the kernel kernel-build.sh --variant NAME built (make check-debug).
#
# Without a set every set runs. The output carries the @@suite/@@end markers summarize.py
# reads; the exit status is that of the first boot that failed.

source "$(dirname "$0")/common.sh"
source "$VM_DIR/admin-sets.sh"

declare -A VM_ARGS=(
	[admin]=""
	[admin-viommu]="--viommu"
)
ALL_SETS=(admin admin-viommu)

parse_set_args 900 "${ALL_SETS[@]}" -- "$@"

rc=0
for set in "${SETS[@]}"; do
	admin_instances "$set"
	read -ra args <<<"${VM_ARGS[$set]}"
	args+=(--owners --devices "${#ADMIN_INSTANCES[@]}")
	for i in "${!ADMIN_INSTANCES[@]}"; do
		args+=(--devsim-args-for "$i" "$(cut -d'|' -f4 <<<"${ADMIN_INSTANCES[$i]}")")
	done
	status=0
	boot_set "$set" "${args[@]}" || status=$?
	[ $rc != 0 ] || rc=$status
done
exit $rc
