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
read -r -a devices <<<"$(devsim_devices | tr '\n' ' ')"
[ ${#devices[@]} -ge 2 ] || { echo "need two device-model functions" >&2; exit 1; }
for bdf in "${devices[@]:0:2}"; do
	[ "$(basename "$(readlink "/sys/bus/pci/devices/$bdf/driver")")" = "$DRIVER" ] ||
		bind_driver "$bdf" || { echo "binding $bdf failed" >&2; exit 1; }
done
echo "# guest: $(nproc) CPUs, $(awk '/MemTotal/ { print int($2 / 1024) }' /proc/meminfo) MiB," \
	"$(uname -r)"

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
	accesses_row 0 "idle queue" "$IDLE_GOAL" || exit 1
	# The buffer is locked 4 KiB pages; hugepages would only take memory from it.
	echo 0 >/proc/sys/vm/nr_hugepages
	"$SELFTESTS/dirty_log_bench" -b "${devices[0]}" "$@" 2>&1
	;;
loaded)
	# Only the source's count has a goal here; the destination's is the idle one.
	accesses_row 20 "20 requests held 100 ms" "$LOADED_GOAL" || exit 1
	;;
*)
	echo "unknown mode $mode" >&2
	exit 2
	;;
esac
