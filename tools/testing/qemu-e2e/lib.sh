# SPDX-License-Identifier: GPL-2.0
#
# Shared helpers of the qemu-e2e scripts: TAP output, the line control channel of a running
# blkcheck (a serial chardev socket or a FIFO) and block injections into its disk. Sourced.

E2E_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
BLK_SIZE=4096
# Multiplies every wait: a nested guest is far slower than one under plain TCG.
E2E_TIMEOUT_SCALE=${E2E_TIMEOUT_SCALE:-1}

# --- TAP ---------------------------------------------------------------------------------

tap_plan() {
	TAP_PLAN=$1 TAP_N=0 TAP_FAILED=0
	echo "TAP version 13"
	echo "1..$TAP_PLAN"
}

tap_ok() {
	TAP_N=$((TAP_N + 1))
	echo "ok $TAP_N - $*"
}

tap_fail() {
	TAP_N=$((TAP_N + 1)) TAP_FAILED=$((TAP_FAILED + 1))
	echo "not ok $TAP_N - $*"
}

# tap_check DESCRIPTION COMMAND...: one test, passed when COMMAND succeeds.
tap_check() {
	local desc=$1
	shift
	if "$@"; then tap_ok "$desc"; else tap_fail "$desc"; fi
}

tap_note() {
	echo "# $*"
}

# Fail what the plan still holds (a run that stopped early never passes); the status is
# whether every test passed.
tap_finish() {
	while [ "$TAP_N" -lt "$TAP_PLAN" ]; do
		tap_fail "${1:-not reached}"
	done
	[ "$TAP_N" = "$TAP_PLAN" ] || tap_note "ran $TAP_N tests, the plan said $TAP_PLAN"
	[ "$TAP_FAILED" = 0 ] && [ "$TAP_N" = "$TAP_PLAN" ]
}

# --- the blkcheck control channel ----------------------------------------------------------
#
# CTL: the socket or FIFO that reaches blkcheck's stdin; LOG: the file its output lands in;
# WATCH_PID: a process whose exit means no answer will come (QEMU, or blkcheck itself).

serial() {
	python3 "$E2E_DIR/serial.py" "$@"
}

scaled() {
	echo $(($1 * E2E_TIMEOUT_SCALE))
}

# bc_send LINE: send a command; answers are looked for from here on (BC_OFF).
bc_send() {
	BC_OFF=$(serial size "$LOG")
	serial send "$CTL" "$1"
}

# bc_wait REGEX [TIMEOUT]: print the first line since the last bc_send that REGEX matches.
bc_wait() {
	serial wait "$LOG" "$1" --offset "$BC_OFF" --timeout "$(scaled "${2:-60}")" \
		${WATCH_PID:+--pid "$WATCH_PID"}
}

# bc_cmd LINE REGEX [TIMEOUT]: send, then wait for the answer.
bc_cmd() {
	bc_send "$1" && bc_wait "$2" "${3:-60}"
}

# field KEY LINE: the value of KEY=value in LINE (empty when absent).
field() {
	if [[ " $2 " =~ [[:space:]]$1=([^[:space:]]+) ]]; then
		echo "${BASH_REMATCH[1]}"
	fi
}

is_uint() {
	[[ $1 =~ ^[0-9]+$ ]]
}

STATUS_RE='^blkcheck: t=[0-9]+ writes=[0-9]+ reads=[0-9]+ verified=[0-9]+ errors=[0-9]+ seq=[0-9]+$'

# bc_status: a fresh status line.
bc_status() {
	bc_cmd status "$STATUS_RE" 30
}

# wait_seq TARGET TIMEOUT: wait (bounded) until blkcheck has issued sequence TARGET.
wait_seq() {
	local target=$1 end=$((SECONDS + $(scaled "$2"))) line seq
	while [ $SECONDS -lt $end ]; do
		line=$(bc_status) || return 1
		seq=$(field seq "$line")
		[ "${seq:-0}" -ge "$target" ] && return 0
		sleep 1
	done
	return 1
}

# --- block injections ------------------------------------------------------------------------
#
# O_DIRECT both ways, so neither a page cache here nor one in front of the guest's disk
# (QEMU cache=none, a loop device with direct I/O) holds an older copy.

blk_get() {	# IMG BLOCK OUT
	dd if="$1" of="$3" bs=$BLK_SIZE skip="$2" count=1 iflag=direct status=none
}

blk_put() {	# IMG BLOCK IN
	dd if="$3" of="$1" bs=$BLK_SIZE seek="$2" count=1 oflag=direct conv=notrunc status=none
}

# blk_torn OUT NEW OLD: the first four sectors of NEW, the last four of OLD.
# expect_damage BLOCK REASON WHAT: a full verify finds exactly one bad block, BLOCK, for REASON.
expect_damage() {
	local line line2
	line=$(bc_cmd verify '^blkcheck: verify ' 300) || line="no verify answer"
	line2=$(bc_wait "^blkcheck: ERROR block=$1 .*reason=$2\$" 5) || line2=
	if [ "$(field errors "$line")" = 1 ] && [ -n "$line2" ]; then
		tap_ok "$3: $line2"
	else
		tap_fail "$3: ${line2:-$line}"
	fi
}

blk_torn() {
	{ head -c $((BLK_SIZE / 2)) "$2"; tail -c $((BLK_SIZE / 2)) "$3"; } >"$1"
}

# blk_flip OUT IN: IN with eight bytes inside its fourth sector inverted.
blk_flip() {
	python3 -c '
import sys
b = bytearray(open(sys.argv[2], "rb").read())
for i in range(1700, 1708):
    b[i] ^= 0xff
open(sys.argv[1], "wb").write(b)
' "$1" "$2"
}

# --- the shared suite ------------------------------------------------------------------------

# shellcheck disable=SC2034 # used by the scripts that source this
BLKCHECK_SUITE_TESTS=8

# blkcheck_suite DISK WORKDIR BLOCKS KERNEL_STATS: BLKCHECK_SUITE_TESTS tests against a
# blkcheck that is running on DISK (as seen from here) with a region of BLOCKS blocks.
# KERNEL_STATS=1: its device is a block device whose counters must match blkcheck's own
# (less DISKSTAT_BASE="READS WRITES FLUSHES", what they were before blkcheck started).
# Deliberate damage (a stale, a torn and a corrupt block) must each be reported, and the
# repaired block must verify clean again. Leaves blkcheck running with 3 errors counted.
# Returns early (non-zero) when blkcheck stops answering; tap_finish fails the rest.
blkcheck_suite() {
	local disk=$1 dir=$2 blocks=$3 kstats=$4 victim=5
	local line line2 seq t0 w0 t1 w1 dline iline ok errs base_r base_w base_f

	# Let it run; the rate is measured over the last part.
	sleep 2
	line=$(bc_status) || return 1
	t0=$(field t "$line") w0=$(field writes "$line")
	sleep "${RUN_S:-8}"
	line2=$(bc_status) || return 1
	t1=$(field t "$line2") w1=$(field writes "$line2")
	if [ "$t1" -gt "$t0" ]; then
		tap_note "rate: $(((w1 - w0) / (t1 - t0))) writes/s over $((t1 - t0)) s"
	fi
	if [ "$(field errors "$line2")" = 0 ] && [ "$w1" -gt "$w0" ]; then
		tap_ok "blkcheck writes and verifies without errors: $line2"
	else
		tap_fail "blkcheck writes and verifies without errors: $line2"
	fi

	line=$(bc_cmd verify '^blkcheck: verify ' 300) || line="no verify answer"
	if [ "$(field errors "$line")" = 0 ] && [ "$(field blocks "$line")" -gt 1 ] 2>/dev/null; then
		tap_ok "a full verify finds every block as last written: $line"
	else
		tap_fail "a full verify finds every block as last written: $line"
	fi

	ok=0 dline="" iline=""
	if bc_send stats && iline=$(bc_wait '^blkcheck: iostat ' 30); then
		dline=$(bc_wait '^blkcheck: diskstat ' 5) || dline=
		if [ "$kstats" = 1 ]; then
			# One request per read, write and flush. The block layer also counts the
			# empty write that carries each flush, and the reads of the partition scan.
			read -r base_r base_w base_f <<<"${DISKSTAT_BASE:-0 0 0}"
			if is_uint "$(field reads "$dline")" &&
				[ $(($(field writes "$dline") - base_w)) = \
					$(($(field writes "$iline") + $(field flushes "$iline"))) ] &&
				[ $(($(field flushes "$dline") - base_f)) = "$(field flushes "$iline")" ] &&
				[ $(($(field reads "$dline") - base_r)) -ge "$(field reads "$iline")" ]; then
				ok=1
			fi
		elif [[ $dline == *"diskstat unavailable"* ]]; then
			ok=1
		fi
	fi
	tap_check "stats: ${dline:-no diskstat line} / ${iline:-no iostat line}" test $ok = 1

	# The injections need two different writes of the victim block.
	bc_cmd pause '^blkcheck: paused ' 30 >/dev/null || return 1
	blk_get "$disk" $victim "$dir/v1"
	line=$(bc_cmd resume '^blkcheck: resumed ' 30) || return 1
	seq=$(field seq "$line")
	wait_seq $((seq + blocks)) 600 || return 1
	line=$(bc_cmd verify '^blkcheck: verify ' 300) || return 1
	errs=$(field errors "$line")
	blk_get "$disk" $victim "$dir/v2"
	if cmp -s "$dir/v1" "$dir/v2"; then
		tap_note "block $victim was not rewritten"
		return 1
	fi

	blk_put "$disk" $victim "$dir/v1"
	line=$(bc_cmd verify '^blkcheck: verify ' 300) || line="no verify answer"
	line2=$(bc_wait "^blkcheck: ERROR block=$victim .*reason=stale$" 5) || line2=
	if [ "$errs" = 0 ] && [ "$(field errors "$line")" = 1 ] && [ -n "$line2" ]; then
		tap_ok "an older write put back is reported stale: $line2"
	else
		tap_fail "an older write put back is reported stale: ${line2:-$line}"
	fi

	blk_torn "$dir/torn" "$dir/v2" "$dir/v1"
	blk_put "$disk" $victim "$dir/torn"
	expect_damage $victim torn "half of a write is reported torn"

	blk_flip "$dir/flip" "$dir/v2"
	blk_put "$disk" $victim "$dir/flip"
	expect_damage $victim checksum "flipped bytes are reported as a bad checksum"

	blk_put "$disk" $victim "$dir/v2"
	line=$(bc_cmd verify '^blkcheck: verify ' 300) || line="no verify answer"
	tap_check "the repaired block verifies clean: $line" test "$(field errors "$line")" = 0

	bc_cmd resume '^blkcheck: resumed ' 30 >/dev/null || return 1
	sleep 3
	line=$(bc_cmd verify '^blkcheck: verify ' 300) || line="no verify answer"
	line2=$(bc_status) || line2=
	if [ "$(field errors "$line")" = 0 ] && [ "$(field errors "$line2")" = 3 ]; then
		tap_ok "no errors beyond the three made on purpose: $line2"
	else
		tap_fail "no errors beyond the three made on purpose: $line / $line2"
	fi
	bc_cmd resume '^blkcheck: resumed ' 30 >/dev/null
}
