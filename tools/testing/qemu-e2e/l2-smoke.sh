#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# Smoke test of the nested (L2) guest on its own: boot the guest kernel with the L2
# initramfs under plain TCG with an emulated virtio-blk disk, drive blkcheck over the
# serial line, damage blocks of the disk image from here and expect blkcheck to notice.
# Prints TAP; the status says whether all tests passed. Runs inside the toolchain root:
#
#   tools/testing/vm/in-root.sh tools/testing/qemu-e2e/l2-smoke.sh
#
# Environment: E2E_TIMEOUT_SCALE multiplies every wait (default 1).

set -euo pipefail
source "$(dirname "$0")/lib.sh"

CACHE_DIR=${VVM_CACHE:-/var/cache/virtio-vfio-mig}
KOUT=$CACHE_DIR/build/kout
KERNEL=$KOUT/arch/x86/boot/bzImage
INITRAMFS=$KOUT/e2e/l2-initramfs.cpio
WORK=$KOUT/e2e/l2-smoke
# A small region, so the writes wrap around it within seconds.
BLOCKS=256
BOOT_TIMEOUT=120

for tool in qemu-system-x86_64 python3 gcc cpio; do
	command -v $tool >/dev/null ||
		{ echo "error: $tool missing: run this inside the toolchain root" >&2; exit 2; }
done
[ -e "$KERNEL" ] || { echo "error: no guest kernel: run 'make kernel'" >&2; exit 2; }

qemu_pid=
cleanup() {
	if [ -n "$qemu_pid" ]; then
		kill "$qemu_pid" 2>/dev/null || true
		wait "$qemu_pid" 2>/dev/null || true
	fi
}
trap cleanup EXIT

tap_plan $((5 + BLKCHECK_SUITE_TESTS))

if "$E2E_DIR/build-l2-initramfs.sh" "$INITRAMFS" >&2; then
	tap_ok "the L2 initramfs builds"
else
	tap_fail "the L2 initramfs builds"
	tap_finish "no initramfs"
	exit 1
fi

rm -rf "$WORK"
mkdir -p "$WORK"
DISK=$WORK/disk.img CTL=$WORK/serial.sock LOG=$WORK/serial.log
truncate -s 64M "$DISK"

start=$SECONDS
qemu-system-x86_64 -accel tcg -M q35 -m 256M -nographic -no-reboot -nodefaults \
	-kernel "$KERNEL" -initrd "$INITRAMFS" \
	-append "$(cat "$E2E_DIR/l2/cmdline") blkcheck_args=--blocks=$BLOCKS" \
	-drive "file=$DISK,if=none,id=d0,format=raw,cache=none" \
	-device virtio-blk-pci,drive=d0 \
	-chardev "socket,id=s0,path=$CTL,server=on,wait=off,logfile=$LOG" -serial chardev:s0 \
	</dev/null >"$WORK/qemu.log" 2>&1 &
qemu_pid=$!
WATCH_PID=$qemu_pid
BC_OFF=0

if line=$(bc_wait '^l2: up' $BOOT_TIMEOUT); then
	tap_ok "L2 boots to /init in $((SECONDS - start)) s ($line)"
else
	tap_fail "L2 boots to /init within $BOOT_TIMEOUT s"
	tail -n 20 "$LOG" "$WORK/qemu.log" | sed 's/^/# /'
	tap_finish "L2 did not boot"
	exit 1
fi
if line=$(bc_wait '^blkcheck: ready ' 60); then
	tap_ok "blkcheck starts $((SECONDS - start)) s after QEMU: $line"
else
	tap_fail "blkcheck starts"
	tail -n 20 "$LOG" | sed 's/^/# /'
	tap_finish "blkcheck did not start"
	exit 1
fi

blkcheck_suite "$DISK" "$WORK" $BLOCKS 1 || tap_note "blkcheck stopped answering"

# quit: blkcheck's status reaches the console and /init powers the guest off.
line="" ok=0
bc_send quit
if line=$(bc_wait '^l2: blkcheck exited with status [0-9]+' 30); then
	for _ in $(seq "$(scaled 30)"); do
		kill -0 "$qemu_pid" 2>/dev/null || { ok=1; break; }
		sleep 1
	done
fi
if [ $ok = 1 ]; then
	wait "$qemu_pid" || true
	qemu_pid=
	tap_ok "quit: '$line', and QEMU exits at the power-off"
else
	tap_fail "quit: ${line:-no exit line from /init}, QEMU still running"
fi

# What is left on the disk passes the offline check as well.
checker=$(dirname "$INITRAMFS")/blkcheck
if line=$("$checker" check "$DISK" | tail -n1) && [ "$(field errors "$line")" = 0 ]; then
	tap_ok "offline check of the disk image: $line"
else
	tap_fail "offline check of the disk image: $line"
fi

tap_finish
