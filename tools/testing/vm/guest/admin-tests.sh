# SPDX-License-Identifier: GPL-2.0
# Guest side of the admin write-recording suites (run-tests.sh admin|admin-viommu); sourced
# by run-tests.sh after lib.sh. The VM was booted by tools/testing/vm/run-admin-tests.sh
# with run-vm.sh --owners and the device-model options of tools/testing/vm/admin-sets.sh:
# instance I is slot 0x10+I, its owner function 0 and its member function 1. Each instance's
# member runs vfio_admin_log_test with the expectation its device model was started for.

source "$GUEST_DIR/../admin-sets.sh"

ADMIN_TEST=$SELFTESTS/vfio_admin_log_test

# Fields of a line of admin-sets.sh.
admin_field() {
	cut -d'|' -f"$2" <<<"$1"
}

# The cases of vfio_admin_log_test for an expectation ("-" in admin-sets.sh): the others
# would only skip.
admin_default_tests() {
	case $1 in
	normal)
		echo "report_exact_4k report_exact_2m report_again_clean above_4g" \
			"report_part_of_range many_pages session_rules start_stop_cycles" \
			"member_reset_keeps_records harvest_race"
		;;
	overflow) echo overflow_all_dirty ;;
	hang|status) echo admin_fault ;;
	stray) echo stray_whole_window ;;
	owner-reset) echo owner_reset_once ;;
	esac
}

admin_need_owners() {
	[ "${VVM_OWNERS:-0}" = 1 ] && return 0
	echo "not ok 1 needs run-vm.sh --owners (VVM_OWNERS=1)"
	return 1
}

admin_modprobe() {
	echo 8 >/proc/sys/vm/nr_hugepages
	[ -d "/sys/module/$DRIVER" ] && return 0
	modprobe "$DRIVER" || { echo "not ok 1 modprobe $DRIVER"; return 1; }
}

# Owner first, then the member (which only finds an owner bound at its probe).
admin_bind_pair() {
	local member=$1 owner
	owner=$(owner_of "$member")
	[ "$(bound_driver "$owner")" = "$(owner_driver)" ] || bind_owner "$owner" ||
		{ echo "not ok 1 bind $owner to $(owner_driver)"; return 1; }
	bind_driver "$member" || { echo "not ok 1 bind $member to $DRIVER"; return 1; }
}

# The kernel log of a failed admin suite, as TAP comments.
admin_dmesg() {
	dmesg | grep -i "vfio\|virtio\|owner" | tail -n 40 | sed 's/^/# /'
}

# A member bound while its owner has no driver has no admin backend, and with no memory
# tracker no dirty logging at all; bound again after its owner, it logs (the suites after
# this one).
admin_bind_order_tests() {
	local member owner
	admin_need_owners && admin_modprobe || return 1
	member=$(devsim_member 0)
	owner=$(owner_of "$member")
	unbind_function "$member" && unbind_function "$owner" ||
		{ echo "not ok 1 unbind $member and $owner"; return 1; }
	bind_driver "$member" || { echo "not ok 1 bind $member before its owner"; return 1; }
	"$ADMIN_TEST" "$member" --expect no-backend -t no_backend 2>&1 || { admin_dmesg; return 1; }
}

# Instance $1 of set $2: vfio_admin_log_test with the instance's expectation.
admin_instance_tests() {
	local i=$1 line member expect tests args cap t targs=()
	admin_need_owners && admin_modprobe || return 1
	admin_instances "$2"
	line=${ADMIN_INSTANCES[$i]}
	expect=$(admin_field "$line" 2)
	tests=$(admin_field "$line" 3)
	args=$(admin_field "$line" 4)
	member=$(devsim_member "$i")
	[ -e "/sys/bus/pci/devices/$member" ] || { echo "not ok 1 no member $member"; return 1; }
	admin_bind_pair "$member" || return 1
	targs=(--expect "$expect")
	cap=$(sed -n 's/.*--record-capacity \([0-9x]*\).*/\1/p' <<<"$args")
	[ "$expect" != overflow ] || targs+=(--capacity "$cap")
	[ "$tests" != - ] || tests=$(admin_default_tests "$expect")
	for t in $tests; do
		targs+=(-t "$t")
	done
	"$ADMIN_TEST" "$member" "${targs[@]}" 2>&1 || { admin_dmesg; return 1; }
}

# Unbinding an owner while its member logs: the member's REPORT fails with ENODEV and the
# driver says so (dev_err, naming the member); then the owner is bound again.
admin_unbind_owner_tests() {
	local member owner errs rc=0
	admin_need_owners && admin_modprobe || return 1
	member=$(devsim_member 0)
	owner=$(owner_of "$member")
	admin_bind_pair "$member" || return 1
	errs=$(dmesg -l err | grep -c -F "$member")
	"$ADMIN_TEST" "$member" --unbind-owner "$owner" -t owner_unbound 2>&1 ||
		{ admin_dmesg; rc=1; }
	if [ "$(dmesg -l err | grep -c -F "$member")" -gt "$errs" ]; then
		echo "ok 2 the driver logged an error for $member"
	else
		echo "not ok 2 no error logged for $member when its owner went away"
		admin_dmesg
		rc=1
	fi
	if bind_owner "$owner"; then
		echo "ok 3 $owner binds to $(owner_driver) again"
	else
		echo "not ok 3 $owner does not bind to $(owner_driver) again"
		rc=1
	fi
	return $rc
}

# Behind an IOMMU the owner (a kernel driver's device) and the member (a VFIO user's) must
# be in different IOMMU groups: the device model gives both an ACS capability.
admin_group_tests() {
	local member owner n=0 rc=0 g_owner g_member
	admin_need_owners || return 1
	for member in $(devsim_members); do
		owner=$(owner_of "$member")
		n=$((n + 1))
		g_owner=$(basename "$(readlink "/sys/bus/pci/devices/$owner/iommu_group")")
		g_member=$(basename "$(readlink "/sys/bus/pci/devices/$member/iommu_group")")
		if [ -n "$g_owner" ] && [ -n "$g_member" ] && [ "$g_owner" != "$g_member" ]; then
			echo "ok $n $owner (group $g_owner) and $member (group $g_member) apart"
		else
			echo "not ok $n $owner (group '$g_owner') and $member (group '$g_member')" \
				"must be in IOMMU groups of their own"
			rc=1
		fi
	done
	[ $n -gt 0 ] || { echo "not ok 1 no member functions"; rc=1; }
	return $rc
}

# Set $1 (admin or admin-viommu), one suite per instance, framed by run_suite.
admin_suites() {
	local set=$1 i prefix=
	admin_instances "$set"
	[ "$set" = admin ] || prefix=viommu-
	kmemleak_forget
	if [ "$set" = admin ]; then
		run_suite kselftest-vfio-admin-bind-order admin_bind_order_tests
	else
		run_suite viommu-vfio-admin-groups admin_group_tests
	fi
	for i in "${!ADMIN_INSTANCES[@]}"; do
		run_suite "$(admin_field "${ADMIN_INSTANCES[$i]}" 1)" admin_instance_tests "$i" "$set"
	done
	[ "$set" != admin ] || run_suite kselftest-vfio-admin-unbind-owner admin_unbind_owner_tests
	run_suite "${prefix}admin-module-unload" unload
	run_suite "${prefix}admin-kmemleak" kmemleak_tests
}
