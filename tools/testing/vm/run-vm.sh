#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
# Boot the guest kernel under virtme-ng with two virtio-devsim devices attached and run a
# guest script (or an interactive shell). Runs inside the toolchain root.
#
#   run-vm.sh [--viommu] [--timeout SECONDS] [--interactive] [--devsim-args "ARGS"]
#             [--devices N] [--shared-disk] [--devsim-args-for I "ARGS"] [--owners]
#             [-- GUEST_SCRIPT [ARGS...]]
#
# --viommu       DMA through an emulated intel-iommu instead of VFIO no-IOMMU mode.
# --devsim-args  extra options for every virtio-devsim instance, split at blanks
#                (e.g. "--request-delay-ms 20 --fault-never-stop").
# --devices      how many device-model functions the guest gets (default 2); function I is
#                devsim<I>, in PCI address order.
# --shared-disk  every instance serves the same disk image, as migration source and
#                destination do on shared storage.
# --devsim-args-for I "ARGS"  extra options for instance I only (after --devsim-args).
# --kernel-variant NAME  boot the kernel kernel-build.sh --variant NAME built (kout-NAME).
# --owners       every instance also serves an owner function (virtio admin write recording,
#                Documentation/driver-api/virtio/admin-write-recording.rst) on
#                devsim<I>-owner.sock; instance I is then the multifunction slot 0x10+I:
#                function 0 the owner, function 1 the member (the device function above).
#                The guest script gets VVM_OWNERS=1 in its environment.
# The guest's verdict is the exit status; a guest that outlives the timeout is killed and
# reported as a failure (exit 124).

source "$(dirname "$0")/common.sh"

KOUT=$CACHE_DIR/build/kout
RUN_DIR=/run/virtio-devsim
# Device-model counters, refreshed twice a second, where the guest can read them.
STATS_DIR=$CACHE_DIR/build/devsim-stats
MEMORY=2G
DEVICES=2

viommu=0 timeout_s=900 interactive=0 devsim_args=() shared_disk=0 owners=0
declare -A instance_args=()
while [ $# -gt 0 ]; do
	case "$1" in
	--viommu) viommu=1 ;;
	--timeout) timeout_s=$2; shift ;;
	--interactive) interactive=1 ;;
	--devsim-args) read -ra devsim_args <<<"$2"; shift ;;
	--devices) DEVICES=$2; shift ;;
	--shared-disk) shared_disk=1 ;;
	--devsim-args-for) instance_args[$2]=$3; shift 2 ;;
	--kernel-variant) KOUT=$CACHE_DIR/build/kout-$2; shift ;;
	--owners) owners=1 ;;
	--) shift; break ;;
	*) die "unknown option $1" ;;
	esac
	shift
done
[ -x "$DEVSIM_BIN" ] || die "$DEVSIM_BIN missing: run 'make devsim'"
[ -e "$KOUT/arch/x86/boot/bzImage" ] || die "no guest kernel: run 'make kernel'"
# Slots 0x01-0x09 are virtme-ng's; an instance with an owner takes slot 0x10+I (at most 0x1f).
[ $owners = 0 ] || [ "$DEVICES" -le 16 ] || die "--owners allows at most 16 devices"

pids=()
stats_pid=
cleanup() {
	[ -z "$stats_pid" ] || kill "$stats_pid" 2>/dev/null || true
	for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
	wait 2>/dev/null || true
	rm -rf "$RUN_DIR"
}
trap cleanup EXIT INT TERM

rm -rf "$RUN_DIR" "$STATS_DIR"
mkdir -p "$RUN_DIR" "$STATS_DIR"
qemu_opts="-object memory-backend-memfd,id=guestmem,size=$MEMORY,share=on"
qemu_opts+=" -machine q35,memory-backend=guestmem"
for i in $(seq 0 $((DEVICES - 1))); do
	disk=$RUN_DIR/disk$i.img
	[ $shared_disk = 0 ] || disk=$RUN_DIR/disk0.img
	read -ra own_args <<<"${instance_args[$i]:-}"
	owner_args=()
	[ $owners = 0 ] || owner_args=(--owner-socket "$RUN_DIR/devsim$i-owner.sock")
	"$DEVSIM_BIN" --socket "$RUN_DIR/devsim$i.sock" "${owner_args[@]}" --backing "$disk" \
		--serial "devsim$i" --stats-file "$STATS_DIR/devsim$i.stats" "${devsim_args[@]}" \
		"${own_args[@]}" >"$RUN_DIR/devsim$i.log" 2>&1 &
	pids+=($!)
	# vng splits these options like a shell: single quotes keep the JSON's double quotes.
	if [ $owners = 0 ]; then
		qemu_opts+=" -device '{\"driver\":\"vfio-user-pci\",\"socket\":{\"path\":\"$RUN_DIR/devsim$i.sock\",\"type\":\"unix\"},\"rombar\":0}'"
	else
		# Function 0 first: QEMU refuses a function 0 without multifunction once another
		# function of the slot exists.
		slot=$(printf '0x%x' $((0x10 + i)))
		qemu_opts+=" -device '{\"driver\":\"vfio-user-pci\",\"socket\":{\"path\":\"$RUN_DIR/devsim$i-owner.sock\",\"type\":\"unix\"},\"rombar\":0,\"addr\":\"$slot.0\",\"multifunction\":true}'"
		qemu_opts+=" -device '{\"driver\":\"vfio-user-pci\",\"socket\":{\"path\":\"$RUN_DIR/devsim$i.sock\",\"type\":\"unix\"},\"rombar\":0,\"addr\":\"$slot.1\"}'"
	fi
done
for i in $(seq 0 $((DEVICES - 1))); do
	for _ in $(seq 100); do
		[ -S "$RUN_DIR/devsim$i.sock" ] && break
		kill -0 "${pids[$i]}" 2>/dev/null || { cat "$RUN_DIR/devsim$i.log" >&2; die "devsim$i exited"; }
		sleep 0.1
	done
	# With --owners one process serves both functions: its log tells about either socket.
	[ -S "$RUN_DIR/devsim$i.sock" ] || { [ $owners = 0 ] || cat "$RUN_DIR/devsim$i.log" >&2
		die "devsim$i did not create its socket within 10 s"; }
	[ $owners = 1 ] || continue
	for _ in $(seq 100); do
		[ -S "$RUN_DIR/devsim$i-owner.sock" ] && break
		kill -0 "${pids[$i]}" 2>/dev/null || { cat "$RUN_DIR/devsim$i.log" >&2; die "devsim$i exited"; }
		sleep 0.1
	done
	[ -S "$RUN_DIR/devsim$i-owner.sock" ] || { cat "$RUN_DIR/devsim$i.log" >&2
		die "devsim$i did not create its owner socket within 10 s"; }
done

(while sleep 0.5; do kill -USR1 "${pids[@]}" 2>/dev/null || exit 0; done) &
stats_pid=$!

# The kernel has virtio-blk built in for the nested guest of the QEMU migration; this guest
# leaves the device-model functions to the suites, as before.
append=(--append "console=ttyS0 loglevel=6 initcall_blacklist=virtio_blk_init")
if [ $viommu = 1 ]; then
	qemu_opts+=" -device intel-iommu,caching-mode=on,intremap=on"
	qemu_opts=${qemu_opts/-machine q35,/-machine q35,kernel-irqchip=split,}
	append+=(--append "intel_iommu=on")
else
	append+=(--append "vfio.enable_unsafe_noiommu_mode=1")
fi

# The checkout is shared on its own: under /tmp or /var the guest's overlays would hide it.
vng=(vng ${VNG_VERBOSE:+--verbose} --run "$KOUT" --disable-kvm --disable-microvm --cpus 2 --memory "$MEMORY"
	--rwdir="$CACHE_DIR/build=$CACHE_DIR/build" --rodir="$SRC_TOP=$SRC_TOP" "${append[@]}"
	--qemu-opts="$qemu_opts")
if [ $interactive = 1 ]; then
	"${vng[@]}"
	exit
fi
[ $# -gt 0 ] || die "no guest script given"
# The guest finds the build (selftests, results) under the same cache directory.
guest_cmd="VVM_CACHE=$(printf '%q' "$CACHE_DIR") $(printf '%q ' "$@")"
[ $owners = 0 ] || guest_cmd="VVM_OWNERS=1 $guest_cmd"
set +e
# Through a pipe: the VM reopens its output and would truncate a file there.
timeout --kill-after=10 "$timeout_s" "${vng[@]}" --exec "$guest_cmd" </dev/null 2>&1 | cat
rc=${PIPESTATUS[0]}
set -e
[ $rc = 124 ] && echo "error: the guest did not finish within ${timeout_s}s" >&2
if [ $rc != 0 ]; then
	# What the device models complained about (refused DMA maps, faults) explains many failures.
	for ((i = 0; i < DEVICES; i++)); do
		[ -s "$RUN_DIR/devsim$i.log" ] || continue
		echo "== devsim$i messages (last 20 lines)" >&2
		tail -n 20 "$RUN_DIR/devsim$i.log" >&2
	done
fi
# The device models write their final counters when cleanup stops them.
exit $rc
