#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
# Guest side of 'make bench' (tools/testing/vm/run-bench.sh).
#
#   bench.sh report [dirty_log_bench options: -m BUFFER_MIB -s SAMPLES]
#       register accesses of a migration with an idle queue (virtio_mig_demo -n 0), then the
#       DMA_LOGGING_REPORT latency of virtio_vfio_mig against a userspace scan of the same
#       bitmap, on the first device
#   bench.sh loaded
#       register accesses of a migration with 20 requests in flight, which the device models
#       hold 100 ms each (run-bench.sh starts them so)
#   bench.sh admin [dirty_log_bench options]
#       the same DMA_LOGGING_REPORT latency through admin write recording: the member of
#       device-model instance 0 (run-vm.sh --owners; run-bench.sh starts its device model
#       without a memory tracker), its owner bound first; with the admin commands and bytes
#       of each REPORT and the record-store overflow rate, from the instance's counters

source "$(dirname "$0")/lib.sh"
guest_setup

# The goal for the accesses of one side: 16, 6 per queue, one per device-config field. The
# device model has one queue and a 60-byte virtio-blk configuration of 21 fields.
QUEUES=1
CONFIG_FIELDS=21
IDLE_GOAL=$((16 + 6 * QUEUES + CONFIG_FIELDS))
LOADED_GOAL=60

mode=${1:-report}
shift || true
modprobe "$DRIVER" || exit 1
echo "# guest: $(nproc) CPUs, $(awk '/MemTotal/ { print int($2 / 1024) }' /proc/meminfo) MiB," \
	"$(uname -r)"

# The first two device-model functions, bound to the driver, into the array devices.
bind_devices() {
	local bdf
	read -r -a devices <<<"$(devsim_devices | tr '\n' ' ')"
	[ ${#devices[@]} -ge 2 ] || { echo "need two device-model functions" >&2; return 1; }
	for bdf in "${devices[@]:0:2}"; do
		[ "$(bound_driver "$bdf")" = "$DRIVER" ] ||
			bind_driver "$bdf" || { echo "binding $bdf failed" >&2; return 1; }
	done
}

# Runs virtio_mig_demo with REQUESTS in flight and prints the row of its access counts.
accesses_row() {
	local requests=$1 what=$2 goal=$3 out counts src dst verdict
	echo 8 >/proc/sys/vm/nr_hugepages
	out=$("$SELFTESTS/virtio_mig_demo" -n "$requests" "${devices[0]}" "${devices[1]}" \
		"$CACHE_DIR/build/devsim-stats" 2>&1) || { echo "$out"; return 1; }
	counts=$(grep -A1 "device register accesses" <<<"$out" | tail -n 1)
	src=$(sed -n 's/.*devsim0 \([0-9]*\),.*/\1/p' <<<"$counts")
	dst=$(sed -n 's/.*devsim1 \([0-9]*\).*/\1/p' <<<"$counts")
	[ -n "$src" ] && [ -n "$dst" ] || { echo "$out"; return 1; }
	verdict=met
	[ "$src" -le "$goal" ] && [ "$dst" -le "$goal" ] || verdict="not met"
	grep "downtime" <<<"$out" | sed 's/^ */# /'
	printf "%-58s source %4d  destination %4d  goal <= %d each: %s\n" \
		"register accesses per migration, $what" "$src" "$dst" "$goal" "$verdict"
	echo "#   reproduce: make bench (virtio_mig_demo -n $requests A B)"
}

case "$mode" in
report)
	bind_devices || exit 1
	accesses_row 0 "idle queue" "$IDLE_GOAL" || exit 1
	# The buffer is locked 4 KiB pages; hugepages would only take memory from it.
	echo 0 >/proc/sys/vm/nr_hugepages
	"$SELFTESTS/dirty_log_bench" -b "${devices[0]}" "$@" 2>&1
	;;
loaded)
	bind_devices || exit 1
	# Only the source's count has a goal here; the destination's is the idle one.
	accesses_row 20 "20 requests held 100 ms" "$LOADED_GOAL" || exit 1
	;;
admin)
	[ "${VVM_OWNERS:-0}" = 1 ] || { echo "bench.sh admin needs run-vm.sh --owners" >&2; exit 1; }
	member=$(devsim_member 0)
	owner=$(owner_of "$member")
	# The member finds its owner only if the owner is bound when the member is probed.
	bind_owner "$owner" || { echo "binding $owner to $(owner_driver) failed" >&2; exit 1; }
	bind_driver "$member" || { echo "binding $member failed" >&2; exit 1; }
	echo 0 >/proc/sys/vm/nr_hugepages
	"$SELFTESTS/dirty_log_bench" -b "$member" -a "$CACHE_DIR/build/devsim-stats/devsim0.stats" \
		"$@" 2>&1
	;;
*)
	echo "unknown mode $mode" >&2
	exit 2
	;;
esac
