#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# blkcheck on the build host, no VM: against a regular file (or, with --loop, a loop
# device with direct I/O, so the kernel's disk counters are checked too), driven through a
# FIFO the way the L2 serial console drives it. Prints TAP; the status says whether all
# tests passed.
#
#   tools/testing/qemu-e2e/blkcheck-host-test.sh [--loop]
#
# The work directory must be on a filesystem with O_DIRECT (not tmpfs): by default under
# the build cache, or E2E_WORK=DIR.

set -euo pipefail
source "$(dirname "$0")/lib.sh"

CACHE_DIR=${VVM_CACHE:-/var/cache/virtio-vfio-mig}
WORK=${E2E_WORK:-$CACHE_DIR/build/kout/e2e/blkcheck-host}
BLOCKS=64
DELAY_MS=5

use_loop=0
case "${1:-}" in
--loop) use_loop=1 ;;
"") ;;
*) echo "usage: $0 [--loop]" >&2; exit 2 ;;
esac

pid="" loopdev=""
cleanup() {
	[ -z "$pid" ] || kill "$pid" 2>/dev/null || true
	[ -z "$pid" ] || wait "$pid" 2>/dev/null || true
	[ -z "$loopdev" ] || losetup -d "$loopdev" 2>/dev/null || true
}
trap cleanup EXIT

tap_plan $((6 + BLKCHECK_SUITE_TESTS))
mkdir -p "$WORK"
rm -f "$WORK"/{disk.img,blkcheck,log,ctl}
bin=$WORK/blkcheck
if gcc -static -O2 -Wall -Wextra -Werror -o "$bin" "$E2E_DIR/l2/blkcheck.c"; then
	tap_ok "blkcheck builds -Wall -Wextra clean, static"
else
	tap_fail "blkcheck builds -Wall -Wextra clean, static"
	tap_finish "no blkcheck"
	exit 1
fi

truncate -s 16M "$WORK/disk.img"
disk=$WORK/disk.img kstats=0
if [ $use_loop = 1 ]; then
	loopdev=$(losetup --find --show --direct-io=on "$WORK/disk.img")
	disk=$loopdev kstats=1
	# A loop device keeps its counters across detach and attach.
	DISKSTAT_BASE=$(awk '{ print $1, $5, $16 }' "/sys/block/${loopdev#/dev/}/stat")
fi

CTL=$WORK/ctl LOG=$WORK/log
mkfifo "$CTL"
# Held open read-write: blkcheck never sees its stdin end, and writers never block.
exec 3<>"$CTL"
"$bin" run --blocks $BLOCKS --delay-ms $DELAY_MS --flush-every 16 "$disk" <&3 >"$LOG" 2>&1 &
pid=$!
WATCH_PID=$pid
BC_OFF=0
if line=$(bc_wait '^blkcheck: ready ' 10); then
	tap_ok "blkcheck starts on $disk: $line"
else
	tap_fail "blkcheck starts on $disk"
	tap_finish "blkcheck did not start"
	exit 1
fi

# A console line comes with a carriage return; noise gets an answer, not a stop.
bc_send $'status\r'
serial send "$CTL" $'\x1b[A garbage\r'
if bc_wait "$STATUS_RE" 10 >/dev/null &&
	bc_wait '^blkcheck: unknown command "\?\[A garbage"' 10 >/dev/null; then
	tap_ok "CR-LF lines are understood, unknown ones answered"
else
	tap_fail "CR-LF lines are understood, unknown ones answered"
fi

RUN_S=4 blkcheck_suite "$disk" "$WORK" $BLOCKS $kstats || tap_note "blkcheck stopped answering"

# quit: the exit status tells whether errors were seen (here the three made on purpose).
set +e
bc_send quit
line=$(bc_wait '^blkcheck: exit ' 10)
wait "$pid"
rc=$?
set -e
pid=
if [ "$(field errors "$line")" = 3 ] && [ $rc = 1 ]; then
	tap_ok "quit: $line, status $rc"
else
	tap_fail "quit: ${line:-no exit line}, status $rc"
fi

# Offline check of what was left: every block is the last write of its cycle position.
if line=$("$bin" check "$disk" | tail -n1) && [ "$(field errors "$line")" = 0 ]; then
	tap_ok "offline check of the final image: $line"
else
	tap_fail "offline check of the final image: $line"
fi
blk_put "$disk" 5 "$WORK/v1"
set +e
out=$("$bin" check "$disk")
rc=$?
set -e
if [ $rc = 1 ] && grep -q '^blkcheck: ERROR block=5 .*reason=stale$' <<<"$out"; then
	tap_ok "offline check finds an older write: $(grep ERROR <<<"$out")"
else
	tap_fail "offline check finds an older write: $out"
fi

tap_finish
