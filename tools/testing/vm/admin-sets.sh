# SPDX-License-Identifier: GPL-2.0
# The device-model instances of the admin write-recording suite sets; sourced by the host
# runner (run-admin-tests.sh, which starts them) and by the guest (guest/admin-tests.sh,
# which tests them), so both read one table.
#
# Every set boots one VM with run-vm.sh --owners: instance I is slot 0x10+I, its owner
# function 0000:00:(10+I).0, its member 0000:00:(10+I).1. One line per instance:
#
#   SUITE|EXPECT|TESTS|DEVSIM OPTIONS
#
# SUITE    the name the summarizer shows
# EXPECT   vfio_admin_log_test --expect (what the device model was told to do)
# TESTS    the cases to run, separated by blanks; "-" for those of EXPECT
#          (admin_default_tests in guest/admin-tests.sh)
# OPTIONS  virtio-devsim options of the instance (run-vm.sh --devsim-args-for I)
#
# The members of the no-IOMMU set have no memory tracker (--no-tracker): their dirty
# logging can only come from the owner. Members behind the vIOMMU keep it, and the driver
# must not use it there.

# READ and START (admin-write-recording.rst; provisional opcodes).
ADMIN_OP_START=0x14
ADMIN_OP_READ=0x16

ADMIN_SET_admin=(
	"kselftest-vfio-admin-log|normal|-|--no-tracker --record-capacity 4096"
	"kselftest-vfio-admin-overflow|overflow|-|--no-tracker --record-capacity 4"
	"kselftest-vfio-admin-hang-read|hang|-|--no-tracker --fault-admin-hang $ADMIN_OP_READ"
	"kselftest-vfio-admin-hang-start|hang|-|--no-tracker --fault-admin-hang $ADMIN_OP_START"
	"kselftest-vfio-admin-status-read|status|-|--no-tracker --fault-admin-status $ADMIN_OP_READ"
	"kselftest-vfio-admin-stray|stray|-|--no-tracker --fault-stray-records"
	"kselftest-vfio-admin-owner-reset|owner-reset|-|--no-tracker --fault-owner-reset-after-reads 3"
)

ADMIN_SET_admin_viommu=(
	"viommu-vfio-admin-log|normal|-|--record-capacity 4096"
	"viommu-vfio-admin-one-range|normal|report_exact_4k above_4g report_part_of_range|--record-capacity 4096 --record-ranges 1"
)

# The instance table of set $1 (admin, admin-viommu) into the array ADMIN_INSTANCES.
admin_instances() {
	local name=ADMIN_SET_${1//-/_}[@]
	ADMIN_INSTANCES=("${!name}")
}
