# SPDX-License-Identifier: GPL-2.0
# Helpers for the guest scripts; sourced.

GUEST_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
CACHE_DIR=${VVM_CACHE:-/var/cache/virtio-vfio-mig}
KOUT=$CACHE_DIR/build/kout
SELFTESTS=$KOUT/selftests/vfio/virtio_mig
DRIVER=virtio_vfio_mig

# PCI addresses of the device-model functions (modern virtio-blk, subsystem 0x1100). With
# run-vm.sh --owners (VVM_OWNERS=1) the owner functions (function 0 of slots 0x10 and up)
# are left out: these are the functions a VFIO user gets.
devsim_devices() {
	local dev
	for dev in /sys/bus/pci/devices/*; do
		[ "${VVM_OWNERS:-0}" = 1 ] && [ "${dev##*.}" = 0 ] &&
			[ $((16#$(basename "${dev%.*}" | cut -d: -f3))) -ge 16 ] && continue
		[ "$(cat "$dev/vendor")" = 0x1af4 ] && [ "$(cat "$dev/device")" = 0x1042 ] &&
			[ "$(cat "$dev/subsystem_device")" = 0x1100 ] && basename "$dev"
	done
}

bind_driver() {
	local bdf=$1 dev=/sys/bus/pci/devices/$1
	echo "$DRIVER" >"$dev/driver_override"
	[ -e "$dev/driver" ] && echo "$bdf" >"$dev/driver/unbind"
	echo "$bdf" >/sys/bus/pci/drivers_probe
	[ "$(basename "$(readlink "$dev/driver")")" = "$DRIVER" ]
}

# Owner and member functions (virtio admin write recording). With run-vm.sh --owners the
# guest has VVM_OWNERS=1 and device-model instance I is the multifunction slot 0x10+I:
# function 0 is the owner, the other functions its members (group member id = function
# number). Without --owners there are neither.
OWNER_DRIVER=virtio_mig_owner

# The owner driver's name, which driver_override must match exactly.
owner_driver() {
	echo "$OWNER_DRIVER"
}

# Device-model functions in slots 0x10 and up, in PCI address order.
devsim_slot_functions() {
	local dev bdf slot
	[ "${VVM_OWNERS:-0}" = 1 ] || return 0
	for dev in /sys/bus/pci/devices/*; do
		bdf=$(basename "$dev")
		slot=${bdf%.*}
		slot=$((16#${slot##*:}))
		[ "$slot" -ge 16 ] && [ "$(cat "$dev/vendor")" = 0x1af4 ] &&
			[ "$(cat "$dev/device")" = 0x1042 ] && echo "$bdf"
	done
}

devsim_owners() {
	devsim_slot_functions | grep '\.0$'
}

devsim_members() {
	devsim_slot_functions | grep -v '\.0$'
}

# The member of device-model instance I (run-vm.sh --devsim-args-for I).
devsim_member() {
	printf '0000:00:%02x.1\n' $((0x10 + $1))
}

# The owner of a member: function 0 of its slot.
owner_of() {
	echo "${1%.*}.0"
}

# Bind the owner driver (module virtio_vfio_mig) to function BDF. Bind owners before
# their members: a member probed without a bound owner gets no admin backend until it is
# bound again.
bind_owner() {
	local bdf=$1 dev=/sys/bus/pci/devices/$1 driver
	driver=$(owner_driver)
	echo "$driver" >"$dev/driver_override"
	[ -e "$dev/driver" ] && echo "$bdf" >"$dev/driver/unbind"
	echo "$bdf" >/sys/bus/pci/drivers_probe
	[ "$(basename "$(readlink "$dev/driver")")" = "$driver" ]
}

# Unbind whatever driver BDF has; succeeds when it has none.
unbind_function() {
	local bdf=$1 dev=/sys/bus/pci/devices/$1
	[ -e "$dev/driver" ] || return 0
	echo "$bdf" >"$dev/driver/unbind"
}

# Name of the driver bound to BDF, empty when none.
bound_driver() {
	local link
	link=$(readlink "/sys/bus/pci/devices/$1/driver") || return 0
	basename "$link"
}

# Where each suite's output is also written: the console may lose output, the shared build
# directory does not. The host clears it before a run and reads it afterwards.
RESULTS_DIR=$CACHE_DIR/build/results

# What the kernel prints when something went wrong: any WARNING or BUG, and the reports of the
# debug options of kernel.config (lockdep, sleeping in atomic context, DMA API misuse, list
# corruption, hung tasks, soft lockups, kmemleak) and of KASAN and UBSAN.
KERNEL_REPORTS='WARNING:|BUG:|Oops|Call Trace:|possible circular locking|possible recursive locking'
KERNEL_REPORTS+='|inconsistent lock state|suspicious RCU usage|lock held when returning'
KERNEL_REPORTS+='|DMA-API:|list_add corruption|list_del corruption|blocked for more than'
KERNEL_REPORTS+='|soft lockup|suspected memory leak|UBSAN:|KASAN:'

# Prints, as TAP comments, the kernel log after its first SINCE lines from the first report
# on (a lockdep splat or a stack trace is many lines); fails when there was no report.
kernel_reports() {
	local since=$1 log first
	log=$(dmesg | tail -n +"$((since + 1))")
	first=$(grep -n -m 1 -E "$KERNEL_REPORTS" <<<"$log" | cut -d: -f1)
	[ -n "$first" ] || return 1
	echo "# the kernel reported while the suite ran:"
	tail -n +"$first" <<<"$log" | head -n 120 | sed 's/^/#   /'
}

# Run one suite between the markers the host summarizer looks for. A kernel report while it
# ran fails it, whatever its own verdict.
run_suite() {
	local name=$1 marks rc
	shift
	mkdir -p "$RESULTS_DIR"
	marks=$(dmesg | wc -l)
	{
		echo "@@suite $name"
		"$@"
		rc=$?
		kernel_reports "$marks" && rc=1
		echo "@@end $name rc=$rc"
	} 2>&1 | tee "$RESULTS_DIR/$name.tap"
	sync
}

# kmemleak (kernel.config): forget what the boot left, so that the last suite reports only
# what the suites leaked.
kmemleak_forget() {
	local ctl=/sys/kernel/debug/kmemleak
	[ -w $ctl ] || return 0
	echo scan >$ctl
	echo clear >$ctl
}

# Scans twice (an object is reported once it was unreferenced in two scans) and fails on any
# suspected leak.
kmemleak_tests() {
	local ctl=/sys/kernel/debug/kmemleak leaks
	[ -w $ctl ] || { echo "ok 1 - kmemleak # SKIP not in this kernel"; return 0; }
	echo scan >$ctl
	echo scan >$ctl
	leaks=$(grep -c "^unreferenced object" $ctl)
	if [ "$leaks" = 0 ]; then
		echo "ok 1 - no suspected kernel memory leak"
		return 0
	fi
	echo "not ok 1 - $leaks suspected kernel memory leaks"
	sed 's/^/#   /' $ctl | head -n 60
	return 1
}

guest_setup() {
	mountpoint -q /sys/kernel/debug || mount -t debugfs debugfs /sys/kernel/debug
	dmesg -n 3
}
